//! `tandem-agent`: samples this machine's health, spools each sample to disk, and
//! streams the spool to the collector over mutual-TLS gRPC.
// `deny`, not `forbid`: the platform modules that call the OS through FFI allow it
// on their `mod` line (`platform/windows.rs` and `platform/wua.rs` for Win32 and
// COM, `platform/glibc.rs` for one mallopt call). Nothing else may.
#![deny(unsafe_code)]

pub mod budget;
pub mod collect;
pub mod config;
pub mod enroll;
pub mod identity;
pub mod inventory;
pub mod patches;
pub mod platform;
pub mod reload;
pub mod spool;
pub mod tool;
pub mod uplink;

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tandem_proto::v1::{AgentFrame, agent_frame};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

pub use config::AgentConfig;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Spool(#[from] spool::SpoolError),
    #[error(transparent)]
    Uplink(#[from] uplink::UplinkError),
    #[error(transparent)]
    Sampler(#[from] collect::SamplerError),
    #[error("background task failed")]
    Join,
    #[error(transparent)]
    Enroll(#[from] enroll::EnrollError),
    #[error(transparent)]
    Identity(#[from] identity::IdentityError),
    #[error(
        "this device has no identity yet ({} is missing): run `tandem-agent enroll --token TOKEN`, or set enroll_token in the config or TANDEM_ENROLL_TOKEN",
        .0.display()
    )]
    NotEnrolled(std::path::PathBuf),
    #[error(
        "no collector to stream to: collector_url is not set in the config and {} does not exist",
        .0.display()
    )]
    NoCollector(std::path::PathBuf),
}

/// Environment variable that may hold an enrollment token for the first `run`.
pub const TOKEN_ENV: &str = "TANDEM_ENROLL_TOKEN";

/// Makes `cfg` ready to stream: enrolls first if the device has no certificate and
/// a token is at hand (config or `TANDEM_ENROLL_TOKEN`), then fills the collector
/// address from `enrollment.toml` where the config does not give one.
pub async fn prepare(cfg: AgentConfig) -> Result<AgentConfig, AgentError> {
    let has_identity = cfg.cert.exists() && cfg.key.exists();
    if !has_identity {
        let token = cfg.enroll_token.as_ref().map(|s| s.0.clone()).or_else(|| {
            std::env::var(TOKEN_ENV)
                .ok()
                .filter(|t| !t.trim().is_empty())
        });
        let Some(token) = token else {
            return Err(AgentError::NotEnrolled(cfg.cert.clone()));
        };
        let done = enroll::enroll(&cfg, &token).await?;
        tracing::info!(device = %done.enrollment.device_id, tenant = %done.enrollment.tenant, "enrolled");
    }
    complete(cfg)
}

/// Fills what an enrolled agent's config may leave out (the collector address, from
/// `enrollment.toml`). Used at start and on every config reload.
pub fn complete(mut cfg: AgentConfig) -> Result<AgentConfig, AgentError> {
    if cfg.collector_url.is_empty() {
        let e = identity::Enrollment::load(&cfg.state_dir)?
            .ok_or_else(|| AgentError::NoCollector(identity::Enrollment::path(&cfg.state_dir)))?;
        cfg.collector_url = e.collector_url;
    }
    if cfg.server_name.is_empty() {
        cfg.server_name = config::url_host(&cfg.collector_url)
            .unwrap_or_default()
            .to_owned();
    }
    Ok(cfg)
}

/// Runs the agent until `shutdown` resolves: sampling, spooling, streaming. With
/// `config_path`, edits of that file apply without a restart (see [`reload`]).
pub async fn run(
    cfg: AgentConfig,
    config_path: Option<PathBuf>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AgentError> {
    let cfg = prepare(cfg).await?;
    // Fail early, with the file name, if the TLS files or URL are unusable.
    uplink::endpoint(&cfg)?;
    let state_dir = cfg.state_dir.clone();
    let bounds = cfg.spool_bounds();
    let spool = tokio::task::spawn_blocking(move || spool::Spool::open(&state_dir, bounds))
        .await
        .map_err(|_| AgentError::Join)??;
    let pending = spool.len();
    let spool = Arc::new(Mutex::new(spool));
    let sampler = tokio::task::spawn_blocking(collect::Sampler::new)
        .await
        .map_err(|_| AgentError::Join)??;
    let new_data = Arc::new(Notify::new());
    let (interval_tx, interval_rx) = watch::channel(cfg.interval);
    let stop_sampling = CancellationToken::new();
    let stop_uplink = CancellationToken::new();
    let stop_reload = CancellationToken::new();
    tracing::info!(collector = %cfg.collector_url, interval_secs = cfg.interval.as_secs(), spooled = pending, "agent started");

    let cfg = Arc::new(cfg);
    let (cfg_tx, cfg_rx) = watch::channel(cfg.clone());
    let watcher = match config_path {
        Some(path) => match reload::watch(path, cfg_tx, stop_reload.clone()) {
            Ok(handle) => Some(handle),
            Err(err) => {
                tracing::warn!(error = %err, "cannot watch the config file; edits apply on restart only");
                None
            }
        },
        None => None,
    };
    let applier = tokio::spawn(apply_reloads(
        cfg_rx.clone(),
        spool.clone(),
        interval_tx.clone(),
        stop_reload.clone(),
    ));
    // Set by the sampler loop's budget governor, read by the patch loop.
    let shedding = Arc::new(AtomicBool::new(false));
    let sampling = tokio::spawn(sample_loop(
        sampler,
        spool.clone(),
        new_data.clone(),
        interval_rx,
        cfg_rx.clone(),
        shedding.clone(),
        stop_sampling.clone(),
    ));
    let stop_patches = CancellationToken::new();
    let (check_patches_tx, check_patches_rx) = tokio::sync::mpsc::channel(1);
    let patching = tokio::spawn(patch_loop(
        cfg_rx.clone(),
        spool.clone(),
        new_data.clone(),
        shedding,
        check_patches_rx,
        stop_patches.clone(),
    ));
    let stop_inventory = CancellationToken::new();
    let inventorying = tokio::spawn(inventory_loop(
        cfg_rx.clone(),
        spool.clone(),
        new_data.clone(),
        stop_inventory.clone(),
    ));
    let renew_now = Arc::new(Notify::new());
    let stop_renewal = CancellationToken::new();
    let renewal = tokio::spawn(identity::renew_loop(
        cfg.clone(),
        renew_now.clone(),
        stop_renewal.clone(),
    ));
    let shared = uplink::Shared {
        spool,
        new_data,
        interval: interval_tx,
        renew_now,
        check_patches: check_patches_tx,
    };
    let uplink = tokio::spawn(uplink::run(cfg_rx, shared, stop_uplink.clone()));

    shutdown.await;
    tracing::info!("agent stopping");
    stop_reload.cancel();
    if let Some(w) = watcher {
        let _ = w.await;
    }
    let _ = applier.await;
    // Stop producing first, so the uplink's final flush sees the last sample.
    stop_sampling.cancel();
    let _ = sampling.await;
    stop_patches.cancel();
    let _ = patching.await;
    stop_inventory.cancel();
    let _ = inventorying.await;
    stop_uplink.cancel();
    let _ = uplink.await;
    stop_renewal.cancel();
    let _ = renewal.await;
    tracing::info!("agent stopped");
    Ok(())
}

/// Applies the parts of a reloaded config that live outside the uplink: the sample
/// interval and the spool bounds. (The uplink watches the config itself.)
async fn apply_reloads(
    mut cfg: watch::Receiver<Arc<AgentConfig>>,
    spool: Arc<Mutex<spool::Spool>>,
    interval: watch::Sender<Duration>,
    stop: CancellationToken,
) {
    let mut current = cfg.borrow_and_update().clone();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            r = cfg.changed() => if r.is_err() { return },
        }
        let new = cfg.borrow_and_update().clone();
        if new.interval != current.interval {
            let _ = interval.send(new.interval);
        }
        if new.spool_bounds() != current.spool_bounds() {
            let spool = spool.clone();
            let bounds = new.spool_bounds();
            let r = tokio::task::spawn_blocking(move || {
                spool
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .set_bounds(bounds)
            })
            .await;
            if let Ok(Err(err)) = r {
                tracing::error!(error = %err, "applying new spool bounds failed");
            }
        }
        if new.state_dir != current.state_dir {
            tracing::warn!("state_dir changed: takes effect at the next restart");
        }
        tracing::info!(
            interval_secs = new.interval.as_secs(),
            "configuration reloaded"
        );
        current = new;
    }
}

/// Samples every interval and spools each reading. Before each sample it measures
/// the agent's own footprint and lets the budget governor decide whether optional
/// work is shed (published in `shedding` for the patch loop); the configured
/// services and the budget follow config reloads.
async fn sample_loop(
    sampler: collect::Sampler,
    spool: Arc<Mutex<spool::Spool>>,
    new_data: Arc<Notify>,
    mut interval: watch::Receiver<Duration>,
    mut cfg: watch::Receiver<Arc<AgentConfig>>,
    shedding: Arc<AtomicBool>,
    stop: CancellationToken,
) {
    let first = cfg.borrow_and_update().clone();
    let mut sampler = sampler;
    sampler.set_services(&first.services);
    let governor = budget::Governor::new(first.budget);
    let state = Arc::new(Mutex::new((sampler, governor)));
    let started = std::time::Instant::now();
    // sysinfo needs a short gap between two CPU refreshes to compute usage.
    tokio::time::sleep(Duration::from_millis(500)).await;
    loop {
        let reloaded = cfg
            .has_changed()
            .unwrap_or(false)
            .then(|| cfg.borrow_and_update().clone());
        let state2 = state.clone();
        let spool2 = spool.clone();
        let shedding2 = shedding.clone();
        let pushed = tokio::task::spawn_blocking(move || {
            let mut guard = state2.lock().unwrap_or_else(|p| p.into_inner());
            let (sampler, governor) = &mut *guard;
            if let Some(c) = reloaded {
                sampler.set_services(&c.services);
                governor.set_budget(c.budget);
            }
            let verdict = platform::self_usage()
                .map(|u| governor.observe(started.elapsed().as_millis() as u64, u));
            if let Some(v) = &verdict {
                match &v.change {
                    Some(budget::Change::Started(why)) => {
                        tracing::warn!(over = %why, shed = budget::SHED, "agent over its budget; shedding optional work")
                    }
                    Some(budget::Change::Stopped) => {
                        tracing::info!("agent back under its budget; optional work resumed")
                    }
                    None => {}
                }
                sampler.set_shedding(v.shedding);
                shedding2.store(v.shedding, Ordering::Relaxed);
            }
            let mut reading = sampler.sample();
            if let Some(v) = verdict {
                if let Some(c) = v.cpu_ms_per_min {
                    reading.push("agent.cpu_ms_per_min", "", c);
                }
                reading.push("agent.rss_bytes", "", v.rss_bytes as f64);
                reading.push("agent.shedding", "", f64::from(u8::from(v.shedding)));
            }
            drop(guard);
            let mut spool = spool2.lock().unwrap_or_else(|p| p.into_inner());
            spool.push(|seq| AgentFrame {
                kind: Some(agent_frame::Kind::Batch(reading.to_batch(seq))),
            })
        })
        .await;
        match pushed {
            Ok(Ok(seq)) => {
                tracing::debug!(seq, "sample spooled");
                new_data.notify_one();
            }
            Ok(Err(err)) => tracing::error!(error = %err, "cannot write to the spool; sample lost"),
            Err(_) => tracing::error!("sampler task failed"),
        }
        let period = *interval.borrow_and_update();
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(period) => {}
            _ = interval.changed() => {}
        }
    }
}

/// Checks the patch status at start and then every `patch_interval` (plus jitter),
/// spooling each result as a `PatchReport` frame: it is then delivered and
/// acknowledged like a batch, and survives an outage in the spool.
///
/// A message on `check_now` (the collector's `CheckPatches`) starts a check at once,
/// and the next periodic one is due an interval after it. One check runs at a time.
/// Requests that arrive while a check runs are coalesced into one further check
/// right after it (the running one may have read the package state before the
/// request was made); however many arrive, at most one waits.
///
/// The check runs on a plain thread, not `spawn_blocking`: a package manager that
/// hangs until its timeout must neither hold up the sampler nor make shutdown (which
/// waits for blocking tasks) wait for it. At shutdown the loop stops waiting at once.
///
/// While the agent sheds work (over its budget), a due check waits until shedding
/// stops, looking again each minute, but never longer than one more interval.
async fn patch_loop(
    mut cfg: watch::Receiver<Arc<AgentConfig>>,
    spool: Arc<Mutex<spool::Spool>>,
    new_data: Arc<Notify>,
    shedding: Arc<AtomicBool>,
    mut check_now: tokio::sync::mpsc::Receiver<()>,
    stop: CancellationToken,
) {
    use rand::Rng;
    let mut requests_open = true;
    let state_dir = cfg.borrow().state_dir.clone();
    let first_seen = {
        let dir = state_dir.clone();
        match tokio::task::spawn_blocking(move || patches::FirstSeen::load(&dir)).await {
            Ok(f) => Arc::new(Mutex::new(f)),
            Err(_) => return,
        }
    };
    loop {
        if shedding.load(Ordering::Relaxed) {
            let give_up = tokio::time::Instant::now() + cfg.borrow().patch_interval;
            tracing::info!("patch check deferred: the agent is over its budget");
            while shedding.load(Ordering::Relaxed) && tokio::time::Instant::now() < give_up {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(60)) => {}
                }
            }
        }
        // Every request made until now is answered by the check starting now.
        while check_now.try_recv().is_ok() {}
        let timeout = cfg.borrow().patch_timeout;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let spawned = std::thread::Builder::new()
            .name("patch-check".into())
            .spawn(move || {
                let _ = tx.send(platform::check_patches(timeout));
            });
        if let Err(err) = spawned {
            tracing::warn!(error = %err, "cannot start the patch check");
        } else {
            let check = tokio::select! {
                _ = stop.cancelled() => return,
                c = rx => c,
            };
            if let Ok(check) = check {
                let first_seen = first_seen.clone();
                let spool = spool.clone();
                let pushed = tokio::task::spawn_blocking(move || {
                    let mut fs = first_seen.lock().unwrap_or_else(|p| p.into_inner());
                    let status = patches::Status::from_check(check, &mut fs, now_ms());
                    if status.error.is_none()
                        && let Err(err) = fs.save()
                    {
                        tracing::warn!(error = %err, "cannot record when updates were first seen; their ages restart with the agent");
                    }
                    let mut spool = spool.lock().unwrap_or_else(|p| p.into_inner());
                    let seq = spool.push(|seq| AgentFrame {
                        kind: Some(agent_frame::Kind::PatchReport(status.to_report(seq))),
                    })?;
                    Ok::<_, spool::SpoolError>((seq, status))
                })
                .await;
                match pushed {
                    Ok(Ok((seq, status))) => {
                        match &status.error {
                            None => tracing::info!(
                                seq,
                                source = status.source,
                                pending = status.updates.len(),
                                reboot_required = status.reboot.required,
                                "patch status spooled"
                            ),
                            Some(err) => {
                                tracing::warn!(seq, source = status.source, error = %err, "patch source could not be read; reported as such")
                            }
                        }
                        new_data.notify_one();
                    }
                    Ok(Err(err)) => {
                        tracing::error!(error = %err, "cannot write to the spool; patch report lost")
                    }
                    Err(_) => tracing::error!("patch report task failed"),
                }
            }
        }
        // The next check is due one interval (plus jitter) after this one; a reloaded
        // config with another interval moves the due time at once.
        let checked = tokio::time::Instant::now();
        let mut cfg_open = true;
        loop {
            let base = cfg.borrow_and_update().patch_interval;
            let jitter = rand::rng().random_range(Duration::ZERO..=base / 10);
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep_until(checked + base + jitter) => break,
                r = cfg.changed(), if cfg_open => cfg_open = r.is_ok(),
                r = check_now.recv(), if requests_open => match r {
                    Some(()) => {
                        tracing::info!("patch check on the collector's request");
                        break;
                    }
                    None => requests_open = false,
                },
            }
        }
    }
}

/// Collects the inventory at start and then every `inventory_interval` (plus
/// jitter), and spools it as an `Inventory` frame only when its fingerprint differs
/// from the last one spooled ([`inventory::LastSent`], in the state dir), or that
/// one was spooled longer ago than the spool's age bound (it may have been dropped
/// by a bound): an unchanged machine sends nothing, across restarts too. Spooled,
/// it is delivered and acknowledged like a batch.
///
/// Collection runs on a plain thread for the same reason as the patch check.
async fn inventory_loop(
    mut cfg: watch::Receiver<Arc<AgentConfig>>,
    spool: Arc<Mutex<spool::Spool>>,
    new_data: Arc<Notify>,
    stop: CancellationToken,
) {
    use rand::Rng;
    let last_sent = Arc::new(inventory::LastSent::new(&cfg.borrow().state_dir));
    loop {
        let timeout = cfg.borrow().patch_timeout;
        let max_age_ms = i64::try_from(cfg.borrow().spool_max_age.as_millis()).unwrap_or(i64::MAX);
        let (tx, rx) = tokio::sync::oneshot::channel();
        let spawned = std::thread::Builder::new()
            .name("inventory".into())
            .spawn(move || {
                let _ = tx.send(inventory::collect(timeout, now_ms()));
            });
        if let Err(err) = spawned {
            tracing::warn!(error = %err, "cannot start the inventory collection");
        } else {
            let inv = tokio::select! {
                _ = stop.cancelled() => return,
                i = rx => i,
            };
            if let Ok(inv) = inv {
                let spool = spool.clone();
                let last_sent = last_sent.clone();
                let pushed = tokio::task::spawn_blocking(move || {
                    let fingerprint = inventory::fingerprint(&inv.to_wire(0));
                    let now = now_ms();
                    if last_sent.is_current(&fingerprint, now, max_age_ms) {
                        return Ok(None);
                    }
                    let mut spool = spool.lock().unwrap_or_else(|p| p.into_inner());
                    let seq = spool.push(|seq| AgentFrame {
                        kind: Some(agent_frame::Kind::Inventory(inv.to_wire(seq))),
                    })?;
                    if let Err(err) = last_sent.set(&fingerprint, now) {
                        // Harmless: the same inventory is sent once more next time.
                        tracing::warn!(error = %err, "cannot record the inventory sent");
                    }
                    Ok::<_, spool::SpoolError>(Some((seq, inv)))
                })
                .await;
                match pushed {
                    Ok(Ok(Some((seq, inv)))) => {
                        match &inv.software_error {
                            None => tracing::info!(
                                seq,
                                software = inv.software.len(),
                                source = inv.software_source,
                                "inventory changed; spooled"
                            ),
                            Some(err) => {
                                tracing::warn!(seq, source = inv.software_source, error = %err,
                                "inventory spooled without its software list")
                            }
                        }
                        new_data.notify_one();
                    }
                    Ok(Ok(None)) => tracing::debug!("inventory unchanged; not sent"),
                    Ok(Err(err)) => {
                        tracing::error!(error = %err, "cannot write to the spool; inventory not sent")
                    }
                    Err(_) => tracing::error!("inventory task failed"),
                }
            }
        }
        let collected = tokio::time::Instant::now();
        let mut cfg_open = true;
        loop {
            let base = cfg.borrow_and_update().inventory_interval;
            let jitter = rand::rng().random_range(Duration::ZERO..=base / 10);
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep_until(collected + base + jitter) => break,
                r = cfg.changed(), if cfg_open => cfg_open = r.is_ok(),
            }
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The text of `agent/tests/fixtures/<dir>/<name>`: captured tool output and files
/// the pure parsers are tested on.
#[cfg(test)]
pub(crate) fn test_fixture(dir: &str, name: &str) -> String {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(dir)
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The loop's first check runs at once and lands in the spool as a patch report
    /// that names its source; on this machine's real package manager or, where none
    /// is known, with an error instead of an empty list.
    #[tokio::test]
    async fn patch_loop_spools_a_report_at_start_and_follows_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config::parse(
            &dir.path().join("agent.toml"),
            "collector_url = \"https://c.example:4443\"\npatch_timeout_secs = 120\n",
        )
        .unwrap();
        std::fs::create_dir_all(&cfg.state_dir).unwrap();
        let spool = spool::Spool::open(&cfg.state_dir, cfg.spool_bounds()).unwrap();
        let spool = Arc::new(Mutex::new(spool));
        let (cfg_tx, cfg_rx) = watch::channel(Arc::new(cfg.clone()));
        let stop = CancellationToken::new();
        let (check_tx, check_rx) = tokio::sync::mpsc::channel(1);
        let task = tokio::spawn(patch_loop(
            cfg_rx,
            spool.clone(),
            Arc::new(Notify::new()),
            Arc::new(AtomicBool::new(false)),
            check_rx,
            stop.clone(),
        ));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(150);
        while spool.lock().unwrap().is_empty() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no patch report within 150 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // The collector's request runs a check at once (the interval is an hour).
        check_tx.send(()).await.unwrap();
        while spool.lock().unwrap().len() < 2 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the requested check did not run"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // A reload with a shorter interval brings the next check forward at once
        // (the default is an hour).
        let mut quick = cfg.clone();
        quick.patch_interval = Duration::from_millis(50);
        cfg_tx.send(Arc::new(quick)).unwrap();
        while spool.lock().unwrap().len() < 3 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the reloaded interval did not apply"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        stop.cancel();
        task.await.unwrap();
        let (seq, frame) = spool.lock().unwrap().next_after(0).unwrap().unwrap();
        let Some(agent_frame::Kind::PatchReport(r)) = frame.kind else {
            panic!("not a patch report: {frame:?}");
        };
        assert_eq!(r.seq, seq);
        assert!(!r.source.is_empty());
        assert!(r.time_unix_ms > 0);
        if r.error.is_empty() {
            // Ages were recorded for the next start.
            assert!(cfg.state_dir.join(patches::FirstSeen::FILE).exists());
            assert!(
                r.updates
                    .iter()
                    .all(|u| u.first_seen_unix_ms == r.time_unix_ms)
            );
        } else {
            assert!(r.updates.is_empty());
        }
        eprintln!(
            "source {} error {:?} pending {}",
            r.source,
            r.error,
            r.updates.len()
        );
    }
}
