//! The telemetry gRPC listener: TLS acceptor, frame checks, ingest sessions.

pub mod ingest;
pub mod tls;
pub mod validate;
