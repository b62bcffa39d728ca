//! Catch-up benchmark: N agents, each with a full spool backlog, reconnect to a
//! collector at the same moment (a whole site coming back after an outage). Prints
//! how long until every agent is current, the ingest rate meanwhile, how often the
//! collector asked agents to slow down, and the collector's peak RSS.
//!
//! The agents are the real agent code (spool + uplink, in this process, one TLS
//! connection each) with synthetic backlogs; the collector is the real binary.
//!
//! ```text
//! cargo build --release --workspace --bins
//! target/release/catchup --agents 200 --backlog 720 --series 50
//! # issue 16: how soon agents are back after a 60 s collector outage
//! target/release/catchup --agents 200 --backlog 30 --series 20 --outage-secs 60
//! ```

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use tandem_agent::spool::{Bounds, Spool};
use tandem_collector::pki::{self, Validity};
use tandem_proto::v1::{AgentFrame, MetricBatch, Sample, SeriesKey, agent_frame};
use tandem_tests::{Site, cpu_secs, now_ms};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

#[derive(Parser, Debug)]
#[command(about = "N agents with full backlogs reconnect at once; measure catch-up")]
struct Args {
    #[arg(long, default_value_t = 200)]
    agents: usize,
    /// Spooled batches per agent (720 = two hours at the default 10 s interval).
    #[arg(long, default_value_t = 720)]
    backlog: usize,
    /// Values per batch.
    #[arg(long, default_value_t = 50)]
    series: usize,
    /// The agents' catch-up pace (agent.toml catchup_batches_per_sec).
    #[arg(long, default_value_t = 20)]
    catchup: u32,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout_secs: u64,
    /// Issue 16: the collector is down for this long while the agents already run
    /// (they retry), then comes back on the same port; prints how soon after its
    /// return each agent had its first frame acknowledged. 0: the collector is up
    /// from the start.
    #[arg(long, default_value_t = 0)]
    outage_secs: u64,
}

fn backlog_batch(seq: u64, t: i64, series: usize) -> AgentFrame {
    AgentFrame {
        kind: Some(agent_frame::Kind::Batch(MetricBatch {
            seq,
            series: (0..series)
                .map(|i| SeriesKey {
                    name: format!("bench.metric.{i}"),
                    dimension: String::new(),
                })
                .collect(),
            samples: vec![Sample {
                time_unix_ms: t,
                values: (0..series).map(|i| (seq + i as u64) as f64).collect(),
            }],
        })),
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(args))
}

fn agent_config(dir: &Path, url: &str, catchup: u32) -> anyhow::Result<tandem_agent::AgentConfig> {
    let toml = format!(
        "collector_url = \"{url}\"\nca_cert = \"ca.pem\"\ncert = \"agent.pem\"\nkey = \"agent.key\"\nstate_dir = \"state\"\ncatchup_batches_per_sec = {catchup}\n"
    );
    let path = dir.join("agent.toml");
    std::fs::write(&path, toml)?;
    tandem_agent::config::load(&path).map_err(|e| anyhow::anyhow!("{e}"))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let data_dir = dir.path().join("collector");
    pki::init(&data_dir, &[])?;
    let ca = pki::load_ca(&data_dir)?;
    let site = Site { dir };
    if args.outage_secs > 0 {
        // Restarted on the same port after the outage.
        site.pin_free_port();
    }
    let first = site.start_collector("").await?;
    let url = first.url();
    let early = if args.outage_secs > 0 {
        first.terminate().await;
        None
    } else {
        Some(first)
    };

    eprintln!(
        "spooling {} batches for each of {} agents…",
        args.backlog, args.agents
    );
    let now = now_ms();
    let mut agents = Vec::new();
    let db = tandem_collector::store::open(&site.db_path())?;
    for i in 0..args.agents {
        let adir = site.dir.path().join(format!("agent-{i:04}"));
        let validity = Validity::starting_now(Duration::from_secs(86_400));
        let issued = ca.issue_agent("bench", &format!("bench-{i:04}"), validity)?;
        tandem_tests::record_issued(&db, &format!("bench-{i:04}"), &issued, validity)?;
        pki::write_file(&adir.join("ca.pem"), &ca.cert_pem, false)?;
        pki::write_file(&adir.join("agent.pem"), &issued.cert_pem, false)?;
        pki::write_file(&adir.join("agent.key"), &issued.key_pem, true)?;
        let cfg = agent_config(&adir, &url, args.catchup)?;
        let mut spool = Spool::open(
            &cfg.state_dir,
            Bounds {
                max_bytes: 1 << 30,
                max_age: Duration::from_secs(30 * 86_400),
            },
        )?;
        for k in 0..args.backlog {
            // Ten seconds apart, ending now: an outage of backlog x 10 s.
            let t = now - (args.backlog - k) as i64 * 10_000;
            spool.push(|seq| backlog_batch(seq, t, args.series))?;
        }
        agents.push((cfg, tandem_agent::spool_handle::SpoolHandle::new(spool)));
    }

    eprintln!("all agents reconnect now");
    let stop = CancellationToken::new();
    let mut backlogs: Vec<usize> = Vec::new();
    for (_, s) in &agents {
        backlogs.push(s.run(|s| s.len()).await?);
    }
    let mut tasks = Vec::new();
    let spools: Vec<_> = agents.iter().map(|(_, s)| s.clone()).collect();
    for (cfg, spool) in agents {
        let (_cfg_tx, cfg_rx) = watch::channel(Arc::new(cfg));
        let (interval, _interval_rx) = watch::channel(Duration::from_secs(10));
        let shared = tandem_agent::uplink::Shared {
            spool,
            new_data: Arc::new(Notify::new()),
            interval,
            renew_now: Arc::new(Notify::new()),
            // Nobody listens: a request is simply not acted on in this benchmark.
            check_patches: tokio::sync::mpsc::channel(1).0,
        };
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            // Keep the config sender alive for the uplink's lifetime.
            let _cfg_tx = _cfg_tx;
            let _interval_rx = _interval_rx;
            tandem_agent::uplink::run(cfg_rx, shared, stop).await;
        }));
    }
    let collector = match early {
        Some(c) => c,
        None => {
            eprintln!(
                "collector down for {} s while the agents retry…",
                args.outage_secs
            );
            tokio::time::sleep(Duration::from_secs(args.outage_secs)).await;
            site.start_collector("").await?
        }
    };
    let pid = collector.pid();
    let cpu0 = cpu_secs(pid).unwrap_or(0.0);
    let start = Instant::now();
    // When each agent's first frame was acknowledged, from the collector's start.
    let mut first_ack: Vec<Option<Duration>> = vec![None; spools.len()];
    let total = (args.agents * args.backlog) as u64;
    let mut peak_rss = 0;
    let mut last_report = Instant::now();
    let caught_up = loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        peak_rss = peak_rss.max(tandem_tests::rss_bytes(pid).unwrap_or(0));
        let mut lens: Vec<usize> = Vec::with_capacity(spools.len());
        for s in &spools {
            lens.push(s.run(|s| s.len()).await?);
        }
        for (i, &n) in lens.iter().enumerate() {
            if first_ack[i].is_none() && n < backlogs[i] {
                first_ack[i] = Some(start.elapsed());
            }
        }
        let left: usize = lens.iter().sum();
        if last_report.elapsed() > Duration::from_secs(5) {
            eprintln!(
                "  {:>6.1} s: {left} batches still spooled",
                start.elapsed().as_secs_f64()
            );
            last_report = Instant::now();
        }
        if left == 0 {
            break Some(start.elapsed());
        }
        if start.elapsed() > Duration::from_secs(args.timeout_secs) {
            break None;
        }
    };
    let cpu = cpu_secs(pid).unwrap_or(0.0) - cpu0;
    let hwm = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024;
    stop.cancel();
    for t in tasks {
        let _ = t.await;
    }
    let stored: i64 = site.count("SELECT count(*) FROM batches");
    let log = collector.log();
    let slowdowns = log.matches("asked agent to slow down").count();
    let _ = collector.terminate().await;

    println!(
        "catchup: {} agents x {} spooled batches x {} values ({} batches, {} values), catch-up pace {}/s per agent",
        args.agents,
        args.backlog,
        args.series,
        total,
        total * args.series as u64,
        args.catchup
    );
    match caught_up {
        Some(d) => {
            let secs = d.as_secs_f64();
            println!("  all agents current after   {secs:>8.1} s");
            println!(
                "  ingest meanwhile           {:>8.0} batches/s, {:.0} values/s",
                total as f64 / secs,
                (total * args.series as u64) as f64 / secs
            );
        }
        None => println!("  NOT current after {} s", args.timeout_secs),
    }
    if args.outage_secs > 0 {
        let mut t: Vec<f64> = first_ack
            .iter()
            .flatten()
            .map(|d| d.as_secs_f64())
            .collect();
        t.sort_by(f64::total_cmp);
        let at = |q: f64| t[((t.len() as f64 - 1.0) * q).round() as usize];
        if t.is_empty() {
            println!(
                "  no agent reconnected after the {} s outage",
                args.outage_secs
            );
        } else {
            println!(
                "  after a {} s outage, first ack after the collector's return: median {:.1} s, p90 {:.1} s, max {:.1} s, first {:.1} s ({} of {} agents; sampled every 0.2 s)",
                args.outage_secs,
                at(0.5),
                at(0.9),
                at(1.0),
                at(0.0),
                t.len(),
                spools.len()
            );
        }
    }
    println!("  batches in the database    {stored:>8}");
    println!(
        "  collector peak RSS         {:>8.1} MiB (VmHWM {:.1} MiB)",
        peak_rss as f64 / 1048576.0,
        hwm as f64 / 1048576.0
    );
    println!("  collector CPU              {cpu:>8.1} s");
    println!(
        "  slow-down requests logged  {slowdowns:>8} (debug level; 0 when the log level hides them)"
    );
    Ok(())
}
