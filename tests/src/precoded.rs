//! A Telemetry stream that sends messages encoded and gzipped ahead of time.
//!
//! The collector sees exactly what a tonic agent sends — the same HTTP/2 request
//! (`grpc-encoding: gzip`), each message a length-prefixed frame with the
//! compressed flag set, gzip at tonic's level 6, over the same mTLS channel — but the
//! load generator no longer spends the shared cores on protobuf-encoding and
//! gzipping each message while it is measured. In a real fleet that work is done on
//! the agents' own machines, not on the collector's; `loadgen --pre-encode` uses this
//! so that its figure is the collector's, not the two processes' together.

use std::convert::Infallible;
use std::io::Write;

use anyhow::{Context, bail};
use bytes::{Buf, Bytes, BytesMut};
use http_body_util::BodyExt;
use prost::Message;
use tandem_proto::v1::{AgentFrame, CollectorFrame, Welcome, collector_frame};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::client::GrpcService;
use tonic::transport::Channel;

/// The Telemetry stream's path (`service Telemetry { rpc Stream }` in package `tandem.v1`).
const PATH: &str = "/tandem.v1.Telemetry/Stream";

/// One message as it goes on the wire: the 5-byte gRPC prefix (compressed flag 1,
/// big-endian length) and the gzip of its protobuf encoding, as tonic's gzip
/// encoder makes it.
pub fn encode(frame: &AgentFrame) -> Bytes {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    gz.write_all(&frame.encode_to_vec())
        .expect("gzip into memory cannot fail");
    let body = gz.finish().expect("gzip into memory cannot fail");
    let mut out = Vec::with_capacity(5 + body.len());
    out.push(1);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    Bytes::from(out)
}

/// An open stream: messages go out as given, the collector's frames come back decoded.
pub struct PrecodedStream {
    tx: mpsc::Sender<Bytes>,
    body: tonic::body::Body,
    buf: BytesMut,
    /// SlowDown frames received so far.
    pub slow_downs: u32,
}

impl PrecodedStream {
    /// Opens the stream on `channel`, sends `hello` (already [`encode`]d) and returns
    /// the welcome.
    pub async fn hello(mut channel: Channel, hello: Bytes) -> anyhow::Result<(Self, Welcome)> {
        let (tx, rx) = mpsc::channel::<Bytes>(64);
        tx.send(hello).await.context("the request body closed")?;
        let frames =
            ReceiverStream::new(rx).map(|b| Ok::<_, Infallible>(hyper::body::Frame::data(b)));
        let req = http::Request::builder()
            .method(http::Method::POST)
            .uri(PATH)
            .header(http::header::CONTENT_TYPE, "application/grpc")
            .header(http::header::TE, "trailers")
            .header("grpc-encoding", "gzip")
            .header("grpc-accept-encoding", "gzip")
            .body(tonic::body::Body::new(http_body_util::StreamBody::new(
                frames,
            )))
            .context("building the request")?;
        std::future::poll_fn(|cx| GrpcService::poll_ready(&mut channel, cx))
            .await
            .context("channel not ready")?;
        let resp = GrpcService::call(&mut channel, req)
            .await
            .context("opening the stream")?;
        if resp.status() != http::StatusCode::OK {
            bail!("the collector answered HTTP {}", resp.status());
        }
        if let Some(s) = resp.headers().get("grpc-status") {
            // Trailers-only answer: the stream was refused at once.
            let msg = resp
                .headers()
                .get("grpc-message")
                .map(|m| m.to_str().unwrap_or("?"));
            bail!("refused: grpc-status {s:?} {msg:?}");
        }
        let mut s = PrecodedStream {
            tx,
            body: resp.into_body(),
            buf: BytesMut::new(),
            slow_downs: 0,
        };
        match s.next_frame().await? {
            Some(CollectorFrame {
                kind: Some(collector_frame::Kind::Welcome(w)),
            }) => Ok((s, w)),
            other => bail!("expected welcome, got {other:?}"),
        }
    }

    /// Sends one message made by [`encode`].
    pub async fn send(&mut self, message: Bytes) -> anyhow::Result<()> {
        self.tx.send(message).await.context("the stream closed")
    }

    /// The next acknowledged seq (SlowDowns are counted and skipped); `None` when the
    /// stream ended cleanly.
    pub async fn next_ack(&mut self) -> anyhow::Result<Option<u64>> {
        loop {
            let f = tokio::time::timeout(std::time::Duration::from_secs(20), self.next_frame())
                .await
                .context("no ack within 20 s")??;
            match f {
                None => return Ok(None),
                Some(CollectorFrame {
                    kind: Some(collector_frame::Kind::Ack(a)),
                }) => return Ok(Some(a.seq)),
                Some(CollectorFrame {
                    kind: Some(collector_frame::Kind::SlowDown(_)),
                }) => self.slow_downs += 1,
                Some(_) => continue,
            }
        }
    }

    /// The next frame of the response body; `None` at its end (after the trailers,
    /// which must say grpc-status 0).
    async fn next_frame(&mut self) -> anyhow::Result<Option<CollectorFrame>> {
        loop {
            if self.buf.len() >= 5 {
                let compressed = self.buf[0];
                let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]])
                    as usize;
                if self.buf.len() >= 5 + len {
                    self.buf.advance(5);
                    let msg = self.buf.split_to(len).freeze();
                    let msg = if compressed == 1 {
                        let mut out = Vec::new();
                        std::io::Read::read_to_end(
                            &mut flate2::read::GzDecoder::new(msg.as_ref()),
                            &mut out,
                        )
                        .context("the collector's gzip")?;
                        Bytes::from(out)
                    } else {
                        msg
                    };
                    return Ok(Some(
                        CollectorFrame::decode(msg).context("a collector frame")?,
                    ));
                }
            }
            match self.body.frame().await {
                None => return Ok(None),
                Some(Err(e)) => bail!("the stream failed: {e}"),
                Some(Ok(f)) => match f.into_data() {
                    Ok(d) => self.buf.extend_from_slice(&d),
                    Err(f) => {
                        if let Some(t) = f.trailers_ref() {
                            let status = t.get("grpc-status").and_then(|v| v.to_str().ok());
                            if status != Some("0") {
                                let msg = t.get("grpc-message").and_then(|v| v.to_str().ok());
                                bail!("the stream ended with grpc-status {status:?} {msg:?}");
                            }
                        }
                    }
                },
            }
        }
    }
}
