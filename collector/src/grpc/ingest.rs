//! The Telemetry service: one session per agent stream.
//!
//! A session learns the device from the client certificate, waits for Hello, answers
//! with Welcome (the highest seq already stored), then checks each frame, queues it
//! for the store writer, and acknowledges sequence numbers in order as their groups
//! commit. A bad frame ends only its own stream, with a status that says what was
//! wrong; batches acknowledged before it stay stored. Each session registers with
//! [`Revocations`], which ends it when its device or certificate is revoked, and
//! when a newer stream of the same device registers (one live session per device).

use std::sync::Arc;
use std::time::{Duration, Instant};
use tandem_proto::util::now_ms;

use tandem_proto::v1::telemetry_server::Telemetry;
use tandem_proto::v1::{
    Ack, AgentFrame, CheckPatches, CollectorFrame, Settings, SlowDown, Welcome, agent_frame,
    collector_frame,
};
use tandem_proto::{REFUSED_SEQ_METADATA, Refusal};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::{Request, Response, Status, Streaming};

use super::validate::{self, Refused, TimeLimits};
use crate::revocation::Revocations;
use crate::store::StoreError;
use crate::store::writer::{DeviceIdentity, Pending, Writer};

/// A stream that does not say Hello by then is closed.
const HELLO_TIMEOUT: Duration = Duration::from_secs(30);
/// Batches of one stream queued for commit but not yet acknowledged. Bounds what one
/// agent can have in flight; beyond it the session stops reading its stream.
const IN_FLIGHT_PER_STREAM: usize = 64;

/// An agent that reads none of our frames for this long is dropped, so a stuck
/// peer cannot pin a session (and its writer handle) forever.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// Sends one frame to the agent; false if the stream is gone or stuck.
async fn send_frame(
    tx: &mpsc::Sender<Result<CollectorFrame, Status>>,
    item: Result<CollectorFrame, Status>,
) -> bool {
    matches!(
        tokio::time::timeout(SEND_TIMEOUT, tx.send(item)).await,
        Ok(Ok(()))
    )
}

/// How long an agent holds its backlog when asked to slow down.
const SLOW_DOWN_PAUSE: Duration = Duration::from_secs(1);

/// The part of the configuration that applies to open streams at once when the
/// config file is reloaded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct LiveConfig {
    pub(crate) limits: TimeLimits,
    pub(crate) settings: Settings,
}

/// The ingest service.
pub(crate) struct Ingest {
    pub(crate) writer: Writer,
    /// What a config reload may change while streams are open.
    pub(crate) live_config: watch::Receiver<LiveConfig>,
    /// Owns every session task, so shutdown can wait for their acks to flush.
    pub(crate) tracker: TaskTracker,
    pub(crate) shutdown: CancellationToken,
    pub(crate) sessions: Arc<std::sync::atomic::AtomicI64>,
    /// Revoked devices and certificates; open sessions register here.
    pub(crate) revocations: Arc<Revocations>,
    /// Which certificates the collector issued (a stream with another is refused).
    pub(crate) issuing: Arc<super::enroll::Issuing>,
}

const REVOKED: &str = "the certificate of this device has been revoked: re-enroll it";
const REPLACED: &str = "a newer stream of this device replaced this one";

fn refused_status(r: Refused, seq: Option<u64>) -> Status {
    let mut status = r.reason.status(r.message);
    if let Some(seq) = seq
        && let Ok(v) = seq.to_string().parse()
    {
        status.metadata_mut().insert(REFUSED_SEQ_METADATA, v);
    }
    status
}

fn store_status(err: &StoreError) -> Status {
    match err {
        StoreError::TenantMismatch { .. } => {
            Refusal::WrongIdentity.status("this device id is registered to another tenant")
        }
        // Internal detail stays in our log.
        _ => Refusal::Unavailable.status("the collector cannot store data right now; retry later"),
    }
}

/// The identity and serial in the client certificate, or Unauthenticated.
fn peer_identity<T>(req: &Request<T>) -> Result<(DeviceIdentity, String), Status> {
    let certs = req
        .peer_certs()
        .ok_or_else(|| Refusal::NoIdentity.status("a client certificate is required"))?;
    let leaf = certs
        .first()
        .ok_or_else(|| Refusal::NoIdentity.status("a client certificate is required"))?;
    let (tenant, device_id) = crate::pki::identity_from_der(leaf).ok_or_else(|| {
        Refusal::NoIdentity.status("the client certificate carries no tandem device identity")
    })?;
    let serial = crate::pki::cert_serial_hex(leaf).unwrap_or_default();
    Ok((DeviceIdentity { tenant, device_id }, serial))
}

#[tonic::async_trait]
impl Telemetry for Ingest {
    type StreamStream = ReceiverStream<Result<CollectorFrame, Status>>;

    async fn stream(
        &self,
        request: Request<Streaming<AgentFrame>>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        let (who, serial) = peer_identity(&request)?;
        // The handshake checked too; this catches a revocation that arrived while the
        // connection stayed open.
        if self.revocations.is_revoked(&who.device_id, &serial) {
            return Err(Refusal::Revoked.status(REVOKED));
        }
        self.issuing.check_issued(&who.device_id, &serial).await?;
        let inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(IN_FLIGHT_PER_STREAM + 4);
        let session = Session {
            who,
            writer: self.writer.clone(),
            live_config: self.live_config.clone(),
            shutdown: self.shutdown.clone(),
            tx,
            serial,
            revocations: self.revocations.clone(),
        };
        let sessions = self.sessions.clone();
        self.tracker.spawn(async move {
            sessions.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            session.run(inbound).await;
            sessions.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

struct Session {
    who: DeviceIdentity,
    writer: Writer,
    live_config: watch::Receiver<LiveConfig>,
    shutdown: CancellationToken,
    /// Frames to the agent; bounded, so an agent that stops reading stalls only itself.
    tx: mpsc::Sender<Result<CollectorFrame, Status>>,
    /// Serial of the client certificate, for revocation of single certificates.
    serial: String,
    revocations: Arc<Revocations>,
}

fn frame(kind: collector_frame::Kind) -> CollectorFrame {
    CollectorFrame { kind: Some(kind) }
}

/// Maps an error tonic raised while reading an inbound frame to what the session
/// ends with: a malformed protobuf or a message over the size limit is the agent's
/// bad input (a refusal it can read); anything else is the connection going away
/// (reset, closed, cut mid-frame), which is not the agent's fault and not a
/// warning (issue 16, item 13: a dropped connection was logged as "malformed or
/// oversized frame").
fn decode_status(s: &Status) -> Status {
    if is_disconnect(s) {
        return Status::cancelled(format!("connection dropped: {}", s.message()));
    }
    // The decoder's own text stays here (issue 11: no library text to the peer);
    // tonic reports a frame over the size limit as OUT_OF_RANGE.
    tracing::debug!(detail = %s.message(), "inbound frame could not be decoded");
    Refusal::BadInput.status(if s.code() == tonic::Code::OutOfRange {
        "malformed or oversized frame: the frame is too large"
    } else {
        "malformed or oversized frame: not a valid protobuf message"
    })
}

/// Whether a read error is the transport going away rather than a bad frame. tonic
/// makes decode errors `INTERNAL` / `OUT_OF_RANGE` without a source; transport
/// errors carry the hyper/h2 error as their source.
fn is_disconnect(s: &Status) -> bool {
    use std::error::Error as _;
    let decode = matches!(s.code(), tonic::Code::Internal | tonic::Code::OutOfRange)
        && s.source().is_none()
        && !s.message().starts_with("Unexpected EOF");
    !decode
}

impl Session {
    fn limits(&self) -> TimeLimits {
        self.live_config.borrow().limits
    }

    /// Tells the agent to hold its backlog when the writer's queue is three quarters
    /// full (at most once per pause). Best effort: if the agent's frame queue is full
    /// it is not reading anyway.
    fn maybe_slow_down(&self, slowed_at: &mut Option<Instant>) {
        let (depth, capacity) = (self.writer.queue_depth(), self.writer.queue_capacity());
        if depth * 4 < capacity * 3 || slowed_at.is_some_and(|t| t.elapsed() < SLOW_DOWN_PAUSE) {
            return;
        }
        *slowed_at = Some(Instant::now());
        let pause_ms = SLOW_DOWN_PAUSE.as_millis() as u32;
        let frame = frame(collector_frame::Kind::SlowDown(SlowDown { pause_ms }));
        if self.tx.try_send(Ok(frame)).is_ok() {
            tracing::debug!(device = %self.who.device_id, depth, capacity, "asked agent to slow down");
        }
    }

    async fn run(self, mut inbound: Streaming<AgentFrame>) {
        let device = self.who.device_id.clone();
        let result = self.serve(&mut inbound).await;
        match result {
            Ok(()) => tracing::debug!(device = %device, "stream ended"),
            Err(status) if status.code() == tonic::Code::Cancelled => {
                tracing::info!(device = %device, reason = status.message(), "stream ended: the agent's connection dropped");
            }
            Err(status) => {
                crate::counters::ingest_refused(&status); // issue 15: /metrics refusals by reason
                tracing::warn!(device = %device, code = ?status.code(), message = status.message(), "stream refused");
                let _ = send_frame(&self.tx, Err(status)).await;
            }
        }
    }

    async fn serve(&self, inbound: &mut Streaming<AgentFrame>) -> Result<(), Status> {
        let first = match tokio::time::timeout(HELLO_TIMEOUT, inbound.message()).await {
            Err(_) => {
                return Err(
                    Refusal::OutOfOrder.status("no hello within 30 s of opening the stream")
                );
            }
            Ok(Err(s)) => return Err(decode_status(&s)),
            Ok(Ok(None)) => return Ok(()),
            Ok(Ok(Some(f))) => f,
        };
        let hello = match first.kind {
            Some(agent_frame::Kind::Hello(h)) => h,
            _ => {
                return Err(
                    Refusal::OutOfOrder.status("the first frame of a stream must be a hello")
                );
            }
        };
        let facts = validate::check_hello(&hello, &self.who.device_id)
            .map_err(|r| refused_status(r, None))?;
        let acked = self
            .writer
            .hello(self.who.clone(), facts.clone())
            .await
            .map_err(|e| {
                tracing::warn!(device = %self.who.device_id, error = %e, "hello not stored");
                store_status(&e)
            })?;
        tracing::info!(device = %self.who.device_id, tenant = %self.who.tenant, hostname = %facts.hostname,
            agent_version = %facts.agent_version, acked_seq = acked, "agent connected");
        let guard = self
            .revocations
            .register(&self.who.device_id, &self.serial, self.tx.clone());
        let settings = Settings {
            renew_now: self.revocations.renew_pending(&self.who.device_id),
            ..self.live_config.borrow().settings
        };
        let welcome = Welcome {
            protocol_version: tandem_proto::PROTOCOL_VERSION,
            acked_seq: acked,
            device_id: self.who.device_id.clone(),
            tenant: self.who.tenant.clone(),
            settings: Some(settings),
            collector_time_unix_ms: now_ms(),
        };
        if !send_frame(&self.tx, Ok(frame(collector_frame::Kind::Welcome(welcome)))).await {
            return Ok(());
        }
        // A `device check-patches` that found no open stream is delivered now.
        if self.revocations.welcomed(&guard)
            && !send_frame(
                &self.tx,
                Ok(frame(collector_frame::Kind::CheckPatches(CheckPatches {}))),
            )
            .await
        {
            return Ok(());
        }

        // Acks go out in seq order from their own task, so reading the next frame
        // overlaps with committing the previous ones.
        let (pending_tx, pending_rx) = mpsc::channel::<(u64, Pending)>(IN_FLIGHT_PER_STREAM);
        // Set by the acker when a write failed: reading more is pointless then, and
        // the agent must hear why without first sending another frame.
        let failed = CancellationToken::new();
        let acker = tokio::spawn(ack_in_order(
            pending_rx,
            self.tx.clone(),
            self.who.device_id.clone(),
            failed.clone(),
        ));
        let result = tokio::select! {
            r = self.read_frames(inbound, pending_tx, &failed) => r,
            _ = guard.cancel.cancelled() => {
                tracing::info!(device = %self.who.device_id, "stream of a revoked certificate closed");
                Err(Refusal::Revoked.status(REVOKED))
            }
            _ = guard.replaced.cancelled() => {
                // Debug: a device opening streams in a loop must not flood the log.
                tracing::debug!(device = %self.who.device_id, "stream replaced by a newer one of the same device");
                Err(Refusal::Unavailable.status(REPLACED))
            }
        };
        // Batches already queued are committed (or failed) whatever happened next:
        // acknowledge them before the stream ends.
        let ack_result = acker.await.unwrap_or(Ok(()));
        result.and(ack_result)
    }

    async fn read_frames(
        &self,
        inbound: &mut Streaming<AgentFrame>,
        pending: mpsc::Sender<(u64, Pending)>,
        failed: &CancellationToken,
    ) -> Result<(), Status> {
        let mut last_seq: Option<u64> = None;
        let mut slowed_at: Option<Instant> = None;
        let mut live_config = self.live_config.clone();
        live_config.mark_unchanged();
        let mut config_open = true;
        loop {
            let msg = tokio::select! {
                _ = self.shutdown.cancelled() => return Ok(()),
                _ = failed.cancelled() => return Ok(()),
                changed = live_config.changed(), if config_open => {
                    if changed.is_ok() {
                        // Push reloaded settings to the agent now.
                        let settings = live_config.borrow_and_update().settings;
                        let _ = self.tx.try_send(Ok(frame(collector_frame::Kind::Settings(settings))));
                    } else {
                        // No config watcher (demo, or it stopped): nothing will change.
                        config_open = false;
                    }
                    continue;
                }
                m = inbound.message() => m,
            };
            let frame = match msg {
                Ok(Some(f)) => f,
                Ok(None) => return Ok(()),
                Err(s) => return Err(decode_status(&s)),
            };
            let (seq, queued) = match frame.kind {
                Some(agent_frame::Kind::Batch(batch)) => {
                    let seq = batch.seq;
                    validate::check_batch(&batch, last_seq, now_ms(), self.limits())
                        .map_err(|r| refused_status(r, Some(seq)))?;
                    (
                        seq,
                        self.writer
                            .submit_batch(self.who.device_id.clone(), batch)
                            .await,
                    )
                }
                Some(agent_frame::Kind::PatchReport(report)) => {
                    let seq = report.seq;
                    validate::check_patch(&report, last_seq, now_ms(), self.limits())
                        .map_err(|r| refused_status(r, Some(seq)))?;
                    (
                        seq,
                        self.writer
                            .submit_patch(self.who.device_id.clone(), report)
                            .await,
                    )
                }
                Some(agent_frame::Kind::Gap(mut gap)) => {
                    let seq = gap.seq;
                    validate::check_gap(&gap, last_seq, now_ms(), self.limits())
                        .map_err(|r| refused_status(r, Some(seq)))?;
                    gap.time_unix_ms = validate::gap_time(&gap, now_ms(), self.limits());
                    (
                        seq,
                        self.writer
                            .submit_gap(self.who.device_id.clone(), gap)
                            .await,
                    )
                }
                Some(agent_frame::Kind::Inventory(inventory)) => {
                    let seq = inventory.seq;
                    validate::check_inventory(&inventory, last_seq, now_ms(), self.limits())
                        .map_err(|r| refused_status(r, Some(seq)))?;
                    (
                        seq,
                        self.writer
                            .submit_inventory(self.who.device_id.clone(), inventory)
                            .await,
                    )
                }
                Some(agent_frame::Kind::PostureReport(report)) => {
                    let seq = report.seq;
                    validate::check_posture(&report, last_seq, now_ms(), self.limits())
                        .map_err(|r| refused_status(r, Some(seq)))?;
                    (
                        seq,
                        self.writer
                            .submit_posture(self.who.device_id.clone(), report)
                            .await,
                    )
                }
                Some(agent_frame::Kind::Live(batch)) => {
                    // Best effort and unacknowledged: the durable copy follows in
                    // order. It does not move last_seq.
                    validate::check_live(&batch, now_ms(), self.limits())
                        .map_err(|r| refused_status(r, None))?;
                    drop(
                        self.writer
                            .submit_live(self.who.device_id.clone(), batch)
                            .await
                            .map_err(|e| store_status(&e))?,
                    );
                    self.maybe_slow_down(&mut slowed_at);
                    continue;
                }
                Some(agent_frame::Kind::Hello(_)) => {
                    return Err(Refusal::OutOfOrder.status("a stream may carry only one hello"));
                }
                None => {
                    return Err(Refusal::BadInput.status(
                        "frame of an unknown kind (empty, or from a newer protocol this collector does not speak)",
                    ));
                }
            };
            last_seq = Some(seq);
            let queued = queued.map_err(|e| store_status(&e))?;
            self.maybe_slow_down(&mut slowed_at);
            let sent = tokio::select! {
                _ = self.shutdown.cancelled() => return Ok(()),
                r = pending.send((seq, queued)) => r,
            };
            if sent.is_err() {
                return Ok(());
            }
        }
    }
}

async fn ack_in_order(
    mut pending: mpsc::Receiver<(u64, Pending)>,
    tx: mpsc::Sender<Result<CollectorFrame, Status>>,
    device: String,
    failed: CancellationToken,
) -> Result<(), Status> {
    let result = ack_each(&mut pending, &tx, &device).await;
    if result.is_err() {
        failed.cancel();
    }
    result
}

async fn ack_each(
    pending: &mut mpsc::Receiver<(u64, Pending)>,
    tx: &mpsc::Sender<Result<CollectorFrame, Status>>,
    device: &str,
) -> Result<(), Status> {
    while let Some((seq, answer)) = pending.recv().await {
        match answer.await {
            Ok(Ok(_outcome)) => {
                let ack = frame(collector_frame::Kind::Ack(Ack {
                    seq,
                    collector_time_unix_ms: now_ms(),
                }));
                if !send_frame(tx, Ok(ack)).await {
                    return Ok(());
                }
            }
            Ok(Err(err)) => {
                tracing::warn!(device = %device, seq, error = %err, "batch not stored");
                return Err(store_status(&err));
            }
            Err(_) => return Err(store_status(&StoreError::WriterGone)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_connection_is_not_a_malformed_frame() {
        let bad = decode_status(&Status::internal("failed to decode Protobuf message: x"));
        assert_eq!(bad.code(), tonic::Code::InvalidArgument);
        assert!(bad.message().starts_with("malformed or oversized frame"));
        assert!(!bad.message().contains("Protobuf"), "{bad:?}");
        let big = decode_status(&Status::out_of_range(
            "Error, decoded message length too large",
        ));
        assert_eq!(big.code(), tonic::Code::InvalidArgument);
        assert!(big.message().contains("too large"), "{big:?}");
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "connection reset");
        let dropped = decode_status(&Status::from_error(Box::new(io)));
        assert_eq!(dropped.code(), tonic::Code::Cancelled, "{dropped:?}");
        assert!(dropped.message().starts_with("connection dropped"));
        let eof = decode_status(&Status::internal("Unexpected EOF decoding stream."));
        assert_eq!(eof.code(), tonic::Code::Cancelled);
    }
}
