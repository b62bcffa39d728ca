//! The wire contract between `tandem-agent` and `tandem-collector`.
//!
//! This crate owns the protobuf messages (generated from `proto/tandem/v1`), the
//! protocol constants both sides must agree on, and nothing else.
#![forbid(unsafe_code)]

/// Generated messages and service stubs for package `tandem.v1`.
pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("tandem.v1");
}

pub mod token;

/// The protocol revision spoken by this build (see docs/PROTOCOL.md).
pub const PROTOCOL_VERSION: u32 = 1;

/// Largest encoded gRPC message either side accepts. A batch of a few hundred series
/// and a handful of samples is a few kilobytes; 4 MiB leaves room for a patch report
/// with thousands of updates while bounding what one peer can make the other buffer.
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// Most series one metric batch may declare.
pub const MAX_SERIES_PER_BATCH: usize = 10_000;

/// Most samples (instants) one metric batch may carry.
pub const MAX_SAMPLES_PER_BATCH: usize = 1_000;

/// Longest metric name or dimension, in bytes.
pub const MAX_LABEL_BYTES: usize = 256;

/// The SPIFFE-style URI SAN that names a device: `spiffe://tandem/tenant/<t>/device/<id>`.
pub fn device_uri(tenant: &str, device_id: &str) -> String {
    format!("spiffe://tandem/tenant/{tenant}/device/{device_id}")
}

/// Parses a device URI SAN into `(tenant, device_id)`; `None` if it is not one.
pub fn parse_device_uri(uri: &str) -> Option<(&str, &str)> {
    let rest = uri.strip_prefix("spiffe://tandem/tenant/")?;
    let (tenant, rest) = rest.split_once('/')?;
    let device = rest.strip_prefix("device/")?;
    if !is_valid_name(tenant) || !is_valid_device_id(device) {
        return None;
    }
    Some((tenant, device))
}

/// A tenant or site name: 1–63 chars of lowercase ASCII letters, digits and '-',
/// not starting or ending with '-'.
pub fn is_valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && !s.starts_with('-')
        && !s.ends_with('-')
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// A device id: 1–64 chars of ASCII letters, digits and '-' (a UUID in practice).
pub fn is_valid_device_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_uri_round_trips() {
        let uri = device_uri("acme", "1b4e28ba-2fa1-11d2-883f-0016d3cca427");
        assert_eq!(
            parse_device_uri(&uri),
            Some(("acme", "1b4e28ba-2fa1-11d2-883f-0016d3cca427"))
        );
    }

    #[test]
    fn device_uri_rejects_malformed() {
        for bad in [
            "",
            "spiffe://tandem/tenant/acme",
            "spiffe://tandem/tenant/acme/device/",
            "spiffe://tandem/tenant/Acme/device/x",
            "spiffe://other/tenant/acme/device/x",
            "spiffe://tandem/tenant/acme/device/x/y",
            "spiffe://tandem/tenant//device/x",
        ] {
            assert_eq!(parse_device_uri(bad), None, "{bad}");
        }
    }
}

/// Why a peer's request was refused, and the one table that maps each reason to a
/// gRPC code and an HTTP status. Internal error text never goes with it: the message
/// sent to the peer says what was wrong with *their* input, nothing about ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The frame is malformed or breaks a documented limit.
    BadInput,
    /// The peer claims an identity its certificate does not give it.
    WrongIdentity,
    /// Frames arrived out of the protocol's order (e.g. a batch before Hello).
    OutOfOrder,
    /// The collector cannot store right now; retry later with the same data.
    Unavailable,
}

impl Refusal {
    /// The gRPC status code for this refusal.
    pub fn grpc_code(self) -> tonic::Code {
        match self {
            Refusal::BadInput => tonic::Code::InvalidArgument,
            Refusal::WrongIdentity => tonic::Code::PermissionDenied,
            Refusal::OutOfOrder => tonic::Code::FailedPrecondition,
            Refusal::Unavailable => tonic::Code::Unavailable,
        }
    }

    /// The HTTP status for this refusal (for the HTTP API).
    pub fn http_status(self) -> u16 {
        match self {
            Refusal::BadInput => 400,
            Refusal::WrongIdentity => 403,
            Refusal::OutOfOrder => 409,
            Refusal::Unavailable => 503,
        }
    }

    /// A gRPC status carrying `message`.
    pub fn status(self, message: impl Into<String>) -> tonic::Status {
        tonic::Status::new(self.grpc_code(), message)
    }
}

/// Metadata key of the sequence number a refused frame carried, so an agent knows
/// which spooled batch was refused.
pub const REFUSED_SEQ_METADATA: &str = "tandem-refused-seq";
