//! A gRPC client for the Telemetry stream that sends raw bytes as messages: the only
//! way to put a malformed frame on the wire, since generated clients encode valid
//! protobuf.

use bytes::{Buf, BufMut};
use prost::Message;
use tandem_proto::v1::CollectorFrame;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Channel;

#[derive(Default)]
pub struct RawCodec;

pub struct RawEncoder;
pub struct FrameDecoder;

impl Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for FrameDecoder {
    type Item = CollectorFrame;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<CollectorFrame>, Status> {
        let bytes = src.copy_to_bytes(src.remaining());
        CollectorFrame::decode(bytes)
            .map(Some)
            .map_err(|e| Status::internal(e.to_string()))
    }
}

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = CollectorFrame;
    type Encoder = RawEncoder;
    type Decoder = FrameDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> FrameDecoder {
        FrameDecoder
    }
}

/// Opens a Telemetry stream that sends `messages` verbatim, then returns the
/// response stream.
pub async fn stream(
    channel: Channel,
    messages: Vec<Vec<u8>>,
) -> Result<tonic::Streaming<CollectorFrame>, Status> {
    let mut grpc = tonic::client::Grpc::new(channel).max_encoding_message_size(64 * 1024 * 1024);
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let (tx, rx) = mpsc::channel(messages.len().max(1));
    for m in messages {
        let _ = tx.send(m).await;
    }
    // Keep the request stream open until the server answers.
    let req = tonic::Request::new(ReceiverStream::new(rx));
    let path = http::uri::PathAndQuery::from_static("/tandem.v1.Telemetry/Stream");
    let resp = grpc.streaming(req, path, RawCodec).await;
    drop(tx);
    Ok(resp?.into_inner())
}
