//! The inventory loop: what this device is, at start and every
//! `inventory_interval`, spooled as an `Inventory` frame only when it changed.

use std::sync::Arc;
use std::time::Duration;

use tandem_proto::util::now_ms;
use tandem_proto::v1::{AgentFrame, agent_frame};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use super::spool_job;
use crate::config::AgentConfig;
use crate::spool_handle::SpoolHandle;
use crate::{clock, inventory};

/// Collects the inventory at start and then every `inventory_interval` (plus
/// jitter), and spools it as an `Inventory` frame only when its fingerprint differs
/// from the last one spooled ([`inventory::LastSent`], in the state dir), or that
/// one was spooled longer ago than the spool's age bound (it may have been dropped
/// by a bound): an unchanged machine sends nothing, across restarts too. Spooled,
/// it is delivered and acknowledged like a batch.
///
/// Collection runs on a plain thread for the same reason as the patch check.
pub(crate) async fn inventory_loop(
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
