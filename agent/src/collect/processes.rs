//! The busiest processes: the top [`TOP`] programs by CPU and the top [`TOP`] by
//! resident memory. A series is keyed by the process name only (dimension = name):
//! the instances of one program are summed into one series (`process.top.count`
//! says how many there were), and the pid of its largest instance is a value
//! (`process.top.pid`), not part of the key, so a restart does not make a new
//! series and cardinality stays bounded by the program names on the machine.
//! Threads are not processes: sysinfo lists a Linux process's threads too, and
//! they are left out (issue 16, item 11: `alert-engine:25587` was a thread).
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
        let procs: Vec<Instance> = sys
            .processes()
            .iter()
            // Threads (`thread_kind` is `Some` for a task of another process).
            .filter(|(_, p)| p.thread_kind().is_none())
            .map(|(pid, p)| Instance {
                name: p.name().to_string_lossy().into_owned(),
                pid: pid.as_u32(),
                cpu: f64::from(p.cpu_usage()),
                mem: p.memory(),
            })
            .collect();
        let programs = by_program(procs);
        let (by_cpu, by_mem) = top(&programs, TOP);
        let mut listed: Vec<&Program> = Vec::with_capacity(2 * TOP);
        if !first {
            for p in by_cpu {
                r.push("process.top.cpu.percent", p.name.clone(), p.cpu);
                listed.push(p);
            }
        }
        for p in by_mem {
            r.push("process.top.mem.bytes", p.name.clone(), p.mem as f64);
            listed.push(p);
        }
        // One pid and count per listed program (a name in both lists once).
        listed.sort_by(|a, b| a.name.cmp(&b.name));
        listed.dedup_by(|a, b| a.name == b.name);
        for p in listed {
            r.push("process.top.pid", p.name.clone(), f64::from(p.pid));
            r.push("process.top.count", p.name.clone(), p.count as f64);
        }
    }
}

/// One process as scanned.
#[derive(Debug, Clone)]
struct Instance {
    name: String,
    pid: u32,
    cpu: f64,
    mem: u64,
}

/// The instances of one program name, summed.
#[derive(Debug, Clone, PartialEq)]
struct Program {
    name: String,
    /// The pid of the instance using the most memory (the lowest pid on a tie).
    pid: u32,
    count: u32,
    cpu: f64,
    mem: u64,
}

/// Sums instances by name; sorted by name.
fn by_program(mut procs: Vec<Instance>) -> Vec<Program> {
    procs.sort_by(|a, b| {
        a.name
            .cmp(&b.name)
            .then(b.mem.cmp(&a.mem))
            .then(a.pid.cmp(&b.pid))
    });
    let mut out: Vec<Program> = Vec::new();
    for i in procs {
        match out.last_mut() {
            Some(p) if p.name == i.name => {
                p.count += 1;
                p.cpu += i.cpu;
                p.mem += i.mem;
            }
            _ => out.push(Program {
                name: i.name,
                pid: i.pid,
                count: 1,
                cpu: i.cpu,
                mem: i.mem,
            }),
        }
    }
    out
}

/// The `n` largest programs by CPU (idle ones left out) and by memory, each
/// largest first; ties broken by name so the choice is stable.
fn top(programs: &[Program], n: usize) -> (Vec<&Program>, Vec<&Program>) {
    let mut v: Vec<&Program> = programs.iter().collect();
    v.sort_by(|a, b| b.cpu.total_cmp(&a.cpu).then_with(|| a.name.cmp(&b.name)));
    let by_cpu = v.iter().filter(|p| p.cpu > 0.0).take(n).copied().collect();
    v.sort_by(|a, b| b.mem.cmp(&a.mem).then_with(|| a.name.cmp(&b.name)));
    let by_mem = v.into_iter().take(n).collect();
    (by_cpu, by_mem)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn i(name: &str, pid: u32, cpu: f64, mem: u64) -> Instance {
        Instance {
            name: name.to_owned(),
            pid,
            cpu,
            mem,
        }
    }

    #[test]
    fn instances_of_one_program_are_one_series() {
        let progs = by_program(vec![
            i("worker", 30, 10.0, 100),
            i("worker", 12, 5.0, 300),
            i("sshd", 1, 0.0, 50),
        ]);
        assert_eq!(
            progs,
            [
                Program {
                    name: "sshd".into(),
                    pid: 1,
                    count: 1,
                    cpu: 0.0,
                    mem: 50
                },
                Program {
                    name: "worker".into(),
                    pid: 12,
                    count: 2,
                    cpu: 15.0,
                    mem: 400
                },
            ]
        );
    }

    #[test]
    fn top_by_cpu_and_memory() {
        let progs = by_program(vec![
            i("a", 1, 0.0, 10),
            i("b", 2, 50.0, 5),
            i("c", 3, 120.0, 1),
            i("d", 4, 50.0, 30),
        ]);
        let (cpu, mem) = top(&progs, 2);
        let names = |v: Vec<&Program>| v.iter().map(|p| p.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(cpu), ["c", "b"]);
        assert_eq!(names(mem), ["d", "a"]);
        let progs = by_program(vec![i("idle", 1, 0.0, 1)]);
        assert!(top(&progs, 5).0.is_empty());
    }

    /// The real scan on this machine: series are named by process (no pid in the
    /// dimension), every pid sent is a process and not a thread, and a busy thread
    /// of this test's own process is not listed under its thread name.
    #[test]
    fn real_scan_lists_processes_by_name_not_threads() {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s2 = stop.clone();
        let spinner = std::thread::Builder::new()
            .name("spin-thr-tdm".into())
            .spawn(move || {
                let mut x = 0u64;
                while !s2.load(std::sync::atomic::Ordering::Relaxed) {
                    x = x.wrapping_add(1);
                    std::hint::black_box(x);
                }
            })
            .unwrap();
        let mut p = Processes::new();
        let mut r = Reading::default();
        p.sample(&mut r);
        std::thread::sleep(std::time::Duration::from_millis(500));
        let mut r = Reading::default();
        p.sample(&mut r);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        spinner.join().unwrap();

        let mem: Vec<_> = r
            .values
            .iter()
            .filter(|v| v.name == "process.top.mem.bytes")
            .collect();
        assert!(!mem.is_empty() && mem.len() <= TOP);
        // Kernel threads have ':' in their names (`kworker/u4:2`), so the check is
        // for the old `name:pid` form: a dimension ending in a pid that is sent.
        let sent_pids: Vec<String> = r
            .values
            .iter()
            .filter(|v| v.name == "process.top.pid")
            .map(|v| format!(":{}", v.value as u32))
            .collect();
        for v in &r.values {
            assert!(
                !sent_pids.iter().any(|p| v.dimension.ends_with(p.as_str())),
                "pid in the series key: {} {}",
                v.name,
                v.dimension
            );
            assert_ne!(v.dimension, "spin-thr-tdm", "a thread listed as a process");
        }
        let pids: Vec<_> = r
            .values
            .iter()
            .filter(|v| v.name == "process.top.pid")
            .collect();
        assert!(!pids.is_empty());
        for v in pids {
            let status = std::fs::read_to_string(format!("/proc/{}/status", v.value as u32));
            if let Ok(status) = status {
                let tgid = status
                    .lines()
                    .find_map(|l| l.strip_prefix("Tgid:"))
                    .map(|t| t.trim().to_owned());
                assert_eq!(tgid, Some((v.value as u32).to_string()), "{}", v.dimension);
            }
        }
    }
}
