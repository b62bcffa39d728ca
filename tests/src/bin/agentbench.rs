//! Agent footprint benchmark: the real `tandem-agent` streaming to a real collector
//! at a 10 s interval, side by side with Debian's `prometheus-node-exporter`
//! (scraped every 10 s by this program) and `collectd` (Debian's default
//! configuration, whose interval is 10 s), all on this machine at the same time.
//!
//! After a warm-up (which holds the agent's start-up patch check), it measures each
//! process over the window: steady RSS (median of 1 s readings, and the maximum), CPU
//! seconds per minute (the process and its waited-for children, so the agent's
//! package-manager commands count), and for the agent the bytes sent per sample
//! (counted by a TCP relay between agent and collector) and values per sample (from
//! the collector's batch ledger). It also prints the agent binary's size as built
//! and stripped, the start-up patch check's CPU, and each ratio to the peers.
//!
//! ```text
//! apt-get install prometheus-node-exporter collectd   # the peers
//! cargo build --release --workspace --bins
//! target/release/agentbench --secs 180
//! ```

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use tandem_tests::{Site, bin, free_port, rss_bytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};

#[derive(Parser, Debug)]
#[command(
    about = "Measure the agent's RSS, CPU and bytes per sample next to node_exporter and collectd"
)]
struct Args {
    /// Length of the measured window, seconds (the issue asks for at least 120).
    #[arg(long, default_value_t = 180)]
    secs: u64,
    /// Warm-up before the window, seconds (start-up patch check, first samples).
    #[arg(long, default_value_t = 40)]
    warmup_secs: u64,
    /// Sample / scrape interval of all three, seconds.
    #[arg(long, default_value_t = 10)]
    interval: u64,
    /// Measure only the agent.
    #[arg(long)]
    no_peers: bool,
    /// Also give the agent a watched backup folder and two custom checks (each run
    /// every 60 s); posture is always on (issue #14).
    #[arg(long)]
    with_checks: bool,
    /// The agent binary to measure (default: the one built next to this program).
    #[arg(long)]
    agent: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(run(args))
}

/// CPU seconds of a process plus its waited-for children (utime, stime, cutime,
/// cstime of /proc/PID/stat).
fn cpu_with_children(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let mut ticks = 0u64;
    for i in 11..=14 {
        ticks += f.get(i)?.parse::<u64>().ok()?;
    }
    Some(ticks as f64 / clock_ticks())
}

fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// One measured process.
struct Watched {
    name: &'static str,
    pid: u32,
    cpu0: f64,
    rss: Vec<u64>,
}

impl Watched {
    fn new(name: &'static str, pid: u32) -> anyhow::Result<Self> {
        let cpu0 = cpu_with_children(pid).with_context(|| format!("{name}: no /proc/{pid}"))?;
        Ok(Self {
            name,
            pid,
            cpu0,
            rss: Vec::new(),
        })
    }
    fn poll(&mut self) {
        if let Some(r) = rss_bytes(self.pid) {
            self.rss.push(r);
        }
    }
    /// (median RSS MiB, max RSS MiB, CPU ms per minute)
    fn result(&mut self, window: Duration) -> anyhow::Result<(f64, f64, f64)> {
        let cpu1 = cpu_with_children(self.pid)
            .with_context(|| format!("{} exited during the run", self.name))?;
        self.rss.sort_unstable();
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        let med = mib(*self
            .rss
            .get(self.rss.len() / 2)
            .context("no RSS readings")?);
        let max = mib(*self.rss.last().context("no RSS readings")?);
        let per_min = (cpu1 - self.cpu0) * 1000.0 * 60.0 / window.as_secs_f64();
        Ok((med, max, per_min))
    }
}

/// A TCP relay that counts the bytes flowing from the agent to the collector.
async fn relay(target: std::net::SocketAddr, up: Arc<AtomicU64>) -> anyhow::Result<String> {
    let l = TcpListener::bind("127.0.0.1:0").await?;
    let addr = l.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut a, _)) = l.accept().await {
            let up = up.clone();
            tokio::spawn(async move {
                let Ok(b) = TcpStream::connect(target).await else {
                    return;
                };
                let (mut ar, mut aw) = a.split();
                let (mut br, mut bw) = b.into_split();
                let to_collector = async {
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        match ar.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                up.fetch_add(n as u64, Ordering::Relaxed);
                                if bw.write_all(&buf[..n]).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                    let _ = bw.shutdown().await;
                };
                let to_agent = async {
                    let _ = tokio::io::copy(&mut br, &mut aw).await;
                };
                tokio::join!(to_collector, to_agent);
            });
        }
    });
    Ok(format!("https://{addr}"))
}

/// One HTTP/1.0 GET of node_exporter's /metrics; returns (bytes, sample lines).
async fn scrape(port: u16) -> anyhow::Result<(usize, usize)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .await?;
    let mut body = Vec::new();
    s.read_to_end(&mut body).await?;
    let text = String::from_utf8_lossy(&body);
    if !text.starts_with("HTTP/1.0 200") && !text.starts_with("HTTP/1.1 200") {
        bail!(
            "node_exporter answered {:?}",
            text.lines().next().unwrap_or("")
        );
    }
    let samples = text
        .lines()
        .skip_while(|l| !l.is_empty())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .count();
    Ok((body.len(), samples))
}

/// Debian's default collectd.conf, with the interval spelled out and its data,
/// pid file and base directory moved under `dir` (nothing else changed). `dir`'s
/// path must not contain a component starting with a dot: collectd's rrdtool plugin
/// refuses to write there and logs an error for every value, which costs it ten
/// times its normal CPU.
fn collectd_conf(dir: &Path, interval: u64) -> anyhow::Result<PathBuf> {
    let default = std::fs::read_to_string("/etc/collectd/collectd.conf")
        .context("/etc/collectd/collectd.conf: apt-get install collectd")?;
    let data = dir.join("collectd");
    std::fs::create_dir_all(&data)?;
    let conf = format!(
        "Interval {interval}\nBaseDir \"{d}\"\nPIDFile \"{d}/collectd.pid\"\n{}",
        default.replace("/var/lib/collectd/rrd", &format!("{}/rrd", data.display())),
        d = data.display()
    );
    let path = dir.join("collectd.conf");
    std::fs::write(&path, conf)?;
    Ok(path)
}

fn spawn(program: &str, args: &[&str]) -> anyhow::Result<Child> {
    Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("start {program}"))
}

fn batches(site: &Site, device: &str, after_seq: i64) -> anyhow::Result<(i64, i64, f64)> {
    // Metric batches only: patch reports share the ledger.
    let (n, max_seq, avg): (i64, Option<i64>, Option<f64>) = site.db().query_row(
        "SELECT count(*), max(seq), avg(n_values) FROM batches b
         WHERE device_id = ?1 AND seq > ?2
           AND NOT EXISTS (SELECT 1 FROM patch_reports p
                           WHERE p.device_id = b.device_id AND p.seq = b.seq)",
        rusqlite::params![device, after_seq],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    Ok((n, max_seq.unwrap_or(after_seq), avg.unwrap_or(0.0)))
}

async fn run(args: Args) -> anyhow::Result<()> {
    if args.secs < 120 {
        eprintln!(
            "note: the issue asks for a window of at least 120 s; this one is {} s",
            args.secs
        );
    }
    let site = Site::new().await?;
    let collector = site.start_collector("").await?;
    let up = Arc::new(AtomicU64::new(0));
    let url = relay(collector.addr, up.clone()).await?;
    let mut extra = format!("interval_secs = {}\n", args.interval);
    if args.with_checks {
        let backups = site.dir.path().join("backups");
        std::fs::create_dir_all(&backups)?;
        std::fs::write(backups.join("nightly.tar"), "x")?;
        extra.push_str(&format!(
            "[[backup]]\nname = \"nas\"\npath = \"{}\"\n\
             [[check]]\nname = \"answer\"\ncommand = [\"/bin/echo\", \"42\"]\ninterval_secs = 60\nexpect_value = true\n\
             [[check]]\nname = \"root-dir\"\ncommand = [\"/bin/sh\", \"-c\", \"test -d /\"]\ninterval_secs = 60\n",
            backups.display()
        ));
        println!("agent: posture on, backup path watched, 2 custom checks every 60 s");
    }
    let dir = site.provision_agent("bench", &url, &extra).await;
    let agent_bin = args.agent.clone().unwrap_or_else(|| bin("tandem-agent"));
    let mut agent = Command::new(&agent_bin)
        .arg("run")
        .arg("--config")
        .arg(dir.join("agent.toml"))
        .env("RUST_LOG", "info")
        .stderr(std::fs::File::create(dir.join("agent.log"))?)
        .kill_on_drop(true)
        .spawn()?;
    let agent_pid = agent.id().context("agent pid")?;

    // Not under the site's dir: a temp dir's name starts with a dot.
    let peer_dir = tempfile::Builder::new()
        .prefix("tandem-agentbench-")
        .tempdir()?;
    let mut peers: Vec<(Child, &'static str)> = Vec::new();
    let mut ne_port = 0;
    if !args.no_peers {
        ne_port = free_port();
        let listen = format!("--web.listen-address=127.0.0.1:{ne_port}");
        peers.push((
            spawn("prometheus-node-exporter", &[&listen])
                .context("apt-get install prometheus-node-exporter")?,
            "node_exporter",
        ));
        let conf = collectd_conf(peer_dir.path(), args.interval)?;
        let conf = conf.to_string_lossy().into_owned();
        peers.push((
            spawn("collectd", &["-f", "-C", &conf]).context("apt-get install collectd")?,
            "collectd",
        ));
    }

    let tick = Duration::from_secs(args.interval);
    let warm_cpu0 = cpu_with_children(agent_pid).context("agent exited")?;
    eprintln!(
        "warming up {} s (agent, collector{})",
        args.warmup_secs,
        if args.no_peers {
            ""
        } else {
            ", node_exporter, collectd"
        }
    );
    let warm_end = Instant::now() + Duration::from_secs(args.warmup_secs);
    let mut next_scrape = Instant::now();
    while Instant::now() < warm_end {
        if ne_port != 0 && Instant::now() >= next_scrape {
            let _ = scrape(ne_port).await;
            next_scrape += tick;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let warm_cpu = cpu_with_children(agent_pid).context("agent exited")? - warm_cpu0;
    if let Some(s) = agent.try_wait()? {
        bail!("the agent exited during warm-up: {s}");
    }

    let mut watched = vec![Watched::new("tandem-agent", agent_pid)?];
    for (c, name) in &peers {
        watched.push(Watched::new(name, c.id().context("peer exited")?)?);
    }
    let (_, seq0, _) = batches(&site, "bench", 0)?;
    let up0 = up.load(Ordering::Relaxed);
    let start = Instant::now();
    let end = start + Duration::from_secs(args.secs);
    let mut scrapes = (0usize, 0usize, 0usize);
    eprintln!("measuring {} s", args.secs);
    while Instant::now() < end {
        if ne_port != 0 && Instant::now() >= next_scrape {
            let (bytes, samples) = scrape(ne_port).await?;
            scrapes = (scrapes.0 + 1, scrapes.1 + bytes, samples);
            next_scrape += tick;
        }
        for w in &mut watched {
            w.poll();
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let window = start.elapsed();
    let up_bytes = up.load(Ordering::Relaxed) - up0;
    let (n_batches, _, values) = batches(&site, "bench", seq0)?;
    let mut rows = Vec::new();
    for w in &mut watched {
        rows.push((w.name, w.result(window)?));
    }

    println!(
        "agentbench: {} s window after {} s warm-up, interval {} s, machine {} cores",
        window.as_secs(),
        args.warmup_secs,
        args.interval,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "{:<14} {:>12} {:>12} {:>14}",
        "process", "RSS med MiB", "RSS max MiB", "CPU ms/min"
    );
    for (name, (med, max, cpu)) in &rows {
        println!("{name:<14} {med:>12.1} {max:>12.1} {cpu:>14.1}");
    }
    println!(
        "agent: {n_batches} samples in the window, {values:.0} values per sample, {:.0} bytes sent per sample (TLS records, gzip, acks excluded)",
        if n_batches > 0 {
            up_bytes as f64 / n_batches as f64
        } else {
            0.0
        }
    );
    println!(
        "agent: start-up (incl. its patch check) used {:.0} ms CPU in the first {} s",
        warm_cpu * 1000.0,
        args.warmup_secs
    );
    if scrapes.0 > 0 {
        println!(
            "node_exporter: {} scrapes, {:.0} bytes and {} values per scrape",
            scrapes.0,
            scrapes.1 as f64 / scrapes.0 as f64,
            scrapes.2
        );
    }
    let size = std::fs::metadata(&agent_bin)?.len();
    let stripped = site.data_dir().join("tandem-agent.stripped");
    let st = std::process::Command::new("strip")
        .arg("-o")
        .arg(&stripped)
        .arg(&agent_bin)
        .status();
    let stripped_size = match st {
        Ok(s) if s.success() => Some(std::fs::metadata(&stripped)?.len()),
        _ => None,
    };
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    println!(
        "agent binary {}: {:.2} MiB as built, {} stripped",
        agent_bin.display(),
        mib(size),
        stripped_size.map_or("strip failed".to_owned(), |s| format!("{:.2} MiB", mib(s)))
    );
    let (_, (a_rss, _, a_cpu)) = rows[0];
    for (name, (rss, _, cpu)) in rows.iter().skip(1) {
        println!(
            "ratio agent/{name}: RSS {:.2}, CPU {:.2}",
            a_rss / rss,
            if *cpu > 0.0 { a_cpu / cpu } else { f64::NAN }
        );
    }
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    println!(
        "targets: RSS <= 6 MiB {}; CPU <= 50 ms/min {}; >= 100 values/sample {}; stripped <= 8 MiB {}",
        verdict(a_rss <= 6.0),
        verdict(a_cpu <= 50.0),
        verdict(values >= 100.0),
        verdict(stripped_size.is_some_and(|s| mib(s) <= 8.0)),
    );
    if !rows
        .iter()
        .skip(1)
        .all(|(_, (r, _, c))| a_rss < *r && a_cpu < *c)
        && !args.no_peers
    {
        println!("targets: lower RSS and CPU than both peers MISSED");
    } else if !args.no_peers {
        println!("targets: lower RSS and CPU than both peers met");
    }
    if agent.try_wait()?.is_some() {
        bail!("the agent exited during the run");
    }
    drop(collector);
    Ok(())
}
