//! The agent's own resource use as the platform measures it ([`SelfUsage`]), and the
//! pure parsers of Linux's `/proc/self` files it is read from. The budget governor
//! (the agent's `budget`) judges it.

/// The agent's own resource use at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SelfUsage {
    /// User + system CPU time since the process started, in ms.
    pub cpu_ms: u64,
    /// Resident set size, in bytes.
    pub rss_bytes: u64,
}

/// CPU time (utime + stime) from Linux's `/proc/self/stat`, in ms. The fields
/// after the command name (which may hold spaces and parentheses, hence the split at
/// the last `)`) start with the state, field 3; utime and stime are fields 14 and 15,
/// in clock ticks of 1/100 s (`USER_HZ`, 100 on every Linux architecture Tandem
/// builds for; the agent has no libc call to ask `sysconf`).
pub fn parse_proc_stat_cpu_ms(text: &str) -> Option<u64> {
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) * 10)
}

/// CPU time of the reaped children from Linux's `/proc/self/stat`: cutime and
/// cstime, fields 16 and 17, in the same ticks as [`parse_proc_stat_cpu_ms`].
pub fn parse_proc_stat_children_cpu_ms(text: &str) -> Option<u64> {
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let cutime: u64 = f.get(13)?.parse().ok()?;
    let cstime: u64 = f.get(14)?.parse().ok()?;
    Some((cutime + cstime) * 10)
}

/// Resident set size from Linux's `/proc/self/status` (`VmRSS:   1764 kB`), in bytes.
pub fn parse_status_rss_bytes(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line
        .trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}
