//! `tandem-agent`: samples this machine's health, spools each sample to disk, and
//! streams the spool to the collector over mutual-TLS gRPC.
// `deny`, not `forbid`: the platform modules that call the OS through FFI allow it
// on their `mod` line (`platform/windows.rs` and `platform/wua.rs` for Win32 and
// COM, `platform/glibc.rs` for one mallopt call, `service/windows.rs` for the SCM
// entry point). Nothing else may.
#![deny(unsafe_code)]

pub mod backup;
pub mod budget;
pub mod checks;
pub(crate) mod clock;
pub mod collect;
pub mod config;
pub mod enroll;
pub mod identity;
pub mod inventory;
pub mod patches;
pub mod platform;
pub mod posture;
pub(crate) mod reload;
pub mod service;
pub mod spool;
pub mod spool_handle;
mod tasks;
pub mod uplink;

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tandem_proto::util::now_ms;
use tandem_proto::v1::{AgentFrame, agent_frame};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::spool_handle::{SpoolHandle, SpoolPanicked};
use crate::tasks::{Stage, Tasks};

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
    Task(#[from] tasks::TaskError),
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
/// a token is at hand (config, `TANDEM_ENROLL_TOKEN`, or the token file an
/// installer left), then fills the collector address from `enrollment.toml` where
/// the config does not give one.
///
/// While the collector cannot be reached (not up yet at boot, DNS or network not
/// ready) it retries with a doubling backoff up to `enroll_retry_max`, one warning
/// per attempt; it returns only on success or on a failure that a retry cannot fix
/// (refused, expired or damaged token, wrong CA). A token given to an enrolled
/// device is ignored with one info line. The token file is removed (or blanked)
/// once enrollment succeeded, or at once on an enrolled device.
pub async fn prepare(cfg: AgentConfig) -> Result<AgentConfig, AgentError> {
    use rand::Rng;
    let has_identity = cfg.cert.exists() && cfg.key.exists();
    let found = enroll::find_token(&cfg, std::env::var(TOKEN_ENV).ok());
    if has_identity {
        // A broken token file does not matter to an enrolled agent.
        if let Ok(Some((_, source))) = &found {
            let device = identity::Enrollment::load(&cfg.state_dir)
                .ok()
                .flatten()
                .map(|e| e.device_id)
                .unwrap_or_default();
            tracing::info!(%source, %device, "enrollment token ignored: this device is already enrolled (`tandem-agent enroll --force` enrolls again)");
        }
        enroll::consume_token_file(&cfg.enroll_token_file);
        return complete(cfg);
    }
    let Some((token, source)) = found? else {
        return Err(AgentError::NotEnrolled(cfg.cert.clone()));
    };
    let mut failed = 0u32;
    let done = loop {
        match enroll::enroll(&cfg, &token).await {
            Ok(done) => break done,
            Err(err) if err.is_transient() => {
                failed = failed.saturating_add(1);
                let jitter = rand::rng().random_range(0.8..=1.2);
                let wait = enroll::retry_delay(failed, cfg.enroll_retry_max, jitter);
                tracing::warn!(attempt = failed, retry_in_ms = wait.as_millis() as u64, error = %err, "cannot enroll yet; retrying");
                tokio::time::sleep(wait).await;
            }
            Err(err) => return Err(err.into()),
        }
    };
    tracing::info!(device = %done.enrollment.device_id, tenant = %done.enrollment.tenant, %source, attempts = failed + 1, "enrolled");
    match enroll::consume_token_file(&cfg.enroll_token_file) {
        enroll::Consumed::Removed => {
            tracing::info!(file = %cfg.enroll_token_file.display(), "used enrollment token file removed")
        }
        enroll::Consumed::Blanked => {
            tracing::info!(file = %cfg.enroll_token_file.display(), "used enrollment token file blanked")
        }
        enroll::Consumed::Nothing | enroll::Consumed::Left => {}
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
    // Waiting for the collector to enroll must not make the agent deaf to a stop.
    let mut shutdown = std::pin::pin!(shutdown);
    let cfg = tokio::select! {
        cfg = prepare(cfg) => cfg?,
        _ = &mut shutdown => {
            tracing::info!("agent stopping before it could enroll");
            return Ok(());
        }
    };
    // Fail early, with the file name, if the TLS files or URL are unusable.
    uplink::endpoint(&cfg)?;
    let state_dir = cfg.state_dir.clone();
    let bounds = cfg.spool_bounds();
    let spool = tokio::task::spawn_blocking(move || {
        clock::load(&state_dir);
        spool::Spool::open(&state_dir, bounds)
    })
    .await
    .map_err(|_| AgentError::Join)??;
    let pending = spool.len();
    let spool = SpoolHandle::new(spool);
    let sampler = tokio::task::spawn_blocking(collect::Sampler::new)
        .await
        .map_err(|_| AgentError::Join)??;
    let new_data = Arc::new(Notify::new());
    let (interval_tx, interval_rx) = watch::channel(cfg.interval);
    tracing::info!(collector = %cfg.collector_url, interval_secs = cfg.interval.as_secs(), spooled = pending, "agent started");

    // Every task is owned here and stops in stage order (crate::tasks).
    let mut tasks = Tasks::new();
    let cfg = Arc::new(cfg);
    let (cfg_tx, cfg_rx) = watch::channel(cfg.clone());
    if let Some(path) = config_path {
        match reload::watch(path, cfg_tx, tasks.stop_token(Stage::Reload)) {
            Ok(watcher) => tasks.spawn("config watch", Stage::Reload, watcher),
            Err(err) => {
                tracing::warn!(error = %err, "cannot watch the config file; edits apply on restart only");
            }
        }
    }
    tasks.spawn(
        "config applier",
        Stage::Reload,
        apply_reloads(
            cfg_rx.clone(),
            spool.clone(),
            interval_tx.clone(),
            tasks.stop_token(Stage::Reload),
        ),
    );
    // Set by the sampler loop's budget governor, read by the patch loop.
    let shedding = Arc::new(AtomicBool::new(false));
    // Posture, backups and custom checks (issue #14): found by their own loops,
    // sent as metrics by the sampler and as PostureReport frames when changed.
    let posture_shared =
        posture::report::Shared::new(&cfg.state_dir, spool.clone(), new_data.clone());
    let checks_cpu_ms = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let produce = tasks.stop_token(Stage::Produce);
    tasks.spawn(
        "posture",
        Stage::Produce,
        posture::report::posture_loop(cfg_rx.clone(), posture_shared.clone(), produce.clone()),
    );
    tasks.spawn(
        "backup watch",
        Stage::Produce,
        posture::report::backup_loop(cfg_rx.clone(), posture_shared.clone(), produce.clone()),
    );
    tasks.spawn(
        "custom checks",
        Stage::Produce,
        posture::report::checks_loop(
            cfg_rx.clone(),
            posture_shared.clone(),
            shedding.clone(),
            checks_cpu_ms.clone(),
            produce.clone(),
        ),
    );
    tasks.spawn(
        "sampler",
        Stage::Produce,
        sample_loop(
            sampler,
            spool.clone(),
            new_data.clone(),
            interval_rx,
            cfg_rx.clone(),
            SamplerShared {
                shedding: shedding.clone(),
                reported: posture_shared.reported.clone(),
                checks_cpu_ms,
            },
            produce.clone(),
        ),
    );
    let (check_patches_tx, check_patches_rx) = tokio::sync::mpsc::channel(1);
    tasks.spawn(
        "patch check",
        Stage::Produce,
        patch_loop(
            cfg_rx.clone(),
            spool.clone(),
            new_data.clone(),
            shedding,
            check_patches_rx,
            produce.clone(),
        ),
    );
    tasks.spawn(
        "inventory",
        Stage::Produce,
        inventory_loop(cfg_rx.clone(), spool.clone(), new_data.clone(), produce),
    );
    let renew_now = Arc::new(Notify::new());
    tasks.spawn(
        "certificate renewal",
        Stage::Last,
        identity::renew_loop(
            cfg.clone(),
            renew_now.clone(),
            tasks.stop_token(Stage::Last),
        ),
    );
    let shared = uplink::Shared {
        spool,
        new_data,
        interval: interval_tx,
        renew_now,
        check_patches: check_patches_tx,
    };
    tasks.spawn(
        "uplink",
        Stage::Uplink,
        uplink::run(cfg_rx, shared, tasks.stop_token(Stage::Uplink)),
    );

    let result = tasks.run_until(shutdown).await;
    tracing::info!("agent stopped");
    Ok(result?)
}

/// Applies the parts of a reloaded config that live outside the uplink: the sample
/// interval and the spool bounds. (The uplink watches the config itself.)
async fn apply_reloads(
    mut cfg: watch::Receiver<Arc<AgentConfig>>,
    spool: SpoolHandle,
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
            let bounds = new.spool_bounds();
            match spool.run(move |s| s.set_bounds(bounds)).await {
                Ok(Ok(_)) => {}
                Ok(Err(err)) => tracing::error!(error = %err, "applying new spool bounds failed"),
                Err(err) => {
                    tracing::error!(error = %err, "applying new spool bounds failed");
                    return;
                }
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

/// What the sampler loop logs when a sample cannot be spooled (issue 16's loss
/// tests look for it).
const SAMPLE_LOST: &str = "sample lost (its seq is reported as an agent_disk gap)";

/// The one shape of the sampler, patch and inventory loops: run `job` on a blocking
/// thread, where it does its blocking work and spools its frame through the handle it
/// is given (returning the seq and what it spooled, or `None` for nothing to send).
/// A spooled frame wakes the uplink. A spool error is logged as
/// `cannot write to the spool; {lost}` and the loop goes on; a panic of the job is
/// returned, and the loop then ends, which ends the agent ([`tasks`]).
async fn spool_job<T: Send + 'static>(
    spool: &SpoolHandle,
    new_data: &Notify,
    lost: &'static str,
    job: impl FnOnce(&SpoolHandle) -> Result<Option<(u64, T)>, spool::SpoolError> + Send + 'static,
) -> Result<Option<(u64, T)>, SpoolPanicked> {
    let spool = spool.clone();
    match tokio::task::spawn_blocking(move || job(&spool)).await {
        Ok(Ok(Some(spooled))) => {
            new_data.notify_one();
            Ok(Some(spooled))
        }
        Ok(Ok(None)) => Ok(None),
        Ok(Err(err)) => {
            tracing::error!(error = %err, "cannot write to the spool; {lost}");
            Ok(None)
        }
        Err(e) => Err(SpoolPanicked::new(tasks::panic_text(e))),
    }
}

/// What the sampler loop shares with the other loops.
struct SamplerShared {
    /// Set by the budget governor, read by the patch and custom-check loops.
    shedding: Arc<AtomicBool>,
    /// What the posture, backup and custom-check loops found: sent with every sample.
    reported: Arc<Mutex<posture::report::Reported>>,
    /// CPU time the custom checks' commands used, counted in the budget.
    checks_cpu_ms: Arc<std::sync::atomic::AtomicU64>,
}

/// Samples every interval and spools each reading. Before each sample it measures
/// the agent's own footprint and lets the budget governor decide whether optional
/// work is shed (published in `shedding` for the patch loop); the configured
/// services and the budget follow config reloads.
async fn sample_loop(
    sampler: collect::Sampler,
    spool: SpoolHandle,
    new_data: Arc<Notify>,
    mut interval: watch::Receiver<Duration>,
    mut cfg: watch::Receiver<Arc<AgentConfig>>,
    shared: SamplerShared,
    stop: CancellationToken,
) {
    let SamplerShared {
        shedding,
        reported,
        checks_cpu_ms,
    } = shared;
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
        let state_dir2 = first.state_dir.clone();
        let shedding2 = shedding.clone();
        let reported2 = reported.clone();
        let checks_cpu = checks_cpu_ms.load(Ordering::Relaxed);
        let pushed = spool_job(&spool, &new_data, SAMPLE_LOST, move |spool| {
            let mut guard = state2.lock().unwrap_or_else(|p| p.into_inner());
            let (sampler, governor) = &mut *guard;
            if let Some(c) = reloaded {
                sampler.set_services(&c.services);
                governor.set_budget(c.budget);
            }
            let verdict = platform::self_usage().map(|mut u| {
                u.cpu_ms += checks_cpu;
                governor.observe(started.elapsed().as_millis() as u64, u)
            });
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
            // Stamped with the collector's time (see `clock`); the offset is a metric.
            if let Some(offset) = clock::offset_ms() {
                reading.time_unix_ms = clock::corrected(reading.time_unix_ms, offset);
                reading.push("agent.clock_offset_ms", "", offset as f64);
                reading.push(
                    "agent.clock_skew_secs",
                    "",
                    (offset.unsigned_abs() / 1000) as f64,
                );
            }
            clock::save_if_changed(&state_dir2);
            let at = reading.time_unix_ms;
            reported2
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push_metrics(&mut reading, at);
            if let Some(v) = verdict {
                if let Some(c) = v.cpu_ms_per_min {
                    reading.push("agent.cpu_ms_per_min", "", c);
                }
                reading.push("agent.rss_bytes", "", v.rss_bytes as f64);
                reading.push("agent.shedding", "", f64::from(u8::from(v.shedding)));
            }
            drop(guard);
            let seq = spool.blocking(|s| {
                s.push(|seq| AgentFrame {
                    kind: Some(agent_frame::Kind::Batch(reading.to_batch(seq))),
                })
            })?;
            Ok(Some((seq, ())))
        })
        .await;
        match pushed {
            Ok(Some((seq, ()))) => tracing::debug!(seq, "sample spooled"),
            Ok(None) => {}
            Err(err) => {
                tracing::error!(error = %err, "sampling failed");
                return;
            }
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
    spool: SpoolHandle,
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
            Err(err) => {
                tracing::error!(error = %err, "cannot load when updates were first seen");
                return;
            }
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
                let pushed = spool_job(&spool, &new_data, "patch report lost", move |spool| {
                    let mut fs = first_seen.lock().unwrap_or_else(|p| p.into_inner());
                    let status = patches::Status::from_check(check, &mut fs, clock::now_ms());
                    if status.error.is_none()
                        && let Err(err) = fs.save()
                    {
                        tracing::warn!(error = %err, "cannot record when updates were first seen; their ages restart with the agent");
                    }
                    let seq = spool.blocking(|s| {
                        s.push(|seq| AgentFrame {
                            kind: Some(agent_frame::Kind::PatchReport(status.to_report(seq))),
                        })
                    })?;
                    Ok(Some((seq, status)))
                })
                .await;
                match pushed {
                    Ok(Some((seq, status))) => match &status.error {
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
                    },
                    Ok(None) => {}
                    Err(err) => {
                        tracing::error!(error = %err, "patch report failed");
                        return;
                    }
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
    spool: SpoolHandle,
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
                let _ = tx.send(inventory::collect(timeout, clock::now_ms()));
            });
        if let Err(err) = spawned {
            tracing::warn!(error = %err, "cannot start the inventory collection");
        } else {
            let inv = tokio::select! {
                _ = stop.cancelled() => return,
                i = rx => i,
            };
            if let Ok(inv) = inv {
                let last_sent = last_sent.clone();
                let pushed = spool_job(&spool, &new_data, "inventory not sent", move |spool| {
                    let fingerprint = inventory::fingerprint(&inv.to_wire(0));
                    let now = now_ms();
                    if last_sent.is_current(&fingerprint, now, max_age_ms) {
                        tracing::debug!("inventory unchanged; not sent");
                        return Ok(None);
                    }
                    let seq = spool.blocking(|s| {
                        s.push(|seq| AgentFrame {
                            kind: Some(agent_frame::Kind::Inventory(inv.to_wire(seq))),
                        })
                    })?;
                    if let Err(err) = last_sent.set(&fingerprint, now) {
                        // Harmless: the same inventory is sent once more next time.
                        tracing::warn!(error = %err, "cannot record the inventory sent");
                    }
                    Ok(Some((seq, inv)))
                })
                .await;
                match pushed {
                    Ok(Some((seq, inv))) => match &inv.software_error {
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
                    },
                    Ok(None) => {}
                    Err(err) => {
                        tracing::error!(error = %err, "inventory failed");
                        return;
                    }
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

#[cfg(test)]
pub(crate) use platform::test_fixture;

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
        let spool = SpoolHandle::new(spool);
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
        while spool.run(|s| s.is_empty()).await.unwrap() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no patch report within 150 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // The collector's request runs a check at once (the interval is an hour).
        check_tx.send(()).await.unwrap();
        while spool.run(|s| s.len()).await.unwrap() < 2 {
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
        while spool.run(|s| s.len()).await.unwrap() < 3 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the reloaded interval did not apply"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        stop.cancel();
        task.await.unwrap();
        let (seq, frame) = spool
            .run(|s| s.next_after(0))
            .await
            .unwrap()
            .unwrap()
            .unwrap();
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
