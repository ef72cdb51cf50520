//! What taskrun reads from the cgroup filesystems: where this process's cgroup v1 hierarchies
//! are (`/proc/self/mountinfo` + `/proc/self/cgroup`), and a task cgroup's figures — CPU time
//! and resident anonymous memory — from its accounting files:
//!
//! | | CPU (all the cgroup's processes, user + system) | memory |
//! |---|---|---|
//! | cgroup v2 | `cpu.stat` `usage_usec` | `memory.stat` `anon` |
//! | cgroup v1 | `cpuacct.usage` (ns, cpuacct hierarchy) | `memory.stat` `total_rss` (memory hierarchy) |
//!
//! The parsers are pure (text in, figures out); [`read_v2`] and [`read_v1`] read the files.

use std::io;
use std::path::{Path, PathBuf};

/// A task's figures at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Usage {
    /// User + system CPU seconds since the task began.
    pub cpu_seconds: f64,
    /// Resident anonymous memory in bytes.
    pub rss_bytes: u64,
}

/// The value of `key` in a flat keyed file (`memory.stat`, `cpu.stat`: one `key value` per line).
pub fn keyed_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        (words.next() == Some(key))
            .then(|| words.next()?.parse().ok())
            .flatten()
    })
}

/// A single-value file (`cpuacct.usage`, `memory.limit_in_bytes`).
pub fn single_value(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// Figures of a cgroup v2 task cgroup from its `cpu.stat` and `memory.stat`.
pub fn usage_v2(cpu_stat: &str, memory_stat: &str) -> Option<Usage> {
    Some(Usage {
        cpu_seconds: keyed_value(cpu_stat, "usage_usec")? as f64 / 1e6,
        rss_bytes: keyed_value(memory_stat, "anon")?,
    })
}

/// Figures of a cgroup v1 task cgroup from its `cpuacct.usage` and `memory.stat` (`total_rss`,
/// which a cgroup without children has equal to `rss`; `rss` where the kernel has no totals).
pub fn usage_v1(cpuacct_usage: &str, memory_stat: &str) -> Option<Usage> {
    Some(Usage {
        cpu_seconds: single_value(cpuacct_usage)? as f64 / 1e9,
        rss_bytes: keyed_value(memory_stat, "total_rss")
            .or_else(|| keyed_value(memory_stat, "rss"))?,
    })
}

fn read(path: &Path) -> io::Result<String> {
    std::fs::read_to_string(path)
}

fn malformed(dir: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{}: unexpected accounting files", dir.display()),
    )
}

/// Reads a cgroup v2 task cgroup's figures.
pub fn read_v2(dir: &Path) -> io::Result<Usage> {
    let cpu = read(&dir.join("cpu.stat"))?;
    let memory = read(&dir.join("memory.stat"))?;
    usage_v2(&cpu, &memory).ok_or_else(|| malformed(dir))
}

/// Reads a cgroup v1 task's figures from its cgroups in the cpuacct and memory hierarchies.
pub fn read_v1(cpuacct: &Path, memory: &Path) -> io::Result<Usage> {
    let cpu = read(&cpuacct.join("cpuacct.usage"))?;
    let mem = read(&memory.join("memory.stat"))?;
    usage_v1(&cpu, &mem).ok_or_else(|| malformed(memory))
}

/// A cgroup v1 hierarchy as mounted here (a line of `/proc/self/mountinfo` of type `cgroup`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct V1Mount {
    /// Where it is mounted.
    pub mount_point: PathBuf,
    /// Which cgroup of the hierarchy is that mount's root (`/` unless a namespace or bind
    /// mount shows only part of it).
    pub root: String,
    /// The mount's options (its controllers among them: `memory`, `cpu`, `cpuacct`, ...).
    pub options: Vec<String>,
}

impl V1Mount {
    /// Whether the hierarchy has `controller`.
    pub fn has(&self, controller: &str) -> bool {
        self.options.iter().any(|o| o == controller)
    }
}

/// Undoes mountinfo's octal escapes (`\040` space, `\011` tab, `\012` newline, `\134` `\`).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal.and_then(|d| u8::from_str_radix(std::str::from_utf8(d).ok()?, 8).ok()) {
            Some(b) => {
                out.push(b);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The cgroup v1 hierarchies in `/proc/self/mountinfo` text: `ID PARENT MAJ:MIN ROOT MOUNTPOINT
/// OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTIONS`.
pub fn v1_mounts(mountinfo: &str) -> Vec<V1Mount> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let left: Vec<&str> = left.split(' ').collect();
            let mut right = right.split(' ');
            if right.next()? != "cgroup" {
                return None;
            }
            let _source = right.next()?;
            let options = right.next()?.split(',').map(str::to_string).collect();
            Some(V1Mount {
                root: unescape(left.get(3)?),
                mount_point: PathBuf::from(unescape(left.get(4)?)),
                options,
            })
        })
        .collect()
}

/// This process's cgroup in the v1 hierarchy that has `controller`, from `/proc/self/cgroup`
/// text (`ID:CONTROLLERS:PATH` lines; `0::PATH` is cgroup v2's).
pub fn v1_own_path(proc_self_cgroup: &str, controller: &str) -> Option<String> {
    proc_self_cgroup.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let _id = parts.next()?;
        let controllers = parts.next()?;
        let path = parts.next()?;
        controllers
            .split(',')
            .any(|c| c == controller)
            .then(|| path.trim().to_string())
    })
}

/// The directory of this process's cgroup in the v1 hierarchy with `controller`: its mount point
/// joined with its path below the mount's root. `None` when the hierarchy is not mounted, or
/// this process's cgroup is outside the part of it that is.
pub fn v1_own_dir(mounts: &[V1Mount], proc_self_cgroup: &str, controller: &str) -> Option<PathBuf> {
    let own = v1_own_path(proc_self_cgroup, controller)?;
    mounts.iter().filter(|m| m.has(controller)).find_map(|m| {
        let below = if m.root == "/" {
            own.as_str()
        } else {
            let rest = own.strip_prefix(m.root.as_str())?;
            // `/a` is not under `/ab`.
            if !rest.is_empty() && !rest.starts_with('/') {
                return None;
            }
            rest
        };
        Some(m.mount_point.join(below.trim_start_matches('/')))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Real files of this kernel family (trimmed), and what must be read from them.
    #[test]
    fn accounting_files() {
        let v2_cpu = "usage_usec 1500000\nuser_usec 1000000\nsystem_usec 500000\nnr_periods 0\n";
        let v2_mem = "anon 4194304\nfile 8192\nkernel 0\nanon_thp 0\ninactive_anon 0\n";
        let v1_mem = "cache 8192\nrss 1048576\nrss_huge 0\nmapped_file 0\ntotal_cache 8192\n\
                      total_rss 2097152\ntotal_inactive_file 4096\n";
        let cases: [(&str, Option<Usage>); 6] = [
            ("v2", usage_v2(v2_cpu, v2_mem)),
            ("v1 with totals", usage_v1("2500000000\n", v1_mem)),
            (
                "v1 without totals",
                usage_v1("1000000000", "cache 0\nrss 12288\n"),
            ),
            (
                "v2 cpu.stat without usage",
                usage_v2("user_usec 1\n", v2_mem),
            ),
            ("v1 memory.stat without rss", usage_v1("1", "cache 0\n")),
            ("v1 garbage usage", usage_v1("lots", v1_mem)),
        ];
        let want = [
            Some(Usage {
                cpu_seconds: 1.5,
                rss_bytes: 4_194_304,
            }),
            Some(Usage {
                cpu_seconds: 2.5,
                rss_bytes: 2_097_152,
            }),
            Some(Usage {
                cpu_seconds: 1.0,
                rss_bytes: 12_288,
            }),
            None,
            None,
            None,
        ];
        for ((what, got), want) in cases.into_iter().zip(want) {
            assert_eq!(got, want, "{what}");
        }
        // A key is a whole word: `anon_thp` is not `anon`, `rss_huge` not `rss`.
        assert_eq!(keyed_value("anon_thp 5\nanon 7\n", "anon"), Some(7));
        assert_eq!(keyed_value("rss_huge 5\n", "rss"), None);
        assert_eq!(keyed_value("anon x\n", "anon"), None);
    }

    #[test]
    fn reads_task_cgroups_from_directories() {
        let dir = tempfile::tempdir().unwrap();
        let v2 = dir.path().join("v2");
        std::fs::create_dir(&v2).unwrap();
        std::fs::write(v2.join("cpu.stat"), "usage_usec 250000\n").unwrap();
        std::fs::write(v2.join("memory.stat"), "anon 4096\nfile 0\n").unwrap();
        assert_eq!(
            read_v2(&v2).unwrap(),
            Usage {
                cpu_seconds: 0.25,
                rss_bytes: 4096
            }
        );
        let (acct, mem) = (dir.path().join("acct"), dir.path().join("mem"));
        std::fs::create_dir(&acct).unwrap();
        std::fs::create_dir(&mem).unwrap();
        std::fs::write(acct.join("cpuacct.usage"), "3000000000\n").unwrap();
        std::fs::write(mem.join("memory.stat"), "total_rss 8192\n").unwrap();
        assert_eq!(read_v1(&acct, &mem).unwrap().cpu_seconds, 3.0);
        let gone = read_v1(&dir.path().join("nope"), &mem).unwrap_err();
        assert_eq!(gone.kind(), io::ErrorKind::NotFound);
        std::fs::write(mem.join("memory.stat"), "cache 1\n").unwrap();
        assert_eq!(
            read_v1(&acct, &mem).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }

    #[test]
    fn finds_own_v1_cgroups() {
        // Separate cpu and cpuacct (this machine), co-mounted cpu,cpuacct (systemd hosts), a
        // namespace that shows only part of the memory hierarchy, a mount point with a space.
        let mountinfo = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 /docker/abc /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
42 31 0:39 / /mnt/odd\\040dir rw shared:5 - cgroup cgroup rw,pids
";
        let mounts = v1_mounts(mountinfo);
        assert_eq!(mounts.len(), 5, "{mounts:?}");
        assert_eq!(mounts[4].mount_point, PathBuf::from("/mnt/odd dir"));
        assert!(mounts[3].has("name=systemd") && !mounts[3].has("memory"));
        let own = "9:name=systemd:/\n8:pids:/p\n4:memory:/docker/abc/inner\n2:cpuacct:/\n1:cpu:/a/b\n0::/\n";
        let cases = [
            ("memory", Some("/sys/fs/cgroup/memory/inner")),
            ("cpu", Some("/sys/fs/cgroup/cpu/a/b")),
            ("cpuacct", Some("/sys/fs/cgroup/cpuacct")),
            ("pids", Some("/mnt/odd dir/p")),
            ("blkio", None),
        ];
        for (controller, want) in cases {
            assert_eq!(
                v1_own_dir(&mounts, own, controller),
                want.map(PathBuf::from),
                "{controller}"
            );
        }
        // Outside the mounted part: not reachable.
        assert_eq!(
            v1_own_dir(&mounts, "4:memory:/docker/abcd\n", "memory"),
            None
        );
        let co = "50 31 0:40 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n";
        let co_mounts = v1_mounts(co);
        let own = "3:cpu,cpuacct:/system.slice/taskrun.service\n";
        for controller in ["cpu", "cpuacct"] {
            assert_eq!(
                v1_own_dir(&co_mounts, own, controller),
                Some(PathBuf::from(
                    "/sys/fs/cgroup/cpu,cpuacct/system.slice/taskrun.service"
                )),
                "{controller}"
            );
        }
        // A pure cgroup v2 host has no v1 hierarchies.
        assert!(v1_mounts("30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n").is_empty());
    }
}
