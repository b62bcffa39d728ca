//! The kernel's own health counters: CPU time split, scheduler activity, memory
//! detail, paging, pressure stall information, TCP/UDP health, file handles and
//! threads.
//!
//! On Linux each comes from one read of one small `/proc` file per sample, parsed
//! here by a pure function tested on a capture from the build VM
//! (`tests/fixtures/proc/`). The platform fills a [`Snapshot`]; a source it cannot
//! read (no PSI in the kernel, no `/proc/net` in a network namespace, another OS)
//! is `None` and sends nothing, never 0. Rates and the CPU split are computed here
//! between two samples, so the first sample after start has none of them; nor has
//! a sample taken less than [`MIN_CPU_SPAN`] after the last (a split of one or two
//! 10 ms ticks would read 0 or 100 %).

use std::time::{Duration, Instant};

use super::Reading;
use super::rates::Rates;
pub(crate) use crate::platform::facts::kernel::{CpuTimes, ProcStat, Snapshot};

/// Percent of the interval spent in each state, from two readings of the same CPU
/// (`None` if no tick passed or a counter went backwards: a core went offline and
/// back, a hypervisor reset steal).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct CpuSplit {
    /// user + nice (guest time included, as the kernel counts it).
    pub(crate) user: f64,
    /// system + irq + softirq.
    pub(crate) system: f64,
    pub(crate) iowait: f64,
    pub(crate) steal: f64,
    pub(crate) idle: f64,
}

impl CpuSplit {
    pub(crate) fn between(before: &CpuTimes, after: &CpuTimes) -> Option<Self> {
        let d = |a: u64, b: u64| b.checked_sub(a);
        let total = d(before.total(), after.total())?;
        if total == 0 {
            return None;
        }
        let pct = |ticks: u64| 100.0 * ticks as f64 / total as f64;
        Some(CpuSplit {
            user: pct(d(before.user, after.user)? + d(before.nice, after.nice)?),
            system: pct(d(before.system, after.system)?
                + d(before.irq, after.irq)?
                + d(before.softirq, after.softirq)?),
            iowait: pct(d(before.iowait, after.iowait)?),
            steal: pct(d(before.steal, after.steal)?),
            idle: pct(d(before.idle, after.idle)?),
        })
    }

    /// Busy: everything but idle and iowait (what `cpu.usage.percent` has always
    /// meant: sysinfo counts it the same way).
    pub(crate) fn busy(&self) -> f64 {
        (100.0 - self.idle - self.iowait).clamp(0.0, 100.0)
    }
}

/// The shortest interval a CPU split is computed over: as sysinfo's
/// `MINIMUM_CPU_UPDATE_INTERVAL`, 20 clock ticks.
pub(crate) const MIN_CPU_SPAN: Duration = Duration::from_millis(200);

/// Keeps what the next sample's rates and CPU split are computed from.
pub(super) struct KernelSampler {
    /// The `/proc/stat` CPU times (whole machine and per core) the next split is
    /// measured from, and when they were read.
    last_stat: Option<(ProcStat, Instant)>,
    rates: Rates,
}

/// Counters sent as per-second rates, in the order [`KernelSampler::sample`] feeds
/// them to [`Rates`].
const RATE_NAMES: [&str; 11] = [
    "system.context_switches_per_sec",
    "system.interrupts_per_sec",
    "system.forks_per_sec",
    "mem.major_faults_per_sec",
    "swap.in.pages_per_sec",
    "swap.out.pages_per_sec",
    "tcp.retrans.segs_per_sec",
    "tcp.in.errors_per_sec",
    "tcp.out.resets_per_sec",
    "udp.rcvbuf.errors_per_sec",
    "udp.in.errors_per_sec",
];

impl KernelSampler {
    pub(super) fn new() -> Self {
        KernelSampler {
            last_stat: None,
            rates: Rates::new(),
        }
    }

    /// Pushes every value `snap` holds. Says what was pushed, so that sysinfo need
    /// not be asked for it.
    pub(super) fn sample(&mut self, snap: Snapshot, now: Instant, r: &mut Reading) -> Covered {
        let mut covered = Covered::default();
        let mut counters: Vec<(String, Vec<u64>)> = Vec::with_capacity(RATE_NAMES.len());
        let mut count = |name: &'static str, v: Option<u64>| {
            if let Some(v) = v {
                counters.push((name.to_owned(), vec![v]));
            }
        };
        if let Some(stat) = snap.stat {
            // The platform reads the CPU itself, even when there is no split yet.
            covered.cpu = true;
            let too_soon = self
                .last_stat
                .as_ref()
                .is_some_and(|(_, then)| now.saturating_duration_since(*then) < MIN_CPU_SPAN);
            if let Some((prev, _)) = &self.last_stat
                && !too_soon
                && let Some(split) = CpuSplit::between(&prev.cpu, &stat.cpu)
            {
                r.push("cpu.usage.percent", "", split.busy());
                r.push("cpu.user.percent", "", split.user);
                r.push("cpu.system.percent", "", split.system);
                r.push("cpu.iowait.percent", "", split.iowait);
                r.push("cpu.steal.percent", "", split.steal);
                r.push("cpu.idle.percent", "", split.idle);
                for (core, now_t) in &stat.cores {
                    let before = prev.cores.iter().find(|(c, _)| c == core);
                    if let Some(split) = before.and_then(|(_, t)| CpuSplit::between(t, now_t)) {
                        r.push("cpu.core.usage.percent", core.clone(), split.busy());
                    }
                }
            }
            count(RATE_NAMES[0], stat.context_switches);
            count(RATE_NAMES[1], stat.interrupts);
            count(RATE_NAMES[2], stat.forks);
            push_opt(r, "system.procs_running", stat.procs_running);
            push_opt(r, "system.procs_blocked", stat.procs_blocked);
            if !too_soon {
                self.last_stat = Some((stat, now));
            }
        } else {
            self.last_stat = None;
        }
        if let Some(m) = snap.mem {
            if let (Some(total), Some(available), Some(swap_total), Some(swap_free)) =
                (m.total, m.available, m.swap_total, m.swap_free)
            {
                // As sysinfo computes them from the same file.
                let (total, available) = (total as f64, available as f64);
                r.push("mem.total.bytes", "", total);
                r.push("mem.available.bytes", "", available);
                r.push("mem.used.bytes", "", (total - available).max(0.0));
                if total > 0.0 {
                    r.push("mem.used.percent", "", 100.0 * (total - available) / total);
                }
                r.push("swap.total.bytes", "", swap_total as f64);
                r.push(
                    "swap.used.bytes",
                    "",
                    swap_total.saturating_sub(swap_free) as f64,
                );
                covered.memory = true;
            }
            push_opt(r, "mem.free.bytes", m.free);
            push_opt(r, "mem.buffers.bytes", m.buffers);
            push_opt(r, "mem.cached.bytes", m.cached);
            push_opt(r, "mem.shared.bytes", m.shared);
            push_opt(r, "mem.slab.bytes", m.slab);
            push_opt(r, "mem.slab.reclaimable.bytes", m.slab_reclaimable);
            push_opt(r, "mem.dirty.bytes", m.dirty);
            push_opt(r, "mem.writeback.bytes", m.writeback);
            push_opt(r, "mem.committed.bytes", m.committed);
            push_opt(r, "mem.commit_limit.bytes", m.commit_limit);
            push_opt(r, "swap.free.bytes", m.swap_free);
        }
        if let Some(v) = snap.vm {
            count(RATE_NAMES[3], v.major_faults);
            count(RATE_NAMES[4], v.swap_in_pages);
            count(RATE_NAMES[5], v.swap_out_pages);
            push_opt(r, "mem.oom_kills", v.oom_kills);
        }
        for (resource, p) in &snap.pressure {
            let (some, full) = match *resource {
                "cpu" => ("pressure.cpu.some.percent", None),
                "memory" => (
                    "pressure.memory.some.percent",
                    Some("pressure.memory.full.percent"),
                ),
                "io" => ("pressure.io.some.percent", Some("pressure.io.full.percent")),
                _ => continue,
            };
            if let Some(v) = p.some_avg10 {
                r.push(some, "", v);
            }
            if let (Some(name), Some(v)) = (full, p.full_avg10) {
                r.push(name, "", v);
            }
        }
        if let Some(s) = snap.snmp {
            push_opt(r, "tcp.established", s.tcp_established);
            count(RATE_NAMES[6], s.tcp_retrans_segs);
            count(RATE_NAMES[7], s.tcp_in_errs);
            count(RATE_NAMES[8], s.tcp_out_rsts);
            count(RATE_NAMES[9], s.udp_rcvbuf_errors);
            count(RATE_NAMES[10], s.udp_in_errors);
        }
        if let Some(s) = snap.sockstat {
            push_opt(r, "sockets.used", s.sockets_used);
            push_opt(r, "tcp.inuse", s.tcp_inuse);
            push_opt(r, "tcp.orphan", s.tcp_orphan);
            push_opt(r, "tcp.time_wait", s.tcp_time_wait);
            push_opt(r, "udp.inuse", s.udp_inuse);
        }
        if let Some(f) = snap.files {
            r.push("files.open", "", f.open as f64);
            r.push("files.max", "", f.max as f64);
            if f.max > 0 {
                r.push(
                    "files.used.percent",
                    "",
                    100.0 * f.open as f64 / f.max as f64,
                );
            }
        }
        push_opt(r, "system.threads", snap.threads);
        for (name, rates) in self.rates.update(now, counters) {
            let metric = RATE_NAMES.iter().find(|m| **m == name);
            if let (Some(metric), [Some(rate)]) = (metric, &rates[..]) {
                r.push(metric, "", *rate);
            }
        }
        covered
    }
}

/// What a kernel sample already sent.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(super) struct Covered {
    /// `cpu.usage.percent` and `cpu.core.usage.percent`.
    pub(crate) cpu: bool,
    /// `mem.total.bytes` … `swap.used.bytes`.
    pub(crate) memory: bool,
}

fn push_opt(r: &mut Reading, name: &'static str, v: Option<u64>) {
    if let Some(v) = v {
        r.push(name, "", v as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::facts::kernel::*;

    fn fixture(name: &str) -> String {
        std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/proc")
                .join(name),
        )
        .unwrap()
    }

    #[test]
    fn proc_stat_captured_on_a_vm() {
        let s = parse_proc_stat(&fixture("stat.debian12-vm.txt")).unwrap();
        assert_eq!(
            s.cpu,
            CpuTimes {
                user: 1_112_339,
                nice: 164_581,
                system: 306_303,
                idle: 787_890,
                iowait: 137_107,
                irq: 0,
                softirq: 11_244,
                steal: 5_643,
            }
        );
        let cores: Vec<&str> = s.cores.iter().map(|(c, _)| c.as_str()).collect();
        assert_eq!(cores, ["0", "1"]);
        assert_eq!(s.cores[1].1.iowait, 85_290);
        assert_eq!(s.context_switches, Some(38_210_513));
        assert_eq!(s.interrupts, Some(18_458_643));
        assert_eq!(s.forks, Some(412_972));
        assert_eq!(s.procs_running, Some(1));
        assert_eq!(s.procs_blocked, Some(0));
        assert_eq!(parse_proc_stat("ctxt 5\n"), None);
    }

    #[test]
    fn cpu_split_adds_up_and_refuses_backward_counters() {
        let a = CpuTimes {
            user: 100,
            nice: 0,
            system: 50,
            idle: 800,
            iowait: 10,
            irq: 0,
            softirq: 0,
            steal: 0,
        };
        let b = CpuTimes {
            user: 130,
            nice: 10,
            system: 60,
            idle: 850,
            iowait: 20,
            irq: 5,
            softirq: 5,
            steal: 15,
        };
        let s = CpuSplit::between(&a, &b).unwrap();
        // 40 + 20 + 10 + 15 + 50 = 135 ticks.
        let total = s.user + s.system + s.iowait + s.steal + s.idle;
        assert!((total - 100.0).abs() < 1e-9, "{s:?}");
        assert!((s.user - 100.0 * 40.0 / 135.0).abs() < 1e-9);
        assert!((s.busy() - 100.0 * 75.0 / 135.0).abs() < 1e-9);
        assert_eq!(CpuSplit::between(&b, &a), None);
        assert_eq!(CpuSplit::between(&a, &a), None);
    }

    #[test]
    fn meminfo_captured_on_a_vm() {
        let m = parse_meminfo(&fixture("meminfo.debian12-vm.txt"));
        assert_eq!(m.total, Some(24_684_084 * 1024));
        assert_eq!(m.available, Some(24_064_556 * 1024));
        assert_eq!(m.swap_total, Some(0));
        assert_eq!(m.free, Some(6_691_512 * 1024));
        assert_eq!(m.buffers, Some(62_432 * 1024));
        assert_eq!(m.cached, Some(16_921_500 * 1024));
        assert_eq!(m.shared, Some(8_872 * 1024));
        assert_eq!(m.slab, Some(885_500 * 1024));
        assert_eq!(m.slab_reclaimable, Some(799_264 * 1024));
        assert_eq!(m.dirty, Some(1_088 * 1024));
        assert_eq!(m.writeback, Some(0));
        assert_eq!(m.swap_free, Some(0));
        assert_eq!(m.committed, Some(58_132 * 1024));
        assert_eq!(m.commit_limit, Some(12_342_040 * 1024));
        assert_eq!(
            parse_meminfo("Cached: x kB\nHugePages_Total: 3\n").cached,
            None
        );
        // Before 3.14: no MemAvailable, estimated.
        let old = parse_meminfo(
            "MemFree: 10 kB\nBuffers: 1 kB\nCached: 5 kB\nShmem: 2 kB\nSReclaimable: 3 kB\n",
        );
        assert_eq!(old.available, Some(17 * 1024));
    }

    #[test]
    fn vmstat_captured_on_a_vm() {
        let v = parse_vmstat(&fixture("vmstat.debian12-vm.txt"));
        assert!(v.major_faults.is_some_and(|n| n > 0), "{v:?}");
        assert_eq!(v.swap_in_pages, Some(0));
        assert_eq!(v.swap_out_pages, Some(0));
        assert_eq!(v.oom_kills, Some(0));
        assert_eq!(parse_vmstat("pgmajfault 7\n").oom_kills, None);
    }

    #[test]
    fn pressure_captured_on_a_vm() {
        let cpu = parse_pressure(&fixture("pressure-cpu.debian12-vm.txt")).unwrap();
        assert_eq!(cpu.some_avg10, Some(3.17));
        assert_eq!(cpu.full_avg10, Some(0.0));
        let mem = parse_pressure(&fixture("pressure-memory.debian12-vm.txt")).unwrap();
        assert_eq!((mem.some_avg10, mem.full_avg10), (Some(0.0), Some(0.0)));
        let io = parse_pressure(&fixture("pressure-io.debian12-vm.txt")).unwrap();
        assert_eq!((io.some_avg10, io.full_avg10), (Some(0.88), Some(0.42)));
        // A kernel before 5.13 prints no `full` line for cpu.
        let old = parse_pressure("some avg10=1.50 avg60=0.00 avg300=0.00 total=9\n").unwrap();
        assert_eq!((old.some_avg10, old.full_avg10), (Some(1.5), None));
        assert_eq!(parse_pressure(""), None);
    }

    #[test]
    fn net_snmp_and_sockstat_captured_on_a_vm() {
        let s = parse_net_snmp(&fixture("net-snmp.debian12-vm.txt"));
        assert_eq!(s.tcp_established, Some(0));
        assert_eq!(s.tcp_retrans_segs, Some(4_963));
        assert_eq!(s.tcp_in_errs, Some(0));
        assert_eq!(s.tcp_out_rsts, Some(23_163));
        assert_eq!(s.udp_in_errors, Some(0));
        assert_eq!(s.udp_rcvbuf_errors, Some(0));
        let k = parse_sockstat(&fixture("net-sockstat.debian12-vm.txt"));
        assert!(k.sockets_used.is_some_and(|n| n > 0), "{k:?}");
        assert!(k.tcp_inuse.is_some() && k.tcp_time_wait.is_some());
        assert_eq!(k.tcp_orphan, Some(0));
        assert_eq!(k.udp_inuse, Some(0));
    }

    #[test]
    fn file_nr_and_threads_captured_on_a_vm() {
        assert_eq!(
            parse_file_nr(&fixture("file-nr.debian12-vm.txt")),
            Some(FileHandles {
                open: 353,
                max: 2_466_170
            })
        );
        assert_eq!(parse_file_nr("1 2\n"), None);
        assert_eq!(
            parse_loadavg_threads(&fixture("loadavg.debian12-vm.txt")),
            Some(83)
        );
        assert_eq!(parse_loadavg_threads("0.1 0.2 0.3\n"), None);
    }

    /// The sampler: CPU split from the second snapshot on, rates likewise, gauges at
    /// once, absent sources send nothing.
    #[test]
    fn sampler_sends_rates_from_the_second_snapshot() {
        let snap = |ticks: u64, ctxt: u64| Snapshot {
            stat: Some(ProcStat {
                cpu: CpuTimes {
                    user: ticks,
                    idle: ticks * 3,
                    ..CpuTimes::default()
                },
                cores: vec![(
                    "0".into(),
                    CpuTimes {
                        user: ticks,
                        idle: ticks,
                        ..CpuTimes::default()
                    },
                )],
                context_switches: Some(ctxt),
                procs_blocked: Some(2),
                ..ProcStat::default()
            }),
            files: Some(FileHandles { open: 5, max: 10 }),
            ..Snapshot::default()
        };
        let mut k = KernelSampler::new();
        let t0 = Instant::now();
        let mut r = Reading::default();
        let cpu_only = Covered {
            cpu: true,
            memory: false,
        };
        assert_eq!(k.sample(snap(100, 1000), t0, &mut r), cpu_only);
        let names: Vec<&str> = r.values.iter().map(|v| v.name).collect();
        assert_eq!(
            names,
            [
                "system.procs_blocked",
                "files.open",
                "files.max",
                "files.used.percent"
            ]
        );
        let mut r = Reading::default();
        // Too soon after the first: no split, and the first stays the baseline.
        k.sample(snap(101, 1001), t0 + Duration::from_millis(50), &mut r);
        assert!(!r.values.iter().any(|v| v.name.starts_with("cpu.")));
        let mut r = Reading::default();
        let covered = k.sample(snap(200, 1500), t0 + Duration::from_secs(5), &mut r);
        assert_eq!(covered, cpu_only);
        let get = |n: &str| {
            r.values
                .iter()
                .find(|v| v.name == n)
                .map(|v| (v.dimension.as_str(), v.value))
        };
        assert_eq!(get("cpu.usage.percent"), Some(("", 25.0)));
        assert_eq!(get("cpu.idle.percent"), Some(("", 75.0)));
        assert_eq!(get("cpu.core.usage.percent"), Some(("0", 50.0)));
        // Rates are per step: 499 switches in 4.95 s.
        let (_, ctxt) = get("system.context_switches_per_sec").unwrap();
        assert!((ctxt - 499.0 / 4.95).abs() < 1e-6, "{ctxt}");
        assert_eq!(get("mem.cached.bytes"), None);
        assert_eq!(get("pressure.cpu.some.percent"), None);
    }
}
