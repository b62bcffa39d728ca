//! Telling a revoked device from a failing connection (issue 16, item 8).
//!
//! The collector refuses a revoked device in two ways: an open stream ends with
//! `PermissionDenied` and the `tandem-refusal: revoked` metadata
//! ([`tandem_proto::Refusal::Revoked`]), and every later handshake fails with the
//! TLS alert `certificate_revoked`. Either means the same thing: retrying soon is
//! useless, the device must be re-enrolled. The uplink then says so once, as an
//! error, and retries slowly ([`RETRY`]) or as soon as its configuration changes
//! (a re-enrollment writes new certificate files and the operator restarts or edits).

use std::time::Duration;

use crate::uplink::UplinkError;

/// How long a revoked device waits between attempts: slow enough to cost the
/// collector nothing, fast enough that a re-enrolled device returns on its own.
pub(crate) const RETRY: Duration = Duration::from_secs(600);

/// Whether `err` says this device's certificate has been revoked.
pub(crate) fn is_revoked(err: &UplinkError) -> bool {
    if let UplinkError::Status(s) = err
        && s.code() == tonic::Code::PermissionDenied
        && s.metadata()
            .get(tandem_proto::REFUSAL_METADATA)
            .is_some_and(|v| v.as_bytes() == tandem_proto::Refusal::Revoked.name().as_bytes())
    {
        return true;
    }
    chain_has_revoked_alert(err)
}

/// Walks the error's sources for rustls' "received the alert certificate_revoked"
/// (it reaches us inside tonic's and hyper's transport errors, as an io error).
fn chain_has_revoked_alert(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if is_revoked_alert(e) {
            return true;
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
            && is_revoked_alert(inner)
        {
            return true;
        }
        cur = e.source();
    }
    false
}

/// The alert as rustls' own error, or as its text: when the alert arrives after the
/// handshake, while HTTP/2 is reading, h2 keeps only the io error's kind and the
/// inner error's text (`h2::proto::Error::Io(kind, Option<String>)`), so the type is
/// gone and only rustls' wording is left. The wording compared against is rustls'
/// own `Display` of the same error, not a copy of it.
fn is_revoked_alert(e: &(dyn std::error::Error + 'static)) -> bool {
    let revoked = rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRevoked);
    if let Some(r) = e.downcast_ref::<rustls::Error>() {
        return *r == revoked;
    }
    e.to_string() == revoked.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_and_the_alert_mean_revoked_and_other_failures_do_not() {
        let mut s =
            tonic::Status::permission_denied("the certificate of this device has been revoked");
        assert!(
            !is_revoked(&UplinkError::Status(s.clone())),
            "no metadata: not ours"
        );
        s.metadata_mut().insert(
            tandem_proto::REFUSAL_METADATA,
            tonic::metadata::MetadataValue::from_static("revoked"),
        );
        assert!(is_revoked(&UplinkError::Status(s)));
        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRevoked),
        );
        assert!(chain_has_revoked_alert(&io));
        let other = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(rustls::AlertDescription::BadCertificate),
        );
        assert!(!chain_has_revoked_alert(&other));
        // The shape h2 leaves when the alert comes after the handshake: an io error
        // of the same kind around the text only (seen in the e2e revocation test).
        let flattened = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRevoked).to_string(),
        );
        let s = tonic::Status::from_error(Box::new(flattened));
        assert!(is_revoked(&UplinkError::Status(s)), "through a Status too");
        let other_text = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(rustls::AlertDescription::BadCertificate).to_string(),
        );
        assert!(!chain_has_revoked_alert(&other_text));
        assert!(!is_revoked(&UplinkError::Protocol("expected a welcome")));
    }
}
