//! The metric catalogue: every metric name the agent can send, with its unit and
//! what its dimension (label) holds. Both sides read this one table: the agent's
//! samples are checked against it (a debug assertion in `Reading::push`, and a
//! test that samples this machine), and the collector's rule checker refuses a rule
//! on a name that is not here, suggesting the closest one (`cpu.usage.precent` →
//! `cpu.usage.percent`), unless the rule says `custom_metric = true`.
//!
//! Invariant: names are unique and sorted within their section as docs/METRICS.md
//! lists them; a name added to the agent is added here in the same change (the
//! agent's debug builds panic on a name that is missing, so its tests catch it).

/// What a metric's value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A value now.
    Gauge,
    /// A running total (the collector derives rates).
    Counter,
    /// Computed by the agent between two consecutive samples.
    Rate,
}

/// One metric the agent can send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metric {
    pub(crate) name: &'static str,
    pub unit: &'static str,
    pub(crate) kind: Kind,
    /// What the series' dimension holds; empty for a metric without one.
    pub(crate) dimension: &'static str,
}

const fn g(name: &'static str, unit: &'static str, dimension: &'static str) -> Metric {
    Metric {
        name,
        unit,
        kind: Kind::Gauge,
        dimension,
    }
}
const fn c(name: &'static str, unit: &'static str, dimension: &'static str) -> Metric {
    Metric {
        name,
        unit,
        kind: Kind::Counter,
        dimension,
    }
}
const fn r(name: &'static str, unit: &'static str, dimension: &'static str) -> Metric {
    Metric {
        name,
        unit,
        kind: Kind::Rate,
        dimension,
    }
}

/// Every metric the agent can send (docs/METRICS.md says where each comes from).
pub const CATALOGUE: &[Metric] = &[
    // Health, every sample.
    g("cpu.usage.percent", "%", ""),
    g("cpu.core.usage.percent", "%", "core"),
    g("mem.total.bytes", "bytes", ""),
    g("mem.available.bytes", "bytes", ""),
    g("mem.used.bytes", "bytes", ""),
    g("mem.used.percent", "%", ""),
    g("swap.total.bytes", "bytes", ""),
    g("swap.used.bytes", "bytes", ""),
    g("load.1m", "run-queue average", ""),
    g("load.5m", "run-queue average", ""),
    g("load.15m", "run-queue average", ""),
    g("system.uptime.secs", "seconds", ""),
    g("system.boot.time.unix", "seconds since the epoch", ""),
    g("system.processes", "count", ""),
    g("fs.total.bytes", "bytes", "mount point"),
    g("fs.free.bytes", "bytes", "mount point"),
    g("fs.used.bytes", "bytes", "mount point"),
    g("fs.used.percent", "%", "mount point"),
    g("fs.inodes.total", "inodes", "mount point"),
    g("fs.inodes.free", "inodes", "mount point"),
    g("fs.inodes.used.percent", "%", "mount point"),
    r("disk.read.bytes_per_sec", "bytes/s", "block device"),
    r("disk.write.bytes_per_sec", "bytes/s", "block device"),
    r("disk.read.ops_per_sec", "operations/s", "block device"),
    r("disk.write.ops_per_sec", "operations/s", "block device"),
    r("disk.busy.percent", "%", "block device"),
    c("net.rx.bytes", "bytes", "interface"),
    c("net.tx.bytes", "bytes", "interface"),
    r("net.rx.bytes_per_sec", "bytes/s", "interface"),
    r("net.tx.bytes_per_sec", "bytes/s", "interface"),
    c("net.rx.packets", "packets", "interface"),
    c("net.tx.packets", "packets", "interface"),
    c("net.rx.errors", "errors", "interface"),
    c("net.tx.errors", "errors", "interface"),
    c("net.rx.drops", "packets", "interface"),
    c("net.tx.drops", "packets", "interface"),
    // Kernel health counters, every sample.
    r("cpu.user.percent", "%", ""),
    r("cpu.system.percent", "%", ""),
    r("cpu.iowait.percent", "%", ""),
    r("cpu.steal.percent", "%", ""),
    r("cpu.idle.percent", "%", ""),
    r("system.context_switches_per_sec", "switches/s", ""),
    r("system.interrupts_per_sec", "interrupts/s", ""),
    r("system.forks_per_sec", "forks/s", ""),
    g("system.procs_running", "tasks", ""),
    g("system.procs_blocked", "tasks", ""),
    g("system.threads", "threads", ""),
    g("mem.free.bytes", "bytes", ""),
    g("mem.buffers.bytes", "bytes", ""),
    g("mem.cached.bytes", "bytes", ""),
    g("mem.shared.bytes", "bytes", ""),
    g("mem.slab.bytes", "bytes", ""),
    g("mem.slab.reclaimable.bytes", "bytes", ""),
    g("mem.dirty.bytes", "bytes", ""),
    g("mem.writeback.bytes", "bytes", ""),
    g("mem.committed.bytes", "bytes", ""),
    g("mem.commit_limit.bytes", "bytes", ""),
    g("swap.free.bytes", "bytes", ""),
    r("mem.major_faults_per_sec", "faults/s", ""),
    r("swap.in.pages_per_sec", "pages/s", ""),
    r("swap.out.pages_per_sec", "pages/s", ""),
    c("mem.oom_kills", "processes", ""),
    g("pressure.cpu.some.percent", "%", ""),
    g("pressure.memory.some.percent", "%", ""),
    g("pressure.memory.full.percent", "%", ""),
    g("pressure.io.some.percent", "%", ""),
    g("pressure.io.full.percent", "%", ""),
    g("tcp.established", "connections", ""),
    r("tcp.retrans.segs_per_sec", "segments/s", ""),
    r("tcp.in.errors_per_sec", "segments/s", ""),
    r("tcp.out.resets_per_sec", "resets/s", ""),
    r("udp.in.errors_per_sec", "datagrams/s", ""),
    r("udp.rcvbuf.errors_per_sec", "datagrams/s", ""),
    g("sockets.used", "sockets", ""),
    g("tcp.inuse", "sockets", ""),
    g("tcp.orphan", "sockets", ""),
    g("tcp.time_wait", "sockets", ""),
    g("udp.inuse", "sockets", ""),
    g("files.open", "file handles", ""),
    g("files.max", "file handles", ""),
    g("files.used.percent", "%", ""),
    // Slow collectors, once a minute.
    g("process.top.cpu.percent", "% of one core", "process name"),
    g("process.top.mem.bytes", "bytes", "process name"),
    g("process.top.pid", "pid", "process name"),
    g("process.top.count", "processes", "process name"),
    g("temp.celsius", "°C", "sensor"),
    g("battery.charge.percent", "%", "battery"),
    g("battery.charging", "1 charging / 0 not", "battery"),
    g("battery.health.percent", "%", "battery"),
    g("battery.cycles", "count", "battery"),
    // Services.
    g("service.up", "1 running / 0 not", "service as configured"),
    g("service.failed", "always 1", "unit"),
    g("services.failed", "units", ""),
    // The agent itself.
    g("agent.cpu_ms_per_min", "ms of CPU per minute", ""),
    g("agent.rss_bytes", "bytes", ""),
    g("agent.shedding", "1 shedding / 0 not", ""),
    g(
        "agent.clock_offset_ms",
        "ms (collector clock minus this clock)",
        "",
    ),
    g("agent.clock_skew_secs", "seconds (absolute offset)", ""),
    // Posture, backups and custom checks (issue 14).
    g("posture.pass", "1 pass / 0 fail", "check"),
    g("posture.unknown", "1 unknown / 0 known", "check"),
    g("posture.local_admins.count", "accounts", ""),
    g("av.signature.age.days", "days", ""),
    g("backup.age.seconds", "seconds", "backup name"),
    g("backup.stale", "1 stale / 0 not", "backup name"),
    g("backup.error", "1 cannot tell / 0 known", "backup name"),
    g(
        "check.status",
        "0 ok, 1 warning, 2 critical, 3 unknown",
        "check name",
    ),
    g("check.value", "as the check prints it", "check name"),
];

/// The catalogue entry of `name`.
pub fn lookup(name: &str) -> Option<&'static Metric> {
    CATALOGUE.iter().find(|m| m.name == name)
}

/// The known name closest to `name` (edit distance), if one is close enough to be
/// a likely typo: at most a third of the name's length, and at least 1 edit away.
pub fn closest(name: &str) -> Option<&'static str> {
    let limit = (name.chars().count() / 3).max(2);
    CATALOGUE
        .iter()
        .map(|m| (edit_distance(name, m.name), m.name))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, n)| n)
}

/// Levenshtein distance over chars (names are short: a row of ints is enough).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(row[j]).min(row[j + 1])
            };
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_within_the_wire_limit() {
        let mut seen = std::collections::HashSet::new();
        for m in CATALOGUE {
            assert!(seen.insert(m.name), "{} twice", m.name);
            assert!(m.name.len() <= crate::MAX_LABEL_BYTES);
            assert!(!m.unit.is_empty(), "{} has no unit", m.name);
        }
    }

    #[test]
    fn a_typo_gets_the_closest_name_and_nonsense_gets_none() {
        assert_eq!(closest("cpu.usage.precent"), Some("cpu.usage.percent"));
        assert_eq!(closest("mem.used.percnt"), Some("mem.used.percent"));
        assert_eq!(closest("fs.free.percent"), Some("fs.used.percent"));
        assert_eq!(closest("m"), None);
        assert_eq!(closest("something.entirely.else"), None);
        assert!(lookup("cpu.usage.percent").is_some());
        assert!(lookup("cpu.usage.precent").is_none());
    }

    /// docs/METRICS.md names every metric in the catalogue, and the catalogue every
    /// metric the doc's tables name.
    #[test]
    fn the_doc_and_the_catalogue_agree() {
        let doc = include_str!("../../docs/METRICS.md");
        for m in CATALOGUE {
            assert!(
                doc.contains(&format!("`{}`", m.name)),
                "{} is not in docs/METRICS.md",
                m.name
            );
        }
    }
}
