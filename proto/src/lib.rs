//! The wire contract between `tandem-agent` and `tandem-collector`.
//!
//! This crate owns the protobuf messages (generated from `proto/tandem/v1`), the
//! protocol constants both sides must agree on, and ([`util`]) the few small pieces
//! both binaries need that belong to neither (file watching, the stop signal, the
//! clock in milliseconds).
#![forbid(unsafe_code)]

/// Generated messages and service stubs for package `tandem.v1`.
pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("tandem.v1");
}

pub mod codec;
pub mod metrics;
pub mod token;
pub mod util;

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

    #[test]
    fn every_refusal_has_a_code_a_status_and_a_distinct_name() {
        let mut names: Vec<_> = ALL_REFUSALS.iter().map(|r| r.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), ALL_REFUSALS.len(), "names are distinct");
        for r in ALL_REFUSALS {
            assert_ne!(r.grpc_code(), tonic::Code::Ok, "{r:?}");
            assert!((400..600).contains(&r.http_status()), "{r:?}");
            assert_eq!(r.status("m").code(), r.grpc_code(), "{r:?}");
        }
        assert_eq!(Refusal::RateLimited.http_status(), 429);
        assert_eq!(
            Refusal::NoIdentity.grpc_code(),
            tonic::Code::Unauthenticated
        );
        assert!(
            Refusal::Revoked
                .status("gone")
                .metadata()
                .get(REFUSAL_METADATA)
                .is_some_and(|v| v == "revoked")
        );
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
    /// The device (or its certificate) has been revoked: retrying is useless until
    /// it is re-enrolled. Sent with [`REFUSAL_METADATA`] = `revoked`, so the agent
    /// tells it from other permission problems.
    Revoked,
    /// No client certificate, or one that carries no Tandem device identity.
    NoIdentity,
    /// The request is allowed but not now: too many from this peer; retry later.
    RateLimited,
    /// A well-formed request the collector will not grant (an enrollment token
    /// unknown, expired, used up or revoked).
    NotPermitted,
}

/// Every refusal, for tests that walk the table.
pub const ALL_REFUSALS: [Refusal; 8] = [
    Refusal::BadInput,
    Refusal::WrongIdentity,
    Refusal::OutOfOrder,
    Refusal::Unavailable,
    Refusal::Revoked,
    Refusal::NoIdentity,
    Refusal::RateLimited,
    Refusal::NotPermitted,
];

impl Refusal {
    /// The gRPC status code for this refusal.
    pub fn grpc_code(self) -> tonic::Code {
        match self {
            Refusal::BadInput => tonic::Code::InvalidArgument,
            Refusal::WrongIdentity => tonic::Code::PermissionDenied,
            Refusal::OutOfOrder => tonic::Code::FailedPrecondition,
            Refusal::Unavailable => tonic::Code::Unavailable,
            Refusal::Revoked => tonic::Code::PermissionDenied,
            Refusal::NoIdentity => tonic::Code::Unauthenticated,
            Refusal::RateLimited => tonic::Code::ResourceExhausted,
            Refusal::NotPermitted => tonic::Code::PermissionDenied,
        }
    }

    /// The HTTP status for this refusal (for the HTTP API).
    pub fn http_status(self) -> u16 {
        match self {
            Refusal::BadInput => 400,
            Refusal::WrongIdentity => 403,
            Refusal::OutOfOrder => 409,
            Refusal::Unavailable => 503,
            Refusal::Revoked => 403,
            Refusal::NoIdentity => 401,
            Refusal::RateLimited => 429,
            Refusal::NotPermitted => 403,
        }
    }

    /// A gRPC status carrying `message` (and, for a revocation, the
    /// [`REFUSAL_METADATA`] that names it).
    pub fn status(self, message: impl Into<String>) -> tonic::Status {
        let mut s = tonic::Status::new(self.grpc_code(), message);
        if self == Refusal::Revoked {
            s.metadata_mut().insert(
                REFUSAL_METADATA,
                tonic::metadata::MetadataValue::from_static("revoked"),
            );
        }
        s
    }

    /// The reason's name, as [`REFUSAL_METADATA`] carries it.
    pub fn name(self) -> &'static str {
        match self {
            Refusal::BadInput => "bad_input",
            Refusal::WrongIdentity => "wrong_identity",
            Refusal::OutOfOrder => "out_of_order",
            Refusal::Unavailable => "unavailable",
            Refusal::Revoked => "revoked",
            Refusal::NoIdentity => "no_identity",
            Refusal::RateLimited => "rate_limited",
            Refusal::NotPermitted => "not_permitted",
        }
    }
}

/// Metadata key that names a refusal the agent acts on (today: `revoked`).
pub const REFUSAL_METADATA: &str = "tandem-refusal";

/// Metadata key of the sequence number a refused frame carried, so an agent knows
/// which spooled batch was refused.
pub const REFUSED_SEQ_METADATA: &str = "tandem-refused-seq";
