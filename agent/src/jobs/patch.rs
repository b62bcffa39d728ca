//! The patch loop: the patch status at start, every `patch_interval` and on the
//! collector's request, spooled as `PatchReport` frames.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tandem_proto::v1::{AgentFrame, agent_frame};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use super::spool_job;
use crate::config::AgentConfig;
use crate::spool_handle::SpoolHandle;
use crate::{clock, patches, platform};

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
pub(crate) async fn patch_loop(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{config, spool};

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
