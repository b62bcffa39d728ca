//! `tandem-collector demo`: the whole path on this machine with no setup. Makes a
//! throwaway data dir and CA, starts the collector on loopback, starts an agent for
//! this machine in the same process, and prints where everything is. The alert
//! engine runs with the default rule pack, written to `<dir>/rules` to edit.
//!
//! Notifications (issue #12): a demo rule on a value the agent is sure to cross
//! (memory in use above 0 %) fires within about 15 s; the demo policy mails the
//! (made-up) NOC at once, written as `.eml` files into `<dir>/mail`, and the live
//! feed is served on loopback. So the first command shows the whole path: sample →
//! alert → feed → mail.
//!
//! Only this module links the agent crate, and only with the default cargo feature
//! `demo` (issue 11): the collector that ships (package, container and release
//! builds, `--no-default-features`) has no `demo` command and no agent code in it.
//! In-process rather than the agent binary as a child, so that the README's
//! `cargo run -p tandem-collector -- demo` needs no second build and the demo stops
//! both with one Ctrl-C.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::config::{AlertsConfig, Config};
use crate::pki::{self, DEFAULT_AGENT_VALIDITY, Validity};
use crate::server::Collector;

/// The tenant the demo's agent belongs to.
pub(crate) const DEMO_TENANT: &str = "demo";

/// A rule the demo's agent is sure to trip: some memory is always in use.
const DEMO_RULE: &str = r#"# Written by `tandem-collector demo`: fires on any machine within about 15 s, to
# show the whole path (sample -> alert -> feed -> mail). Delete it to stop.
[[rule]]
name = "demo-memory-in-use"
summary = "Demo: memory is in use (always true)"
kind = "threshold"
metric = "mem.used.percent"
warning = { above = 0 }
for_secs = 10
min_samples = 2
"#;

/// The demo's escalation policy (see deploy/policies/example.toml for a real one).
const DEMO_POLICY: &str = r#"# Written by `tandem-collector demo`. Mail goes to .eml files (no SMTP server).
[[tenant]]
name = "demo"
zone = "Europe/Berlin"
contacts = ["it@customer.example"]

[[policy]]
name = "demo"
default = true
  [[policy.step]]
  after_secs = 0
  targets = ["feed", "email:noc@msp.example"]
  [[policy.step]]
  after_secs = 120
  targets = ["contacts"]
"#;

/// Writes the demo rule and policy (files that exist are kept, so edits survive).
fn write_demo_notify(
    root: &Path,
    rules_dir: &Path,
) -> anyhow::Result<crate::notify::config::NotifyConfig> {
    let policies = root.join("policies");
    std::fs::create_dir_all(&policies)
        .with_context(|| format!("cannot create {}", policies.display()))?;
    for (path, text) in [
        (rules_dir.join("demo.toml"), DEMO_RULE),
        (policies.join("demo.toml"), DEMO_POLICY),
    ] {
        if !path.exists() {
            std::fs::write(&path, text)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
    }
    let mut n = crate::notify::config::NotifyConfig::new(policies, root.join("mail"));
    n.msp_name = "Demo MSP".into();
    n.from = "Tandem demo <tandem@msp.example>".into();
    n.group_wait = std::time::Duration::from_secs(5);
    Ok(n)
}

/// Runs the demo until `shutdown` resolves.
pub async fn run(
    dir: Option<PathBuf>,
    listen: SocketAddr,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let root = match dir {
        Some(d) => d,
        None => std::env::temp_dir().join(format!("tandem-demo-{}", std::process::id())),
    };
    let data_dir = root.join("collector");
    let agent_dir = root.join("agent");
    crate::private_fs::create_dir(&data_dir)
        .with_context(|| format!("cannot create {}", data_dir.display()))?;
    if !pki::PkiPaths::new(&data_dir).ca_key.exists() {
        pki::init(&data_dir, &[])?;
    }
    let rules_dir = root.join("rules");
    crate::alerts::write_default_pack(&rules_dir)
        .with_context(|| format!("cannot write the rule pack to {}", rules_dir.display()))?;
    let notify_files = write_demo_notify(&root, &rules_dir)?;
    let mut config = Config::new(data_dir.clone(), listen);
    config.notify = Some(notify_files.clone());
    // The usual port when free, any other otherwise.
    let http_listen = match std::net::TcpListener::bind((listen.ip(), 8080)) {
        Ok(_) => SocketAddr::new(listen.ip(), 8080),
        Err(_) => SocketAddr::new(listen.ip(), 0),
    };
    // On loopback: plain HTTP (issue 15 allows it there only).
    config.http = Some(crate::notify::config::HttpConfig::new(http_listen));
    config.sample_interval_secs = 5;
    // The demo's agent has its certificate already; enrollment stays on loopback.
    config.enrollment.listen = SocketAddr::new(listen.ip(), 0);
    config.alerts = Some(AlertsConfig {
        rules_dir: rules_dir.clone(),
        tick: std::time::Duration::from_secs(5),
    });
    let collector = match Collector::bind(config.clone()).await {
        Ok(c) => c,
        Err(crate::server::ServeError::Bind { .. }) if listen.port() != 0 => {
            // The usual port is taken (another collector?): any free one will do.
            config.listen = SocketAddr::new(listen.ip(), 0);
            Collector::bind(config).await?
        }
        Err(e) => return Err(e.into()),
    };
    let addr = collector.local_addr();
    let url = format!("https://{addr}");
    let http_url = collector.http_url().unwrap_or_default();
    let agent_toml = agent_dir.join("agent.toml");
    let device_id = if agent_toml.exists() {
        // Reusing a demo dir: keep the device, point it at the (maybe new) port.
        let text = std::fs::read_to_string(&agent_toml)?;
        let updated: String = text
            .lines()
            .map(|l| {
                if l.starts_with("collector_url") {
                    format!("collector_url = \"{url}\"")
                } else {
                    l.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(&agent_toml, updated + "\n")?;
        String::from("(existing)")
    } else {
        pki::write_agent_bundle(
            &data_dir,
            DEMO_TENANT,
            None,
            &url,
            &agent_dir,
            Validity::starting_now(DEFAULT_AGENT_VALIDITY),
        )?
    };
    let agent_cfg = tandem_agent::config::load(&agent_toml).map_err(|e| anyhow::anyhow!("{e}"))?;
    let db = data_dir.join(crate::store::DB_FILE);
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "tandem-collector".into());

    println!("Tandem demo is running. Ctrl-C stops it; the files stay for you to look at.");
    println!();
    println!("  collector   telemetry (mTLS gRPC)  {url}");
    println!("  data dir    {}", data_dir.display());
    println!("  database    {}", db.display());
    println!(
        "  agent       device {device_id}, tenant {DEMO_TENANT}, config {}",
        agent_toml.display()
    );
    println!("              samples this machine every 5 s (collector-pushed interval)");
    println!();
    println!("Look at the data:");
    println!("  {exe} inspect --data-dir {}", data_dir.display());
    // Values are compressed chunks since issue 17: plain sqlite3 cannot count them.
    println!("  {exe} storage stats --data-dir {}", data_dir.display());
    println!();
    println!("Alerts (default rule pack in {}):", rules_dir.display());
    println!("  {exe} alerts list --data-dir {}", data_dir.display());
    println!("  {exe} rules check {}", rules_dir.display());
    println!();
    println!(
        "Notifications (policy in {}):",
        notify_files.policies_dir.display()
    );
    println!("  live feed   {http_url}/api/v1/feed   (with the console login or an API token)");
    println!(
        "  follow it   {exe} alerts tail --url {http_url} --data-dir {}",
        data_dir.display()
    );
    println!("  mail folder {}", notify_files.mail_dir.display());
    println!(
        "              the demo alert fires within a minute; its mail is written there soon after"
    );
    println!("  {exe} incidents list --data-dir {}", data_dir.display());
    println!("  {exe} notify log --data-dir {}", data_dir.display());
    println!();

    // --- issue 15 (console): an admin user, and where to log in ---
    let (user, password) = crate::console::cli::demo_admin(&data_dir)?;
    println!("Console:");
    println!("  open        {http_url}/console/   user {user}, password {password}");
    println!();
    // --- end issue 15 ---
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut agent_stop = stop_rx.clone();
    let mut collector_stop = stop_rx;
    let agent = tokio::spawn(tandem_agent::run(
        agent_cfg,
        Some(agent_toml.clone()),
        async move {
            let _ = agent_stop.changed().await;
        },
    ));
    let server = tokio::spawn(collector.run(async move {
        let _ = collector_stop.changed().await;
    }));
    shutdown.await;
    let _ = stop_tx.send(true);
    // Agent first (it flushes to the collector), then the collector.
    agent.await.context("agent task")??;
    server.await.context("collector task")??;
    println!("stopped; data kept in {}", root.display());
    Ok(())
}
