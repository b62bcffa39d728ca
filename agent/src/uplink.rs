//! The stream to the collector: connect over mTLS, say Hello, learn what the
//! collector already holds, send the spool in order with a bounded window, drop what
//! is acknowledged, and reconnect with exponential backoff and jitter when anything
//! goes wrong.
//!
//! Reconnecting: a collector that cannot be reached at all (connection refused or
//! reset: it is restarting) is tried again after a jittered 0.25–3 s, however long
//! it has been away, so a fleet is back within seconds of its return, spread over
//! those seconds; any other failure backs off exponentially (full jitter, capped at
//! 60 s). See [`retry_delay`].
//!
//! Clock: every Welcome and Ack carries the collector's clock; the offset to it goes
//! to [`crate::clock`], and samples are stamped with the corrected time.

mod revoked;

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use tandem_proto::REFUSED_SEQ_METADATA;
use tandem_proto::v1::telemetry_client::TelemetryClient;
use tandem_proto::v1::{AgentFrame, CollectorFrame, Hello, agent_frame, collector_frame};
use tokio::sync::{Notify, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::codec::CompressionEncoding;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::config::AgentConfig;
use crate::spool::Spool;
use crate::spool_handle::SpoolHandle;

/// Frames sent but not yet acknowledged, at most. Keeps a reconnecting agent with a
/// long backlog from pushing it all at once.
const WINDOW: usize = 32;
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// How long shutdown waits for outstanding acks.
const SHUTDOWN_ACK_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum UplinkError {
    #[error("cannot read {path}: {source}")]
    Tls {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid collector url {url:?}: {source}")]
    Url {
        url: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("cannot connect to {url}: {detail}")]
    ClockSkew { url: String, detail: String },
    #[error("cannot connect to {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("collector refused the stream: {0}")]
    Status(#[from] tonic::Status),
    #[error("collector broke the protocol: {0}")]
    Protocol(&'static str),
    #[error(transparent)]
    Spool(#[from] crate::spool::SpoolError),
    #[error("spool task failed")]
    Join,
}

/// What the uplink shares with the rest of the agent.
pub struct Shared {
    pub spool: SpoolHandle,
    /// Woken when a new frame lands in the spool.
    pub new_data: Arc<Notify>,
    /// Sample interval pushed by the collector (zero: keep the configured one).
    pub interval: watch::Sender<Duration>,
    /// Notified when the collector asks for a certificate renewal now.
    pub renew_now: Arc<Notify>,
    /// The collector asks for a patch check now. Capacity 1: a request while one
    /// is already waiting is the same request.
    pub check_patches: mpsc::Sender<()>,
}

/// Builds the mTLS endpoint from the config's files.
pub(crate) fn endpoint(cfg: &AgentConfig) -> Result<Endpoint, UplinkError> {
    let read = |p: &std::path::Path| {
        std::fs::read(p).map_err(|source| UplinkError::Tls {
            path: p.display().to_string(),
            source,
        })
    };
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read(&cfg.ca_cert)?))
        .identity(Identity::from_pem(read(&cfg.cert)?, read(&cfg.key)?))
        .domain_name(cfg.server_name.clone());
    let url_err = |source| UplinkError::Url {
        url: cfg.collector_url.clone(),
        source,
    };
    Endpoint::from_shared(cfg.collector_url.clone())
        .map_err(url_err)?
        .tls_config(tls)
        .map_err(url_err)
        .map(|e| {
            e.connect_timeout(Duration::from_secs(10))
                .tcp_nodelay(true)
                .http2_keep_alive_interval(Duration::from_secs(30))
                .keep_alive_timeout(Duration::from_secs(20))
                .keep_alive_while_idle(true)
        })
}

/// A gRPC client with Tandem's limits and compression.
pub(crate) fn client(channel: Channel) -> TelemetryClient<Channel> {
    TelemetryClient::new(channel)
        .send_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(tandem_proto::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(tandem_proto::MAX_MESSAGE_BYTES)
}

/// The Hello this agent sends.
pub(crate) fn hello() -> Hello {
    Hello {
        protocol_version: tandem_proto::PROTOCOL_VERSION,
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
        os_family: crate::platform::OS_FAMILY as i32,
        os_version: crate::collect::os_version(),
        hostname: hostname::get()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default(),
        boot_time_unix: crate::collect::boot_time_unix(),
        claimed_device_id: String::new(),
    }
}

/// Runs the uplink until `shutdown`. The config may change underneath (reload): a
/// change of where or how to connect makes it reconnect.
pub async fn run(
    cfg: watch::Receiver<Arc<AgentConfig>>,
    shared: Shared,
    shutdown: CancellationToken,
) {
    let mut backoff = BACKOFF_MIN;
    let mut told_revoked = false;
    loop {
        let result = session(&cfg, &shared, &shutdown, &mut backoff).await;
        if shutdown.is_cancelled() {
            return;
        }
        // A revoked device: said once, then a slow retry (revoked).
        if let Err(err) = &result
            && revoked::is_revoked(err)
        {
            if !told_revoked {
                tracing::error!(
                    retry_secs = revoked::RETRY.as_secs(),
                    "the collector has revoked this device's certificate: re-enroll it (`tandem-agent enroll --token TOKEN`, with a token from `tandem-collector token create --replace DEVICE`); retrying slowly until then"
                );
                told_revoked = true;
            } else {
                tracing::debug!(error = %err, "still revoked");
            }
            let mut cfg_changed = cfg.clone();
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(revoked::RETRY) => {}
                _ = cfg_changed.changed() => {}
            }
            continue;
        }
        told_revoked = false;
        let failure = match &result {
            // The collector ended the stream (a restart, a config change): it is
            // expected back at once.
            Ok(()) => Failure::Unreachable,
            Err(err) => classify(err),
        };
        match result {
            Ok(()) => tracing::info!("collector closed the stream; reconnecting"),
            Err(err) => tracing::warn!(error = %err, "uplink failed"),
        }
        let wait = retry_delay(failure, &mut backoff, &mut rand::rng());
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

async fn with_spool<T: Send + 'static>(
    spool: &SpoolHandle,
    f: impl FnOnce(&mut Spool) -> Result<T, crate::spool::SpoolError> + Send + 'static,
) -> Result<T, UplinkError> {
    spool
        .run(f)
        .await
        .map_err(|_| UplinkError::Join)?
        .map_err(UplinkError::from)
}

/// Time between two backlog frames at the configured catch-up rate.
fn pace(cfg: &AgentConfig) -> Duration {
    Duration::from_secs_f64(1.0 / f64::from(cfg.catchup_batches_per_sec.max(1)))
}

async fn session(
    cfg_rx: &watch::Receiver<Arc<AgentConfig>>,
    shared: &Shared,
    shutdown: &CancellationToken,
    backoff: &mut Duration,
) -> Result<(), UplinkError> {
    let cfg: &AgentConfig = &cfg_rx.borrow().clone();
    let channel = endpoint(cfg)?
        .connect()
        .await
        .map_err(|source| connect_error(&cfg.collector_url, source))?;
    let mut client = client(channel);
    let (tx, rx) = mpsc::channel::<AgentFrame>(WINDOW + 1);
    let hello = AgentFrame {
        kind: Some(agent_frame::Kind::Hello(hello())),
    };
    tx.send(hello)
        .await
        .map_err(|_| UplinkError::Protocol("request stream closed"))?;
    let mut inbound = client.stream(ReceiverStream::new(rx)).await?.into_inner();
    let welcome = match inbound.message().await? {
        Some(CollectorFrame {
            kind: Some(collector_frame::Kind::Welcome(w)),
        }) => w,
        _ => return Err(UplinkError::Protocol("expected a welcome")),
    };
    let acked = welcome.acked_seq;
    crate::clock::observe(welcome.collector_time_unix_ms);
    let renumbered = with_spool(&shared.spool, move |s| s.reconcile(acked)).await?;
    if renumbered > 0 {
        tracing::warn!(
            renumbered,
            acked_seq = acked,
            "collector holds newer data than this agent's state: spooled frames renumbered"
        );
    }
    if let Some(settings) = welcome.settings {
        apply_interval(shared, settings.sample_interval_secs);
        apply_renew(shared, settings.renew_now);
    }
    tracing::info!(device = %welcome.device_id, tenant = %welcome.tenant, acked_seq = acked, "connected to collector");
    // The backoff resets only once an ack shows real progress: a collector that
    // welcomes and then refuses the same frame is retried at a slowing pace.
    let mut progressed = false;

    let mut sent_upto = acked;
    let mut acked_upto = acked;
    // The newest seq sent as a live copy ahead of the backlog.
    let mut live_upto = acked;
    // Backlog pacing: the next instant a backlog frame may go out.
    let mut next_backlog_at = Instant::now();
    let mut cfg_rx = cfg_rx.clone();
    let mut per_frame = pace(&cfg_rx.borrow());
    let mut cfg_open = true;
    loop {
        // Report drops (spool bounds) as soon as there is someone to tell.
        with_spool(&shared.spool, |s| s.flush_gaps()).await?;
        // Fill the window from the spool, oldest first. The newest frame always
        // goes at once; older ones (a backlog after an outage) at the catch-up pace.
        let mut backlog_waiting = false;
        loop {
            // One trip to the spool's thread: the window check and the next frame.
            let after = sent_upto;
            let Some((newest, (seq, frame))) = with_spool(&shared.spool, move |s| {
                if s.count_between(acked_upto, after) >= WINDOW {
                    return Ok(None);
                }
                let newest = s.last_seq();
                Ok(s.next_after(after)?.map(|next| (newest, next)))
            })
            .await?
            else {
                break;
            };
            if seq < newest {
                let now = Instant::now();
                if now < next_backlog_at {
                    backlog_waiting = true;
                    break;
                }
                next_backlog_at = next_backlog_at.max(now) + per_frame;
            }
            if tx.send(frame).await.is_err() {
                return Err(UplinkError::Protocol("request stream closed"));
            }
            sent_upto = seq;
        }
        // While a backlog drains, the newest sample goes ahead as a live copy, so
        // the collector (and its alerts) see the present at once.
        let newest = with_spool(&shared.spool, |s| Ok(s.last_seq())).await?;
        if newest > sent_upto
            && newest > live_upto
            && let Some((
                seq,
                AgentFrame {
                    kind: Some(agent_frame::Kind::Batch(b)),
                },
            )) = with_spool(&shared.spool, |s| s.newest_batch()).await?
        {
            let live = AgentFrame {
                kind: Some(agent_frame::Kind::Live(b)),
            };
            if tx.send(live).await.is_err() {
                return Err(UplinkError::Protocol("request stream closed"));
            }
            live_upto = seq;
        }
        let msg = tokio::select! {
            _ = tokio::time::sleep_until(next_backlog_at.into()), if backlog_waiting => continue,
            changed = cfg_rx.changed(), if cfg_open => {
                if changed.is_err() {
                    // Nobody publishes config changes any more (the watcher stopped,
                    // e.g. at shutdown): keep going with what we have.
                    cfg_open = false;
                    continue;
                }
                let new = cfg_rx.borrow_and_update().clone();
                if new.connection_differs(cfg) {
                    tracing::info!("connection settings changed; reconnecting");
                    return Ok(());
                }
                per_frame = pace(&new);
                continue;
            }
            _ = shutdown.cancelled() => {
                // Flush up to one window of what is spooled but unsent, then wait
                // briefly for the acks; anything left stays spooled for next start.
                for _ in 0..WINDOW {
                    let after = sent_upto;
                    let Ok(Some((seq, frame))) = with_spool(&shared.spool, move |s| s.next_after(after)).await else { break };
                    if tx.send(frame).await.is_err() {
                        break;
                    }
                    sent_upto = seq;
                }
                drop(tx);
                drain_acks(&mut inbound, shared, sent_upto).await;
                return Ok(());
            }
            _ = shared.new_data.notified() => continue,
            m = inbound.message() => m,
        };
        match msg {
            Ok(Some(CollectorFrame {
                kind: Some(collector_frame::Kind::Ack(ack)),
            })) => {
                if ack.seq > sent_upto {
                    return Err(UplinkError::Protocol("ack for a seq that was never sent"));
                }
                acked_upto = acked_upto.max(ack.seq);
                crate::clock::observe(ack.collector_time_unix_ms);
                if !progressed {
                    progressed = true;
                    *backoff = BACKOFF_MIN;
                }
                let upto = acked_upto;
                with_spool(&shared.spool, move |s| s.ack(upto)).await?;
            }
            Ok(Some(CollectorFrame {
                kind: Some(collector_frame::Kind::Settings(s)),
            })) => {
                apply_interval(shared, s.sample_interval_secs);
                apply_renew(shared, s.renew_now);
            }
            Ok(Some(CollectorFrame {
                kind: Some(collector_frame::Kind::CheckPatches(_)),
            })) => {
                tracing::info!("collector asked for a patch check now");
                // Full: a check is already requested; this one is the same.
                let _ = shared.check_patches.try_send(());
            }
            Ok(Some(CollectorFrame {
                kind: Some(collector_frame::Kind::SlowDown(s)),
            })) => {
                // The collector's write queue is filling: hold the backlog.
                let pause = Duration::from_millis(u64::from(s.pause_ms.min(60_000)));
                next_backlog_at = next_backlog_at.max(Instant::now() + pause);
                tracing::debug!(pause_ms = s.pause_ms, "collector asked to slow down");
            }
            Ok(Some(_)) => {}
            Ok(None) => return Ok(()),
            Err(status) => {
                if status.code() == tonic::Code::InvalidArgument
                    && let Some(seq) = refused_seq(&status)
                {
                    // Resending a frame the collector judged malformed cannot
                    // succeed and would block everything behind it.
                    tracing::error!(
                        seq,
                        message = status.message(),
                        "collector refused a spooled frame; dropping it"
                    );
                    with_spool(&shared.spool, move |s| s.discard(seq)).await?;
                }
                return Err(UplinkError::Status(status));
            }
        }
    }
}

fn refused_seq(status: &tonic::Status) -> Option<u64> {
    status
        .metadata()
        .get(REFUSED_SEQ_METADATA)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

fn apply_interval(shared: &Shared, secs: u32) {
    if secs > 0 {
        let _ = shared.interval.send(Duration::from_secs(u64::from(secs)));
    }
}

fn apply_renew(shared: &Shared, renew_now: bool) {
    if renew_now {
        shared.renew_now.notify_one();
    }
}

async fn drain_acks(
    inbound: &mut tonic::Streaming<CollectorFrame>,
    shared: &Shared,
    sent_upto: u64,
) {
    let wait = async {
        while let Ok(Some(frame)) = inbound.message().await {
            if let Some(collector_frame::Kind::Ack(ack)) = frame.kind {
                let upto = ack.seq;
                let _ = with_spool(&shared.spool, move |s| s.ack(upto)).await;
                if upto >= sent_upto {
                    return;
                }
            }
        }
    };
    let _ = tokio::time::timeout(SHUTDOWN_ACK_WAIT, wait).await;
}

/// How a failed session bears on when to try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// Nobody answered (connection refused or reset), or the collector closed
    /// the stream: it is restarting. Trying often costs a refused connection.
    Unreachable,
    /// Anything else: a refusal, a TLS failure, a store that cannot write.
    Other,
}

/// Fastest and slowest retry while the collector is unreachable.
const RECONNECT_MIN: Duration = Duration::from_millis(250);
const RECONNECT_MAX: Duration = Duration::from_secs(3);

/// The wait before the next attempt. Unreachable: uniform in 0.25–3 s, whatever
/// came before (the exponential backoff is left as it is). Other: full jitter up to
/// `backoff`, which then doubles up to 60 s.
pub(crate) fn retry_delay(
    failure: Failure,
    backoff: &mut Duration,
    rng: &mut impl Rng,
) -> Duration {
    match failure {
        Failure::Unreachable => rng.random_range(RECONNECT_MIN..=RECONNECT_MAX),
        Failure::Other => {
            let wait = rng.random_range(Duration::ZERO..=*backoff);
            *backoff = (*backoff * 2).min(BACKOFF_MAX);
            wait
        }
    }
}

/// The io errors somewhere in `err`'s chain of sources.
fn io_errors<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a std::io::Error> {
    std::iter::successors(Some(err), |e| e.source()).filter_map(|e| e.downcast_ref())
}

pub(crate) fn classify(err: &UplinkError) -> Failure {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    match err {
        UplinkError::Connect { source, .. }
            if io_errors(source).any(|e| {
                matches!(
                    e.kind(),
                    ConnectionRefused | ConnectionReset | ConnectionAborted
                )
            }) =>
        {
            Failure::Unreachable
        }
        _ => Failure::Other,
    }
}

/// A failed connect; one that failed because the collector's certificate is not
/// valid *by this machine's clock* says so.
fn connect_error(url: &str, source: tonic::transport::Error) -> UplinkError {
    match clock_hint(&source, crate::clock::now_ms()) {
        Some(detail) => UplinkError::ClockSkew {
            url: url.to_owned(),
            detail,
        },
        None => UplinkError::Connect {
            url: url.to_owned(),
            source,
        },
    }
}

/// Explains a TLS failure that comes from this machine's clock, if it is one.
pub(crate) fn clock_hint(err: &(dyn std::error::Error + 'static), now_ms: i64) -> Option<String> {
    use rustls::CertificateError as C;
    let tls = std::iter::successors(Some(err), |e| e.source()).find_map(|e| {
        e.downcast_ref::<rustls::Error>().or_else(|| {
            e.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        })
    })?;
    let rustls::Error::InvalidCertificate(cert) = tls else {
        return None;
    };
    let clock = jiff::Timestamp::from_millisecond(now_ms)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| now_ms.to_string());
    let at = |u: &rustls_pki_types::UnixTime| {
        jiff::Timestamp::from_second(u.as_secs() as i64)
            .map(|t| t.to_string())
            .unwrap_or_default()
    };
    let advice = "set this machine's clock (enable NTP); docs/OPERATIONS.md, \"clock skew\"";
    match cert {
        C::NotValidYet => Some(format!(
            "the collector's certificate is not valid yet by this machine's clock ({clock}): this clock is probably behind; {advice}"
        )),
        C::NotValidYetContext { not_before, .. } => Some(format!(
            "the collector's certificate is valid from {} but this machine's clock says {clock}: this clock is probably behind; {advice}",
            at(not_before)
        )),
        C::Expired => Some(format!(
            "the collector's certificate has expired by this machine's clock ({clock}): this clock may be ahead, or the certificate needs renewing on the collector; {advice}"
        )),
        C::ExpiredContext { not_after, .. } => Some(format!(
            "the collector's certificate expired at {} by this machine's clock ({clock}): this clock may be ahead, or the certificate needs renewing on the collector; {advice}",
            at(not_after)
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    /// A collector away for minutes is retried every 0.25–3 s, so agents are back
    /// within seconds of its return, spread over that time. Before issue 16 the
    /// wait doubled to a 60 s cap (a median 19 s to reconnect).
    #[test]
    fn an_unreachable_collector_is_retried_within_seconds_however_long_it_was_away() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(16);
        let mut backoff = BACKOFF_MIN;
        let waits: Vec<Duration> = (0..200)
            .map(|_| retry_delay(Failure::Unreachable, &mut backoff, &mut rng))
            .collect();
        assert!(
            waits
                .iter()
                .all(|w| (RECONNECT_MIN..=RECONNECT_MAX).contains(w))
        );
        let max = waits.iter().max().unwrap();
        let min = waits.iter().min().unwrap();
        assert!(
            *max - *min > Duration::from_secs(2),
            "jittered: {min:?}..{max:?}"
        );
        // Anything else still backs off.
        for _ in 0..10 {
            retry_delay(Failure::Other, &mut backoff, &mut rng);
        }
        assert_eq!(backoff, BACKOFF_MAX);
    }

    #[test]
    fn a_refused_connection_counts_as_unreachable_and_a_certificate_in_the_future_names_the_clock()
    {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        // A socket bound but never listening holds the port, so nothing else can
        // listen there (a released bind(:0) port could be taken meanwhile), and
        // the kernel refuses connections to it.
        let held = rt.block_on(async {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
            socket
        });
        let port = held.local_addr().unwrap().port();
        let err = rt
            .block_on(
                Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
                    .unwrap()
                    .connect(),
            )
            .unwrap_err();
        let err = connect_error("x", err);
        assert_eq!(classify(&err), Failure::Unreachable, "{err:?}");
        let tls = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidYetContext {
                time: rustls_pki_types::UnixTime::since_unix_epoch(Duration::from_secs(1_000)),
                not_before: rustls_pki_types::UnixTime::since_unix_epoch(Duration::from_secs(
                    90_000,
                )),
            }),
        );
        let hint = clock_hint(&tls, 1_000_000).unwrap();
        assert!(hint.contains("clock is probably behind"), "{hint}");
        assert!(hint.contains("1970-01-02T01:00:00Z"), "{hint}");
        let other = std::io::Error::other("boom");
        assert!(clock_hint(&other, 0).is_none());
    }
}
