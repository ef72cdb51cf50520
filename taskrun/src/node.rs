//! Facts about the machine the agent runs on (host name, CPUs, memory) and the resources it
//! offers: Mesos' rule is that whatever `--resources` does not name is detected, so
//! `--resources 'ports:[8000-9000]'` still offers every CPU and the memory minus a reserve for
//! the system.

use cairn_marathon::{ResourceError, Resources};

/// Memory kept back for the operating system and the agent itself, in MB.
pub const MEM_RESERVE_MB: u64 = 512;
/// Disk offered when not configured, in MB.
pub const DEFAULT_DISK_MB: f64 = 10_000.0;

/// The host name (`--node` default), `localhost` if it cannot be read.
pub fn hostname() -> String {
    cairn_cli::hostname().unwrap_or_else(|| "localhost".into())
}

/// CPUs this process may use.
pub fn cpu_count() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

/// `MemTotal` of `/proc/meminfo`, in MB.
pub fn parse_meminfo_total_mb(meminfo: &str) -> Option<u64> {
    meminfo.lines().find_map(|line| {
        let rest = line.strip_prefix("MemTotal:")?;
        let kb: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kb / 1024)
    })
}

/// Total memory of the machine in MB (0 when unknown).
pub fn total_memory_mb() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| parse_meminfo_total_mb(&t))
        .unwrap_or(0)
}

/// What the agent offers when nothing is configured: every CPU, the memory minus
/// [`MEM_RESERVE_MB`], [`DEFAULT_DISK_MB`] and Mesos' default port range.
pub fn default_resources(cpus: usize, mem_total_mb: u64) -> Resources {
    Resources {
        cpus: cpus as f64,
        mem: mem_total_mb.saturating_sub(MEM_RESERVE_MB) as f64,
        disk: DEFAULT_DISK_MB,
        ports: Resources::default_ports(),
    }
}

/// Parses a `--resources` string; the resources it does not name come from `defaults`.
pub fn resources_with_defaults(
    spec: &str,
    defaults: &Resources,
) -> Result<Resources, ResourceError> {
    let mut parsed: Resources = spec.parse()?;
    let named: Vec<&str> = spec
        .split(';')
        .filter_map(|part| part.split_once(':').map(|(name, _)| name.trim()))
        .collect();
    if !named.contains(&"cpus") {
        parsed.cpus = defaults.cpus;
    }
    if !named.contains(&"mem") {
        parsed.mem = defaults.mem;
    }
    if !named.contains(&"disk") {
        parsed.disk = defaults.disk;
    }
    if !named.contains(&"ports") {
        parsed.ports = defaults.ports.clone();
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_offer_every_cpu_and_memory_minus_reserve() {
        let r = default_resources(8, 16_384);
        assert_eq!(r.cpus, 8.0);
        assert_eq!(r.mem, 15_872.0);
        assert_eq!(r.disk, 10_000.0);
        assert_eq!(
            r.to_string(),
            "cpus:8;mem:15872;disk:10000;ports:[31000-32000]"
        );
        // A tiny machine offers no memory rather than wrapping around.
        assert_eq!(default_resources(1, 256).mem, 0.0);
    }

    #[test]
    fn given_resources_override_only_what_they_name() {
        let d = default_resources(4, 4096);
        let r = resources_with_defaults("mem:1024;ports:[8000-8010]", &d).unwrap();
        assert_eq!(r.cpus, 4.0);
        assert_eq!(r.mem, 1024.0);
        assert_eq!(r.disk, 10_000.0);
        assert_eq!(r.port_count(), 11);
        let all = resources_with_defaults("cpus:2;mem:2048;disk:5;ports:[1-2]", &d).unwrap();
        assert_eq!(all.to_string(), "cpus:2;mem:2048;disk:5;ports:[1-2]");
        assert_eq!(resources_with_defaults("", &d).unwrap(), d);
    }

    #[test]
    fn bad_resources_name_the_part() {
        let d = default_resources(4, 4096);
        let e = resources_with_defaults("cpus:x;mem:10", &d).unwrap_err();
        assert!(e.to_string().contains("cpus:x"), "{e}");
    }

    #[test]
    fn reads_total_memory() {
        let text = "MemTotal:       24684032 kB\nMemFree:        22989436 kB\n";
        assert_eq!(parse_meminfo_total_mb(text), Some(24_105));
        assert_eq!(parse_meminfo_total_mb("nothing"), None);
        assert!(cpu_count() >= 1);
        assert!(!hostname().is_empty());
    }
}
