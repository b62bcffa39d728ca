//! The busiest processes: the top [`TOP`] by CPU and the top [`TOP`] by resident
//! memory, dimension `name:pid` (the pid tells two instances of one program apart;
//! a name alone would make the collector refuse the batch).
//!
//! A scan of every process is the agent's most expensive task, so it runs once a
//! minute (the caller decides), never while the agent sheds work, and the CPU
//! percentage is the average since the previous scan (a minute), which is what an
//! operator wants from "who is eating the CPU". The first scan has no previous one:
//! it sends memory only.

use sysinfo::{ProcessRefreshKind, ProcessesToUpdate, System};

use super::Reading;

/// How many processes each list holds.
pub(crate) const TOP: usize = 5;

pub(super) struct Processes {
    /// sysinfo's process table; `None` until the first scan and after shedding (it
    /// is the agent's largest allocation, so shedding frees it).
    sys: Option<System>,
}

impl Processes {
    pub(super) fn new() -> Self {
        Processes { sys: None }
    }

    /// Drops the process table (shedding); the next scan starts over.
    pub(super) fn forget(&mut self) {
        self.sys = None;
    }

    pub(super) fn sample(&mut self, r: &mut Reading) {
        let first = self.sys.is_none();
        let sys = match &mut self.sys {
            Some(s) => s,
            None => match System::new() {
                Ok(s) => self.sys.insert(s),
                Err(err) => {
                    tracing::debug!(error = ?err, "cannot read processes");
                    return;
                }
            },
        };
        sys.refresh_processes_specifics(
            ProcessesToUpdate::All,
            true,
            ProcessRefreshKind::nothing().with_cpu().with_memory(),
        );
        let procs: Vec<(String, f64, u64)> = sys
            .processes()
            .iter()
            .map(|(pid, p)| {
                (
                    format!("{}:{pid}", p.name().to_string_lossy()),
                    f64::from(p.cpu_usage()),
                    p.memory(),
                )
            })
            .collect();
        let (by_cpu, by_mem) = top(procs, TOP);
        if !first {
            for (name, cpu) in by_cpu {
                r.push("process.top.cpu.percent", name, cpu);
            }
        }
        for (name, mem) in by_mem {
            r.push("process.top.mem.bytes", name, mem as f64);
        }
    }
}

/// `name:pid` and a value, largest first.
type Ranked<T> = Vec<(String, T)>;

/// The `n` largest by CPU (idle processes left out) and by memory, each largest
/// first; ties broken by name so the choice is stable.
fn top(mut procs: Vec<(String, f64, u64)>, n: usize) -> (Ranked<f64>, Ranked<u64>) {
    procs.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let by_cpu = procs
        .iter()
        .filter(|p| p.1 > 0.0)
        .take(n)
        .map(|p| (p.0.clone(), p.1))
        .collect();
    procs.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.0.cmp(&b.0)));
    let by_mem = procs.into_iter().take(n).map(|p| (p.0, p.2)).collect();
    (by_cpu, by_mem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_by_cpu_and_memory() {
        let p = |n: &str, c: f64, m: u64| (n.to_owned(), c, m);
        let (cpu, mem) = top(
            vec![
                p("a:1", 0.0, 10),
                p("b:2", 50.0, 5),
                p("c:3", 120.0, 1),
                p("d:4", 50.0, 30),
            ],
            2,
        );
        assert_eq!(cpu, [("c:3".into(), 120.0), ("b:2".into(), 50.0)]);
        assert_eq!(mem, [("d:4".into(), 30), ("a:1".into(), 10)]);
        let (cpu, _) = top(vec![p("idle:1", 0.0, 1)], 5);
        assert!(cpu.is_empty());
    }

    /// The real scan on this machine finds at least this test's own process.
    #[test]
    fn real_scan_lists_this_process() {
        let mut p = Processes::new();
        let mut r = Reading {
            time_unix_ms: 0,
            values: Vec::new(),
        };
        p.sample(&mut r);
        assert!(r.values.iter().all(|v| v.name == "process.top.mem.bytes"));
        assert!(!r.values.is_empty() && r.values.len() <= TOP);
        assert!(r.values.iter().all(|v| v.dimension.contains(':')));
    }
}
