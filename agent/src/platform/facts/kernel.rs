//! The kernel's own health counters as the platform reads them for one sample: CPU
//! time by state, memory detail, paging, pressure stall information, TCP/UDP health,
//! file handles and threads, and the pure parsers of the `/proc` files they come from,
//! tested on a capture from the build VM (`tests/fixtures/proc/`). A source the
//! platform cannot read is `None`, never 0. Rates and the CPU split are computed by
//! the agent's `collect::kernel`.

/// Everything the platform could read for one sample.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub(crate) stat: Option<ProcStat>,
    pub(crate) mem: Option<MemInfo>,
    pub(crate) vm: Option<VmStat>,
    /// (`cpu`, `memory`, `io`) → its pressure, for the resources the kernel reports.
    pub(crate) pressure: Vec<(&'static str, Pressure)>,
    pub(crate) snmp: Option<Snmp>,
    pub(crate) sockstat: Option<SockStat>,
    pub(crate) files: Option<FileHandles>,
    /// Threads (kernel scheduling entities) on the machine.
    pub(crate) threads: Option<u64>,
}

/// CPU time by state, in clock ticks since boot (`/proc/stat`, proc(5)). Guest time
/// is already counted in user and nice, so it is not kept.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuTimes {
    pub(crate) user: u64,
    pub(crate) nice: u64,
    pub(crate) system: u64,
    pub(crate) idle: u64,
    pub(crate) iowait: u64,
    pub(crate) irq: u64,
    pub(crate) softirq: u64,
    pub(crate) steal: u64,
}

impl CpuTimes {
    pub(crate) fn total(&self) -> u64 {
        [
            self.user,
            self.nice,
            self.system,
            self.idle,
            self.iowait,
            self.irq,
            self.softirq,
            self.steal,
        ]
        .iter()
        .fold(0u64, |a, b| a.saturating_add(*b))
    }
}

/// `/proc/stat`: CPU times (the whole machine and each core) and scheduler counters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProcStat {
    pub(crate) cpu: CpuTimes,
    /// Per core, in the kernel's order (`cpu0`, `cpu1`, … ; an offline core is absent).
    pub(crate) cores: Vec<(String, CpuTimes)>,
    /// Running totals since boot.
    pub(crate) context_switches: Option<u64>,
    pub(crate) interrupts: Option<u64>,
    pub(crate) forks: Option<u64>,
    /// Gauges.
    pub(crate) procs_running: Option<u64>,
    pub(crate) procs_blocked: Option<u64>,
}

/// Parses `/proc/stat`; `None` without the aggregate `cpu` line. Older kernels
/// print fewer CPU columns (steal since 2.6.11): missing ones are 0.
pub fn parse_proc_stat(text: &str) -> Option<ProcStat> {
    let mut out = ProcStat::default();
    let mut have_cpu = false;
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let Some(key) = f.next() else { continue };
        let first = |f: &mut std::str::SplitWhitespace<'_>| f.next()?.parse::<u64>().ok();
        if let Some(core) = key.strip_prefix("cpu") {
            let v: Vec<u64> = f.map_while(|x| x.parse().ok()).collect();
            if v.len() < 4 {
                continue;
            }
            let at = |i: usize| v.get(i).copied().unwrap_or(0);
            let t = CpuTimes {
                user: at(0),
                nice: at(1),
                system: at(2),
                idle: at(3),
                iowait: at(4),
                irq: at(5),
                softirq: at(6),
                steal: at(7),
            };
            if core.is_empty() {
                out.cpu = t;
                have_cpu = true;
            } else if core.bytes().all(|b| b.is_ascii_digit()) {
                out.cores.push((core.to_owned(), t));
            }
            continue;
        }
        match key {
            "ctxt" => out.context_switches = first(&mut f),
            // The first number is the total; the rest are per interrupt line.
            "intr" => out.interrupts = first(&mut f),
            "processes" => out.forks = first(&mut f),
            "procs_running" => out.procs_running = first(&mut f),
            "procs_blocked" => out.procs_blocked = first(&mut f),
            _ => {}
        }
    }
    have_cpu.then_some(out)
}

/// `/proc/meminfo`, in bytes (the file says kB and means KiB).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MemInfo {
    pub(crate) total: Option<u64>,
    /// `MemAvailable`; before Linux 3.14 estimated as sysinfo does (free + buffers
    /// + cached + reclaimable slab − shared).
    pub(crate) available: Option<u64>,
    pub(crate) swap_total: Option<u64>,
    pub(crate) free: Option<u64>,
    pub(crate) buffers: Option<u64>,
    pub(crate) cached: Option<u64>,
    pub(crate) shared: Option<u64>,
    pub(crate) slab: Option<u64>,
    pub(crate) slab_reclaimable: Option<u64>,
    pub(crate) dirty: Option<u64>,
    pub(crate) writeback: Option<u64>,
    pub(crate) swap_free: Option<u64>,
    pub(crate) committed: Option<u64>,
    pub(crate) commit_limit: Option<u64>,
}

/// Parses `/proc/meminfo` (`Key:   123 kB` lines); a key absent from this kernel
/// stays `None`.
pub fn parse_meminfo(text: &str) -> MemInfo {
    let mut m = MemInfo::default();
    for line in text.lines() {
        let Some((key, rest)) = line.split_once(':') else {
            continue;
        };
        let mut f = rest.split_whitespace();
        let Some(n) = f.next().and_then(|v| v.parse::<u64>().ok()) else {
            continue;
        };
        let bytes = match f.next() {
            Some("kB") => n.saturating_mul(1024),
            // Counts (HugePages_*) are not sizes.
            _ => continue,
        };
        let slot = match key {
            "MemTotal" => &mut m.total,
            "MemAvailable" => &mut m.available,
            "SwapTotal" => &mut m.swap_total,
            "MemFree" => &mut m.free,
            "Buffers" => &mut m.buffers,
            "Cached" => &mut m.cached,
            "Shmem" => &mut m.shared,
            "Slab" => &mut m.slab,
            "SReclaimable" => &mut m.slab_reclaimable,
            "Dirty" => &mut m.dirty,
            "Writeback" => &mut m.writeback,
            "SwapFree" => &mut m.swap_free,
            "Committed_AS" => &mut m.committed,
            "CommitLimit" => &mut m.commit_limit,
            _ => continue,
        };
        *slot = Some(bytes);
    }
    if m.available.is_none()
        && let (Some(free), Some(buffers), Some(cached)) = (m.free, m.buffers, m.cached)
    {
        m.available = Some(
            free.saturating_add(buffers)
                .saturating_add(cached)
                .saturating_add(m.slab_reclaimable.unwrap_or(0))
                .saturating_sub(m.shared.unwrap_or(0)),
        );
    }
    m
}

/// `/proc/vmstat` counters, running totals since boot.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct VmStat {
    pub(crate) major_faults: Option<u64>,
    pub(crate) swap_in_pages: Option<u64>,
    pub(crate) swap_out_pages: Option<u64>,
    /// Since Linux 4.13.
    pub(crate) oom_kills: Option<u64>,
}

/// Parses `/proc/vmstat` (`name value` lines).
pub fn parse_vmstat(text: &str) -> VmStat {
    let mut v = VmStat::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(' ') else {
            continue;
        };
        let slot = match key {
            "pgmajfault" => &mut v.major_faults,
            "pswpin" => &mut v.swap_in_pages,
            "pswpout" => &mut v.swap_out_pages,
            "oom_kill" => &mut v.oom_kills,
            _ => continue,
        };
        *slot = value.trim().parse().ok();
    }
    v
}

/// Pressure stall information of one resource (Documentation/accounting/psi.rst):
/// the share of the last 10 s in which some (or all non-idle) tasks were stalled
/// on it, in percent.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Pressure {
    pub(crate) some_avg10: Option<f64>,
    /// Absent for `cpu` before Linux 5.13 (and always 0 there at system level).
    pub(crate) full_avg10: Option<f64>,
}

/// Parses one `/proc/pressure/*` file: `some avg10=0.12 avg60=… total=…` and
/// `full …` lines. `None` if neither line has an avg10.
pub fn parse_pressure(text: &str) -> Option<Pressure> {
    let mut p = Pressure::default();
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let slot = match f.next() {
            Some("some") => &mut p.some_avg10,
            Some("full") => &mut p.full_avg10,
            _ => continue,
        };
        *slot = f
            .find_map(|kv| kv.strip_prefix("avg10="))
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|v| v.is_finite());
    }
    (p.some_avg10.is_some() || p.full_avg10.is_some()).then_some(p)
}

/// TCP and UDP counters from `/proc/net/snmp` (RFC 1213/4022 MIB names).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Snmp {
    /// Gauge: connections in ESTABLISHED or CLOSE-WAIT.
    pub(crate) tcp_established: Option<u64>,
    /// Running totals.
    pub(crate) tcp_retrans_segs: Option<u64>,
    pub(crate) tcp_in_errs: Option<u64>,
    pub(crate) tcp_out_rsts: Option<u64>,
    pub(crate) udp_in_errors: Option<u64>,
    pub(crate) udp_rcvbuf_errors: Option<u64>,
}

/// Parses `/proc/net/snmp`: for each protocol a header line of names and a line of
/// values, both starting `Proto:`.
pub fn parse_net_snmp(text: &str) -> Snmp {
    let mut s = Snmp::default();
    let mut lines = text.lines();
    while let (Some(names), Some(values)) = (lines.next(), lines.next()) {
        let (Some((proto, names)), Some((proto2, values))) =
            (names.split_once(':'), values.split_once(':'))
        else {
            break;
        };
        if proto != proto2 {
            break;
        }
        for (name, value) in names.split_whitespace().zip(values.split_whitespace()) {
            let slot = match (proto, name) {
                ("Tcp", "CurrEstab") => &mut s.tcp_established,
                ("Tcp", "RetransSegs") => &mut s.tcp_retrans_segs,
                ("Tcp", "InErrs") => &mut s.tcp_in_errs,
                ("Tcp", "OutRsts") => &mut s.tcp_out_rsts,
                ("Udp", "InErrors") => &mut s.udp_in_errors,
                ("Udp", "RcvbufErrors") => &mut s.udp_rcvbuf_errors,
                _ => continue,
            };
            *slot = value.parse().ok();
        }
    }
    s
}

/// Socket counts from `/proc/net/sockstat` (gauges).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SockStat {
    pub(crate) sockets_used: Option<u64>,
    pub(crate) tcp_inuse: Option<u64>,
    pub(crate) tcp_orphan: Option<u64>,
    pub(crate) tcp_time_wait: Option<u64>,
    pub(crate) udp_inuse: Option<u64>,
}

/// Parses `/proc/net/sockstat`: `Proto: key value key value …` lines.
pub fn parse_sockstat(text: &str) -> SockStat {
    let mut s = SockStat::default();
    for line in text.lines() {
        let Some((proto, rest)) = line.split_once(':') else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        for pair in f.chunks_exact(2) {
            let slot = match (proto, pair[0]) {
                ("sockets", "used") => &mut s.sockets_used,
                ("TCP", "inuse") => &mut s.tcp_inuse,
                ("TCP", "orphan") => &mut s.tcp_orphan,
                ("TCP", "tw") => &mut s.tcp_time_wait,
                ("UDP", "inuse") => &mut s.udp_inuse,
                _ => continue,
            };
            *slot = pair[1].parse().ok();
        }
    }
    s
}

/// Open file handles of the whole machine and the kernel's limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FileHandles {
    pub(crate) open: u64,
    pub(crate) max: u64,
}

/// Parses `/proc/sys/fs/file-nr`: `allocated unused max` (unused is 0 since 2.6;
/// open = allocated − unused).
pub fn parse_file_nr(text: &str) -> Option<FileHandles> {
    let v: Vec<u64> = text
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    match v[..] {
        [allocated, unused, max] => Some(FileHandles {
            open: allocated.saturating_sub(unused),
            max,
        }),
        _ => None,
    }
}

/// Threads on the machine from `/proc/loadavg`'s fourth field, `running/total`.
pub fn parse_loadavg_threads(text: &str) -> Option<u64> {
    let (_, total) = text.split_whitespace().nth(3)?.split_once('/')?;
    total.parse().ok()
}
