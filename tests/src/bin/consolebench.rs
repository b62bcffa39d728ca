//! Console benchmark (issue 15): a fleet of `--devices` (10,000) devices, `--with-data`
//! (100) of them with `--days` (30) of `--series` series, generated through the
//! store's own head encoding and compaction (as `storebench`); then the real
//! collector serving it, measured over its real HTTP listener:
//!
//! - the fleet page's API (`/fleet` and `/devices?per_page=200`, fetched together as
//!   the dashboard does): p50/p95 (target p95 ≤ 100 ms);
//! - a device's 24 h chart of every one of its series (`/devices/{id}/charts`,
//!   step 5 min, one request as the dashboard makes it): p50/p95 of the whole
//!   set (target ≤ 50 ms);
//! - `--feeds` (200) open SSE feeds: the collector's RSS before and after (target
//!   ≤ 20 MiB) and the time from the ack of the sample that opens an incident to the
//!   moment the last feed reader has the event (target ≤ 1 s);
//! - ingest at `--ingest-values-per-sec` (50,000): p99 ack latency with nothing else
//!   going on vs with the feeds open, the fleet API polled and transitions flowing
//!   (target: busy ≤ idle + 20 %), in `--rounds` alternating idle/busy pairs.
//!
//! ```text
//! cargo build --release -p tandem-collector -p tandem-tests --bins
//! target/release/consolebench
//! ```
//! A benchmark, not a test: it measures and prints, it asserts nothing.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use rusqlite::params;
use tandem_collector::http::tail;
use tandem_collector::store::chunk::{self, CHUNK_MS, DAY_MS};
use tandem_collector::store::compact;
use tandem_tests::{Site, Stream, batch, client, free_port, now_ms, values_batch};

#[derive(Parser, Debug)]
#[command(about = "Measure the console's API, the SSE feed and their cost to ingest")]
struct Args {
    #[arg(long, default_value_t = 10_000)]
    devices: usize,
    /// Devices with metric history.
    #[arg(long, default_value_t = 100)]
    with_data: usize,
    #[arg(long, default_value_t = 30)]
    days: i64,
    /// Series per device with history.
    #[arg(long, default_value_t = 40)]
    series: usize,
    /// Seconds between samples of the history.
    #[arg(long, default_value_t = 60)]
    interval_secs: i64,
    #[arg(long, default_value_t = 50)]
    tenants: usize,
    /// Requests of each API kind to time.
    #[arg(long, default_value_t = 100)]
    queries: usize,
    #[arg(long, default_value_t = 200)]
    feeds: usize,
    /// Transitions timed to reach every feed.
    #[arg(long, default_value_t = 5)]
    transitions: usize,
    #[arg(long, default_value_t = 50_000)]
    ingest_values_per_sec: u64,
    #[arg(long, default_value_t = 50)]
    ingest_agents: usize,
    /// Values per ingest batch.
    #[arg(long, default_value_t = 100)]
    ingest_series: usize,
    /// Seconds of each measured ingest phase.
    #[arg(long, default_value_t = 10)]
    phase_secs: u64,
    /// Idle/busy pairs: the phases alternate (idle, busy, idle, busy, ...) so that
    /// a drift of the machine's load falls on both sides.
    #[arg(long, default_value_t = 4)]
    rounds: u32,
    /// What the busy phases do (to find which part costs ingest): any of `feeds`,
    /// `fleet`, `transitions`, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "feeds,fleet,transitions")]
    busy: Vec<String>,
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn quantile(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * q).round() as usize]
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Fills the database: tenants, devices, and the history of the first `with_data`.
fn generate(db: &std::path::Path, a: &Args) -> anyhow::Result<Vec<(String, Vec<String>)>> {
    let mut conn = tandem_collector::store::open(db)?;
    let now = now_ms();
    let tx = conn.transaction()?;
    for t in 0..a.tenants {
        tx.execute(
            "INSERT INTO tenants (name, created_ms) VALUES (?1, 0)",
            [format!("t{t:03}")],
        )?;
    }
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for d in 0..a.devices {
        // Nine in ten seen just now, the rest an hour to three days ago.
        let seen = if d % 10 == 9 {
            now - 3_600_000 - (rng.next() % (3 * DAY_MS as u64)) as i64
        } else {
            now - (rng.next() % 30_000) as i64
        };
        let os = if d % 3 == 0 {
            ("windows", "10.0.19045")
        } else {
            ("linux", "12")
        };
        tx.execute(
            "INSERT INTO devices (id, tenant_id, hostname, os_family, os_version, first_seen_ms, last_seen_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6)",
            params![
                format!("dev-{d:05}"),
                (d % a.tenants) as i64 + 1,
                format!("host-{d:05}"),
                os.0,
                os.1,
                seen
            ],
        )?;
    }
    tx.commit()?;
    let names: Vec<String> = (0..a.series)
        .map(|s| match s {
            0 => "cpu.usage.percent".to_owned(),
            1 => "mem.used.percent".to_owned(),
            2 => "load.1m".to_owned(),
            _ => format!("bench.metric.{s}"),
        })
        .collect();
    let end = now - now.rem_euclid(CHUNK_MS);
    let start = end - a.days * DAY_MS;
    let per_hour = (CHUNK_MS / 1000 / a.interval_secs).max(1) as usize;
    let t0 = Instant::now();
    let mut values = 0u64;
    let mut out = Vec::new();
    for d in 0..a.with_data.min(a.devices) {
        let dev = format!("dev-{d:05}");
        let mut ids = Vec::new();
        for n in &names {
            conn.execute(
                "INSERT INTO series (device_id, name, dimension) VALUES (?1, ?2, '')",
                params![dev, n],
            )?;
            ids.push(conn.last_insert_rowid());
        }
        let mut state = vec![30.0f64; a.series];
        let mut hour = start;
        while hour < end {
            let tx = conn.transaction()?;
            let mut samples = Vec::with_capacity(per_hour);
            for j in 0..per_hour {
                let ts = hour + j as i64 * a.interval_secs * 1000;
                let vals: Vec<f64> = state
                    .iter_mut()
                    .map(|v| {
                        *v = (*v + (rng.unit() - 0.5) * 4.0).clamp(0.0, 100.0);
                        (*v * 10.0).round() / 10.0
                    })
                    .collect();
                samples.push((ts, vals));
            }
            let refs: Vec<(i64, &[f64])> =
                samples.iter().map(|(t, v)| (*t, v.as_slice())).collect();
            let payload = chunk::encode_head(&ids, &refs);
            tx.execute(
                "INSERT INTO head (device_id, min_ts, max_ts, n_values, payload) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![dev, refs[0].0, refs[refs.len() - 1].0, (refs.len() * a.series) as i64, payload],
            )?;
            tx.commit()?;
            values += (refs.len() * a.series) as u64;
            hour += CHUNK_MS;
            if (hour - start) % DAY_MS == 0 || hour >= end {
                while compact::compact_step(&mut conn, &dev, end)?.0 > 0 {}
            }
        }
        if d % 10 == 9 {
            eprintln!(
                "history: {} devices, {values} values, {:.0} s",
                d + 1,
                t0.elapsed().as_secs_f64()
            );
        }
        out.push((dev, names.clone()));
    }
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")?;
    println!(
        "generated: {} devices in {} tenants; {} with {} days × {} series every {} s = {values} values, in {:.0} s",
        a.devices,
        a.tenants,
        a.with_data,
        a.days,
        a.series,
        a.interval_secs,
        t0.elapsed().as_secs_f64()
    );
    Ok(out)
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

/// One feed reader's (incident id, arrival) of each `opened` event.
type Arrivals = Vec<(i64, Instant)>;

async fn get(s: &mut Sender, port: u16, path: &str, token: &str) -> anyhow::Result<usize> {
    s.ready().await?;
    let req = hyper::Request::get(path)
        .header(hyper::header::HOST, format!("127.0.0.1:{port}"))
        .header(hyper::header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Empty::new())?;
    let resp = s.send_request(req).await?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    anyhow::ensure!(
        status.is_success(),
        "{path}: {status} {}",
        String::from_utf8_lossy(&body)
    );
    Ok(body.len())
}

/// Times the fleet page's two requests, fetched together (two connections).
async fn fleet_page(a: &mut Sender, b: &mut Sender, port: u16, token: &str) -> anyhow::Result<f64> {
    let t = Instant::now();
    let (x, y) = tokio::join!(
        get(a, port, "/api/v1/fleet", token),
        get(b, port, "/api/v1/devices?per_page=200", token)
    );
    x?;
    y?;
    Ok(t.elapsed().as_secs_f64() * 1000.0)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(b) = args
        .busy
        .iter()
        .find(|b| !["feeds", "fleet", "transitions"].contains(&b.as_str()))
    {
        anyhow::bail!("--busy: unknown part {b:?} (expected feeds, fleet or transitions)");
    }
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
    tandem_collector::pki::init(&data_dir, &[])?;
    let db = data_dir.join(tandem_collector::store::DB_FILE);
    let history = tokio::task::block_in_place(|| generate(&db, &args))?;
    let token = {
        let mut c = tandem_collector::store::Db::open(&db)?;
        tandem_collector::console::tokens::create_token(
            &mut c,
            "consolebench",
            "bench",
            tandem_collector::console::auth::Role::MspAdmin,
            None,
            now_ms(),
        )
        .map_err(|e| anyhow::anyhow!("create token: {}", e.message))?
        .1
    };
    std::fs::create_dir_all(root.join("rules"))?;
    std::fs::write(
        root.join("rules/bench.toml"),
        "[[rule]]\nname = \"bench-high\"\nkind = \"threshold\"\nmetric = \"bench.v\"\ncustom_metric = true\ncritical = { above = 50 }\n",
    )?;
    let port = free_port();
    let site = Site { dir };
    let collector = site
        .start_collector(&format!(
            "[alerts]\nrules_dir = \"rules\"\ntick_secs = 1\n\
             [http]\nlisten = \"127.0.0.1:{port}\"\nmax_connections_per_address = {}\n",
            args.feeds + 64
        ))
        .await?;
    let pid = collector.pid();
    eprintln!("collector pid {pid}, http 127.0.0.1:{port}");
    tokio::time::sleep(Duration::from_secs(3)).await;

    // 1. The fleet page.
    let (mut a, _da) = tail::connect("127.0.0.1", port, None).await?;
    let (mut b, _db) = tail::connect("127.0.0.1", port, None).await?;
    fleet_page(&mut a, &mut b, port, &token).await?; // warm the page cache
    let mut fleet = Vec::new();
    for _ in 0..args.queries {
        fleet.push(fleet_page(&mut a, &mut b, port, &token).await?);
    }
    let fleet_bytes = get(&mut a, port, "/api/v1/fleet", &token).await?
        + get(&mut b, port, "/api/v1/devices?per_page=200", &token).await?;

    // 2. A device's 24 h chart, every series: one `/charts` request, as the
    // dashboard fetches its charts.
    let mut chart = Vec::new();
    let mut chart_bytes = 0;
    for q in 0..args.queries.max(1) {
        let (dev, names) = &history[q % history.len().max(1)];
        let to = now_ms();
        let from = to - DAY_MS;
        let t = Instant::now();
        chart_bytes = get(
            &mut a,
            port,
            &format!(
                "/api/v1/devices/{dev}/charts?metrics={}&from_ms={from}&to_ms={to}&step_ms=300000",
                names.join(",")
            ),
            &token,
        )
        .await?;
        chart.push(t.elapsed().as_secs_f64() * 1000.0);
    }

    // 3. Open feeds: memory, and the time a transition takes to reach them all.
    let transition_dev = site.issue("t000", "bench-transitions");
    let mut tc = client(collector.addr, &transition_dev).await?;
    let (mut ts, _) = Stream::hello(&mut tc).await?;
    let mut tseq = 0u64;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss0 = rss_kib(pid);
    let received: Arc<Mutex<Vec<Arrivals>>> = Arc::new(Mutex::new(vec![Vec::new(); args.feeds]));
    let mut feeds = Vec::new();
    let access = tail::Access::token(&token);
    let base = format!("http://127.0.0.1:{port}");
    for i in 0..args.feeds {
        let (r, access, base) = (received.clone(), access.clone(), base.clone());
        feeds.push(tokio::spawn(async move {
            let _ = tail::follow(&base, None, None, &access, |e| {
                if e.kind == "opened" {
                    let id = e.data["incident"]["id"].as_i64().unwrap_or(-1);
                    r.lock().expect("feeds")[i].push((id, Instant::now()));
                }
                true
            })
            .await;
        }));
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let rss1 = rss_kib(pid);
    let mut reach = Vec::new();
    let mut missing = 0;
    for k in 0..args.transitions {
        let dim = format!("t{k}");
        tseq += 1;
        ts.send(values_batch(tseq, now_ms(), &[("bench.v", &dim, 99.0)]))
            .await?;
        ts.next_ack().await?;
        let acked = Instant::now();
        let deadline = acked + Duration::from_secs(10);
        loop {
            let got = received
                .lock()
                .expect("feeds")
                .iter()
                .filter(|v| v.len() > k)
                .count();
            if got == args.feeds || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let (last, absent) = {
            let r = received.lock().expect("feeds");
            (
                r.iter().filter_map(|v| v.get(k).map(|x| x.1)).max(),
                r.iter().filter(|v| v.len() <= k).count(),
            )
        };
        missing += absent;
        if let Some(l) = last {
            reach.push(l.duration_since(acked).as_secs_f64() * 1000.0);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for f in &feeds {
        f.abort();
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    // 4. Ingest: idle, then busy (feeds open, the fleet page polled, transitions).
    let phase = Arc::new(AtomicU8::new(0));
    let lat: Arc<Mutex<[Vec<f64>; 3]>> = Arc::new(Mutex::new([Vec::new(), Vec::new(), Vec::new()]));
    let stop = Arc::new(AtomicBool::new(false));
    let mut ingest = Vec::new();
    let per_agent =
        args.ingest_values_per_sec as f64 / args.ingest_agents as f64 / args.ingest_series as f64;
    let period = Duration::from_secs_f64(1.0 / per_agent.max(0.001));
    for a in 0..args.ingest_agents {
        let creds = site.issue("t001", &format!("load-{a:03}"));
        let (addr, series, phase, lat, stop) = (
            collector.addr,
            args.ingest_series,
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
                let ms = sent.elapsed().as_secs_f64() * 1000.0;
                let p = phase.load(Ordering::Relaxed);
                if (1..=2).contains(&p) {
                    lat.lock().expect("latencies")[p as usize].push(ms);
                }
                next += period;
                tokio::time::sleep_until(next).await;
            }
            anyhow::Ok(())
        }));
    }
    // The console's clients (200 feed readers, the fleet page poller) stand for
    // browsers on other machines: they run on their own runtime thread, so that
    // their work in this process does not delay the ingest clients' own reading of
    // their acks (which is what is measured). They still share the 2 cores.
    let browsers = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("browsers")
        .enable_all()
        .build()?;
    drop((a, b));
    eprintln!(
        "ingest: warm-up 5 s, then {} x (idle {} s, busy {} s)",
        args.rounds, args.phase_secs, args.phase_secs
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut k = args.transitions;
    let mut polls = 0;
    for round in 0..args.rounds {
        phase.store(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_secs(args.phase_secs)).await;
        phase.store(0, Ordering::Relaxed);
        // Busy: the feeds open (not measured while they connect), then the fleet
        // page every 0.5 s and a transition a second.
        let mut feeds = Vec::new();
        let busy_feeds = if args.busy.iter().any(|b| b == "feeds") {
            args.feeds
        } else {
            0
        };
        for _ in 0..busy_feeds {
            let (access, base) = (access.clone(), base.clone());
            feeds.push(browsers.spawn(async move {
                let _ = tail::follow(&base, None, None, &access, |_| true).await;
            }));
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        eprintln!("round {}: busy {} s", round + 1, args.phase_secs);
        phase.store(2, Ordering::Relaxed);
        let busy_stop = Arc::new(AtomicBool::new(false));
        let poller = {
            let (stop, token) = (busy_stop.clone(), token.clone());
            let fleet = args.busy.iter().any(|b| b == "fleet");
            browsers.spawn(async move {
                let mut n = 0;
                while fleet && !stop.load(Ordering::Relaxed) {
                    // A browser's page load: fresh connections (idle kept-alive ones
                    // are closed by the listener's 10 s header deadline).
                    let (mut a, _da) = tail::connect("127.0.0.1", port, None).await?;
                    let (mut b, _db) = tail::connect("127.0.0.1", port, None).await?;
                    fleet_page(&mut a, &mut b, port, &token).await?;
                    n += 1;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                anyhow::Ok(n)
            })
        };
        let t_busy = Instant::now();
        let transitions = args.busy.iter().any(|b| b == "transitions");
        while t_busy.elapsed() < Duration::from_secs(args.phase_secs) {
            if !transitions {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            tseq += 1;
            k += 1;
            let dim = format!("t{k}");
            ts.send(values_batch(tseq, now_ms(), &[("bench.v", &dim, 99.0)]))
                .await?;
            ts.next_ack().await?;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        phase.store(0, Ordering::Relaxed);
        busy_stop.store(true, Ordering::Relaxed);
        polls += match poller.await? {
            Ok(n) => n,
            Err(e) => {
                eprintln!("{}", collector.log());
                return Err(e);
            }
        };
        for f in &feeds {
            f.abort();
        }
        // The feeds close before the next idle phase.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for i in ingest {
        let _ = i.await;
    }
    browsers.shutdown_background();
    let (mut idle, mut busy) = {
        let l = lat.lock().expect("latencies");
        (l[1].clone(), l[2].clone())
    };

    println!("consolebench (release build; load before: {})", load.trim());
    let p95 = quantile(&mut fleet, 0.95);
    println!(
        "fleet page API (/fleet + /devices?per_page=200, {fleet_bytes} B): p50 {:.1} ms, p95 {p95:.1} ms over {} loads (target p95 <= 100 ms: {})",
        quantile(&mut fleet, 0.5),
        fleet.len(),
        if p95 <= 100.0 { "met" } else { "MISSED" }
    );
    let c95 = quantile(&mut chart, 0.95);
    println!(
        "device 24 h chart, all {} series at 5 min ({chart_bytes} B in one answer): p50 {:.1} ms, p95 {c95:.1} ms for the set (target <= 50 ms: {})",
        args.series,
        quantile(&mut chart, 0.5),
        if c95 <= 50.0 { "met" } else { "MISSED" }
    );
    let cost_mib = (rss1 as f64 - rss0 as f64) / 1024.0;
    println!(
        "{} open SSE feeds: collector RSS {:.1} -> {:.1} MiB, cost {cost_mib:.1} MiB = {:.1} KiB per feed (target <= 20 MiB: {})",
        args.feeds,
        rss0 as f64 / 1024.0,
        rss1 as f64 / 1024.0,
        (rss1 as f64 - rss0 as f64) / args.feeds as f64,
        if cost_mib <= 20.0 { "met" } else { "MISSED" }
    );
    let worst = reach.iter().copied().fold(f64::NAN, f64::max);
    println!(
        "transition to all {} feeds (sample ack -> last reader has it), {} transitions: p50 {:.0} ms, max {worst:.0} ms; {missing} deliveries missing after 10 s (target <= 1 s: {})",
        args.feeds,
        reach.len(),
        quantile(&mut reach.clone(), 0.5),
        if worst <= 1000.0 && missing == 0 {
            "met"
        } else {
            "MISSED"
        }
    );
    let (i99, b99) = (quantile(&mut idle, 0.99), quantile(&mut busy, 0.99));
    println!(
        "ingest {} values/s target ({} agents x {} values): ack p50/p99 idle {:.1}/{:.1} ms ({} batches), busy {:.1}/{:.1} ms ({} batches; {} feeds, {polls} fleet page loads, {}); {} rounds of {} s each; p99 busy/idle {:.2} (target <= 1.20: {})",
        args.ingest_values_per_sec,
        args.ingest_agents,
        args.ingest_series,
        quantile(&mut idle, 0.5),
        i99,
        idle.len(),
        quantile(&mut busy, 0.5),
        b99,
        busy.len(),
        if args.busy.iter().any(|b| b == "feeds") {
            args.feeds
        } else {
            0
        },
        if args.busy.iter().any(|b| b == "transitions") {
            "a transition a second"
        } else {
            "no transitions"
        },
        args.rounds,
        args.phase_secs,
        b99 / i99,
        if b99 / i99 <= 1.2 { "met" } else { "MISSED" }
    );
    drop((ts, tc));
    if std::env::var_os("CONSOLEBENCH_LOG").is_some() {
        eprintln!("{}", collector.log());
    }
    let _ = collector.terminate().await;
    Ok(())
}
