//! Reading presented certificates: the client-certificate policy beyond "chains to
//! our CA", device identities from URI SANs, serials and key bits. Pure functions
//! of DER bytes.

#[cfg(test)]
use super::all_cert_ders;

/// The raw public key bits of a DER certificate.
pub(crate) fn cert_key_bits(der: &[u8]) -> Option<Vec<u8>> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(
        cert.tbs_certificate
            .subject_pki
            .subject_public_key
            .data
            .to_vec(),
    )
}

/// Lowercase hex of a DER certificate's serial number.
pub fn cert_serial_hex(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(tandem_proto::token::hex(cert.raw_serial()))
}

/// Why a client certificate that chains to our CA is still refused (the certificate
/// policy, docs/SECURITY.md).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PolicyError {
    #[error("the client certificate cannot be parsed")]
    Unparsable,
    #[error("the client certificate has no extended key usage clientAuth")]
    NoClientAuth,
    #[error(
        "the client certificate was not signed directly by the collector's CA (the CA allows no intermediate, pathlen:0)"
    )]
    NotDirectlyIssued,
}

/// The certificate policy beyond "chains to our CA" (which rustls checks): the
/// leaf carries the extended key usage clientAuth, and is signed by one of the CA
/// certificates in `ca_ders` itself, so no intermediate is honoured whatever the
/// peer sends (our CA says pathlen:0, which the WebPKI verifier does not enforce).
/// Pure: the caller passes the CA certificates.
pub(crate) fn check_client_policy(leaf_der: &[u8], ca_ders: &[Vec<u8>]) -> Result<(), PolicyError> {
    let (_, leaf) =
        x509_parser::parse_x509_certificate(leaf_der).map_err(|_| PolicyError::Unparsable)?;
    let client_auth = matches!(leaf.extended_key_usage(), Ok(Some(eku)) if eku.value.client_auth);
    if !client_auth {
        return Err(PolicyError::NoClientAuth);
    }
    let direct = ca_ders.iter().any(|der| {
        x509_parser::parse_x509_certificate(der)
            .is_ok_and(|(_, ca)| leaf.verify_signature(Some(ca.public_key())).is_ok())
    });
    if !direct {
        return Err(PolicyError::NotDirectlyIssued);
    }
    Ok(())
}

/// The DER of every certificate in a PEM bundle (the CA bundle `ca.pem`).
#[cfg(test)]
pub(crate) fn bundle_ders(pem: &str) -> Vec<Vec<u8>> {
    all_cert_ders(pem)
}

/// Reads `(tenant, device_id)` from the URI SAN of a DER certificate. Exactly one
/// device URI must be present.
pub fn identity_from_der(der: &[u8]) -> Option<(String, String)> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    let mut found = None;
    for name in &san.value.general_names {
        if let x509_parser::extensions::GeneralName::URI(uri) = name
            && let Some((t, d)) = tandem_proto::parse_device_uri(uri)
        {
            if found.is_some() {
                return None;
            }
            found = Some((t.to_owned(), d.to_owned()));
        }
    }
    found
}
