//! Shared pieces of Tandem's end-to-end tests and load generator: real binaries
//! started as processes, real certificates from the collector's own PKI code, real
//! mTLS gRPC clients on loopback, real SQLite files.
//!
//! Binaries are taken from the cargo target dir of this build (`target/debug`), so
//! run `cargo build --workspace --bins` first (the README's test command does).
//!
//! This is test-harness code: where a helper `expect`s, the invariant is that the
//! test's own setup works (a temp dir is writable, a binary built, a database
//! opened), and a failure there must stop the test with that message, which is
//! what a panic in a test does. Product code never panics on input.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use tandem_collector::pki::{self, Validity};
use tandem_proto::v1::telemetry_client::TelemetryClient;
use tandem_proto::v1::{
    AgentFrame, CollectorFrame, Hello, MetricBatch, OsFamily, Sample, SeriesKey, Welcome,
    agent_frame, collector_frame,
};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codec::CompressionEncoding;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

pub mod precoded;
pub mod raw;

/// Path of a workspace binary built for this profile.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/<test> or target/<profile>/<bin>
    let mut dir = exe.parent().expect("exe dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} not found: run `cargo build --workspace --bins` before the tests",
        path.display()
    );
    path
}

/// A TCP port for a process a test starts and names the port in its config (a
/// collector's HTTP or telemetry listener, an SMTP server, a webhook receiver),
/// free on every address when handed out.
///
/// Ports come from below the kernel's ephemeral range
/// (`/proc/sys/net/ipv4/ip_local_port_range`, 32768-60999 by default), never from
/// it: a port taken with `bind(":0")` and released is in that range, and any
/// outgoing connection of another test running beside it may be given it before
/// the process binds it. CI of 2026-12-04 failed so ("cannot listen for HTTP on
/// 0.0.0.0:33029: Address already in use"). Each port is handed out once per
/// process, from a start that depends on the pid, so two tests or two test
/// binaries do not get the same one.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let (lo, hi) = ports_below_ephemeral();
    let span = u32::from(hi - lo) + 1;
    let start = std::process::id().wrapping_mul(2_654_435_761) % span;
    for _ in 0..span {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = lo + ((start + n) % span) as u16;
        // The wildcard bind fails if anything listens on the port on any address.
        if std::net::TcpListener::bind(("0.0.0.0", port)).is_ok() {
            return port;
        }
    }
    panic!("no free TCP port in {lo}-{hi}");
}

/// The ports from 10000 to just below the ephemeral range (or above it, if it
/// starts too low to leave 1,000 below).
fn ports_below_ephemeral() -> (u16, u16) {
    ports_outside(
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .as_deref(),
    )
}

/// [`ports_below_ephemeral`] for the text of `ip_local_port_range` ("32768\t60999").
fn ports_outside(ephemeral: Option<&str>) -> (u16, u16) {
    let range = ephemeral.and_then(|s| {
        let mut it = s.split_whitespace().map(|x| x.parse::<u16>().ok());
        Some((it.next()??, it.next()??))
    });
    match range {
        Some((low, _)) if low > 11_000 => (10_000, low - 1),
        Some((_, high)) if high < 64_000 => (high + 1, 65_535),
        // No /proc (Windows: its dynamic range is 49152-65535) or a range that
        // leaves no room: the range below Linux's default.
        _ => (10_000, 32_767),
    }
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

/// How many times longer than written a test may wait for something to happen.
/// `TANDEM_WAIT_SCALE` sets it; it is 3 under CI (the `CI` variable), where the
/// whole suite shares 2 cores, and 1 otherwise. Only waits for a condition to
/// become true are scaled: a defect still fails, only later, and no test asserts
/// that something does *not* happen within a scaled time.
pub fn wait_scale() -> u32 {
    match std::env::var("TANDEM_WAIT_SCALE") {
        Ok(v) => v
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=20).contains(n))
            .unwrap_or_else(|| panic!("TANDEM_WAIT_SCALE={v:?}: expected a whole number 1-20")),
        Err(_) if std::env::var_os("CI").is_some() => 3,
        Err(_) => 1,
    }
}

/// Polls `cond` every 50 ms until it is true or `timeout` (times [`wait_scale`])
/// passes.
pub async fn wait_for<F, Fut>(timeout: Duration, what: &str, mut cond: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let timeout = timeout * wait_scale();
    let start = Instant::now();
    loop {
        if cond().await {
            return Ok(());
        }
        if start.elapsed() > timeout {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A collector data dir with a CA made by `tandem-collector pki init`.
pub struct Site {
    pub dir: tempfile::TempDir,
}

impl Site {
    pub async fn new() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let out = Command::new(bin("tandem-collector"))
            .args(["pki", "init", "--data-dir"])
            .arg(dir.path().join("collector"))
            .output()
            .await?;
        if !out.status.success() {
            bail!("pki init failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(Self { dir })
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("collector")
    }

    pub fn db_path(&self) -> PathBuf {
        self.data_dir().join("tandem.db")
    }

    pub fn ca_pem(&self) -> String {
        std::fs::read_to_string(pki::PkiPaths::new(&self.data_dir()).ca_cert).expect("ca.pem")
    }

    /// Issues a client certificate with the collector's own PKI code.
    pub fn issue(&self, tenant: &str, device: &str) -> Creds {
        self.issue_with(
            tenant,
            device,
            Validity::starting_now(Duration::from_secs(86_400)),
        )
    }

    /// Issues and records a client certificate, as `pki issue-agent` does (the
    /// collector accepts only certificates it recorded as issued).
    pub fn issue_with(&self, tenant: &str, device: &str, validity: Validity) -> Creds {
        let ca = pki::load_ca(&self.data_dir()).expect("load ca");
        let issued = ca.issue_agent(tenant, device, validity).expect("issue");
        let conn = tandem_collector::store::open(&self.db_path()).expect("open db");
        record_issued(&conn, device, &issued, validity).expect("record the certificate");
        Creds {
            ca_pem: self.ca_pem(),
            cert_pem: Some(issued.cert_pem),
            key_pem: Some(issued.key_pem),
        }
    }

    /// Starts `tandem-collector serve` on free loopback ports (telemetry and
    /// enrollment). `extra_toml` continues the `[telemetry]` table.
    pub async fn start_collector(&self, extra_toml: &str) -> anyhow::Result<CollectorProc> {
        self.start_collector_with(extra_toml, "").await
    }

    /// Like [`Site::start_collector`], with extra keys for the `[enrollment]` table.
    pub async fn start_collector_with(
        &self,
        extra_toml: &str,
        enrollment_toml: &str,
    ) -> anyhow::Result<CollectorProc> {
        let cfg = self.dir.path().join("collector.toml");
        if !cfg.exists() || !extra_toml.is_empty() || !enrollment_toml.is_empty() {
            std::fs::write(
                &cfg,
                format!(
                    "data_dir = \"collector\"\n[enrollment]\nlisten = \"127.0.0.1:0\"\n{enrollment_toml}\n[telemetry]\nlisten = \"127.0.0.1:0\"\n{extra_toml}"
                ),
            )?;
        }
        CollectorProc::spawn(&cfg, &self.dir.path().join("collector.log")).await
    }

    /// Like [`Site::start_collector`], under a hard open-file limit of `nofile`.
    pub async fn start_collector_nofile(&self, nofile: u64) -> anyhow::Result<CollectorProc> {
        let cfg = self.dir.path().join("collector.toml");
        std::fs::write(
            &cfg,
            "data_dir = \"collector\"\n[enrollment]\nlisten = \"127.0.0.1:0\"\n[telemetry]\nlisten = \"127.0.0.1:0\"\n",
        )?;
        CollectorProc::spawn_limited(&cfg, &self.dir.path().join("collector.log"), Some(nofile))
            .await
    }

    /// Runs `tandem-collector ARGS --data-dir <this site>`; returns (success, stdout, stderr).
    pub async fn cli(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(bin("tandem-collector"))
            .args(args)
            .arg("--data-dir")
            .arg(self.data_dir())
            .env("RUST_BACKTRACE", "0")
            .output()
            .await
            .expect("run tandem-collector");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Runs a CLI command that must succeed; returns its stdout.
    pub async fn cli_ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.cli(args).await;
        assert!(ok, "tandem-collector {args:?} failed:\n{err}");
        out
    }

    /// Provisions an agent exactly as an operator would, with `tandem-collector pki
    /// issue-agent`, into `<site>/<device>/`, sampling every second. Returns the
    /// path of its `agent.toml`.
    pub async fn provision_agent_toml(
        &self,
        collector_url: &str,
        tenant: &str,
        device: &str,
    ) -> anyhow::Result<PathBuf> {
        let dir = self.dir.path().join(device);
        let out = Command::new(bin("tandem-collector"))
            .args(["pki", "issue-agent", "--tenant", tenant, "--device", device])
            .arg("--collector-url")
            .arg(collector_url)
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--out")
            .arg(&dir)
            .output()
            .await?;
        if !out.status.success() {
            bail!(
                "pki issue-agent failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let toml = dir.join("agent.toml");
        let cfg =
            std::fs::read_to_string(&toml)?.replace("interval_secs = 10", "interval_secs = 1");
        std::fs::write(&toml, cfg)?;
        Ok(toml)
    }

    /// Starts `tandem-agent run --config <toml>`, logging to `<site>/<log_name>.log`;
    /// killed when dropped.
    pub fn spawn_agent(&self, toml: &Path, log_name: &str) -> anyhow::Result<Child> {
        let log = std::fs::File::create(self.dir.path().join(format!("{log_name}.log")))?;
        Ok(Command::new(bin("tandem-agent"))
            .arg("run")
            .arg("--config")
            .arg(toml)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()?)
    }

    /// A read-only connection to the collector's database.
    pub fn db(&self) -> rusqlite::Connection {
        let c = rusqlite::Connection::open_with_flags(
            self.db_path(),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .expect("open db");
        c.busy_timeout(Duration::from_secs(5))
            .expect("busy timeout");
        // store brief (issue 17): the `samples` view decodes head rows and chunks.
        tandem_collector::store::register_sql_functions(&c).expect("sql functions");
        c
    }

    pub fn count(&self, sql: &str) -> i64 {
        self.db().query_row(sql, [], |r| r.get(0)).expect(sql)
    }
}

impl Site {
    /// Makes later `start_collector("")` calls listen on one telemetry port (restart
    /// in place), from [`free_port`]: outside the ephemeral range, so no outgoing
    /// connection takes it while the collector is down. Returns the port.
    pub fn pin_free_port(&self) -> u16 {
        let port = free_port();
        std::fs::write(
            self.dir.path().join("collector.toml"),
            format!(
                "data_dir = \"collector\"\n[enrollment]\nlisten = \"127.0.0.1:0\"\n[telemetry]\nlisten = \"127.0.0.1:{port}\"\n"
            ),
        )
        .expect("write collector.toml");
        port
    }

    /// Provisions an agent with the CLI (`pki issue-agent`) into `<site>/<name>/` and
    /// writes its agent.toml with `extra_toml` appended (interval 1 s unless given).
    pub async fn provision_agent(&self, name: &str, url: &str, extra_toml: &str) -> PathBuf {
        let dir = self.dir.path().join(name);
        let out = Command::new(bin("tandem-collector"))
            .args([
                "pki",
                "issue-agent",
                "--tenant",
                "acme",
                "--device",
                name,
                "--collector-url",
                url,
            ])
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--out")
            .arg(&dir)
            .output()
            .await
            .expect("run pki issue-agent");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let interval = if extra_toml.contains("interval_secs") {
            ""
        } else {
            "interval_secs = 1\n"
        };
        std::fs::write(
            dir.join("agent.toml"),
            format!(
                "collector_url = \"{url}\"\nca_cert = \"ca.pem\"\ncert = \"agent.pem\"\nkey = \"agent.key\"\nstate_dir = \"state\"\n{interval}{extra_toml}"
            ),
        )
        .expect("write agent.toml");
        dir
    }

    /// Batch seqs stored for a device, ascending.
    pub fn stored_seqs(&self, device: &str) -> Vec<u64> {
        let db = self.db();
        let mut st = db
            .prepare("SELECT seq FROM batches WHERE device_id = ?1 ORDER BY seq")
            .expect("prepare");
        st.query_map([device], |r| r.get::<_, i64>(0))
            .expect("query")
            .map(|r| r.expect("row") as u64)
            .collect()
    }

    /// Waits until the collector has acknowledged seq `at_least` of `device`.
    pub async fn wait_acked(
        &self,
        device: &str,
        at_least: u64,
        within: Duration,
        what: &str,
    ) -> anyhow::Result<()> {
        wait_for(within, what, || {
            let n = self.acked_seq(device);
            async move { n >= at_least }
        })
        .await
    }

    pub fn acked_seq(&self, device: &str) -> u64 {
        self.db()
            .query_row(
                "SELECT acked_seq FROM devices WHERE id = ?1",
                [device],
                |r| r.get::<_, i64>(0),
            )
            .unwrap_or(0) as u64
    }
}

/// A running `tandem-agent run` process.
pub struct AgentProc {
    pub child: Child,
    pub dir: PathBuf,
}

impl AgentProc {
    /// Starts the agent of a provisioned dir; its log goes to `<dir>/agent.log`.
    pub async fn start(dir: &Path) -> Self {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("agent.log"))
            .expect("log");
        let child = Command::new(bin("tandem-agent"))
            .arg("run")
            .arg("--config")
            .arg(dir.join("agent.toml"))
            .env("RUST_LOG", "info,tandem_agent=debug")
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("spawn agent");
        Self {
            child,
            dir: dir.to_owned(),
        }
    }

    /// Like [`AgentProc::start`], with extra environment variables (e.g. libfaketime's
    /// to run the agent with a skewed clock).
    pub async fn start_with_env(dir: &Path, env: &[(&str, &str)]) -> Self {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("agent.log"))
            .expect("log");
        let child = Command::new(bin("tandem-agent"))
            .arg("run")
            .arg("--config")
            .arg(dir.join("agent.toml"))
            .env("RUST_LOG", "info,tandem_agent=debug")
            .envs(env.iter().copied())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("spawn agent");
        Self {
            child,
            dir: dir.to_owned(),
        }
    }

    /// The highest seq the agent ever assigned (its `last_seq` file).
    pub fn last_seq(&self) -> u64 {
        last_seq(&self.dir)
    }

    pub async fn kill9(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }

    /// SIGTERM and wait; true if it exited 0.
    pub async fn terminate(mut self) -> bool {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status();
        }
        matches!(tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await, Ok(Ok(s)) if s.success())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("agent.log")).unwrap_or_default()
    }
}

/// The `last_seq` of an agent dir.
pub fn last_seq(agent_dir: &Path) -> u64 {
    std::fs::read_to_string(agent_dir.join("state/last_seq"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Files in an agent's spool: (data frames, gap records, total bytes).
pub fn spool_contents(agent_dir: &Path) -> (usize, usize, u64) {
    let mut out = (0, 0, 0);
    if let Ok(rd) = std::fs::read_dir(agent_dir.join("state/spool")) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let len = e.metadata().map(|m| m.len()).unwrap_or(0);
            if name.ends_with(".frame") {
                out.0 += 1;
                out.2 += len;
            } else if name.ends_with(".gap") {
                out.1 += 1;
                out.2 += len;
            }
        }
    }
    out
}

/// Records a certificate made with `Ca::issue_agent` in the collector's
/// `certificates` table, as `pki issue-agent` does.
pub fn record_issued(
    conn: &rusqlite::Connection,
    device: &str,
    issued: &pki::Issued,
    validity: Validity,
) -> anyhow::Result<()> {
    tandem_collector::store::admin::record_certificate(
        conn,
        device,
        &tandem_collector::store::admin::IssuedCert {
            cert_pem: issued.cert_pem.clone(),
            serial_hex: issued.serial_hex.clone(),
            not_after_ms: validity.not_after_ms(),
        },
        "manual",
        now_ms(),
    )?;
    Ok(())
}

/// A running collector process.
pub struct CollectorProc {
    pub child: Child,
    pub addr: SocketAddr,
    /// The enrollment listener.
    pub enroll_addr: SocketAddr,
    log: PathBuf,
}

impl CollectorProc {
    async fn spawn(cfg: &Path, log: &Path) -> anyhow::Result<Self> {
        Self::spawn_limited(cfg, log, None).await
    }

    /// Spawns the collector; with `nofile`, under a soft *and hard* open-file limit
    /// of that many (set by bash's `ulimit -n` before `exec`), so the collector's own
    /// raise to the hard limit cannot lift it.
    async fn spawn_limited(cfg: &Path, log: &Path, nofile: Option<u64>) -> anyhow::Result<Self> {
        let logf = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?;
        let mut cmd = match nofile {
            None => Command::new(bin("tandem-collector")),
            Some(n) => {
                let mut c = Command::new("bash");
                c.arg("-c")
                    .arg(format!("ulimit -n {n} && exec \"$0\" \"$@\""))
                    .arg(bin("tandem-collector"));
                c
            }
        };
        let mut child = cmd
            .arg("serve")
            .arg("--config")
            .arg(cfg)
            .env("RUST_LOG", "info,tandem_collector=debug")
            .stdout(Stdio::piped())
            .stderr(logf)
            .kill_on_drop(true)
            .spawn()?;
        let stdout = child.stdout.take().context("stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .context("collector did not report its address in 30 s")??
            .with_context(|| {
                format!(
                    "collector exited; log:\n{}",
                    std::fs::read_to_string(log).unwrap_or_default()
                )
            })?;
        let addr = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("telemetry="))
            .context("no telemetry= in the collector's first line")?
            .parse()?;
        let enroll_addr = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("enroll="))
            .context("no enroll= in the collector's first line")?
            .parse()?;
        Ok(Self {
            child,
            addr,
            enroll_addr,
            log: log.to_owned(),
        })
    }

    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }

    /// SIGKILL: no flush, no goodbye.
    pub async fn kill9(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }

    /// SIGTERM and wait for a clean exit; returns whether it exited 0.
    pub async fn terminate(mut self) -> bool {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status();
        }
        matches!(tokio::time::timeout(Duration::from_secs(20), self.child.wait()).await, Ok(Ok(s)) if s.success())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// What a test client presents: the CA it trusts and (maybe) a client certificate.
#[derive(Clone)]
pub struct Creds {
    pub ca_pem: String,
    pub cert_pem: Option<String>,
    pub key_pem: Option<String>,
}

/// A tonic client over real mTLS.
pub async fn client(addr: SocketAddr, creds: &Creds) -> anyhow::Result<TelemetryClient<Channel>> {
    Ok(TelemetryClient::new(channel(addr, creds).await?)
        .send_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Gzip)
        .max_encoding_message_size(64 * 1024 * 1024))
}

/// A channel over real mTLS (TLS 1.3 negotiated by the server).
pub async fn channel(addr: SocketAddr, creds: &Creds) -> anyhow::Result<Channel> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&creds.ca_pem))
        .domain_name("localhost");
    if let (Some(c), Some(k)) = (&creds.cert_pem, &creds.key_pem) {
        tls = tls.identity(Identity::from_pem(c, k));
    }
    Ok(Endpoint::from_shared(format!("https://{addr}"))?
        .tls_config(tls)?
        .connect_timeout(Duration::from_secs(10))
        .connect()
        .await?)
}

/// An open Telemetry stream.
pub struct Stream {
    pub tx: mpsc::Sender<AgentFrame>,
    pub rx: tonic::Streaming<CollectorFrame>,
    /// SlowDown frames received so far.
    pub slow_downs: u32,
}

pub fn hello_frame() -> AgentFrame {
    AgentFrame {
        kind: Some(agent_frame::Kind::Hello(Hello {
            protocol_version: 1,
            agent_version: "test".into(),
            os_family: OsFamily::Linux as i32,
            os_version: "test os".into(),
            hostname: "test-host".into(),
            boot_time_unix: 1,
            claimed_device_id: String::new(),
        })),
    }
}

/// A batch of `n_series` series and one sample at `t`.
pub fn batch(seq: u64, t: i64, n_series: usize) -> AgentFrame {
    AgentFrame {
        kind: Some(agent_frame::Kind::Batch(MetricBatch {
            seq,
            series: (0..n_series)
                .map(|i| SeriesKey {
                    name: format!("test.metric.{i}"),
                    dimension: String::new(),
                })
                .collect(),
            samples: vec![Sample {
                time_unix_ms: t,
                values: (0..n_series)
                    .map(|i| (seq * 1000 + i as u64) as f64)
                    .collect(),
            }],
        })),
    }
}

/// A batch of one sample at `t` with the given `(metric, dimension, value)`s.
pub fn values_batch(seq: u64, t: i64, values: &[(&str, &str, f64)]) -> AgentFrame {
    AgentFrame {
        kind: Some(agent_frame::Kind::Batch(MetricBatch {
            seq,
            series: values
                .iter()
                .map(|(name, dim, _)| SeriesKey {
                    name: (*name).into(),
                    dimension: (*dim).into(),
                })
                .collect(),
            samples: vec![Sample {
                time_unix_ms: t,
                values: values.iter().map(|v| v.2).collect(),
            }],
        })),
    }
}

/// A device that keeps reporting over a real mTLS stream: every `period` it sends
/// one batch of the values [`Feeder::set`] last gave (seq and time advancing) and
/// waits for its ack. Stops when dropped.
pub struct Feeder {
    values: std::sync::Arc<std::sync::Mutex<Vec<(String, String, f64)>>>,
    /// Batches acknowledged so far.
    pub acked: std::sync::Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Feeder {
    /// Connects as the device of `creds`, says hello, and starts sending.
    pub async fn start(
        addr: SocketAddr,
        creds: &Creds,
        period: Duration,
        values: &[(&str, &str, f64)],
    ) -> anyhow::Result<Self> {
        let mut c = client(addr, creds).await?;
        let (mut s, _) = Stream::hello(&mut c).await?;
        let shared = std::sync::Arc::new(std::sync::Mutex::new(
            values
                .iter()
                .map(|(n, d, v)| (n.to_string(), d.to_string(), *v))
                .collect::<Vec<_>>(),
        ));
        let acked = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (v2, a2) = (shared.clone(), acked.clone());
        let task = tokio::spawn(async move {
            let _client = c;
            let mut seq = 0;
            loop {
                seq += 1;
                let now: Vec<(String, String, f64)> = v2.lock().expect("values").clone();
                let refs: Vec<(&str, &str, f64)> = now
                    .iter()
                    .map(|(n, d, v)| (n.as_str(), d.as_str(), *v))
                    .collect();
                if s.send(values_batch(seq, now_ms(), &refs)).await.is_err() {
                    return;
                }
                match s.next_ack().await {
                    Ok(Some(_)) => {
                        a2.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                    _ => return,
                }
                tokio::time::sleep(period).await;
            }
        });
        Ok(Self {
            values: shared,
            acked,
            task,
        })
    }

    /// The values sent from the next batch on.
    pub fn set(&self, values: &[(&str, &str, f64)]) {
        *self.values.lock().expect("values") = values
            .iter()
            .map(|(n, d, v)| (n.to_string(), d.to_string(), *v))
            .collect();
    }
}

impl Drop for Feeder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Stream {
    /// Opens a stream and sends `first` (normally a hello).
    pub async fn open(
        client: &mut TelemetryClient<Channel>,
        first: AgentFrame,
    ) -> Result<Self, tonic::Status> {
        let (tx, rx) = mpsc::channel(128);
        tx.send(first)
            .await
            .map_err(|_| tonic::Status::internal("send"))?;
        let rx = client.stream(ReceiverStream::new(rx)).await?.into_inner();
        Ok(Self {
            tx,
            rx,
            slow_downs: 0,
        })
    }

    /// Opens a stream, says hello, returns the welcome.
    pub async fn hello(client: &mut TelemetryClient<Channel>) -> anyhow::Result<(Self, Welcome)> {
        let mut s = Self::open(client, hello_frame()).await?;
        match s.rx.message().await? {
            Some(CollectorFrame {
                kind: Some(collector_frame::Kind::Welcome(w)),
            }) => Ok((s, w)),
            other => bail!("expected welcome, got {other:?}"),
        }
    }

    pub async fn send(&self, frame: AgentFrame) -> anyhow::Result<()> {
        self.tx
            .send(frame)
            .await
            .map_err(|_| anyhow::anyhow!("stream closed"))
    }

    /// The next ack's seq, or the status the stream ended with.
    pub async fn next_ack(&mut self) -> Result<Option<u64>, tonic::Status> {
        loop {
            match tokio::time::timeout(Duration::from_secs(20), self.rx.message()).await {
                Err(_) => return Err(tonic::Status::deadline_exceeded("no ack within 20 s")),
                Ok(Err(s)) => return Err(s),
                Ok(Ok(None)) => return Ok(None),
                Ok(Ok(Some(CollectorFrame {
                    kind: Some(collector_frame::Kind::Ack(a)),
                }))) => return Ok(Some(a.seq)),
                Ok(Ok(Some(CollectorFrame {
                    kind: Some(collector_frame::Kind::SlowDown(_)),
                }))) => {
                    self.slow_downs += 1;
                }
                Ok(Ok(Some(_))) => continue,
            }
        }
    }

    /// Reads until the stream ends; returns the final status (Ok for a clean end).
    pub async fn outcome(&mut self) -> Result<(), tonic::Status> {
        loop {
            match self.next_ack().await {
                Ok(Some(_)) => continue,
                Ok(None) => return Ok(()),
                Err(s) => return Err(s),
            }
        }
    }
}

/// Reads the VmRSS of a process, in bytes.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// User + system CPU seconds used by the threads of process `pid` named `name`
/// (e.g. the collector's `alert-engine`), summed.
pub fn thread_cpu_secs(pid: u32, name: &str) -> Option<f64> {
    let mut total = None;
    for e in std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
    {
        let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
        if comm.trim() != name {
            continue;
        }
        let s = std::fs::read_to_string(e.path().join("stat")).ok()?;
        let rest = &s[s.rfind(')')? + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
        *total.get_or_insert(0.0) += ticks as f64 / 100.0;
    }
    total
}

/// User + system CPU seconds a process has used.
pub fn cpu_secs(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// A test that cannot run on this machine (no root, a tool missing) fails, always:
/// the test command (tests/run-all.sh) installs what the tests need, and a test that
/// did not run must never report as passed. (A developer without root runs a
/// narrower filter instead.) Callers `return` right after, for the compiler.
pub fn cannot_run(reason: &str) {
    panic!(
        "this test cannot run here: {reason} (run `bash tests/run-all.sh` as root, which \
         installs what it needs)"
    );
}

/// A tmpfs of a given size mounted at a path (needs root), for tests of full disks;
/// unmounted on drop.
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs of `size` (as `mount -o size=` takes it: `1m`, `128k`) at `path`,
    /// creating the folder; `None` when it cannot (not root).
    pub fn mount(path: &Path, size: &str) -> Option<Self> {
        std::fs::create_dir_all(path).ok()?;
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Self(path.to_owned()))
    }

    /// Grows or shrinks the mounted tmpfs.
    pub fn resize(&self, size: &str) {
        let ok = std::process::Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "remount {} with size {size}", self.0.display());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_for_test_processes_avoid_the_ephemeral_range() {
        assert_eq!(ports_outside(Some("32768\t60999\n")), (10_000, 32_767));
        assert_eq!(ports_outside(Some("1024 30000")), (30_001, 65_535));
        assert_eq!(ports_outside(Some("1024 65535")), (10_000, 32_767));
        assert_eq!(ports_outside(Some("junk")), (10_000, 32_767));
        assert_eq!(ports_outside(None), (10_000, 32_767));
        let (lo, hi) = ports_below_ephemeral();
        let ports: Vec<u16> = (0..50).map(|_| free_port()).collect();
        for &p in &ports {
            assert!((lo..=hi).contains(&p), "{p} outside {lo}-{hi}");
            std::net::TcpListener::bind(("0.0.0.0", p)).expect("handed out free");
        }
        let distinct: std::collections::BTreeSet<_> = ports.iter().collect();
        assert_eq!(distinct.len(), ports.len(), "a port handed out twice");
    }
}
