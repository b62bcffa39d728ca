//! What an enrolling or renewing agent sends: [`check_csr`] accepts only a
//! well-formed PKCS#10 request with a valid self-signature over a key we sign
//! (ECDSA P-256/P-384, Ed25519), bounded in size; nothing but its public key is used.

/// Why a certificate signing request was refused. The text goes to the agent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum CsrError {
    #[error("the CSR is empty")]
    Empty,
    #[error("the CSR is {0} bytes, more than the limit of {MAX_CSR_BYTES}")]
    TooLarge(usize),
    #[error("the CSR is not a valid PKCS#10 request or its signature does not verify")]
    Invalid,
    #[error("the CSR's key algorithm is not accepted (use ECDSA P-256, ECDSA P-384 or Ed25519)")]
    Algorithm,
}

/// Whether a CSR's public key is one we sign (ECDSA P-256 or P-384, Ed25519);
/// `None` if the request cannot be parsed at all.
fn csr_key_accepted(der: &[u8]) -> Option<bool> {
    use x509_parser::prelude::FromDer;
    let (_, req) =
        x509_parser::certification_request::X509CertificationRequest::from_der(der).ok()?;
    let spki = &req.certification_request_info.subject_pki;
    let alg = spki.algorithm.algorithm.to_id_string();
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok())
        .map(|o| o.to_id_string());
    Some(match alg.as_str() {
        "1.3.101.112" => true, // Ed25519
        // id-ecPublicKey on P-256 or P-384
        "1.2.840.10045.2.1" => matches!(
            curve.as_deref(),
            Some("1.2.840.10045.3.1.7" | "1.3.132.0.34")
        ),
        _ => false,
    })
}

/// Largest CSR accepted; a P-256 request is about 250 bytes.
pub(crate) const MAX_CSR_BYTES: usize = 16 * 1024;

/// Checks a DER CSR: size, structure, self-signature, key algorithm.
pub(crate) fn check_csr(der: &[u8]) -> Result<rcgen::CertificateSigningRequestParams, CsrError> {
    if der.is_empty() {
        return Err(CsrError::Empty);
    }
    if der.len() > MAX_CSR_BYTES {
        return Err(CsrError::TooLarge(der.len()));
    }
    // The key algorithm first: rcgen cannot parse keys it does not support (RSA,
    // secp256k1, P-521), and such a request is a well-formed one with a key we do
    // not accept, not "not a valid PKCS#10 request" (issue 16, item 13).
    if csr_key_accepted(der) == Some(false) {
        return Err(CsrError::Algorithm);
    }
    let csr = rcgen::CertificateSigningRequestParams::from_der(&der.to_vec().into())
        .map_err(|_| CsrError::Invalid)?;
    let alg = csr.public_key.algorithm();
    let accepted = [
        &rcgen::PKCS_ECDSA_P256_SHA256,
        &rcgen::PKCS_ECDSA_P384_SHA384,
        &rcgen::PKCS_ED25519,
    ];
    if !accepted.contains(&alg) {
        return Err(CsrError::Algorithm);
    }
    Ok(csr)
}

/// The raw public key bits of a CSR (for "the renewal must use a new key").
pub(crate) fn csr_key_bits(csr: &rcgen::CertificateSigningRequestParams) -> Vec<u8> {
    use rcgen::PublicKeyData;
    csr.public_key.der_bytes().to_vec()
}
