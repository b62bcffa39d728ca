//! Alert engine benchmark: the real store writer and the real alert engine thread
//! in-process (no network, so ingest runs at its storage ceiling, the worst case for
//! the engine), N devices, R threshold rules, batches of S series at the full rate
//! the writer commits.
//!
//! ```text
//! cargo build --release -p tandem-tests --bin alertbench
//! target/release/alertbench --devices 1000 --rules 20 --series 100 --secs 20
//! ```
//!
//! Runs twice in one process — without the engine, then with it — and prints values/s
//! of each, evaluation cost per value, the engine thread's CPU against the writer
//! thread's, and the p50/p99/max latency from a sample's commit to the commit of the
//! transitions it caused. A benchmark, not a test: it measures, it asserts nothing.

use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use tandem_collector::alerts::rules::parse_file;
use tandem_collector::alerts::service::AlertService;
use tandem_collector::store::writer::{DeviceFacts, DeviceIdentity, Writer, WriterConfig};
use tandem_proto::v1::{MetricBatch, Sample, SeriesKey};

#[derive(Parser, Debug)]
#[command(about = "Measure the alert engine on the real store writer")]
struct Args {
    #[arg(long, default_value_t = 1000)]
    devices: usize,
    /// Threshold rules, one per series test.metric.0 .. test.metric.{rules-1}.
    #[arg(long, default_value_t = 20)]
    rules: usize,
    /// Series per batch.
    #[arg(long, default_value_t = 100)]
    series: usize,
    /// Each instance crosses its threshold every this many batches of its device
    /// (lower = more transitions).
    #[arg(long, default_value_t = 30)]
    flip_every: u64,
    /// Seconds measured per run.
    #[arg(long, default_value_t = 20)]
    secs: u64,
    /// Batches each device may have queued at the writer.
    #[arg(long, default_value_t = 2)]
    window: usize,
    /// Batches per second over all devices; 0 = as fast as the writer commits (the
    /// full ingest rate). A real fleet of 1000 agents sampling every 10 s sends 100.
    #[arg(long, default_value_t = 0.0)]
    batches_per_sec: f64,
    /// The store writer's group size (`[store] max_group`): under full load the
    /// engine's saves wait for the writer's current transaction, so this bounds the
    /// commit-to-transition latency.
    #[arg(long, default_value_t = 1024)]
    max_group: usize,
}

struct Run {
    values_per_sec: f64,
    values: u64,
    writer_cpu: f64,
    engine_cpu: f64,
    evaluations: u64,
    eval_secs: f64,
    records: u64,
    latencies_us: tandem_collector::alerts::latency::Histogram,
    elapsed: f64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    eprintln!("run 1/2: store writer alone…");
    let base = rt.block_on(run(&args, false))?;
    eprintln!("run 2/2: store writer + alert engine…");
    let with = rt.block_on(run(&args, true))?;
    let lat = &with.latencies_us;
    let pct = |p: f64| -> f64 { lat.quantile(p).map_or(f64::NAN, |us| us as f64 / 1000.0) };
    println!(
        "alertbench: {} devices, {} rules, {} series/batch, flip every {} batches, {} s per run, writer groups ≤ {}, {}",
        args.devices,
        args.rules,
        args.series,
        args.flip_every,
        args.secs,
        args.max_group,
        if args.batches_per_sec > 0.0 {
            format!("paced at {} batches/s", args.batches_per_sec)
        } else {
            "unpaced (full ingest rate)".into()
        }
    );
    println!(
        "  writer alone           {:>12.0} values/s ({:.1} s writer CPU over {:.1} s)",
        base.values_per_sec, base.writer_cpu, base.elapsed
    );
    println!(
        "  writer + engine        {:>12.0} values/s ({:.2} of alone)",
        with.values_per_sec,
        with.values_per_sec / base.values_per_sec
    );
    println!(
        "  rule evaluations       {:>12} ({} values stored, {} history records)",
        with.evaluations, with.values, with.records
    );
    println!(
        "  evaluation cost        {:>12.0} ns per stored value, {:.0} ns per rule evaluation",
        with.eval_secs * 1e9 / with.values.max(1) as f64,
        with.eval_secs * 1e9 / with.evaluations.max(1) as f64
    );
    println!(
        "  engine CPU / writer CPU{:>12.2} ({:.2} s / {:.2} s; the engine thread includes saving transitions)",
        with.engine_cpu / with.writer_cpu,
        with.engine_cpu,
        with.writer_cpu
    );
    println!(
        "  commit→transition      p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} rounds with transitions)",
        pct(0.5),
        pct(0.99),
        pct(1.0),
        lat.count()
    );
    Ok(())
}

fn rules_toml(n: usize) -> String {
    let mut s = String::new();
    for i in 0..n {
        s.push_str(&format!(
            "[[rule]]\nname = \"r{i}\"\nkind = \"threshold\"\nmetric = \"test.metric.{i}\"\ncustom_metric = true\n\
             warning = {{ above = 80 }}\ncritical = {{ above = 95 }}\nrecover = {{ below = 50 }}\n\
             min_samples = 2\n\n"
        ));
    }
    s
}

/// User + system CPU seconds of this process's thread named `name`.
fn thread_cpu(name: &str) -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return f64::NAN;
    };
    for t in tasks.flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if comm.trim() != name {
            continue;
        }
        let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let f: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        let ticks: u64 = f.get(11).and_then(|x| x.parse().ok()).unwrap_or(0)
            + f.get(12).and_then(|x| x.parse().ok()).unwrap_or(0);
        return ticks as f64 / 100.0;
    }
    f64::NAN
}

fn batch(args: &Args, device: usize, seq: u64) -> MetricBatch {
    // Devices flip at staggered phases, so transitions are spread over time.
    let high = ((seq + device as u64 * 7) / args.flip_every).is_multiple_of(2);
    MetricBatch {
        seq,
        series: (0..args.series)
            .map(|i| SeriesKey {
                name: format!("test.metric.{i}"),
                dimension: String::new(),
            })
            .collect(),
        samples: vec![Sample {
            // Stamped now, as a live agent does: the engine's timer compares sample
            // times with the clock (older samples would go stale between ticks).
            time_unix_ms: jiff::Timestamp::now().as_millisecond(),
            values: (0..args.series)
                .map(|i| if high { 90.0 + (i % 10) as f64 } else { 20.0 })
                .collect(),
        }],
    }
}

async fn run(args: &Args, engine: bool) -> anyhow::Result<Run> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("tandem.db");
    let conn = tandem_collector::store::open(&db)?;
    let (sink, service) = if engine {
        let set = parse_file(std::path::Path::new("bench.toml"), &rules_toml(args.rules))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let (sink, svc) = AlertService::spawn(
            tandem_collector::store::Db::open(&db)?,
            set,
            Duration::from_secs(5),
            None,
        )?;
        (Some(sink), Some(svc))
    } else {
        (None, None)
    };
    let (writer, thread) = Writer::spawn_with_sink(
        conn,
        WriterConfig {
            max_group: args.max_group,
            ..WriterConfig::default()
        },
        sink,
    )?;
    for d in 0..args.devices {
        writer
            .hello(
                DeviceIdentity {
                    tenant: format!("t{}", d % 10),
                    device_id: format!("dev-{d:05}"),
                },
                DeviceFacts {
                    os_family: "linux".into(),
                    ..DeviceFacts::default()
                },
            )
            .await?;
    }
    let mut seq = 0u64;
    let start = Instant::now();
    let cpu_w0 = thread_cpu("store-writer");
    let cpu_e0 = thread_cpu("alert-engine");
    let deadline = start + Duration::from_secs(args.secs);
    let mut values = 0u64;
    while Instant::now() < deadline {
        let mut pending = Vec::with_capacity(args.devices * args.window);
        for _ in 0..args.window {
            seq += 1;
            for d in 0..args.devices {
                pending.push(
                    writer
                        .submit_batch(format!("dev-{d:05}"), batch(args, d, seq))
                        .await?,
                );
            }
        }
        for p in pending {
            p.await.context("writer gone")??;
            values += args.series as u64;
        }
        if args.batches_per_sec > 0.0 {
            let due = start
                + Duration::from_secs_f64(
                    values as f64 / args.series as f64 / args.batches_per_sec,
                );
            tokio::time::sleep_until(due.into()).await;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    // Let the engine catch up with everything committed, then read both threads.
    if let Some(svc) = &service {
        let until = Instant::now() + Duration::from_secs(120);
        while svc.stats.groups.load(std::sync::atomic::Ordering::Relaxed)
            < writer
                .stats
                .commits
                .load(std::sync::atomic::Ordering::Relaxed)
            && Instant::now() < until
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let writer_cpu = thread_cpu("store-writer") - cpu_w0;
    let engine_cpu = thread_cpu("alert-engine") - cpu_e0;
    drop(writer);
    tokio::task::spawn_blocking(move || thread.join()).await?;
    let (mut evaluations, mut eval_secs, mut records, mut latencies_us) =
        (0, 0.0, 0, Default::default());
    if let Some(svc) = service {
        let stats = svc.stats.clone();
        tokio::task::spawn_blocking(move || svc.join()).await?;
        use std::sync::atomic::Ordering::Relaxed;
        evaluations = stats.evaluations.load(Relaxed);
        eval_secs = stats.eval_nanos.load(Relaxed) as f64 / 1e9;
        records = stats.records.load(Relaxed);
        latencies_us = stats
            .latencies_us
            .lock()
            .map(|l| l.clone())
            .unwrap_or_default();
    }
    Ok(Run {
        values_per_sec: values as f64 / elapsed,
        values,
        writer_cpu,
        engine_cpu,
        evaluations,
        eval_secs,
        records,
        latencies_us,
        elapsed,
    })
}
