//! Load generator: N simulated agents over real mTLS against a real collector
//! process, then this machine's raw SQLite ceiling for the same schema, in one run.
//!
//! ```text
//! cargo build --release --workspace --bins
//! target/release/loadgen --agents 1000 --series 100 --secs 30
//! ```
//!
//! Prints durable values/s, batches/s, ack latency percentiles, the collector's RSS
//! and CPU seconds, the raw SQLite ceiling and the ratio. This is a benchmark, not
//! a test: it asserts nothing, it measures.
//!
//! With `--rules DIR` it measures the alert engine under this load instead: two runs
//! of the same load, each with a fresh collector — without an alert engine, then with
//! the rules of DIR (e.g. `tests/bench/rules20`) — and values that follow a sawtooth
//! so thresholds are really crossed. It prints the collector's CPU seconds per million
//! values in each run (from /proc/PID/stat), the alert-engine thread's own CPU, and
//! the commit-to-transition latency the collector measured itself (its "alert engine
//! summary" log line at shutdown: per transition caused by a sample, from the commit
//! of the sample's batch to the commit of the transition).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use rusqlite::params;
use tandem_collector::pki::{self, Validity};
use tandem_tests::{
    Creds, Stream, batch, client, cpu_secs, now_ms, rss_bytes, thread_cpu_secs, values_batch,
};

#[derive(Parser, Debug, Clone)]
#[command(about = "Drive N simulated agents against a real collector and measure")]
struct Args {
    /// Concurrent agent streams (one TLS connection each).
    #[arg(long, default_value_t = 1000)]
    agents: usize,
    /// Series per batch (values per sample).
    #[arg(long, default_value_t = 100)]
    series: usize,
    /// Samples per batch (store2 brief): 1 is a live agent's batch; an agent catching
    /// up on its spool sends several per batch, and per-message costs (TLS record,
    /// HTTP/2 frame, gzip state, ack) are shared by that many more values.
    #[arg(long, default_value_t = 1)]
    samples: usize,
    /// Unacknowledged batches each agent may have in flight.
    #[arg(long, default_value_t = 4)]
    window: usize,
    /// Batches per second each agent sends; 0 sends as fast as acks allow (closed
    /// loop, the throughput ceiling). A real agent sends 0.1 (one per 10 s).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Seconds to run before measuring.
    #[arg(long, default_value_t = 5)]
    warmup_secs: u64,
    /// Seconds measured.
    #[arg(long, default_value_t = 30)]
    secs: u64,
    /// Values written for the raw SQLite ceiling.
    #[arg(long, default_value_t = 3_000_000)]
    ceiling_values: usize,
    /// Keep the data dir instead of deleting it.
    #[arg(long)]
    keep: bool,
    /// Measure the alert engine with the rule files of this directory (two runs:
    /// without and with rules); skips the raw SQLite ceiling.
    #[arg(long)]
    rules: Option<std::path::PathBuf>,
    /// The alert engine's tick with --rules (`[alerts] tick_secs`).
    #[arg(long, default_value_t = 5)]
    tick_secs: u64,
    /// Measure compaction and retention under this load instead (bench7 brief,
    /// issue 17): one data dir, `--alternations` pairs of phases of `--secs` each, the
    /// collector restarted for each with `[store] compaction = false` (off) or on. Before
    /// each "on" phase this many closed hours of head rows (one a batch, every
    /// `--backlog-every` s, `--series` values, for each of the `--agents` devices) and
    /// `--expired` chunks per device older than the raw retention (and as many 5-minute
    /// rollups older than theirs) are written through the store's own encoding; the
    /// phases report ack p50/p99 and how much of it was compacted and expired. Skips
    /// the raw SQLite ceiling.
    #[arg(long)]
    compaction_backlog: Option<u32>,
    /// Seconds between the backlog's batches (a real agent: 10).
    #[arg(long, default_value_t = 10)]
    backlog_every: u32,
    /// Expired chunks (and 5-minute rollups) per device before each "on" phase.
    #[arg(long, default_value_t = 2)]
    expired: u32,
    /// The collector's `[store] compact_values_per_sec` in the "on" phases of
    /// --compaction-backlog; its default when not given.
    #[arg(long)]
    compact_pace: Option<u64>,
    /// The collector's `[store] expire_blobs_per_sec` in the "on" phases of
    /// --compaction-backlog; its default when not given.
    #[arg(long)]
    expire_pace: Option<u64>,
    /// Off/on pairs with --compaction-backlog, in ABBA order (off on, on off, ...).
    #[arg(long, default_value_t = 4)]
    alternations: u32,
    /// With --compaction-backlog: one "off" phase before the pairs, printed but left
    /// out of every ratio. The first pair's off phase otherwise runs on the database
    /// at its smallest, before the first on phase has grown it (its p99 is the run's
    /// lowest, so the first pair's ratio is the run's highest).
    #[arg(long)]
    warm_phase: bool,
    /// With --compaction-backlog 1 --expired 1: the collector's steady state instead
    /// of a catch-up. Each on phase's backlog goes into the hour the collector last
    /// closed (what an hour of ingest leaves it), at instants of its own, and its
    /// expired chunk and 5-minute rollup per device into the hour that has just
    /// passed its retention, so the collector paces the work as steady (issue 17:
    /// compaction at 1.25 times the ingest rate, expiry spread over 30 minutes)
    /// rather than at its ceilings. The run waits until it fits between minute 5
    /// of an hour and the next full hour, where that steady state holds.
    #[arg(long)]
    steady: bool,
    /// Encode and gzip this many batches per agent before connecting, and send those
    /// bytes while measuring (`tandem_tests::precoded`): the same wire, but loadgen no
    /// longer spends the shared cores on encoding and gzip, which a real fleet does on
    /// its own machines. An agent that has sent them all stops sending (reported).
    /// Not with --rules or --compaction-backlog (their batches carry real time).
    #[arg(long, default_value_t = 0)]
    pre_encode: u64,
    /// The collector's `[store] max_group` (most batches in one commit); its default
    /// when not given. Not with --compaction-backlog.
    #[arg(long)]
    max_group: Option<u32>,
}

#[derive(Default)]
struct Totals {
    values: AtomicU64,
    batches: AtomicU64,
    errors: AtomicU64,
    /// Agents that sent all their --pre-encode batches before the end.
    ran_out: AtomicU64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(args))
}

/// `write_bytes` of /proc/<pid>/io.
fn write_bytes(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/io"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("write_bytes:"))?
        .trim()
        .parse()
        .ok()
}

/// (steal, total) jiffies of the machine, from the `cpu` line of /proc/stat.
fn cpu_times() -> Option<(u64, u64)> {
    let s = std::fs::read_to_string("/proc/stat").ok()?;
    let f: Vec<u64> = s
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    Some((*f.get(7)?, f.iter().take(8).sum()))
}

fn steal_pct(a: Option<(u64, u64)>, b: Option<(u64, u64)>) -> f64 {
    match (a, b) {
        (Some((s0, t0)), Some((s1, t1))) if t1 > t0 => {
            100.0 * s1.saturating_sub(s0) as f64 / (t1 - t0) as f64
        }
        _ => f64::NAN,
    }
}

/// Least squares of y = a + b*x + c*d over (x, d, y) points, with d a 0/1 marker.
/// Returns (exp(c), its 95 % interval, exp(b)): with y a logarithm, the ratio that d
/// multiplies y's antilog by at equal x, and what one unit of x multiplies it by.
/// None with fewer than 5 points or a singular fit.
fn steal_adjusted(points: &[(f64, f64, f64)]) -> Option<(f64, f64, f64, f64)> {
    let n = points.len();
    if n < 5 {
        return None;
    }
    let row = |&(x, d, _): &(f64, f64, f64)| [1.0, x, d];
    let mut m = [[0.0f64; 3]; 3];
    let mut v = [0.0f64; 3];
    for p in points {
        let r = row(p);
        for i in 0..3 {
            v[i] += r[i] * p.2;
            for j in 0..3 {
                m[i][j] += r[i] * r[j];
            }
        }
    }
    let inv = invert3(m)?;
    let beta: Vec<f64> = (0..3)
        .map(|i| (0..3).map(|j| inv[i][j] * v[j]).sum())
        .collect();
    let rss: f64 = points
        .iter()
        .map(|p| {
            let r = row(p);
            let e = p.2 - (0..3).map(|i| beta[i] * r[i]).sum::<f64>();
            e * e
        })
        .sum();
    let dof = n - 3;
    let se = (rss / dof as f64 * inv[2][2]).sqrt();
    let t = student_t(dof)?;
    Some((
        beta[2].exp(),
        (beta[2] - t * se).exp(),
        (beta[2] + t * se).exp(),
        beta[1].exp(),
    ))
}

/// The two-sided 97.5 % quantile of Student's t for `dof` (2..=30 tabled, 1.96 above).
fn student_t(dof: usize) -> Option<f64> {
    const T: [f64; 29] = [
        4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
        2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052,
        2.048, 2.045, 2.042,
    ];
    Some(T.get(dof.checked_sub(2)?).copied().unwrap_or(1.96))
}

/// Without the steal term: exp of the difference of mean y between d = 1 and d = 0
/// over (d, y) points, with its 95 % interval (pooled variance). For runs whose
/// steal hardly varies, where the fit of [`steal_adjusted`] is (nearly) singular.
/// None with fewer than 2 points on either side.
fn on_off_ratio(points: &[(f64, f64)]) -> Option<(f64, f64, f64)> {
    let side = |d: f64| -> Vec<f64> { points.iter().filter(|p| p.0 == d).map(|p| p.1).collect() };
    let (off, on) = (side(0.0), side(1.0));
    if off.len() < 2 || on.len() < 2 {
        return None;
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let ss = |v: &[f64]| {
        let m = mean(v);
        v.iter().map(|y| (y - m) * (y - m)).sum::<f64>()
    };
    let dof = off.len() + on.len() - 2;
    let var = (ss(&off) + ss(&on)) / dof as f64;
    let se = (var * (1.0 / off.len() as f64 + 1.0 / on.len() as f64)).sqrt();
    let c = mean(&on) - mean(&off);
    let t = student_t(dof)?;
    Some((c.exp(), (c - t * se).exp(), (c + t * se).exp()))
}

fn invert3(m: [[f64; 3]; 3]) -> Option<[[f64; 3]; 3]> {
    let [[a, b, c], [d, e, f], [g, h, i]] = m;
    let (ca, cb, cc) = (e * i - f * h, f * g - d * i, d * h - e * g);
    let det = a * ca + b * cb + c * cc;
    if det.abs() < 1e-12 {
        return None;
    }
    Some([
        [ca / det, (c * h - b * i) / det, (b * f - c * e) / det],
        [cb / det, (a * i - c * g) / det, (c * d - a * f) / det],
        [cc / det, (b * g - a * h) / det, (a * e - b * d) / det],
    ])
}

/// What one run against one collector measured.
struct Phase {
    connected: usize,
    elapsed: f64,
    values: u64,
    batches: u64,
    /// Ack latencies (µs), sorted.
    latencies: Vec<u32>,
    rss: u64,
    hwm: u64,
    cpu: f64,
    /// Bytes the collector had written to storage in the measured window
    /// (`write_bytes` of /proc/<pid>/io: what reached the block layer, WAL and
    /// checkpoints included).
    written: u64,
    /// The machine's CPU steal time in the measured window, % of all CPU time (the
    /// hypervisor giving this VM's time to other guests: noise this benchmark cannot
    /// remove, so it is printed beside every phase).
    steal: f64,
    /// Commits in the measured window from the collector's debug log ("slow store
    /// group commit"): (how many took >= 100 ms in `COMMIT` itself with no
    /// maintenance job in their group, the slowest `COMMIT` in ms). A `COMMIT` is the
    /// WAL's fsync, so the first are the disk stalling.
    commit_stalls: (u32, u64),
    engine_cpu: Option<f64>,
    errors: u64,
    /// Agents that sent all their --pre-encode batches before the measured window ended.
    ran_out: u64,
    stored: i64,
    clean: bool,
    /// The collector's "alert engine summary" log line, if it ran one.
    summary: Option<String>,
    site: tandem_tests::Site,
}

impl Phase {
    fn pct(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let i =
            ((self.latencies.len() as f64 * p).ceil() as usize).clamp(1, self.latencies.len()) - 1;
        self.latencies[i] as f64 / 1000.0
    }

    fn cpu_per_million(&self) -> f64 {
        self.cpu / (self.values as f64 / 1e6)
    }

    /// A `key=value` field of the summary line.
    fn summary_field(&self, key: &str) -> Option<String> {
        Some(log_field(self.summary.as_deref()?, key)?.to_string())
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    if args.compact_pace.is_some() && args.compaction_backlog.is_none() {
        bail!("--compact-pace: only with --compaction-backlog");
    }
    if args.expire_pace.is_some() && args.compaction_backlog.is_none() {
        bail!("--expire-pace: only with --compaction-backlog");
    }
    if args.warm_phase && args.compaction_backlog.is_none() {
        bail!("--warm-phase: only with --compaction-backlog");
    }
    if args.steady && (args.compaction_backlog != Some(1) || args.expired != 1) {
        bail!("--steady: only with --compaction-backlog 1 --expired 1 (one hour of work)");
    }
    if args.max_group.is_some() && args.compaction_backlog.is_some() {
        bail!("--max-group: not with --compaction-backlog");
    }
    if args.pre_encode > 0 && (args.rules.is_some() || args.compaction_backlog.is_some()) {
        bail!(
            "--pre-encode: not with --rules or --compaction-backlog (their batches carry the time they are sent)"
        );
    }
    let pace = if args.rate > 0.0 {
        format!("{} batches/s per agent", args.rate)
    } else {
        "unpaced (as fast as acks allow)".into()
    };
    if let Some(rules) = args.rules.clone() {
        eprintln!("run 1 of 2: no alert engine");
        let base = phase(&args, None).await?;
        eprintln!("run 2 of 2: alert engine with {}", rules.display());
        let with = phase(&args, Some(&rules)).await?;
        let n_rules = tandem_collector::alerts::rules::load_dir(&rules)
            .map(|s| s.rules.len())
            .unwrap_or(0);
        println!(
            "loadgen --rules {}: {} rules, {} agents, {} values/batch (sawtooth), window {}, {pace}, tick {} s, {:.1} s measured after {} s warm-up, two runs",
            rules.display(),
            n_rules,
            args.agents,
            args.series,
            args.window,
            args.tick_secs,
            with.elapsed,
            args.warmup_secs
        );
        println!("  {:<40} {:>16} {:>16}", "", "without rules", "with rules");
        let row = |name: &str, a: String, b: String| println!("  {name:<40} {a:>16} {b:>16}");
        row(
            "agents connected",
            base.connected.to_string(),
            with.connected.to_string(),
        );
        row(
            "durable values/s",
            format!("{:.0}", base.values as f64 / base.elapsed),
            format!("{:.0}", with.values as f64 / with.elapsed),
        );
        row(
            "ack latency p50 / p99 ms",
            format!("{:.1} / {:.1}", base.pct(0.5), base.pct(0.99)),
            format!("{:.1} / {:.1}", with.pct(0.5), with.pct(0.99)),
        );
        row(
            "collector CPU s (measured window)",
            format!("{:.2}", base.cpu),
            format!("{:.2}", with.cpu),
        );
        row(
            "collector CPU s per million values",
            format!("{:.3}", base.cpu_per_million()),
            format!("{:.3}", with.cpu_per_million()),
        );
        row(
            "alert-engine thread CPU s",
            "-".into(),
            with.engine_cpu.map_or("?".into(), |c| format!("{c:.2}")),
        );
        row(
            "collector RSS end / peak MiB",
            format!(
                "{:.0} / {:.0}",
                base.rss as f64 / 1048576.0,
                base.hwm as f64 / 1048576.0
            ),
            format!(
                "{:.0} / {:.0}",
                with.rss as f64 / 1048576.0,
                with.hwm as f64 / 1048576.0
            ),
        );
        row(
            "stream errors",
            base.errors.to_string(),
            with.errors.to_string(),
        );
        row(
            "collector clean stop",
            base.clean.to_string(),
            with.clean.to_string(),
        );
        let extra = with.cpu_per_million() - base.cpu_per_million();
        println!(
            "evaluation cost: {:+.3} CPU s per million values = {:+.1} % of ingest CPU (collector, with vs without); alert-engine thread alone {:.1} % of the collector's CPU in the window",
            extra,
            100.0 * extra / base.cpu_per_million(),
            with.engine_cpu.map_or(f64::NAN, |c| 100.0 * c / with.cpu)
        );
        let f = |k: &str| with.summary_field(k).unwrap_or_else(|| "?".into());
        println!(
            "alert engine (whole run, from the collector's summary): {} evaluations, {} history records, {} transitions timed",
            f("evaluations"),
            f("records"),
            f("timed_transitions")
        );
        println!(
            "commit-to-transition latency p50 / p99 / max: {} / {} / {} ms",
            f("commit_to_transition_p50_ms"),
            f("commit_to_transition_p99_ms"),
            f("commit_to_transition_max_ms")
        );
        if with.summary.is_none() {
            println!(
                "(no summary line found in {}/collector.log)",
                with.site.dir.path().display()
            );
        }
        if args.keep {
            let kept = with.site.dir.keep();
            println!("data of the run with rules kept in {}", kept.display());
        }
        return Ok(());
    }
    if let Some(hours) = args.compaction_backlog {
        return compaction_bench(&args, hours, &pace).await;
    }
    let p = phase(&args, None).await?;
    eprintln!(
        "measuring the raw SQLite ceiling ({} values)…",
        args.ceiling_values
    );
    let ceiling_dir = tempfile::tempdir()?;
    let ceiling = raw_ceiling(
        &ceiling_dir.path().join("raw.db"),
        args.agents,
        args.series,
        args.ceiling_values,
    )?;
    let values_per_sec = p.values as f64 / p.elapsed;
    println!(
        "loadgen: {} agents ({} connected), {} values/batch ({} series × {} samples), window {}, {pace}, {:.1} s measured after {} s warm-up",
        args.agents,
        p.connected,
        args.series * args.samples.max(1),
        args.series,
        args.samples.max(1),
        args.window,
        p.elapsed,
        args.warmup_secs
    );
    println!("  durable values/s        {values_per_sec:>12.0}");
    println!(
        "  durable batches/s       {:>12.0}",
        p.batches as f64 / p.elapsed
    );
    println!(
        "  ack latency p50/p99/max {:>8.1} / {:.1} / {:.1} ms",
        p.pct(0.50),
        p.pct(0.99),
        p.pct(1.0)
    );
    println!(
        "  collector RSS end/peak  {:>8.1} / {:.1} MiB",
        p.rss as f64 / 1048576.0,
        p.hwm as f64 / 1048576.0
    );
    println!(
        "  collector CPU           {:>12.2} s over {:.1} s ({:.0} % of one core)",
        p.cpu,
        p.elapsed,
        100.0 * p.cpu / p.elapsed
    );
    println!("  stream errors           {:>12}", p.errors);
    if args.pre_encode > 0 {
        println!(
            "  pre-encoded batches     {:>12} per agent, encoded and gzipped before connecting; {} agents sent them all before the end{}",
            args.pre_encode,
            p.ran_out,
            if p.ran_out > 0 {
                " (raise --pre-encode: the figure is low)"
            } else {
                ""
            }
        );
    }
    println!("  values in database      {:>12}", p.stored);
    println!("  collector clean stop    {:>12}", p.clean);
    println!(
        "raw SQLite ceiling (same schema and pragmas, {} values/txn, no network): {ceiling:.0} values/s",
        1000 * args.series
    );
    println!(
        "ratio collector / raw ceiling: {:.2}",
        values_per_sec / ceiling
    );
    if args.keep {
        let kept = p.site.dir.keep();
        println!("data kept in {}", kept.display());
    }
    Ok(())
}

/// Starts a fresh collector (with the rules of `rules`, if any), drives the load,
/// measures, stops the collector.
async fn phase(args: &Args, rules: Option<&std::path::Path>) -> anyhow::Result<Phase> {
    let (site, creds) = prepare(args)?;
    let store = args
        .max_group
        .map_or(String::new(), |g| format!("[store]\nmax_group = {g}\n"));
    let extra = match rules {
        None => store,
        Some(src) => {
            let dst = site.dir.path().join("rules");
            std::fs::create_dir_all(&dst)?;
            for e in std::fs::read_dir(src)
                .with_context(|| format!("cannot read {}", src.display()))?
                .flatten()
            {
                if e.path().extension().is_some_and(|x| x == "toml") {
                    std::fs::copy(e.path(), dst.join(e.file_name()))?;
                }
            }
            format!(
                "{store}[alerts]\nrules_dir = \"rules\"\ntick_secs = {}\n",
                args.tick_secs
            )
        }
    };
    drive(args, site, creds, &extra).await
}

/// A fresh data dir with a CA and `--agents` issued and recorded certificates.
fn prepare(args: &Args) -> anyhow::Result<(tandem_tests::Site, Vec<Creds>)> {
    let dir = tempfile::tempdir()?;
    let data_dir = dir.path().join("collector");
    pki::init(&data_dir, &[])?;
    let ca = pki::load_ca(&data_dir)?;
    let ca_pem = ca.cert_pem.clone();
    eprintln!("issuing {} agent certificates…", args.agents);
    let mut db = tandem_collector::store::open(&data_dir.join(tandem_collector::store::DB_FILE))?;
    // One transaction: recording thousands of certificates one commit each is slow.
    let tx = db.transaction()?;
    let creds: Vec<Creds> = (0..args.agents)
        .map(|i| {
            let validity = Validity::starting_now(Duration::from_secs(86_400));
            let issued = ca.issue_agent("load", &format!("load-{i:05}"), validity)?;
            tandem_tests::record_issued(&tx, &format!("load-{i:05}"), &issued, validity)?;
            Ok(Creds {
                ca_pem: ca_pem.clone(),
                cert_pem: Some(issued.cert_pem),
                key_pem: Some(issued.key_pem),
            })
        })
        .collect::<anyhow::Result<_>>()?;
    tx.commit()?;
    drop(db);
    Ok((tandem_tests::Site { dir }, creds))
}

/// Starts a collector on `site` with `extra` (continuing `[telemetry]`), drives the
/// load, measures, stops the collector.
async fn drive(
    args: &Args,
    site: tandem_tests::Site,
    creds: Vec<Creds>,
    extra: &str,
) -> anyhow::Result<Phase> {
    let collector = site.start_collector(extra).await?;
    let pid = collector.pid();
    eprintln!(
        "collector pid {pid} on {}; connecting {} agents…",
        collector.addr, args.agents
    );

    let totals = Arc::new(Totals::default());
    let stop = Arc::new(AtomicBool::new(false));
    let measuring = Arc::new(AtomicBool::new(false));
    let base = now_ms();
    let mut pre = pre_encode(args, base);
    let mut tasks = Vec::with_capacity(args.agents);
    for (k, c) in creds.into_iter().enumerate() {
        let (totals, stop, measuring) = (totals.clone(), stop.clone(), measuring.clone());
        let addr = collector.addr;
        let shape = Shape {
            series: args.series,
            samples: args.samples.max(1),
            window: args.window,
            rate: args.rate,
            sawtooth: args.rules.is_some().then_some(k as u64),
        };
        let pre = pre.as_mut().map(|p| std::mem::take(&mut p[k]));
        tasks.push(tokio::spawn(async move {
            agent(
                addr,
                c,
                shape,
                base,
                pre,
                Run {
                    totals,
                    stop,
                    measuring,
                },
            )
            .await
        }));
        // Do not stampede the handshake path: ~1000 connections per second.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    tokio::time::sleep(Duration::from_secs(args.warmup_secs)).await;

    measuring.store(true, Ordering::SeqCst);
    eprintln!(
        "measuring from {} for {} s (ms since the epoch)",
        now_ms(),
        args.secs
    );
    let v0 = totals.values.load(Ordering::SeqCst);
    let b0 = totals.batches.load(Ordering::SeqCst);
    let cpu0 = cpu_secs(pid).unwrap_or(0.0);
    let io0 = write_bytes(pid).unwrap_or(0);
    let stat0 = cpu_times();
    let engine0 = thread_cpu_secs(pid, "alert-engine");
    let log_path = site.dir.path().join("collector.log");
    let log_len = |p: &std::path::Path| std::fs::metadata(p).map_or(0, |m| m.len());
    let log0 = log_len(&log_path);
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.secs)).await;
    let elapsed = t0.elapsed().as_secs_f64();
    let v1 = totals.values.load(Ordering::SeqCst);
    let b1 = totals.batches.load(Ordering::SeqCst);
    let cpu1 = cpu_secs(pid).unwrap_or(0.0);
    let io1 = write_bytes(pid).unwrap_or(0);
    let stat1 = cpu_times();
    let engine1 = thread_cpu_secs(pid, "alert-engine");
    let log1 = log_len(&log_path);
    measuring.store(false, Ordering::SeqCst);
    let rss = rss_bytes(pid).unwrap_or(0);
    let hwm = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024;
    stop.store(true, Ordering::SeqCst);
    let mut latencies = Vec::new();
    let mut connected = 0;
    for t in tasks {
        if let Ok((lat, ok)) = t.await {
            latencies.extend(lat);
            connected += usize::from(ok);
        }
    }
    // Values recorded by head rows and chunks (issue 17), without decoding them.
    let stored: i64 = site.count(
        "SELECT (SELECT coalesce(sum(n_values), 0) FROM head) + (SELECT coalesce(sum(n_values), 0) FROM chunks) + (SELECT count(*) FROM samples_old)",
    );
    let clean = collector.terminate().await;
    latencies.sort_unstable();
    let summary = std::fs::read_to_string(site.dir.path().join("collector.log"))
        .ok()
        .and_then(|log| {
            log.lines()
                .rev()
                .find(|l| l.contains("alert engine summary"))
                .map(strip_ansi)
        });
    Ok(Phase {
        connected,
        elapsed,
        values: v1 - v0,
        batches: b1 - b0,
        latencies,
        rss,
        hwm,
        cpu: cpu1 - cpu0,
        written: io1.saturating_sub(io0),
        steal: steal_pct(stat0, stat1),
        commit_stalls: commit_stalls(&log_path, log0, log1),
        engine_cpu: engine1.zip(engine0).map(|(a, b)| a - b),
        errors: totals.errors.load(Ordering::SeqCst),
        ran_out: totals.ran_out.load(Ordering::SeqCst),
        stored,
        clean,
        summary,
        site,
    })
}

/// The median of sorted figures (NaN for none).
fn median_of_sorted(v: &[f64]) -> f64 {
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The value of a `key=value` field of a (colourless) log line; empty if the line
/// ends at the `=`.
fn log_field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let at = line.find(&format!("{key}="))? + key.len() + 1;
    Some(line[at..].split_whitespace().next().unwrap_or(""))
}

/// --steady: waits until the run fits between minute 5 of an hour (the collector's
/// grace after the hour it compacts closed) and the next full hour (when the hour
/// of blobs just past their retention moves on), so that its work stays one hour's
/// steady work throughout. The run's length is estimated at 30 s a phase beyond
/// its warm-up and measured seconds (restarts, 1,000 connections, the backlog).
async fn steady_window(args: &Args) {
    let phases = 2 * args.alternations + u32::from(args.warm_phase) + 1;
    let run_ms = i64::from(phases) * (args.warmup_secs as i64 + args.secs as i64 + 30) * 1000;
    let now = now_ms();
    let into_hour = now.rem_euclid(3_600_000);
    let (from, to) = (330_000, 3_600_000 - run_ms);
    if from > to {
        eprintln!(
            "--steady: the run (about {} s) is longer than the 55 minutes it must fit in; the last phases may be behind",
            run_ms / 1000
        );
        return;
    }
    if (from..=to).contains(&into_hour) {
        return;
    }
    let wait = (from - into_hour).rem_euclid(3_600_000);
    eprintln!(
        "--steady: waiting {} s, until minute 5 of the hour, so that the run (about {} s) keeps to one hour",
        wait / 1000,
        run_ms / 1000
    );
    tokio::time::sleep(Duration::from_millis(wait as u64)).await;
}

/// [`Phase::commit_stalls`] from the bytes `from..to` of the collector's log.
fn commit_stalls(log: &std::path::Path, from: u64, to: u64) -> (u32, u64) {
    let Ok(bytes) = std::fs::read(log) else {
        return (0, 0);
    };
    let window = &bytes[(from as usize).min(bytes.len())..(to as usize).min(bytes.len())];
    let field = |line: &str, key: &str| -> Option<u64> { log_field(line, key)?.parse().ok() };
    let (mut stalls, mut slowest) = (0, 0);
    for line in String::from_utf8_lossy(window).lines() {
        if !line.contains("slow store group commit") {
            continue;
        }
        let line = strip_ansi(line);
        let (Some(commit), Some(maintenance)) =
            (field(&line, "commit_ms"), field(&line, "maintenance_ms"))
        else {
            continue;
        };
        slowest = slowest.max(commit);
        if commit >= 100 && maintenance == 0 {
            stalls += 1;
        }
    }
    (stalls, slowest)
}

/// The log line without terminal colour codes (the collector's log is coloured).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // ESC [ ... final letter
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[derive(Clone, Copy)]
struct Shape {
    series: usize,
    samples: usize,
    window: usize,
    rate: f64,
    /// With --rules: this agent's index; values follow a sawtooth and samples carry
    /// the wall-clock time (rules' `for_secs` and rates need real time).
    sawtooth: Option<u64>,
}

/// Value of series `i` at batch `seq` of agent `k`: 0..99, rising by one per batch,
/// phases spread over agents and series.
fn saw(seq: u64, k: u64, i: usize) -> f64 {
    ((seq + 7 * k + 3 * i as u64) % 100) as f64
}

/// The batch an agent sends: the shared test batch, or the sawtooth at real time.
fn frame(seq: u64, base: i64, last_t: &mut i64, shape: &Shape) -> tandem_proto::v1::AgentFrame {
    let Some(k) = shape.sawtooth else {
        // One instant per batch, 1 ms apart: timestamps stay distinct and recent.
        if shape.samples == 1 {
            return batch(seq, base + seq as i64, shape.series);
        }
        // Several instants per batch, 1 ms apart, distinct across batches.
        let mut f = batch(seq, 0, shape.series);
        if let Some(tandem_proto::v1::agent_frame::Kind::Batch(b)) = &mut f.kind {
            let first = b.samples[0].clone();
            b.samples = (0..shape.samples)
                .map(|j| tandem_proto::v1::Sample {
                    time_unix_ms: base + (seq as i64) * shape.samples as i64 + j as i64,
                    ..first.clone()
                })
                .collect();
        }
        return f;
    };
    let t = now_ms().max(*last_t + 1);
    *last_t = t;
    let names: Vec<String> = (0..shape.series)
        .map(|i| format!("test.metric.{i}"))
        .collect();
    let values: Vec<(&str, &str, f64)> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), "", saw(seq, k, i)))
        .collect();
    values_batch(seq, t, &values)
}

/// With --pre-encode: each agent's batches `1..=N`, encoded and gzipped as they go on
/// the wire, made on all cores before any agent connects.
fn pre_encode(args: &Args, base: i64) -> Option<Vec<Vec<bytes::Bytes>>> {
    if args.pre_encode == 0 {
        return None;
    }
    let t = Instant::now();
    let shape = Shape {
        series: args.series,
        samples: args.samples.max(1),
        window: args.window,
        rate: args.rate,
        sawtooth: None,
    };
    let n = args.pre_encode;
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let per = args.agents.div_ceil(threads).max(1);
    let mut out: Vec<Vec<bytes::Bytes>> = vec![Vec::new(); args.agents];
    std::thread::scope(|sc| {
        for chunk in out.chunks_mut(per) {
            let shape = &shape;
            sc.spawn(move || {
                for frames in chunk {
                    // Every agent sends the same batches (as without --pre-encode): its
                    // own seqs, the same values and instants.
                    *frames = (1..=n)
                        .map(|seq| tandem_tests::precoded::encode(&frame(seq, base, &mut 0, shape)))
                        .collect();
                }
            });
        }
    });
    let bytes: usize = out.iter().flatten().map(|b| b.len()).sum();
    eprintln!(
        "pre-encoded {} batches per agent ({:.0} MiB on the wire) in {:.1} s",
        n,
        bytes as f64 / 1048576.0,
        t.elapsed().as_secs_f64()
    );
    Some(out)
}

/// An agent's stream: tonic's (encoding and gzip as it sends) or pre-encoded bytes.
enum Link {
    Tonic(Stream),
    Pre(tandem_tests::precoded::PrecodedStream, Vec<bytes::Bytes>),
}

impl Link {
    /// Sends batch `seq`; `Ok(false)` when a pre-encoded agent has no batch `seq`.
    async fn send(
        &mut self,
        seq: u64,
        base: i64,
        last_t: &mut i64,
        shape: &Shape,
    ) -> anyhow::Result<bool> {
        match self {
            Link::Tonic(s) => s.send(frame(seq, base, last_t, shape)).await.map(|()| true),
            Link::Pre(s, frames) => match frames.get(seq as usize - 1) {
                Some(b) => s.send(b.clone()).await.map(|()| true),
                None => Ok(false),
            },
        }
    }

    async fn next_ack(&mut self) -> anyhow::Result<Option<u64>> {
        match self {
            Link::Tonic(s) => Ok(s.next_ack().await?),
            Link::Pre(s, _) => s.next_ack().await,
        }
    }
}

/// What every agent task shares: the counts, and when to measure and stop.
struct Run {
    totals: Arc<Totals>,
    stop: Arc<AtomicBool>,
    measuring: Arc<AtomicBool>,
}

/// One simulated agent. Returns ack latencies (µs) seen while measuring, and whether
/// it connected.
async fn agent(
    addr: std::net::SocketAddr,
    creds: Creds,
    shape: Shape,
    base: i64,
    pre: Option<Vec<bytes::Bytes>>,
    run: Run,
) -> (Vec<u32>, bool) {
    let Run {
        totals,
        stop,
        measuring,
    } = run;
    let mut lat = Vec::new();
    let opened = match pre {
        None => match client(addr, &creds).await {
            Ok(mut c) => Stream::hello(&mut c)
                .await
                .map(|(s, w)| (Link::Tonic(s), w)),
            Err(e) => Err(e),
        },
        Some(frames) => match tandem_tests::channel(addr, &creds).await {
            Ok(ch) => {
                let hello = tandem_tests::precoded::encode(&tandem_tests::hello_frame());
                tandem_tests::precoded::PrecodedStream::hello(ch, hello)
                    .await
                    .map(|(s, w)| (Link::Pre(s, frames), w))
            }
            Err(e) => Err(e),
        },
    };
    let Ok((mut s, welcome)) = opened else {
        totals.errors.fetch_add(1, Ordering::Relaxed);
        return (lat, false);
    };
    if matches!(s, Link::Pre(..)) && welcome.acked_seq != 0 {
        // Pre-encoded batches start at seq 1; a collector that has seen them would
        // ack them without storing anything.
        totals.errors.fetch_add(1, Ordering::Relaxed);
        return (lat, false);
    }
    let Shape {
        series,
        window,
        rate,
        ..
    } = shape;
    let mut last_t = 0;
    let mut exhausted = false;
    let mut sent: std::collections::VecDeque<(u64, Instant)> = Default::default();
    // After a restart of the collector on the same data dir (--compaction-backlog),
    // go on after what it stored: a seq it has seen would be acked without a commit.
    let mut seq = welcome.acked_seq;
    // Paced agents start at a random phase so they do not all send at once.
    let period = (rate > 0.0).then(|| Duration::from_secs_f64(1.0 / rate));
    let mut next_send =
        Instant::now() + period.map_or(Duration::ZERO, |p| p.mul_f64(rand_fraction(base, &creds)));
    while !stop.load(Ordering::Relaxed) {
        if let Some(p) = period {
            if sent.is_empty() {
                tokio::time::sleep_until(next_send.into()).await;
            }
            if Instant::now() >= next_send && sent.len() < window && !exhausted {
                seq += 1;
                match s.send(seq, base, &mut last_t, &shape).await {
                    Ok(true) => {}
                    Ok(false) => {
                        exhausted = true;
                        seq -= 1;
                    }
                    Err(_) => {
                        totals.errors.fetch_add(1, Ordering::Relaxed);
                        return (lat, true);
                    }
                }
                if !exhausted {
                    sent.push_back((seq, Instant::now()));
                }
                next_send += p;
            }
        }
        while period.is_none() && sent.len() < window && !exhausted {
            seq += 1;
            match s.send(seq, base, &mut last_t, &shape).await {
                Ok(true) => sent.push_back((seq, Instant::now())),
                Ok(false) => {
                    exhausted = true;
                    seq -= 1;
                }
                Err(_) => {
                    totals.errors.fetch_add(1, Ordering::Relaxed);
                    return (lat, true);
                }
            }
        }
        if exhausted && sent.is_empty() {
            // All pre-encoded batches sent and acked: wait for the end.
            if !stop.load(Ordering::Relaxed) {
                totals.ran_out.fetch_add(1, Ordering::Relaxed);
            }
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            return (lat, true);
        }
        match s.next_ack().await {
            Ok(Some(acked)) => {
                while let Some(&(q, at)) = sent.front() {
                    if q > acked {
                        break;
                    }
                    sent.pop_front();
                    totals
                        .values
                        .fetch_add((series * shape.samples) as u64, Ordering::Relaxed);
                    totals.batches.fetch_add(1, Ordering::Relaxed);
                    if measuring.load(Ordering::Relaxed) {
                        lat.push(at.elapsed().as_micros().min(u32::MAX as u128) as u32);
                    }
                }
            }
            _ => {
                if !stop.load(Ordering::Relaxed) {
                    totals.errors.fetch_add(1, Ordering::Relaxed);
                }
                return (lat, true);
            }
        }
    }
    (lat, true)
}

/// A fraction in [0, 1) that differs between agents (their key is random).
fn rand_fraction(base: i64, creds: &Creds) -> f64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (base, creds.key_pem.as_deref()).hash(&mut h);
    (h.finish() % 10_000) as f64 / 10_000.0
}

/// Inserts `total` values into a fresh database with the collector's schema and
/// pragmas (synchronous = FULL), in transactions of 1000 batches, with the same
/// statements the writer runs per batch (ledger row, device bump, one head row per
/// batch since issue 17). No network, no TLS, no protobuf: the ceiling the collector can approach.
fn raw_ceiling(
    path: &std::path::Path,
    devices: usize,
    series: usize,
    total: usize,
) -> anyhow::Result<f64> {
    let mut conn = tandem_collector::store::open(path).context("open ceiling db")?;
    let now = now_ms();
    {
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT INTO tenants (name, created_ms) VALUES ('load', ?1)",
            [now],
        )?;
        for d in 0..devices {
            tx.execute(
                "INSERT INTO devices (id, tenant_id, first_seen_ms, last_seen_ms) VALUES (?1, 1, ?2, ?2)",
                params![format!("load-{d:05}"), now],
            )?;
            for s in 0..series {
                tx.execute(
                    "INSERT INTO series (device_id, name, dimension) VALUES (?1, ?2, '')",
                    params![format!("load-{d:05}"), format!("test.metric.{s}")],
                )?;
            }
        }
        tx.commit()?;
    }
    let batches = total / series;
    if batches == 0 {
        bail!("ceiling_values must be at least --series");
    }
    let per_txn = 1000;
    let start = Instant::now();
    let mut done = 0;
    while done < batches {
        let tx = conn.transaction()?;
        {
            let mut ledger = tx.prepare_cached("INSERT OR IGNORE INTO batches (device_id, seq, received_ms, n_values) VALUES (?1, ?2, ?3, ?4)")?;
            let mut bump = tx.prepare_cached("UPDATE devices SET acked_seq = MAX(acked_seq, ?2), last_seen_ms = ?3 WHERE id = ?1")?;
            let mut ins = tx.prepare_cached(
                "INSERT INTO head (device_id, min_ts, max_ts, n_values, payload) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for b in done..(done + per_txn).min(batches) {
                let d = b % devices;
                let seq = (b / devices + 1) as i64;
                let id = format!("load-{d:05}");
                ledger.execute(params![id, seq, now, series as i64])?;
                bump.execute(params![id, seq, now])?;
                let ids: Vec<i64> = (0..series).map(|s| (d * series + s + 1) as i64).collect();
                let values: Vec<f64> = (0..series)
                    .map(|s| (seq * 1000 + s as i64) as f64)
                    .collect();
                let payload =
                    tandem_collector::store::chunk::encode_head(&ids, &[(now + seq, &values)]);
                ins.execute(params![id, now + seq, now + seq, series as i64, payload])?;
            }
        }
        tx.commit()?;
        done += per_txn;
    }
    Ok((batches * series) as f64 / start.elapsed().as_secs_f64())
}

/// `--compaction-backlog HOURS` (bench7 brief, issue 17): ingest ack latency with the
/// store's maintenance (compaction and retention) working on a backlog, against the
/// same load with it off, in alternating phases on one data dir.
async fn compaction_bench(args: &Args, hours: u32, pace: &str) -> anyhow::Result<()> {
    use tandem_collector::store::chunk::CHUNK_MS;
    const DAY: i64 = 86_400_000;
    if !(1..=48).contains(&hours) {
        bail!("--compaction-backlog {hours}: give 1 to 48 closed hours");
    }
    if !(1..=3600).contains(&args.backlog_every) {
        bail!(
            "--backlog-every {}: give 1 to 3600 seconds",
            args.backlog_every
        );
    }
    if args.alternations == 0 || args.alternations > 50 {
        bail!("--alternations {}: give 1 to 50", args.alternations);
    }
    if args.steady {
        steady_window(args).await;
    }
    let t_start = now_ms();
    let floor_hour = |t: i64| t - t.rem_euclid(CHUNK_MS);
    // The hour the newest backlog hour ends at: at least 10 minutes back, so that the
    // backlog is past the collector's 5-minute compaction grace from the start (at
    // 14:02 the hour 13:00-14:00 is not, and an on phase then compacted nothing).
    // --steady: the collector's own cutoff (5 minutes of grace), which steady_window
    // keeps for the whole run.
    let top = floor_hour(t_start - if args.steady { 300_000 } else { 600_000 });
    // The expired blobs of --steady: the hour that has just passed the default
    // retention (14 days raw, 90 days 5-minute rollups), as the collector sees it.
    let steady_expired =
        |retention_days: i64| floor_hour(t_start - retention_days * DAY - CHUNK_MS);
    // Blobs below these starts are counted as expired.
    let (chunks_below, rollups_below) = if args.steady {
        (steady_expired(14) + 1, steady_expired(90) + 1)
    } else {
        (t_start - 15 * DAY, t_start - 91 * DAY)
    };
    let (site, creds) = prepare(args)?;
    // A short unmeasured run creates the devices and their series the way the
    // writer does; the backlog then uses their series ids.
    eprintln!("setup run: creating the devices and series");
    let mut setup = args.clone();
    setup.secs = 2;
    setup.warmup_secs = 2;
    let mut site = drive(&setup, site, creds.clone(), "[store]\ncompaction = false\n")
        .await?
        .site;
    let db_path = site.db_path();
    let mut conn = tandem_collector::store::open(&db_path)?;
    let devices: Vec<(String, Vec<i64>)> = {
        let mut out = Vec::new();
        for i in 0..args.agents {
            let dev = format!("load-{i:05}");
            let mut ids = Vec::with_capacity(args.series);
            for s in 0..args.series {
                let id: Option<i64> = conn
                    .query_row(
                        "SELECT id FROM series WHERE device_id = ?1 AND name = ?2 AND dimension = ''",
                        params![dev, format!("test.metric.{s}")],
                        |r| r.get(0),
                    )
                    .ok();
                ids.extend(id);
            }
            if ids.len() == args.series {
                out.push((dev, ids));
            }
        }
        out
    };
    if devices.is_empty() {
        bail!(
            "setup run stored no series: see {}",
            site.dir.path().join("collector.log").display()
        );
    }
    eprintln!("{} devices with {} series each", devices.len(), args.series);
    // The template of an expired device-hour: one hour of device 0, 100 days old,
    // compacted by the store's own compaction into a chunk and its rollups.
    let per_hour = 3600 / args.backlog_every as i64;
    let head_row = |ids: &[i64], ts: i64, k: i64| {
        let vals: Vec<f64> = (0..ids.len() as i64)
            .map(|i| match i % 3 {
                0 => ((k * 7 + i * 13) % 1000) as f64 / 10.0,
                1 => (k * 4096 + i) as f64,
                _ => 1e9 + ((k * 31 + i) % 977) as f64 * 4096.0,
            })
            .collect();
        tandem_collector::store::chunk::encode_head(ids, &[(ts, &vals)])
    };
    let old_hour = top - 100 * DAY;
    {
        let (dev, ids) = &devices[0];
        let tx = conn.transaction()?;
        for k in 0..per_hour {
            let ts = old_hour + k * args.backlog_every as i64 * 1000;
            tx.execute(
                "INSERT INTO head (device_id, min_ts, max_ts, n_values, payload) VALUES (?1, ?2, ?2, ?3, ?4)",
                params![dev, ts, ids.len() as i64, head_row(ids, ts, k)],
            )?;
        }
        tx.commit()?;
        while tandem_collector::store::compact::compact_step(&mut conn, dev, old_hour + CHUNK_MS)?.0
            > 0
        {}
    }
    let (tmpl_chunk, tmpl_values): (Vec<u8>, i64) = conn.query_row(
        "SELECT blob, n_values FROM chunks WHERE device_id = ?1 AND start_ms = ?2",
        params![devices[0].0, old_hour],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let (tmpl_rollup, tmpl_buckets): (Vec<u8>, i64) = conn.query_row(
        "SELECT blob, n_buckets FROM rollups WHERE tier = 300000 AND device_id = ?1 AND start_ms = ?2",
        params![devices[0].0, old_hour],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    // A resident head: a real collector's head holds the open hour (and the one
    // compaction is working on), so every device has hundreds of head rows and
    // ingest inserts into a large index. Without this the first phases ran on a
    // head of a few rows per device, and their p99 was a third of every later
    // phase's (2026-12-04 21:50: 1.7-2.0 ms against 5-9 ms, pair 1 at x2.65 where
    // the others were 0.88-1.15). These rows lie in the open hour (from the
    // collector's cutoff on), so no phase compacts or counts them.
    {
        let lo = floor_hour(t_start - 300_000);
        let span = (t_start - lo).max(1);
        let tx = conn.transaction()?;
        for (d, (dev, ids)) in devices.iter().enumerate() {
            for n in 0..per_hour {
                let ts = lo + (n * span + d as i64 % 1000) / (per_hour + 1);
                tx.execute(
                    "INSERT INTO head (device_id, min_ts, max_ts, n_values, payload) VALUES (?1, ?2, ?2, ?3, ?4)",
                    params![dev, ts, ids.len() as i64, head_row(ids, ts, n)],
                )?;
            }
        }
        tx.commit()?;
        eprintln!(
            "resident head: {} rows per device in the open hour",
            per_hour
        );
    }
    drop(conn);

    // What is left to do: backlog head rows and values, expired chunks and 5-minute
    // rollups (the collector is stopped when these are read).
    let left = |site: &tandem_tests::Site| -> (i64, i64, i64, i64) {
        (
            site.count(&format!("SELECT count(*) FROM head WHERE max_ts < {top}")),
            site.count(&format!(
                "SELECT coalesce(sum(n_values), 0) FROM head WHERE max_ts < {top}"
            )),
            site.count(&format!(
                "SELECT count(*) FROM chunks WHERE start_ms < {chunks_below}"
            )),
            site.count(&format!(
                "SELECT count(*) FROM rollups WHERE tier = 300000 AND start_ms < {rollups_below}"
            )),
        )
    };
    struct Row {
        on: bool,
        p: Phase,
        before: (i64, i64, i64, i64),
        after: (i64, i64, i64, i64),
    }
    let mut rows: Vec<Row> = Vec::new();
    let mut warm: Option<Row> = None;
    let warm_phases = u32::from(args.warm_phase);
    for n in 0..2 * args.alternations + warm_phases {
        let warming = n < warm_phases;
        let i = n.saturating_sub(warm_phases);
        // Pairs in ABBA order (off on, on off, off on, ...): the database grows over
        // the run and the off phases' p99 with it (2.5 -> 6.5 ms in the 08:21 run of
        // docs/BENCHMARKS.md), so always measuring "on" second weighed that growth
        // against it.
        let on = !warming && (i % 2 == 1) == ((i / 2) % 2 == 0);
        if on {
            // This phase's own backlog: hours not used before, and expired blobs.
            let k = (i / 2) as i64;
            let t = Instant::now();
            let mut conn = tandem_collector::store::open(&db_path)?;
            for chunk in devices.chunks(50) {
                let tx = conn.transaction()?;
                for (dev, ids) in chunk {
                    for h in 0..hours as i64 {
                        // --steady: every phase's backlog in the last closed hour, at
                        // instants no earlier phase used (1 ms later each phase).
                        let (hour, shift) = if args.steady {
                            (top - CHUNK_MS, k)
                        } else {
                            (top - (1 + k * hours as i64 + h) * CHUNK_MS, 0)
                        };
                        let every = args.backlog_every as i64 * 1000;
                        let off = (ids[0] + shift) % every;
                        for n in 0..per_hour {
                            let ts = hour + n * every + off;
                            tx.execute(
                                "INSERT INTO head (device_id, min_ts, max_ts, n_values, payload) VALUES (?1, ?2, ?2, ?3, ?4)",
                                params![dev, ts, ids.len() as i64, head_row(ids, ts, n)],
                            )?;
                        }
                    }
                    for j in 0..args.expired as i64 {
                        let n = 1 + k * args.expired as i64 + j;
                        // --steady: the one hour just past the retention (where a
                        // blob an earlier phase left is, it stays).
                        let (chunk_at, rollup_at) = if args.steady {
                            (steady_expired(14), steady_expired(90))
                        } else {
                            (top - 15 * DAY - n * CHUNK_MS, top - 91 * DAY - n * CHUNK_MS)
                        };
                        tx.execute(
                            "INSERT INTO chunks (device_id, start_ms, n_values, blob) VALUES (?1, ?2, ?3, ?4)
                             ON CONFLICT DO NOTHING",
                            params![dev, chunk_at, tmpl_values, tmpl_chunk],
                        )?;
                        tx.execute(
                            "INSERT INTO rollups (tier, device_id, start_ms, n_buckets, blob) VALUES (300000, ?1, ?2, ?3, ?4)
                             ON CONFLICT DO NOTHING",
                            params![dev, rollup_at, tmpl_buckets, tmpl_rollup],
                        )?;
                    }
                }
                tx.commit()?;
            }
            conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")?;
            eprintln!(
                "backlog for phase {}: {} head rows, {} expired chunks + 5 min rollups per device ({:.1} s)",
                i + 1,
                devices.len() as i64 * hours as i64 * per_hour,
                args.expired,
                t.elapsed().as_secs_f64()
            );
        }
        // Every phase starts from a checkpointed WAL, so no phase pays for the
        // previous one's checkpoint.
        tandem_collector::store::open(&db_path)?
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")?;
        let before = left(&site);
        if warming {
            eprintln!("warm-up phase (not counted): compaction off");
        } else {
            eprintln!(
                "phase {} of {}: compaction {}",
                i + 1,
                2 * args.alternations,
                if on { "on" } else { "off" }
            );
        }
        let compact = args
            .compact_pace
            .map_or(String::new(), |v| format!("compact_values_per_sec = {v}\n"));
        let expire = args
            .expire_pace
            .map_or(String::new(), |v| format!("expire_blobs_per_sec = {v}\n"));
        let extra =
            format!("[store]\ncompaction = {on}\ncompact_interval_secs = 1\n{compact}{expire}");
        let mut p = drive(args, site, creds.clone(), &extra).await?;
        site = std::mem::replace(
            &mut p.site,
            tandem_tests::Site {
                dir: tempfile::tempdir()?,
            },
        );
        let after = left(&site);
        let row = Row {
            on,
            p,
            before,
            after,
        };
        if warming {
            warm = Some(row);
        } else {
            rows.push(row);
        }
    }
    println!(
        "loadgen --compaction-backlog {hours}: {} agents, {} values/batch, window {}, {pace}, {} off/on pairs (ABBA order){} of {} s measured after {} s warm-up (collector restarted each phase); backlog per on phase: {hours} closed h × {} devices × a batch every {} s, {} expired chunks + 5 min rollups per device; compaction pace {}, retention pace {}",
        args.agents,
        args.series,
        args.window,
        args.alternations,
        if args.warm_phase {
            " after an uncounted off phase"
        } else {
            ""
        },
        args.secs,
        args.warmup_secs,
        devices.len(),
        args.backlog_every,
        args.expired,
        args.compact_pace.map_or_else(
            || format!(
                "{} values/s (the default)",
                tandem_collector::store::compact::DEFAULT_VALUES_PER_SEC
            ),
            |v| format!("{v} values/s")
        ),
        args.expire_pace.map_or_else(
            || format!(
                "{} blobs/s (the default)",
                tandem_collector::store::compact::DEFAULT_EXPIRE_BLOBS_PER_SEC
            ),
            |v| format!("{v} blobs/s")
        )
    );
    if args.steady {
        println!(
            "  --steady: each on phase's backlog lies in the hour the collector last closed and its expired blobs in the hour just past their retention, so the collector paces them as steady work (compaction at {} x the ingest rate, expiry spread over 30 min), under the ceilings above",
            tandem_collector::store::compact::STEADY_FACTOR
        );
    }
    println!(
        "  {:<5} {:>4} {:>10} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7} {:>7} {:>9} {:>11} {:>12} {:>9} {:>9} {:>6}",
        "phase",
        "mode",
        "values/s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "CPU s",
        "MB/s wr",
        "steal%",
        "stalls",
        "commit ms",
        "head rows",
        "values",
        "chunks",
        "rollups",
        "errors"
    );
    let numbered = warm.iter().map(|r| ("warm".to_string(), r)).chain(
        rows.iter()
            .enumerate()
            .map(|(i, r)| ((i + 1).to_string(), r)),
    );
    for (i, r) in numbered {
        println!(
            "  {:<5} {:>4} {:>10.0} {:>8.1} {:>8.1} {:>8.1} {:>8.2} {:>8.1} {:>7.1} {:>7} {:>9} {:>11} {:>12} {:>9} {:>9} {:>6}",
            i,
            if r.on { "on" } else { "off" },
            r.p.values as f64 / r.p.elapsed,
            r.p.pct(0.5),
            r.p.pct(0.99),
            r.p.pct(1.0),
            r.p.cpu,
            r.p.written as f64 / 1e6 / r.p.elapsed,
            r.p.steal,
            r.p.commit_stalls.0,
            r.p.commit_stalls.1,
            r.before.0 - r.after.0,
            r.before.1 - r.after.1,
            r.before.2 - r.after.2,
            r.before.3 - r.after.3,
            r.p.errors
        );
    }
    println!(
        "  (stalls: commits whose COMMIT, the WAL fsync, took >= 100 ms with no maintenance job in their group; commit ms: the slowest COMMIT; head rows / values / chunks / rollups: backlog compacted and blobs expired during the phase, counted in the database before and after it{})",
        if warm.is_some() {
            "; the warm phase is in no figure below"
        } else {
            ""
        }
    );
    let pooled = |on: bool| {
        let mut l: Vec<u32> = rows
            .iter()
            .filter(|r| r.on == on)
            .flat_map(|r| r.p.latencies.iter().copied())
            .collect();
        l.sort_unstable();
        let at = |q: f64| {
            let i = ((l.len() as f64 * q).ceil() as usize).clamp(1, l.len().max(1)) - 1;
            l.get(i).map_or(f64::NAN, |&v| v as f64 / 1000.0)
        };
        (at(0.5), at(0.99))
    };
    // The mean over the phases of one mode of a per-phase figure.
    let mean = |on: bool, f: fn(&Row) -> f64| {
        let v: Vec<f64> = rows.iter().filter(|r| r.on == on).map(f).collect();
        v.iter().sum::<f64>() / v.len() as f64
    };
    let mean_p99 = |on: bool| mean(on, |r| r.p.pct(0.99));
    let (off50, off99) = pooled(false);
    let (on50, on99) = pooled(true);
    println!(
        "  pooled off: p50 {off50:.1} ms, p99 {off99:.1} ms; pooled on: p50 {on50:.1} ms, p99 {on99:.1} ms"
    );
    println!(
        "  p99 on / off: pooled {:.3}, mean of phases {:.3} (target <= 1.10)",
        on99 / off99,
        mean_p99(true) / mean_p99(false)
    );
    // Each ABBA pair's two phases ran next to each other in time, so they shared the
    // machine's state (CPU steal above all) more closely than phases far apart.
    // The p99 ratios on/off of the pairs that `keep` keeps, sorted.
    let ratios_of = |keep: fn(&[Row]) -> bool| -> Vec<f64> {
        let mut v: Vec<f64> = rows
            .chunks(2)
            .filter(|pair| keep(pair))
            .filter_map(|pair| {
                let on = pair.iter().find(|r| r.on)?;
                let off = pair.iter().find(|r| !r.on)?;
                Some(on.p.pct(0.99) / off.p.pct(0.99))
            })
            .collect();
        v.sort_by(f64::total_cmp);
        v
    };
    let listed = |v: &[f64]| {
        v.iter()
            .map(|r| format!("{r:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let pair_ratios = ratios_of(|_| true);
    println!(
        "  per-pair p99 ratios on/off: {}; median {:.3}",
        listed(&pair_ratios),
        median_of_sorted(&pair_ratios)
    );
    // Disk stalls (a COMMIT's fsync taking >= 100 ms with no maintenance in its
    // group) set a phase's p99 alone, and come in off phases too (runs of
    // 2026-12-04 evening): how many each mode met, and the pairs that met none.
    let stalls = |on: bool| -> u32 {
        rows.iter()
            .filter(|r| r.on == on)
            .map(|r| r.p.commit_stalls.0)
            .sum()
    };
    let calm = ratios_of(|pair| pair.iter().all(|r| r.p.commit_stalls.0 == 0));
    println!(
        "  disk stalls: {} in off phases, {} in on phases; pairs with none in either phase: {} of {}, p99 ratios {}; median {:.3}",
        stalls(false),
        stalls(true),
        calm.len(),
        pair_ratios.len(),
        listed(&calm),
        median_of_sorted(&calm)
    );
    println!(
        "  CPU steal, mean of phases: off {:.1} %, on {:.1} %",
        mean(false, |r| r.p.steal),
        mean(true, |r| r.p.steal)
    );
    // CPU steal moves the p99 more than compaction does (runs of 2026-12-03: the
    // phases' p99 follows their steal), and phases differ in it by chance, so the
    // ratios above mix the two. A least-squares fit of ln(p99) = a + b*steal + c*on
    // over the phases separates them: exp(c) is the on/off ratio at equal steal.
    let fit: Vec<(f64, f64, f64)> = rows
        .iter()
        .map(|r| (r.p.steal, f64::from(u8::from(r.on)), r.p.pct(0.99).ln()))
        .collect();
    // Steal that hardly varies leaves its term unfit (at 21:50 on 2026-12-04, steal
    // 0.0 in every phase gave "x38.9 per 1 %"): then the ratio of the phases'
    // geometric mean p99s, with the same kind of interval.
    let steals = fit.iter().map(|p| p.0);
    let spread = steals.clone().fold(f64::MIN, f64::max) - steals.fold(f64::MAX, f64::min);
    if spread < 1.0 {
        let pts: Vec<(f64, f64)> = fit.iter().map(|p| (p.1, p.2)).collect();
        match on_off_ratio(&pts) {
            Some((ratio, lo, hi)) => println!(
                "  p99 on / off, geometric means of the phases (steal varied by {spread:.1} % only, too little to fit): {ratio:.3}, 95 % interval {lo:.3}-{hi:.3}"
            ),
            None => println!("  p99 on / off, geometric means of the phases: too few phases"),
        }
    } else {
        match steal_adjusted(&fit) {
            Some((ratio, lo, hi, per_pct)) => println!(
                "  p99 on / off at equal CPU steal (fit of ln p99 over {} phases): {ratio:.3}, 95 % interval {lo:.3}-{hi:.3}; each 1 % of steal: x{per_pct:.3}",
                fit.len()
            ),
            None => println!("  p99 on / off at equal CPU steal: too few phases to fit"),
        }
    }
    let left_now = left(&site);
    println!(
        "  left at the end: {} backlog head rows, {} expired chunks, {} expired 5 min rollups",
        left_now.0, left_now.2, left_now.3
    );
    if args.keep {
        println!("data kept in {}", site.dir.keep().display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{commit_stalls, median_of_sorted, on_off_ratio, steal_adjusted};

    #[test]
    fn without_steal_the_ratio_of_geometric_means_recovers_a_known_effect() {
        let pts: Vec<(f64, f64)> = [
            (0.0, 5.0),
            (0.0, 6.0),
            (1.0, 5.5),
            (1.0, 6.6),
            (0.0, 7.0),
            (1.0, 7.7),
        ]
        .iter()
        .map(|&(d, p99): &(f64, f64)| (d, p99.ln()))
        .collect();
        let (ratio, lo, hi) = on_off_ratio(&pts).unwrap();
        assert!((ratio - 1.1).abs() < 1e-9, "{ratio}");
        assert!(lo < 1.1 && hi > 1.1 && lo > 0.5 && hi < 2.5, "{lo}-{hi}");
        assert!(on_off_ratio(&pts[..3]).is_none(), "one on phase only");
    }

    #[test]
    fn the_steal_adjusted_ratio_recovers_a_known_effect() {
        // ln p99 = 1 + 0.05 steal + ln(1.5) on, exactly, at uncorrelated steal values.
        let pts: Vec<(f64, f64, f64)> = [
            (2.0, 0.0),
            (20.0, 1.0),
            (9.0, 0.0),
            (4.0, 1.0),
            (30.0, 0.0),
            (11.0, 1.0),
        ]
        .iter()
        .map(|&(s, d)| (s, d, 1.0 + 0.05 * s + 1.5f64.ln() * d))
        .collect();
        let (ratio, lo, hi, per) = steal_adjusted(&pts).unwrap();
        assert!((ratio - 1.5).abs() < 1e-9, "{ratio}");
        assert!(
            (lo - 1.5).abs() < 1e-6 && (hi - 1.5).abs() < 1e-6,
            "{lo}-{hi}"
        );
        assert!((per - 0.05f64.exp()).abs() < 1e-9, "{per}");
        // Fewer points than the fit needs, or steal that cannot be told from the marker.
        assert!(steal_adjusted(&pts[..4]).is_none());
        let same: Vec<_> = pts.iter().map(|&(_, d, y)| (d, d, y)).collect();
        assert!(steal_adjusted(&same).is_none());
    }

    /// Only the window's lines count; a slow commit with maintenance in its group is
    /// no disk stall, nor one under 100 ms; colour codes are stripped first.
    #[test]
    fn disk_stalls_are_counted_in_the_window_of_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("collector.log");
        let before = "x DEBUG w: slow store group commit took_ms=900 maintenance_ms=0 commit_ms=900 requests=1\n";
        let inside = [
            "x DEBUG w: slow store group commit took_ms=506 maintenance_ms=0 commit_ms=506 requests=1",
            "x DEBUG w: slow store group commit \x1b[3mtook_ms\x1b[0m\x1b[2m=\x1b[0m150 \x1b[3mmaintenance_ms\x1b[0m\x1b[2m=\x1b[0m0 \x1b[3mcommit_ms\x1b[0m\x1b[2m=\x1b[0m149 requests=2",
            "x DEBUG w: slow store group commit took_ms=300 maintenance_ms=120 commit_ms=180 requests=3",
            "x DEBUG w: slow store group commit took_ms=99 maintenance_ms=0 commit_ms=99 requests=1",
            "x DEBUG w: checkpoint thread: passive checkpoint wal=1000 copied=1000 took_ms=700",
        ]
        .join("\n");
        let after = "\nx DEBUG w: slow store group commit took_ms=800 maintenance_ms=0 commit_ms=800 requests=1\n";
        std::fs::write(&log, format!("{before}{inside}{after}")).unwrap();
        let from = before.len() as u64;
        let to = from + inside.len() as u64;
        assert_eq!(commit_stalls(&log, from, to), (2, 506));
        assert_eq!(commit_stalls(&dir.path().join("none"), 0, 10), (0, 0));
        assert_eq!(median_of_sorted(&[1.0, 2.0, 4.0]), 2.0);
        assert_eq!(median_of_sorted(&[1.0, 2.0, 4.0, 8.0]), 3.0);
        assert!(median_of_sorted(&[]).is_nan());
    }
}
