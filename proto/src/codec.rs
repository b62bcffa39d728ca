//! The gRPC codec of every Tandem service: prost messages, as `tonic_prost`'s, with
//! small per-stream buffers.
//!
//! tonic's default codec buffer is 8 KiB, and a stream holds three of them (the
//! request decoder, its gzip output, the response encoder) for as long as it is
//! open. A collector serves one long-lived stream per device whose messages are 1–2
//! KiB (acks a few bytes), so at 10,000 devices those buffers alone were about
//! 240 MiB (heaptrack under `loadgen`; docs/BENCHMARKS.md). 2 KiB buffers grow when a
//! larger message (an inventory) arrives, exactly as the 8 KiB ones did past 8 KiB.

use std::marker::PhantomData;

use tonic::codec::{BufferSettings, Codec};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

/// Initial size of each of a stream's codec buffers.
pub const BUFFER_BYTES: usize = 2 * 1024;
/// tonic's default: a stream yields to the runtime after encoding this much.
const YIELD_THRESHOLD: usize = 32 * 1024;

/// `tonic_prost::ProstCodec` with [`BUFFER_BYTES`] buffers (named as `codec_path`
/// in `build.rs`).
#[derive(Debug, Clone, Copy)]
pub struct SmallBufferCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for SmallBufferCodec<T, U> {
    fn default() -> Self {
        SmallBufferCodec(PhantomData)
    }
}

fn settings() -> BufferSettings {
    BufferSettings::new(BUFFER_BYTES, YIELD_THRESHOLD)
}

impl<T, U> Codec for SmallBufferCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::raw_encoder(settings())
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstCodec::<T, U>::raw_decoder(settings())
    }
}
