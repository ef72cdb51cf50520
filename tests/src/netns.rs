//! Hosts in Linux network namespaces for the multi-host end-to-end tests: a bridge in the root
//! namespace (`cb-<suffix>`, 10.77.N.1/24) and one namespace per host (`cairn-h<i>-<suffix>`,
//! 10.77.N.1<i>, lo up, default route via the bridge) joined to it by a veth pair. The names
//! carry a random suffix and N is a /24 no interface uses yet, so parallel tests and leftovers
//! of a crashed run never collide.
//!
//! [`Netns`] is the guard: dropping it (also while a test panics) kills every process still
//! running inside its namespaces, then deletes the namespaces, the veths and the bridge.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use crate::cluster::alive;

/// Serialises picking a free subnet and creating its bridge among the tests of this process.
static SETUP: Mutex<()> = Mutex::new(());

/// One host: a namespace and its link to the bridge.
#[derive(Clone, Debug)]
pub struct Host {
    /// `h1`, `h2`, ...: also the node name its agent uses.
    pub name: String,
    /// The namespace, `cairn-h<i>-<suffix>`.
    pub ns: String,
    /// The veth end attached to the bridge (root namespace): down = host cut off.
    pub veth: String,
    /// The veth end inside the namespace.
    pub peer: String,
    pub addr: Ipv4Addr,
}

/// Namespaces, veths and a bridge, deleted on drop (see the module docs).
pub struct Netns {
    pub suffix: String,
    /// The N of 10.77.N.0/24.
    pub subnet: u8,
    pub bridge: String,
    /// The bridge's address (10.77.N.1): where the hosts reach the root namespace.
    pub gateway: Ipv4Addr,
    pub hosts: Vec<Host>,
    bridge_made: bool,
}

/// Runs `ip ARGS...`: its stdout, or a message with its stderr.
pub fn ip(args: &[&str]) -> Result<String, String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running `ip {}`: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`ip {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn ip_or_panic(args: &[&str]) -> String {
    ip(args).unwrap_or_else(|e| panic!("setting up the test network: {e}"))
}

fn random() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    h.finish()
}

impl Netns {
    /// Creates `hosts` namespaced hosts behind a fresh bridge.
    ///
    /// `None` (after printing why) when this machine cannot make network namespaces (not root,
    /// or `ip netns add` fails) and the environment variable CI is not `true`; under `CI=true`
    /// that is a failure instead. Any later setup failure panics, the guard cleaning up what
    /// was made.
    pub fn create(hosts: usize) -> Option<Netns> {
        assert!((1..=9).contains(&hosts), "1 to 9 hosts, not {hosts}");
        let unavailable = |why: String| -> Option<Netns> {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("network namespaces are required under CI=true, but {why}");
            }
            eprintln!("SKIPPED: network namespaces are not available here: {why}");
            None
        };
        // SAFETY: geteuid(2) has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return unavailable("the tests do not run as root".into());
        }
        // Only orders the set-up of one test after another's (the host's interfaces are read
        // afresh below): a test that panicked during its own set-up must not fail the next ones.
        let setup = SETUP.lock().unwrap_or_else(|p| p.into_inner());
        let in_use = match ip(&["-o", "-4", "addr", "show"]) {
            Ok(text) => text,
            Err(e) => return unavailable(e),
        };
        let r = random();
        let subnet = (0..250u64)
            .map(|k| ((r + k) % 250 + 2) as u8)
            .find(|n| !in_use.contains(&format!(" 10.77.{n}.")))
            .unwrap_or_else(|| panic!("every 10.77.N.0/24 is in use:\n{in_use}"));
        let suffix = format!("{subnet:02x}{:03x}", (r >> 16) & 0xfff);
        let mut net = Netns {
            bridge: format!("cb-{suffix}"),
            gateway: Ipv4Addr::new(10, 77, subnet, 1),
            suffix,
            subnet,
            hosts: Vec::new(),
            bridge_made: false,
        };
        for i in 1..=hosts {
            let host = Host {
                name: format!("h{i}"),
                ns: format!("cairn-h{i}-{}", net.suffix),
                veth: format!("cv{i}-{}", net.suffix),
                peer: format!("ch{i}-{}", net.suffix),
                addr: Ipv4Addr::new(10, 77, subnet, 10 + i as u8),
            };
            if let Err(e) = ip(&["netns", "add", &host.ns]) {
                if i == 1 {
                    return unavailable(e);
                }
                panic!("setting up the test network: {e}");
            }
            net.hosts.push(host);
        }
        let br = net.bridge.clone();
        ip_or_panic(&["link", "add", &br, "type", "bridge"]);
        net.bridge_made = true;
        let gw = format!("{}/24", net.gateway);
        ip_or_panic(&["addr", "add", &gw, "dev", &br]);
        ip_or_panic(&["link", "set", &br, "up"]);
        drop(setup);
        let gateway = net.gateway.to_string();
        for h in &net.hosts {
            let addr = format!("{}/24", h.addr);
            ip_or_panic(&[
                "link", "add", &h.veth, "type", "veth", "peer", "name", &h.peer,
            ]);
            ip_or_panic(&["link", "set", &h.peer, "netns", &h.ns]);
            ip_or_panic(&["link", "set", &h.veth, "master", &br]);
            ip_or_panic(&["link", "set", &h.veth, "up"]);
            ip_or_panic(&["-n", &h.ns, "link", "set", "lo", "up"]);
            ip_or_panic(&["-n", &h.ns, "addr", "add", &addr, "dev", &h.peer]);
            ip_or_panic(&["-n", &h.ns, "link", "set", &h.peer, "up"]);
            ip_or_panic(&["-n", &h.ns, "route", "add", "default", "via", &gateway]);
        }
        Some(net)
    }

    /// Host `i`, counting from 1 like the names.
    pub fn host(&self, i: usize) -> &Host {
        self.hosts
            .get(i.wrapping_sub(1))
            .unwrap_or_else(|| panic!("no host h{i}: there are {}", self.hosts.len()))
    }

    /// The arguments of `ip` that run `program` inside host `i`'s namespace
    /// (`netns exec NS PROGRAM`); append the program's own.
    pub fn exec_args(&self, i: usize, program: &Path) -> Vec<String> {
        vec![
            "netns".into(),
            "exec".into(),
            self.host(i).ns.clone(),
            program.display().to_string(),
        ]
    }

    /// `ip netns exec NS PROGRAM` as a command to add arguments to.
    pub fn command(&self, i: usize, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.host(i).ns, program]);
        c
    }

    /// Cuts host `i` off the network: its veth on the bridge goes down.
    pub fn cut(&self, i: usize) {
        ip_or_panic(&["link", "set", &self.host(i).veth, "down"]);
    }

    /// Joins host `i` to the network again.
    pub fn reconnect(&self, i: usize) {
        ip_or_panic(&["link", "set", &self.host(i).veth, "up"]);
    }

    /// Live (non-zombie) processes inside host `i`'s namespace.
    pub fn pids(&self, i: usize) -> Vec<i32> {
        pids_in(&self.host(i).ns)
    }

    /// Live processes inside host `i`'s namespace with their arguments (`argv`).
    pub fn processes(&self, i: usize) -> Vec<(i32, Vec<String>)> {
        self.pids(i)
            .into_iter()
            .filter_map(|pid| {
                let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
                let args = raw
                    .split(|b| *b == 0)
                    .filter(|a| !a.is_empty())
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect();
                Some((pid, args))
            })
            .collect()
    }

    /// SIGKILLs every process inside host `i`'s namespace until none is left (up to 5 s).
    pub fn kill_all(&self, i: usize) {
        kill_all_in(&self.host(i).ns);
    }
}

fn pids_in(ns: &str) -> Vec<i32> {
    ip(&["netns", "pids", ns])
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .filter(|p| alive(*p))
        .collect()
}

fn kill_all_in(ns: &str) {
    for _ in 0..250 {
        let pids = pids_in(ns);
        if pids.is_empty() {
            return;
        }
        for pid in pids {
            // SAFETY: kill(2) on a process inside a namespace this test created.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!(
        "warning: processes still running in {ns}: {:?}",
        pids_in(ns)
    );
}

impl Drop for Netns {
    fn drop(&mut self) {
        for h in &self.hosts {
            kill_all_in(&h.ns);
            if let Err(e) = ip(&["netns", "del", &h.ns]) {
                eprintln!("warning: cleaning up the test network: {e}");
            }
            // Deleting the namespace took the veth pair with it; this is for a half-made host.
            let _ = ip(&["link", "del", &h.veth]);
        }
        if self.bridge_made
            && let Err(e) = ip(&["link", "del", &self.bridge])
        {
            eprintln!("warning: cleaning up the test network: {e}");
        }
    }
}
