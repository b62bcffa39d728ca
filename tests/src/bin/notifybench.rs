//! Notification benchmark (issue #12): many incidents opening within a minute across
//! many tenants, against a real SMTP server (Debian's python3-aiosmtpd), while
//! simulated agents keep ingesting; and the same ingest with the dispatcher idle.
//!
//! The idle phase is the busy phase without the dispatcher: by default
//! (`--baseline incidents`) as many incidents open over the same spread, from as
//! many device streams, but in tenants whose policy targets only the feed, so the
//! engine does the same work and the outbox stays empty. The ratio then measures
//! what the dispatcher (and the SMTP server it talks to, on the same 2 cores) costs
//! ingest. `--baseline silent` is the older comparison: devices connected but
//! sending nothing, so the ratio also counts the engine's transitions and the
//! incident devices' streams.
//!
//! ```text
//! cargo build --release --workspace --bins
//! target/release/notifybench --incidents 1000 --tenants 100 --spread-secs 60 \
//!     --ingest-values-per-sec 50000
//! ```
//!
//! Prints: time from the transition to the SMTP server's accept (p50/p99/max, from
//! the collector's own records: the incident's opening time — the sample's time,
//! so network and commit are included — to the outbox row's `sent_ms`, written
//! after the server's 250), mails sent (with grouping) and mail files received,
//! the collector's CPU seconds in each phase, and the ingest ack latency
//! (send → ack, per batch) with the dispatcher idle and busy, with their ratio.
//! This is a benchmark, not a test: it asserts nothing, it measures.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use tandem_collector::pki;
use tandem_tests::{Stream, batch, client, cpu_secs, free_port, now_ms, values_batch};

#[derive(Parser, Debug)]
#[command(about = "Measure notification latency and its cost to ingest")]
struct Args {
    #[arg(long, default_value_t = 1000)]
    incidents: usize,
    #[arg(long, default_value_t = 100)]
    tenants: usize,
    /// Incidents open at random times within this many seconds.
    #[arg(long, default_value_t = 60)]
    spread_secs: u64,
    /// `[notify] group_wait_secs`.
    #[arg(long, default_value_t = 1)]
    group_wait_secs: u64,
    /// Background ingest (values/s over all ingest agents); 0 for none.
    #[arg(long, default_value_t = 50_000)]
    ingest_values_per_sec: u64,
    #[arg(long, default_value_t = 50)]
    ingest_agents: usize,
    /// Values per ingest batch.
    #[arg(long, default_value_t = 100)]
    series: usize,
    /// Seconds of ingest measured with the dispatcher idle (`--baseline silent` only;
    /// the `incidents` baseline lasts as long as its incidents take to open).
    #[arg(long, default_value_t = 30)]
    idle_secs: u64,
    /// What the idle phase runs: `incidents` (the same incidents in feed-only tenants)
    /// or `silent` (no incidents at all).
    #[arg(long, value_enum, default_value_t = Baseline::Incidents)]
    baseline: Baseline,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Baseline {
    Incidents,
    Silent,
}

const PYTHON: &str = "/usr/bin/python3";

fn quantile(v: &mut [u64], q: f64) -> u64 {
    if v.is_empty() {
        return 0;
    }
    v.sort_unstable();
    v[((v.len() - 1) as f64 * q).round() as usize]
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
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let dir = tempfile::tempdir()?;
    let root = dir.path().to_owned();
    let data_dir = root.join("collector");
    pki::init(&data_dir, &[])?;
    // The SMTP server.
    let smtp_port = free_port();
    let maildir = root.join("maildir");
    let mut smtp = tokio::process::Command::new(PYTHON)
        .args([
            "-m",
            "aiosmtpd",
            "-n",
            "-l",
            &format!("127.0.0.1:{smtp_port}"),
            "-c",
            "aiosmtpd.handlers.Mailbox",
        ])
        .arg(&maildir)
        .kill_on_drop(true)
        .spawn()
        .context("start python3 -m aiosmtpd (apt-get install python3-aiosmtpd)")?;
    let t0 = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", smtp_port))
        .await
        .is_err()
    {
        anyhow::ensure!(
            t0.elapsed() < Duration::from_secs(10),
            "aiosmtpd did not listen"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Rules, policies, config.
    std::fs::create_dir_all(root.join("rules"))?;
    std::fs::write(
        root.join("rules/bench.toml"),
        "[[rule]]\nname = \"bench-high\"\nkind = \"threshold\"\nmetric = \"bench.v\"\ncustom_metric = true\ncritical = { above = 50 }\n",
    )?;
    std::fs::create_dir_all(root.join("policies"))?;
    let mut pol = String::from(
        "[[policy]]\nname = \"bench\"\ndefault = true\n  [[policy.step]]\n  after_secs = 0\n  targets = [\"contacts\"]\n",
    );
    pol.push_str(
        "[[policy]]\nname = \"feed-only\"\n  [[policy.step]]\n  after_secs = 0\n  targets = [\"feed\"]\n",
    );
    for t in 0..args.tenants {
        pol.push_str(&format!(
            "[[tenant]]\nname = \"t{t:03}\"\ncontacts = [\"it@t{t:03}.example\"]\n\
             [[tenant]]\nname = \"q{t:03}\"\ncontacts = [\"it@q{t:03}.example\"]\npolicy = \"feed-only\"\n"
        ));
    }
    std::fs::write(root.join("policies/bench.toml"), pol)?;
    let site = tandem_tests::Site { dir };
    let collector = site
        .start_collector(&format!(
            "[alerts]\nrules_dir = \"rules\"\ntick_secs = 1\n[notify]\npolicies_dir = \"policies\"\n\
             smtp_host = \"127.0.0.1\"\nsmtp_port = {smtp_port}\nsmtp_tls = \"none\"\n\
             group_wait_secs = {}\nretry_base_secs = 1\nretry_max_secs = 5\n",
            args.group_wait_secs
        ))
        .await?;
    let pid = collector.pid();
    eprintln!("collector pid {pid}, smtp 127.0.0.1:{smtp_port}");

    // Background ingest: closed loop per agent, paced to the rate.
    let phase = Arc::new(AtomicU8::new(0)); // 0 warm-up, 1 idle, 2 busy, 3 done
    let lat: Arc<Mutex<[Vec<u64>; 3]>> = Arc::new(Mutex::new([Vec::new(), Vec::new(), Vec::new()]));
    let stop = Arc::new(AtomicBool::new(false));
    let mut ingest = Vec::new();
    if args.ingest_values_per_sec > 0 {
        let per_agent =
            args.ingest_values_per_sec as f64 / args.ingest_agents as f64 / args.series as f64;
        let period = Duration::from_secs_f64(1.0 / per_agent.max(0.001));
        for a in 0..args.ingest_agents {
            let creds = site.issue("load", &format!("load-{a:03}"));
            let (addr, series, phase, lat, stop) = (
                collector.addr,
                args.series,
                phase.clone(),
                lat.clone(),
                stop.clone(),
            );
            ingest.push(tokio::spawn(async move {
                let mut c = client(addr, &creds).await?;
                let (mut s, _) = Stream::hello(&mut c).await?;
                let mut seq = 0;
                let mut next = tokio::time::Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    seq += 1;
                    let sent = Instant::now();
                    s.send(batch(seq, now_ms(), series)).await?;
                    s.next_ack().await?;
                    let us = sent.elapsed().as_micros() as u64;
                    let p = phase.load(Ordering::Relaxed);
                    if (1..=2).contains(&p) {
                        lat.lock().expect("latencies")[p as usize].push(us);
                    }
                    next += period;
                    tokio::time::sleep_until(next).await;
                }
                anyhow::Ok(())
            }));
        }
        eprintln!(
            "ingest: {} agents × {} values at {:.2} batches/s each; warm-up 5 s",
            args.ingest_agents, args.series, per_agent
        );
        tokio::time::sleep(Duration::from_secs(5)).await;
    }

    // The incident devices connect now (their hello is not part of either phase).
    let mut devices = Vec::new();
    let mut quiet = Vec::new();
    for t in 0..args.tenants {
        for (prefix, into) in [("t", &mut devices), ("q", &mut quiet)] {
            let creds = site.issue(&format!("{prefix}{t:03}"), &format!("dev-{prefix}{t:03}"));
            let mut c = client(collector.addr, &creds).await?;
            let (s, _) = Stream::hello(&mut c).await?;
            into.push((c, s));
        }
    }
    phase.store(1, Ordering::Relaxed);
    let cpu0 = cpu_secs(pid).unwrap_or(0.0);
    let idle_start = now_ms();
    match args.baseline {
        Baseline::Silent => {
            eprintln!("idle phase: {} s, no incidents", args.idle_secs);
            drop(quiet);
            tokio::time::sleep(Duration::from_secs(args.idle_secs)).await;
        }
        Baseline::Incidents => {
            eprintln!(
                "idle phase: {} incidents in feed-only tenants over {} s",
                args.incidents, args.spread_secs
            );
            open_incidents(quiet, &args).await?;
            let opened = site.count("SELECT count(*) FROM incidents");
            let queued = site.count("SELECT count(*) FROM notify_outbox");
            eprintln!("idle phase: {opened} incidents opened, {queued} deliveries queued");
        }
    }
    let idle_secs = (now_ms() - idle_start) as f64 / 1000.0;
    let idle_incidents = site.count("SELECT count(*) FROM incidents");
    let cpu1 = cpu_secs(pid).unwrap_or(0.0);

    // Busy: the same, in tenants whose policy mails their contacts.
    phase.store(2, Ordering::Relaxed);
    let start = now_ms();
    open_incidents(devices, &args).await?;
    // Until every first-step delivery is made (or 120 s more).
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let pending = site.count("SELECT count(*) FROM notify_outbox WHERE status = 'pending'");
        let opened = site.count("SELECT count(*) FROM incidents") - idle_incidents;
        if (pending == 0 && opened >= args.incidents as i64) || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let busy_secs = (now_ms() - start) as f64 / 1000.0;
    let cpu2 = cpu_secs(pid).unwrap_or(0.0);
    phase.store(3, Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    for i in ingest {
        let _ = i.await;
    }

    // Figures from the collector's database.
    let db = site.db();
    let mut s = db.prepare(
        "SELECT o.sent_ms - i.opened_ms FROM notify_outbox o JOIN incidents i ON i.id = o.incident_id
         WHERE o.transition LIKE 'step0.%' AND o.status = 'sent'",
    )?;
    let mut ms: Vec<u64> = s
        .query_map([], |r| r.get::<_, i64>(0))?
        .flatten()
        .map(|v| v.max(0) as u64)
        .collect();
    // Where the time goes: opening → outbox row (engine commit + the dispatcher
    // finding it), outbox row → accept (group wait + sending).
    let part = |sql: &str| -> anyhow::Result<Vec<u64>> {
        let mut s = db.prepare(sql)?;
        let v: Vec<u64> = s
            .query_map([], |r| r.get::<_, i64>(0))?
            .flatten()
            .map(|v| v.max(0) as u64)
            .collect();
        Ok(v)
    };
    let mut found = part(
        "SELECT o.created_ms - i.opened_ms FROM notify_outbox o JOIN incidents i ON i.id = o.incident_id
         WHERE o.transition LIKE 'step0.%' AND o.status = 'sent'",
    )?;
    let mut sending = part(
        "SELECT sent_ms - created_ms FROM notify_outbox WHERE transition LIKE 'step0.%' AND status = 'sent'",
    )?;
    let incidents = site.count("SELECT count(*) FROM incidents");
    let deliveries = site.count("SELECT count(*) FROM notify_outbox WHERE status = 'sent'");
    let mails =
        site.count("SELECT count(DISTINCT message_id) FROM notify_outbox WHERE status = 'sent'");
    let not_sent = site.count("SELECT count(*) FROM notify_outbox WHERE status != 'sent'");
    let received = ["new", "cur"]
        .iter()
        .map(|d| {
            std::fs::read_dir(maildir.join(d))
                .map(|r| r.count())
                .unwrap_or(0)
        })
        .sum::<usize>();
    let (mut idle, mut busy) = {
        let l = lat.lock().expect("latencies");
        (l[1].clone(), l[2].clone())
    };
    println!(
        "notifybench: {incidents} incidents across {} tenants opening within {} s, group_wait {} s, real SMTP (aiosmtpd); load before: {}",
        args.tenants,
        args.spread_secs,
        args.group_wait_secs,
        load.trim()
    );
    println!(
        "transition → SMTP accept (first step): p50 {} ms, p99 {} ms, max {} ms over {} deliveries",
        quantile(&mut ms, 0.5),
        quantile(&mut ms, 0.99),
        quantile(&mut ms, 1.0),
        ms.len()
    );
    println!(
        "  of which opening → outbox row p50 {} / p99 {} ms; outbox row → accept (group wait {} s + sending) p50 {} / p99 {} ms",
        quantile(&mut found, 0.5),
        quantile(&mut found, 0.99),
        args.group_wait_secs,
        quantile(&mut sending, 0.5),
        quantile(&mut sending, 0.99)
    );
    println!(
        "deliveries sent {deliveries} in {mails} mails (grouping); {received} mail files received; {not_sent} not sent"
    );
    println!(
        "collector CPU: idle phase {:.1} s over {idle_secs:.0} s, busy phase {:.1} s over {busy_secs:.0} s",
        cpu1 - cpu0,
        cpu2 - cpu1
    );
    if args.ingest_values_per_sec > 0 {
        let (i99, b99) = (quantile(&mut idle, 0.99), quantile(&mut busy, 0.99));
        println!(
            "baseline (idle phase): {}",
            match args.baseline {
                Baseline::Incidents => "the same incidents in feed-only tenants (dispatcher idle)",
                Baseline::Silent => "no incidents (devices connected, silent)",
            }
        );
        println!(
            "ingest {} values/s target ({} agents): ack p50/p99 idle {:.1}/{:.1} ms ({} batches, {:.0} values/s), busy {:.1}/{:.1} ms ({} batches, {:.0} values/s); p99 busy/idle {:.2}",
            args.ingest_values_per_sec,
            args.ingest_agents,
            quantile(&mut idle, 0.5) as f64 / 1000.0,
            i99 as f64 / 1000.0,
            idle.len(),
            (idle.len() * args.series) as f64 / idle_secs,
            quantile(&mut busy, 0.5) as f64 / 1000.0,
            b99 as f64 / 1000.0,
            busy.len(),
            (busy.len() * args.series) as f64 / busy_secs,
            b99 as f64 / i99.max(1) as f64
        );
    }
    println!(
        "load after: {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    let _ = collector.terminate().await;
    let _ = smtp.start_kill();
    Ok(())
}

type Device = (
    tandem_proto::v1::telemetry_client::TelemetryClient<tonic::transport::Channel>,
    Stream,
);

/// Each device sends every second; its tenant's share of `--incidents` dimensions
/// cross the rule's threshold at random times within `--spread-secs`.
async fn open_incidents(devices: Vec<Device>, args: &Args) -> anyhow::Result<()> {
    let per_tenant = args.incidents.div_ceil(args.tenants);
    let start = now_ms();
    let spread_ms = args.spread_secs as i64 * 1000;
    let mut tasks = Vec::new();
    for (t, (c, mut s)) in devices.into_iter().enumerate() {
        let n = per_tenant.min(args.incidents.saturating_sub(t * per_tenant));
        let dims: Vec<String> = (0..n).map(|k| format!("d{k}")).collect();
        let cross: Vec<i64> = (0..n)
            .map(|_| start + (rand::random::<f64>() * spread_ms as f64) as i64)
            .collect();
        tasks.push(tokio::spawn(async move {
            let _c = c;
            let mut seq = 0;
            loop {
                let now = now_ms();
                if now > start + spread_ms + 2000 {
                    break;
                }
                seq += 1;
                let vals: Vec<(&str, &str, f64)> = dims
                    .iter()
                    .zip(&cross)
                    .map(|(d, at)| ("bench.v", d.as_str(), if now >= *at { 99.0 } else { 1.0 }))
                    .collect();
                s.send(values_batch(seq, now, &vals)).await?;
                s.next_ack().await?;
                tokio::time::sleep(Duration::from_millis(1000)).await;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}
