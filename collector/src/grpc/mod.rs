//! The gRPC listeners: TLS acceptors, frame checks, ingest sessions, enrollment
//! and renewal.

pub mod enroll;
pub mod ingest;
pub mod ratelimit;
pub mod tls;
pub mod validate;
