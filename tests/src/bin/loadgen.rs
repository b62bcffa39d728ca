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

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use rusqlite::params;
use tandem_collector::pki::{self, Validity};
use tandem_tests::{Creds, Stream, batch, client, cpu_secs, now_ms, rss_bytes};

#[derive(Parser, Debug)]
#[command(about = "Drive N simulated agents against a real collector and measure")]
struct Args {
    /// Concurrent agent streams (one TLS connection each).
    #[arg(long, default_value_t = 1000)]
    agents: usize,
    /// Series per batch (values per sample).
    #[arg(long, default_value_t = 100)]
    series: usize,
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
}

#[derive(Default)]
struct Totals {
    values: AtomicU64,
    batches: AtomicU64,
    errors: AtomicU64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let data_dir = dir.path().join("collector");
    pki::init(&data_dir, &[])?;
    let ca = pki::load_ca(&data_dir)?;
    let ca_pem = ca.cert_pem.clone();
    eprintln!("issuing {} agent certificates…", args.agents);
    let creds: Vec<Creds> = (0..args.agents)
        .map(|i| {
            let issued = ca
                .issue_agent(
                    "load",
                    &format!("load-{i:05}"),
                    Validity::starting_now(Duration::from_secs(86_400)),
                )
                .expect("issue");
            Creds {
                ca_pem: ca_pem.clone(),
                cert_pem: Some(issued.cert_pem),
                key_pem: Some(issued.key_pem),
            }
        })
        .collect();
    let site = tandem_tests::Site { dir };
    let collector = site.start_collector("").await?;
    let pid = collector.pid();
    eprintln!(
        "collector pid {pid} on {}; connecting {} agents…",
        collector.addr, args.agents
    );

    let totals = Arc::new(Totals::default());
    let stop = Arc::new(AtomicBool::new(false));
    let measuring = Arc::new(AtomicBool::new(false));
    let base = now_ms();
    let mut tasks = Vec::with_capacity(args.agents);
    for c in creds {
        let (totals, stop, measuring) = (totals.clone(), stop.clone(), measuring.clone());
        let addr = collector.addr;
        let shape = Shape {
            series: args.series,
            window: args.window,
            rate: args.rate,
        };
        tasks.push(tokio::spawn(async move {
            agent(addr, c, shape, base, totals, stop, measuring).await
        }));
        // Do not stampede the handshake path: ~1000 connections per second.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    tokio::time::sleep(Duration::from_secs(args.warmup_secs)).await;

    measuring.store(true, Ordering::SeqCst);
    let v0 = totals.values.load(Ordering::SeqCst);
    let b0 = totals.batches.load(Ordering::SeqCst);
    let cpu0 = cpu_secs(pid).unwrap_or(0.0);
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.secs)).await;
    let elapsed = t0.elapsed().as_secs_f64();
    let v1 = totals.values.load(Ordering::SeqCst);
    let b1 = totals.batches.load(Ordering::SeqCst);
    let cpu1 = cpu_secs(pid).unwrap_or(0.0);
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
    let stored: i64 = site.count("SELECT count(*) FROM samples");
    let clean = collector.terminate().await;
    latencies.sort_unstable();
    let pct = |p: f64| -> f64 {
        if latencies.is_empty() {
            return f64::NAN;
        }
        let i = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[i] as f64 / 1000.0
    };
    let values_per_sec = (v1 - v0) as f64 / elapsed;

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

    let pace = if args.rate > 0.0 {
        format!("{} batches/s per agent", args.rate)
    } else {
        "unpaced (as fast as acks allow)".into()
    };
    println!(
        "loadgen: {} agents ({} connected), {} values/batch, window {}, {pace}, {:.1} s measured after {} s warm-up",
        args.agents, connected, args.series, args.window, elapsed, args.warmup_secs
    );
    println!("  durable values/s        {values_per_sec:>12.0}");
    println!(
        "  durable batches/s       {:>12.0}",
        (b1 - b0) as f64 / elapsed
    );
    println!(
        "  ack latency p50/p99/max {:>8.1} / {:.1} / {:.1} ms",
        pct(0.50),
        pct(0.99),
        pct(1.0)
    );
    println!(
        "  collector RSS end/peak  {:>8.1} / {:.1} MiB",
        rss as f64 / 1048576.0,
        hwm as f64 / 1048576.0
    );
    println!(
        "  collector CPU           {:>12.2} s over {:.1} s ({:.0} % of one core)",
        cpu1 - cpu0,
        elapsed,
        100.0 * (cpu1 - cpu0) / elapsed
    );
    println!(
        "  stream errors           {:>12}",
        totals.errors.load(Ordering::SeqCst)
    );
    println!("  values in database      {stored:>12}");
    println!("  collector clean stop    {clean:>12}");
    println!(
        "raw SQLite ceiling (same schema and pragmas, {} values/txn, no network): {ceiling:.0} values/s",
        1000 * args.series
    );
    println!(
        "ratio collector / raw ceiling: {:.2}",
        values_per_sec / ceiling
    );
    if args.keep {
        let kept = site.dir.keep();
        println!("data kept in {}", kept.display());
    }
    Ok(())
}

#[derive(Clone, Copy)]
struct Shape {
    series: usize,
    window: usize,
    rate: f64,
}

/// One simulated agent. Returns ack latencies (µs) seen while measuring, and whether
/// it connected.
async fn agent(
    addr: std::net::SocketAddr,
    creds: Creds,
    Shape {
        series,
        window,
        rate,
    }: Shape,
    base: i64,
    totals: Arc<Totals>,
    stop: Arc<AtomicBool>,
    measuring: Arc<AtomicBool>,
) -> (Vec<u32>, bool) {
    let mut lat = Vec::new();
    let Ok(mut c) = client(addr, &creds).await else {
        totals.errors.fetch_add(1, Ordering::Relaxed);
        return (lat, false);
    };
    let Ok((mut s, _)) = Stream::hello(&mut c).await else {
        totals.errors.fetch_add(1, Ordering::Relaxed);
        return (lat, false);
    };
    let mut sent: std::collections::VecDeque<(u64, Instant)> = Default::default();
    let mut seq = 0u64;
    // Paced agents start at a random phase so they do not all send at once.
    let period = (rate > 0.0).then(|| Duration::from_secs_f64(1.0 / rate));
    let mut next_send =
        Instant::now() + period.map_or(Duration::ZERO, |p| p.mul_f64(rand_fraction(base, &creds)));
    while !stop.load(Ordering::Relaxed) {
        if let Some(p) = period {
            if sent.is_empty() {
                tokio::time::sleep_until(next_send.into()).await;
            }
            if Instant::now() >= next_send && sent.len() < window {
                seq += 1;
                if s.send(batch(seq, base + seq as i64, series)).await.is_err() {
                    totals.errors.fetch_add(1, Ordering::Relaxed);
                    return (lat, true);
                }
                sent.push_back((seq, Instant::now()));
                next_send += p;
            }
        }
        while period.is_none() && sent.len() < window {
            seq += 1;
            // One instant per batch, 1 ms apart: timestamps stay distinct and recent.
            if s.send(batch(seq, base + seq as i64, series)).await.is_err() {
                totals.errors.fetch_add(1, Ordering::Relaxed);
                return (lat, true);
            }
            sent.push_back((seq, Instant::now()));
        }
        match s.next_ack().await {
            Ok(Some(acked)) => {
                while let Some(&(q, at)) = sent.front() {
                    if q > acked {
                        break;
                    }
                    sent.pop_front();
                    totals.values.fetch_add(series as u64, Ordering::Relaxed);
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
/// statements the writer runs per batch (ledger row, device bump, one row per
/// value). No network, no TLS, no protobuf: the ceiling the collector can approach.
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
                "INSERT OR IGNORE INTO samples (series_id, ts_ms, value) VALUES (?1, ?2, ?3)",
            )?;
            for b in done..(done + per_txn).min(batches) {
                let d = b % devices;
                let seq = (b / devices + 1) as i64;
                let id = format!("load-{d:05}");
                ledger.execute(params![id, seq, now, series as i64])?;
                bump.execute(params![id, seq, now])?;
                for s in 0..series {
                    let series_id = (d * series + s + 1) as i64;
                    ins.execute(params![
                        series_id,
                        now + seq,
                        (seq * 1000 + s as i64) as f64
                    ])?;
                }
            }
        }
        tx.commit()?;
        done += per_txn;
    }
    Ok((batches * series) as f64 / start.elapsed().as_secs_f64())
}
