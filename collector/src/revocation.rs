//! Revocation and "renew now" on a running collector.
//!
//! The CLI (`tandem-collector device revoke|renew`) is another process; it appends
//! rows to the `revocations` and `renew_requests` tables. The collector polls both
//! every second ([`poll`]) and applies what is new here:
//!
//! - a revoked device or certificate serial goes into an in-memory set that the
//!   telemetry listener's client-certificate verifier consults at every handshake
//!   (`grpc/tls.rs`), and that every new stream and renewal checks again;
//! - every open ingest stream registered itself with a cancellation token, so a
//!   revocation ends the device's open streams at once;
//! - a renew request sends `Settings { renew_now }` to the device's open streams, and
//!   stays pending (sent again in the next `Welcome`) until a certificate issued
//!   after the request exists;
//! - a patch-check request (`device check-patches`, table `patch_check_requests`)
//!   sends `CheckPatches` to the device's open, welcomed streams; with none, it is
//!   kept and sent right after the device's next `Welcome`. Only welcomed streams
//!   get it, so it never arrives before the `Welcome` the agent waits for.
//!
//! The whole revocation table is loaded before the listeners start, so a revoked
//! certificate is refused from the first handshake after a restart.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tandem_proto::v1::{CheckPatches, CollectorFrame, Settings, collector_frame};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::store::admin::{AdminError, Revocation};
use crate::store::api::AdminStore;

/// How often the tables are polled: the promise is "takes effect at once", and a
/// second is what an operator perceives as that.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// What is revoked: whole devices and single certificates.
#[derive(Debug, Default)]
struct RevokedSet {
    devices: HashSet<String>,
    serials: HashSet<String>,
}

/// An open ingest stream, as the registry knows it.
struct SessionEntry {
    id: u64,
    serial: String,
    /// Cancelled when the stream's device or certificate is revoked.
    cancel: CancellationToken,
    /// Cancelled when a newer stream of the same device registers.
    replaced: CancellationToken,
    /// The stream's outbound frames, to push `Settings { renew_now }`.
    tx: mpsc::Sender<Result<CollectorFrame, tonic::Status>>,
    /// Its `Welcome` has been sent: frames pushed from outside may follow now.
    welcomed: bool,
}

/// Shared by the TLS verifier, the ingest sessions, the renewal service and the
/// poller.
#[derive(Default)]
pub(crate) struct Revocations {
    revoked: RwLock<RevokedSet>,
    /// Open streams by device id. A std mutex: held only to insert, remove or scan.
    sessions: Mutex<HashMap<String, Vec<SessionEntry>>>,
    next_session: AtomicU64,
    /// Devices asked to renew and not renewed yet.
    renew_pending: Mutex<HashSet<String>>,
    /// Devices asked to check patches while no welcomed stream of theirs was open.
    /// Guarded by `sessions`' lock together with the streams' `welcomed` flags, so a
    /// request is either pushed to a welcomed stream or found at the next Welcome.
    patch_check_pending: Mutex<HashSet<String>>,
    /// Revoked devices whose refused handshake was logged once already (at info;
    /// later attempts go to debug). Bounded by the number of revoked devices.
    refusal_logged: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for Revocations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Revocations").finish_non_exhaustive()
    }
}

/// Removes a stream from the registry when dropped.
pub(crate) struct SessionGuard {
    owner: Arc<Revocations>,
    device: String,
    id: u64,
    /// Cancelled when the device or its certificate is revoked.
    pub(crate) cancel: CancellationToken,
    /// Cancelled when a newer stream of the same device registered: one live
    /// session per device, the newest wins (an agent that reconnects leaves its
    /// old, maybe half-open, stream behind).
    pub(crate) replaced: CancellationToken,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        let mut map = self
            .owner
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(list) = map.get_mut(&self.device) {
            list.retain(|e| e.id != self.id);
            if list.is_empty() {
                map.remove(&self.device);
            }
        }
    }
}

impl Revocations {
    /// True the first time a revoked `device`'s handshake is refused in this run.
    pub(crate) fn first_refusal(&self, device: &str) -> bool {
        self.refusal_logged
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(device.to_owned())
    }

    /// Whether a certificate (device id and serial) may no longer be used.
    pub(crate) fn is_revoked(&self, device_id: &str, serial: &str) -> bool {
        let set = self.revoked.read().unwrap_or_else(|p| p.into_inner());
        set.devices.contains(device_id) || set.serials.contains(serial)
    }

    /// Applies revocation rows; ends the open streams they cover. Returns how many
    /// streams were ended.
    pub(crate) fn apply(&self, rows: &[Revocation]) -> usize {
        if rows.is_empty() {
            return 0;
        }
        {
            let mut set = self.revoked.write().unwrap_or_else(|p| p.into_inner());
            for r in rows {
                match &r.serial {
                    Some(s) => set.serials.insert(s.clone()),
                    None => set.devices.insert(r.device_id.clone()),
                };
            }
        }
        let map = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let mut ended = 0;
        for r in rows {
            for e in map.get(&r.device_id).into_iter().flatten() {
                if r.serial.as_ref().is_none_or(|s| *s == e.serial) && !e.cancel.is_cancelled() {
                    e.cancel.cancel();
                    ended += 1;
                }
            }
        }
        ended
    }

    /// Registers an open stream of `device_id` presenting certificate `serial`.
    pub(crate) fn register(
        self: &Arc<Self>,
        device_id: &str,
        serial: &str,
        tx: mpsc::Sender<Result<CollectorFrame, tonic::Status>>,
    ) -> SessionGuard {
        let id = self.next_session.fetch_add(1, Ordering::Relaxed);
        let cancel = CancellationToken::new();
        let replaced = CancellationToken::new();
        let entry = SessionEntry {
            id,
            serial: serial.to_owned(),
            cancel: cancel.clone(),
            replaced: replaced.clone(),
            tx,
            welcomed: false,
        };
        // Registered first, checked second: a revocation applied in between is seen
        // by one of the two.
        {
            let mut map = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
            let list = map.entry(device_id.to_owned()).or_default();
            // One live session per device: the older ones end now.
            for old in list.iter() {
                old.replaced.cancel();
            }
            list.push(entry);
        }
        if self.is_revoked(device_id, serial) {
            cancel.cancel();
        }
        SessionGuard {
            owner: self.clone(),
            device: device_id.to_owned(),
            id,
            cancel,
            replaced,
        }
    }

    /// Asks `device_id` to renew: now on its open streams, and in its next Welcome.
    pub(crate) fn request_renew(&self, device_id: &str) {
        self.renew_pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(device_id.to_owned());
        let map = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        for e in map.get(device_id).into_iter().flatten() {
            let frame = CollectorFrame {
                kind: Some(collector_frame::Kind::Settings(Settings {
                    sample_interval_secs: 0,
                    renew_now: true,
                })),
            };
            // A full queue means the agent is not reading; it gets the request in
            // its next Welcome instead.
            let _ = e.tx.try_send(Ok(frame));
        }
    }

    /// Asks `device_id` to check its patches: now on its welcomed open streams, or
    /// after its next Welcome.
    pub(crate) fn request_patch_check(&self, device_id: &str) {
        let map = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let mut delivered = false;
        for e in map
            .get(device_id)
            .into_iter()
            .flatten()
            .filter(|e| e.welcomed)
        {
            let frame = CollectorFrame {
                kind: Some(collector_frame::Kind::CheckPatches(CheckPatches {})),
            };
            delivered |= e.tx.try_send(Ok(frame)).is_ok();
        }
        if !delivered {
            self.patch_check_pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(device_id.to_owned());
        }
    }

    /// Marks the stream of `guard` as welcomed; returns whether a patch check waits
    /// for this device (and forgets it: the caller sends it).
    pub(crate) fn welcomed(&self, guard: &SessionGuard) -> bool {
        let mut map = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = map
            .get_mut(&guard.device)
            .and_then(|list| list.iter_mut().find(|e| e.id == guard.id))
        {
            e.welcomed = true;
        }
        self.patch_check_pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&guard.device)
    }

    /// Whether `device_id` should renew now (asked and not yet renewed).
    pub(crate) fn renew_pending(&self, device_id: &str) -> bool {
        self.renew_pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(device_id)
    }

    /// A new certificate was issued to `device_id`.
    pub(crate) fn renewed(&self, device_id: &str) {
        self.renew_pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(device_id);
    }
}

/// Where the poller is in the two append-only tables.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Cursor {
    revocation: i64,
    renew: i64,
    patch_check: i64,
}

/// Reads what is new since `cursor` and applies it. Blocking (SQLite).
pub(crate) fn load_new(
    store: &impl AdminStore,
    revs: &Revocations,
    cursor: &mut Cursor,
) -> Result<(), AdminError> {
    let rows = store.revocations_since(cursor.revocation)?;
    if let Some(last) = rows.last() {
        cursor.revocation = last.id;
        let ended = revs.apply(&rows);
        for r in &rows {
            tracing::info!(device = %r.device_id, serial = r.serial.as_deref().unwrap_or("*"), "certificate revoked");
        }
        if ended > 0 {
            tracing::info!(streams = ended, "closed the streams of revoked devices");
        }
    }
    for (id, device) in store.renew_requests_since(cursor.renew)? {
        tracing::info!(device = %device, "asking the device to renew its certificate");
        revs.request_renew(&device);
        cursor.renew = id;
    }
    for (id, device) in store.patch_check_requests_since(cursor.patch_check)? {
        tracing::info!(device = %device, "asking the device to check its patches");
        revs.request_patch_check(&device);
        cursor.patch_check = id;
    }
    Ok(())
}

/// Polls the revocation and renew tables every second until `stop`.
pub(crate) async fn poll(
    db_path: PathBuf,
    revs: Arc<Revocations>,
    mut cursor: Cursor,
    stop: CancellationToken,
) {
    let conn = Arc::new(Mutex::new(None::<crate::store::Db>));
    let mut tick = tokio::time::interval(POLL_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let (conn2, revs2, path) = (conn.clone(), revs.clone(), db_path.clone());
        let result = tokio::task::spawn_blocking(move || {
            let mut guard = conn2.lock().unwrap_or_else(|p| p.into_inner());
            if guard.is_none() {
                *guard = Some(crate::store::Db::open_read_only(&path).map_err(|e| e.to_string())?);
            }
            let c = guard.as_ref().ok_or("no connection")?;
            load_new(c, &revs2, &mut cursor)
                .map_err(|e| e.to_string())
                .map(|()| cursor)
        })
        .await;
        match result {
            Ok(Ok(c)) => {
                cursor = c;
                failing = false;
            }
            Ok(Err(err)) => {
                // Logged once per outage, not every second.
                if !failing {
                    tracing::error!(error = %err, "cannot read revocations; retrying every second");
                }
                failing = true;
                *conn.lock().unwrap_or_else(|p| p.into_inner()) = None;
            }
            Err(_) => tracing::error!("revocation poller task failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: i64, device: &str, serial: Option<&str>) -> Revocation {
        Revocation {
            id,
            device_id: device.into(),
            serial: serial.map(str::to_owned),
        }
    }

    /// Issue #10: 1,000 streams of one device were all welcomed. Now the newest
    /// stream of a device replaces the older ones; other devices are untouched.
    #[test]
    fn a_new_stream_of_a_device_replaces_the_old_one() {
        let revs = Arc::new(Revocations::default());
        let (tx, _rx) = mpsc::channel(4);
        let first = revs.register("d1", "s", tx.clone());
        let other = revs.register("d2", "s2", tx.clone());
        assert!(!first.replaced.is_cancelled());
        let second = revs.register("d1", "s", tx);
        assert!(first.replaced.is_cancelled(), "the older stream ends");
        assert!(!second.replaced.is_cancelled(), "the newest lives");
        assert!(
            !other.replaced.is_cancelled(),
            "another device is untouched"
        );
        assert!(!first.cancel.is_cancelled(), "replaced is not revoked");
    }

    #[test]
    fn revoking_a_serial_ends_only_that_certificates_streams() {
        let revs = Arc::new(Revocations::default());
        let (tx, _rx) = mpsc::channel(4);
        let old = revs.register("d1", "s-old", tx.clone());
        let new = revs.register("d1", "s-new", tx.clone());
        let other = revs.register("d2", "s-2", tx);
        assert_eq!(revs.apply(&[row(1, "d1", Some("s-old"))]), 1);
        assert!(old.cancel.is_cancelled());
        assert!(!new.cancel.is_cancelled() && !other.cancel.is_cancelled());
        assert!(revs.is_revoked("d1", "s-old"));
        assert!(!revs.is_revoked("d1", "s-new"));
        assert_eq!(revs.apply(&[row(2, "d1", None)]), 1);
        assert!(new.cancel.is_cancelled());
        assert!(revs.is_revoked("d1", "anything"));
        assert!(!revs.is_revoked("d2", "s-2"));
    }

    #[test]
    fn a_stream_registered_after_revocation_is_cancelled_at_once() {
        let revs = Arc::new(Revocations::default());
        revs.apply(&[row(1, "d1", None)]);
        let (tx, _rx) = mpsc::channel(4);
        assert!(revs.register("d1", "s", tx).cancel.is_cancelled());
    }

    #[test]
    fn dropped_sessions_leave_the_registry() {
        let revs = Arc::new(Revocations::default());
        let (tx, _rx) = mpsc::channel(4);
        drop(revs.register("d1", "s", tx));
        assert!(revs.sessions.lock().unwrap().is_empty());
    }

    #[test]
    fn renew_requests_reach_open_streams_and_stay_pending_until_renewed() {
        let revs = Arc::new(Revocations::default());
        let (tx, mut rx) = mpsc::channel(4);
        let _g = revs.register("d1", "s", tx);
        revs.request_renew("d1");
        match rx.try_recv() {
            Ok(Ok(CollectorFrame {
                kind: Some(collector_frame::Kind::Settings(s)),
            })) => assert!(s.renew_now),
            other => panic!("expected settings, got {other:?}"),
        }
        assert!(revs.renew_pending("d1"));
        revs.renewed("d1");
        assert!(!revs.renew_pending("d1"));
    }

    #[test]
    fn patch_checks_reach_welcomed_streams_or_wait_for_the_next_welcome() {
        let revs = Arc::new(Revocations::default());
        let (tx, mut rx) = mpsc::channel(4);
        let g = revs.register("d1", "s", tx);
        // Not welcomed yet: nothing may go before the Welcome; the request waits.
        revs.request_patch_check("d1");
        assert!(rx.try_recv().is_err());
        assert!(
            revs.welcomed(&g),
            "the waiting request is handed to the session"
        );
        assert!(!revs.welcomed(&g), "and only once");
        // Welcomed: pushed at once, nothing left waiting.
        revs.request_patch_check("d1");
        match rx.try_recv() {
            Ok(Ok(CollectorFrame {
                kind: Some(collector_frame::Kind::CheckPatches(_)),
            })) => {}
            other => panic!("expected check_patches, got {other:?}"),
        }
        assert!(!revs.welcomed(&g));
        // No stream at all: kept for the next one.
        drop(g);
        revs.request_patch_check("d1");
        let (tx, _rx) = mpsc::channel(4);
        let g = revs.register("d1", "s", tx);
        assert!(revs.welcomed(&g));
    }
}
