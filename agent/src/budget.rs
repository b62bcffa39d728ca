//! The agent's own footprint against its budget (`[budget]` in agent.toml), in the
//! manner of osquery's watchdog, but self-governed: over budget the agent sheds
//! optional work instead of being killed.
//!
//! Each sample the sampler loop measures the agent's CPU time and resident memory
//! (`platform::self_usage`) and feeds them to a [`Governor`], a pure state machine
//! with an injected clock:
//!
//! - the CPU rate is the CPU time used over the last minute (a sliding window of
//!   measurements; at least [`MIN_SPAN_MS`] of it before any judgement), in ms per
//!   minute;
//! - over budget (CPU rate above `cpu_ms_per_min`, or RSS above `rss_mib`) it starts
//!   shedding at once;
//! - it stops only after [`RECOVER_MS`] continuously under 80 % of the CPU budget
//!   and 90 % of the memory budget (hysteresis, so it does not flap at the edge).
//!
//! What is shed (see docs/METRICS.md): the top-process scan (and its process table
//! is freed), temperatures and battery; service checks run every five minutes instead
//! of every minute; patch checks are deferred; custom checks (`[[check]]`) are
//! skipped, and their commands' CPU time counts as the agent's. Health metrics, service states
//! already known and the uplink go on.

use std::collections::VecDeque;

use crate::config::Budget;

/// The CPU rate is measured over this much time.
pub(crate) const WINDOW_MS: u64 = 60_000;
/// No CPU judgement on less than this much measured time.
pub(crate) const MIN_SPAN_MS: u64 = 5_000;
/// Time continuously under the recovery thresholds before shedding stops.
pub(crate) const RECOVER_MS: u64 = 120_000;

/// What optional work is shed, for the log line and the docs.
pub(crate) const SHED: &str = "top processes, temperatures and battery skipped; service checks every 5 min; patch checks deferred; custom checks skipped";

pub(crate) use crate::platform::facts::usage::SelfUsage;

/// The governor's judgement after one measurement.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Verdict {
    /// CPU used over the window, scaled to one minute; `None` until enough time
    /// was measured.
    pub(crate) cpu_ms_per_min: Option<f64>,
    pub(crate) rss_bytes: u64,
    pub(crate) shedding: bool,
    /// Set when this measurement started or stopped shedding.
    pub(crate) change: Option<Change>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Change {
    /// Shedding started; says which limit was passed.
    Started(String),
    Stopped,
}

/// Decides, measurement by measurement, whether the agent sheds optional work.
pub(crate) struct Governor {
    budget: Budget,
    /// (monotonic ms, CPU ms) of recent measurements: the window plus the newest
    /// point older than it, the baseline the rate is measured from.
    window: VecDeque<(u64, u64)>,
    shedding: bool,
    /// Since when every measurement was under the recovery thresholds.
    calm_since: Option<u64>,
}

impl Governor {
    pub(crate) fn new(budget: Budget) -> Self {
        Governor {
            budget,
            window: VecDeque::new(),
            shedding: false,
            calm_since: None,
        }
    }

    /// A reloaded config's budget; judged from the next measurement on.
    pub(crate) fn set_budget(&mut self, budget: Budget) {
        self.budget = budget;
    }

    /// Takes one measurement made at `now_ms` (any monotonic clock, in ms).
    pub(crate) fn observe(&mut self, now_ms: u64, usage: SelfUsage) -> Verdict {
        self.window.push_back((now_ms, usage.cpu_ms));
        while self.window.len() > 2 && now_ms.saturating_sub(self.window[1].0) >= WINDOW_MS {
            self.window.pop_front();
        }
        let cpu_ms_per_min = match (self.window.front(), self.window.back()) {
            (Some(&(t0, c0)), Some(&(t1, c1))) if t1.saturating_sub(t0) >= MIN_SPAN_MS => {
                Some(c1.saturating_sub(c0) as f64 * 60_000.0 / (t1 - t0) as f64)
            }
            _ => None,
        };
        let cpu_budget = self.budget.cpu_ms_per_min as f64;
        let rss_budget = self.budget.rss_bytes;
        let cpu_over = cpu_ms_per_min.is_some_and(|c| c > cpu_budget);
        let rss_over = usage.rss_bytes > rss_budget;
        let calm = cpu_ms_per_min.is_some_and(|c| c <= 0.8 * cpu_budget)
            && (usage.rss_bytes as f64) <= 0.9 * rss_budget as f64;
        let mut change = None;
        if !self.shedding {
            if cpu_over || rss_over {
                self.shedding = true;
                self.calm_since = None;
                let mut why = Vec::new();
                if let (true, Some(c)) = (cpu_over, cpu_ms_per_min) {
                    why.push(format!(
                        "CPU {c:.0} ms/min over the budget of {} ms/min",
                        self.budget.cpu_ms_per_min
                    ));
                }
                if rss_over {
                    why.push(format!(
                        "RSS {:.1} MiB over the budget of {:.1} MiB",
                        usage.rss_bytes as f64 / 1_048_576.0,
                        rss_budget as f64 / 1_048_576.0
                    ));
                }
                change = Some(Change::Started(why.join(", ")));
            }
        } else if calm {
            let since = *self.calm_since.get_or_insert(now_ms);
            if now_ms.saturating_sub(since) >= RECOVER_MS {
                self.shedding = false;
                self.calm_since = None;
                change = Some(Change::Stopped);
            }
        } else {
            self.calm_since = None;
        }
        Verdict {
            cpu_ms_per_min,
            rss_bytes: usage.rss_bytes,
            shedding: self.shedding,
            change,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::facts::usage::*;

    const MIB: u64 = 1024 * 1024;

    fn budget(cpu: u64, rss_mib: u64) -> Budget {
        Budget {
            cpu_ms_per_min: cpu,
            rss_bytes: rss_mib * MIB,
        }
    }

    fn at(cpu_ms: u64, rss_mib: u64) -> SelfUsage {
        SelfUsage {
            cpu_ms,
            rss_bytes: rss_mib * MIB,
        }
    }

    #[test]
    fn under_budget_no_shedding_and_rate_needs_time() {
        let mut g = Governor::new(budget(50, 10));
        let v = g.observe(0, at(1000, 5));
        assert_eq!((v.cpu_ms_per_min, v.shedding), (None, false));
        // 4 ms in 10 s = 24 ms/min.
        let v = g.observe(10_000, at(1004, 5));
        assert_eq!(v.cpu_ms_per_min, Some(24.0));
        assert!(!v.shedding && v.change.is_none());
    }

    #[test]
    fn cpu_over_sheds_at_once_then_recovers_after_calm_period() {
        let mut g = Governor::new(budget(50, 10));
        g.observe(0, at(0, 5));
        // 20 ms in 10 s = 120 ms/min.
        let v = g.observe(10_000, at(20, 5));
        assert!(v.shedding);
        assert!(
            matches!(&v.change, Some(Change::Started(w)) if w.contains("CPU 120 ms/min")),
            "{v:?}"
        );
        // Quiet from now on: the window still holds the burst for a while.
        let mut t = 10_000;
        let mut stopped_at = None;
        while t < 400_000 {
            t += 10_000;
            let v = g.observe(t, at(20, 5));
            if v.change == Some(Change::Stopped) {
                stopped_at = Some(t);
                break;
            }
            assert!(v.shedding);
            assert!(v.change.is_none());
        }
        // The 20 ms burst averaged over the window: 60 ms/min at 20 s, 40 (= 80 % of
        // the budget, calm) at 30 s; 120 s of calm after that.
        assert_eq!(stopped_at, Some(150_000));
    }

    #[test]
    fn hysteresis_between_80_percent_and_the_budget_keeps_shedding() {
        let mut g = Governor::new(budget(60, 100));
        g.observe(0, at(0, 5));
        assert!(g.observe(10_000, at(20, 5)).shedding); // 120 ms/min
        // Then 9 ms per 10 s = 54 ms/min: under budget, above 80 % of it.
        let mut cpu = 20;
        for i in 2..60 {
            cpu += 9;
            let v = g.observe(i * 10_000, at(cpu, 5));
            assert!(v.shedding, "stopped at {} s", i * 10);
        }
        // 4 ms per 10 s = 24 ms/min: calm; stops 120 s after the window is calm.
        let mut stopped = false;
        for i in 60..100 {
            cpu += 4;
            if g.observe(i * 10_000, at(cpu, 5)).change == Some(Change::Stopped) {
                stopped = true;
                break;
            }
        }
        assert!(stopped);
        // Not shedding again while under budget.
        cpu += 4;
        assert!(!g.observe(1_000_000, at(cpu, 5)).shedding);
    }

    #[test]
    fn memory_over_sheds_without_waiting_for_a_cpu_rate() {
        let mut g = Governor::new(budget(50, 8));
        let v = g.observe(0, at(0, 9));
        assert!(v.shedding);
        assert!(matches!(&v.change, Some(Change::Started(w)) if w.contains("RSS 9.0 MiB")));
        // Memory back under the budget but above 90 % of it: still shedding.
        for i in 1..30 {
            assert!(g.observe(i * 10_000, at(0, 8)).shedding);
        }
        // A zero budget is always over: the e2e test relies on it.
        let mut g = Governor::new(budget(0, 0));
        assert!(g.observe(0, at(0, 1)).shedding);
    }

    #[test]
    fn a_reload_raising_the_budget_lets_it_recover() {
        let mut g = Governor::new(budget(0, 0));
        assert!(g.observe(0, at(0, 5)).shedding);
        g.set_budget(budget(1000, 100));
        let mut t = 0;
        let stopped = loop {
            t += 10_000;
            let v = g.observe(t, at(t / 1000, 5));
            if !v.shedding {
                break t;
            }
            assert!(t < 300_000);
        };
        assert_eq!(stopped, 130_000);
    }

    #[test]
    fn proc_self_captured() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/proc");
        let stat = std::fs::read_to_string(dir.join("self-stat.debian12.txt")).unwrap();
        assert_eq!(parse_proc_stat_cpu_ms(&stat), Some(0));
        let odd = "42 (a) b) (c) R 1 2 3 4 5 6 7 8 9 10 150 25 0 0 20 0\n";
        assert_eq!(parse_proc_stat_cpu_ms(odd), Some(1750));
        let status = std::fs::read_to_string(dir.join("self-status.debian12.txt")).unwrap();
        assert_eq!(parse_status_rss_bytes(&status), Some(1764 * 1024));
        assert_eq!(parse_status_rss_bytes("Name: x\n"), None);
    }
}
