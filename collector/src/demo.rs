//! `tandem-collector demo`: the whole path on this machine with no setup. Makes a
//! throwaway data dir and CA, starts the collector on loopback, starts an agent for
//! this machine in the same process, and prints where everything is. The alert
//! engine runs with the default rule pack, written to `<dir>/rules` to edit.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::config::{AlertsConfig, Config};
use crate::pki::{self, DEFAULT_AGENT_VALIDITY, Validity};
use crate::server::Collector;

/// The tenant the demo's agent belongs to.
pub const DEMO_TENANT: &str = "demo";

/// Writes an agent's certificate, key, CA and a ready `agent.toml` into `out`, and
/// records the certificate in the database. Returns the device id.
pub fn write_agent_bundle(
    data_dir: &Path,
    tenant: &str,
    device_id: Option<&str>,
    collector_url: &str,
    out: &Path,
    validity: Validity,
) -> anyhow::Result<String> {
    let ca = pki::load_ca(data_dir)?;
    let device_id = device_id.map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
    let issued = ca.issue_agent(tenant, &device_id, validity)?;
    // Recorded so `device list` shows its expiry and `--replace` can revoke it.
    let conn = crate::store::open(&data_dir.join(crate::store::DB_FILE))?;
    let now_ms = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
    crate::store::admin::record_certificate(
        &conn,
        &device_id,
        &crate::store::admin::IssuedCert {
            cert_pem: issued.cert_pem.clone(),
            serial_hex: issued.serial_hex.clone(),
            not_after_ms: validity.not_after_ms(),
        },
        "manual",
        now_ms,
    )?;
    drop(conn);
    pki::write_file(&out.join("ca.pem"), &ca.cert_pem, false)?;
    pki::write_file(&out.join("agent.pem"), &issued.cert_pem, false)?;
    pki::write_file(&out.join("agent.key"), &issued.key_pem, true)?;
    let toml = format!(
        "# Written by `tandem-collector pki issue-agent` for device {device_id} (tenant {tenant}).\n\
         collector_url = \"{collector_url}\"\n\
         ca_cert = \"ca.pem\"\n\
         cert = \"agent.pem\"\n\
         key = \"agent.key\"\n\
         state_dir = \"state\"\n\
         interval_secs = 10\n"
    );
    pki::write_file(&out.join("agent.toml"), &toml, false)?;
    Ok(device_id)
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
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create {}", data_dir.display()))?;
    if !pki::PkiPaths::new(&data_dir).ca_key.exists() {
        pki::init(&data_dir, &[])?;
    }
    let rules_dir = root.join("rules");
    crate::alerts::write_default_pack(&rules_dir)
        .with_context(|| format!("cannot write the rule pack to {}", rules_dir.display()))?;
    let mut config = Config::new(data_dir.clone(), listen);
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
        write_agent_bundle(
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
    println!("  sqlite3 {} 'SELECT count(*) FROM samples'", db.display());
    println!();
    println!("Alerts (default rule pack in {}):", rules_dir.display());
    println!("  {exe} alerts list --data-dir {}", data_dir.display());
    println!("  {exe} rules check {}", rules_dir.display());
    println!();

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
