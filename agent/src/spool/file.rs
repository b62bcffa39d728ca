//! The spool's file format: `TSP1`, a CRC-32 of the payload, the encoded frame;
//! and the atomic write every spool file goes through.

use std::fs;
use std::io::Write;
use std::path::Path;

use prost::Message;
use tandem_proto::v1::AgentFrame;

use super::{SpoolError, io};

/// First bytes of a checksummed spool file. Files without it are read as the bare
/// protobuf earlier agents wrote (no checksum). It cannot begin a valid `AgentFrame`:
/// `T` (0x54) is field 10 with wire type 4, which protobuf never emits.
const MAGIC: &[u8; 4] = b"TSP1";
const HEADER: usize = 8;

/// A spool file: `TSP1`, the CRC-32 (IEEE, little-endian) of the payload, the
/// encoded frame.
pub(crate) fn encode_file(frame: &AgentFrame) -> Vec<u8> {
    let payload = frame.encode_to_vec();
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    out
}

/// What is wrong with a spool file.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DecodeError {
    #[error("truncated header ({0} bytes)")]
    Truncated(usize),
    #[error("checksum mismatch (stored {want:08x}, computed {got:08x} over {len} bytes)")]
    Checksum { want: u32, got: u32, len: usize },
    #[error("undecodable: {0}")]
    Undecodable(#[source] prost::DecodeError),
    #[error("holds no frame")]
    Empty,
}

/// Reads a spool file back; the error says what is wrong with it.
pub(crate) fn decode_file(bytes: &[u8]) -> Result<AgentFrame, DecodeError> {
    let payload = match bytes.strip_prefix(MAGIC.as_slice()) {
        Some(rest) => {
            let Some((crc, payload)) = rest.split_first_chunk::<4>() else {
                return Err(DecodeError::Truncated(bytes.len()));
            };
            let want = u32::from_le_bytes(*crc);
            let got = crc32fast::hash(payload);
            if want != got {
                return Err(DecodeError::Checksum {
                    want,
                    got,
                    len: payload.len(),
                });
            }
            payload
        }
        None => bytes,
    };
    let frame = AgentFrame::decode(payload).map_err(DecodeError::Undecodable)?;
    if frame.kind.is_none() {
        return Err(DecodeError::Empty);
    }
    Ok(frame)
}

pub(super) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), SpoolError> {
    let tmp = path.with_extension("tmp");
    let written = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    })();
    if let Err(e) = written {
        // A half-written temp file only takes space a full disk needs.
        let _ = fs::remove_file(&tmp);
        return Err(SpoolError::Io {
            path: tmp,
            source: e,
        });
    }
    fs::rename(&tmp, path).map_err(io(path))?;
    // The rename itself must reach the disk too, or a power cut can undo it.
    if let Some(dir) = path.parent() {
        crate::platform::sync_dir(dir).map_err(io(dir))?;
    }
    Ok(())
}
