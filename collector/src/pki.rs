//! The collector's own certificate authority: it issues the collector's server
//! certificate and the agents' client certificates, and reads device identities
//! back out of presented certificates.
//!
//! Files live in `<data_dir>/pki/`: `ca.pem`, `ca.key`, `server.pem`, `server.key`.
//! Private keys are written with mode 0600 on unix. Keys are ECDSA P-256.
//!
//! Enrolled devices send a CSR: [`check_csr`] accepts only a well-formed request
//! with a valid self-signature over an ECDSA P-256/P-384 or Ed25519 key, and
//! [`Ca::sign_device`] uses nothing from it but the public key; the identity (URI
//! SAN, subject, usages, lifetime) is always the collector's decision. Every issued
//! certificate gets a random 128-bit serial, which is what revocation names.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::OffsetDateTime;

/// Default lifetime of a manually issued agent certificate.
pub const DEFAULT_AGENT_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
const SERVER_VALIDITY: Duration = Duration::from_secs(2 * 365 * 24 * 3600);
/// Certificates are valid from a little before "now", so a device whose clock is a
/// few minutes behind the collector's still accepts a certificate issued just now.
const BACKDATE: Duration = Duration::from_secs(3600);

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{0} already exists; refusing to overwrite an existing CA (remove the pki directory to start over)"
    )]
    Exists(PathBuf),
    #[error("{path}: no CA here; run `tandem-collector pki init` first")]
    NoCa { path: PathBuf },
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("invalid tenant name {0:?}: use 1-63 lowercase letters, digits and '-'")]
    BadTenant(String),
    #[error("invalid device id {0:?}")]
    BadDevice(String),
    #[error("{0}: not a PEM certificate")]
    BadCaCert(PathBuf),
    #[error(
        "a CA rotation is already in progress (since {0}); finish it with `tandem-collector pki rotate-ca finish`"
    )]
    RotationInProgress(String),
    #[error("no CA rotation is in progress; start one with `tandem-collector pki rotate-ca begin`")]
    NoRotation,
    #[error("{0}: no CA in ca.pem signed the server certificate")]
    NoServingCa(PathBuf),
}

/// Why a certificate signing request was refused. The text goes to the agent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CsrError {
    #[error("the CSR is empty")]
    Empty,
    #[error("the CSR is {0} bytes, more than the limit of {MAX_CSR_BYTES}")]
    TooLarge(usize),
    #[error("the CSR is not a valid PKCS#10 request or its signature does not verify")]
    Invalid,
    #[error("the CSR's key algorithm is not accepted (use ECDSA P-256, ECDSA P-384 or Ed25519)")]
    Algorithm,
}

/// Largest CSR accepted; a P-256 request is about 250 bytes.
pub const MAX_CSR_BYTES: usize = 16 * 1024;

/// Checks a DER CSR: size, structure, self-signature, key algorithm.
pub fn check_csr(der: &[u8]) -> Result<rcgen::CertificateSigningRequestParams, CsrError> {
    if der.is_empty() {
        return Err(CsrError::Empty);
    }
    if der.len() > MAX_CSR_BYTES {
        return Err(CsrError::TooLarge(der.len()));
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
pub fn csr_key_bits(csr: &rcgen::CertificateSigningRequestParams) -> Vec<u8> {
    use rcgen::PublicKeyData;
    csr.public_key.der_bytes().to_vec()
}

/// The raw public key bits of a DER certificate.
pub fn cert_key_bits(der: &[u8]) -> Option<Vec<u8>> {
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

/// A random positive 128-bit serial (the top bit cleared keeps it positive in DER).
fn random_serial() -> Result<Vec<u8>, PkiError> {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| PkiError::Rcgen(rcgen::Error::RingUnspecified))?;
    b[0] = (b[0] & 0x7f) | 0x01;
    Ok(b.to_vec())
}

/// The DER of the first certificate in a PEM string.
pub fn first_cert_der(pem: &str) -> Option<Vec<u8>> {
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()?
        .ok()
        .map(|c| c.to_vec())
}

/// Paths of the PKI files in a data dir.
///
/// `ca.pem` is the trust bundle: the issuing CA first (its key is `ca.key`), then,
/// during a CA rotation, the previous CA. Client certificates chaining to any of
/// them are accepted, and agents receive the whole bundle.
#[derive(Debug, Clone)]
pub struct PkiPaths {
    pub dir: PathBuf,
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// Present while a CA rotation is in progress; holds its start (ms since epoch).
    pub rotation: PathBuf,
}

impl PkiPaths {
    pub fn new(data_dir: &Path) -> Self {
        let dir = data_dir.join("pki");
        Self {
            ca_cert: dir.join("ca.pem"),
            ca_key: dir.join("ca.key"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
            rotation: dir.join("rotation-started"),
            dir,
        }
    }
}

/// The CA, loaded and ready to sign.
pub struct Ca {
    pub cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A freshly issued certificate and its private key, both PEM.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
    pub serial_hex: String,
}

/// Validity window for an issued certificate.
#[derive(Debug, Clone, Copy)]
pub struct Validity {
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

impl Validity {
    /// From a little before now until `lifetime` from now.
    pub fn starting_now(lifetime: Duration) -> Self {
        let now = OffsetDateTime::now_utc();
        Self {
            not_before: now - BACKDATE,
            not_after: now + lifetime,
        }
    }

    /// For short-lived device certificates: backdated by a tenth of the lifetime (at
    /// most 5 minutes), so the agent's "renew at two thirds" lands near two thirds
    /// of the real lifetime while small clock differences are still tolerated.
    pub fn device(lifetime: Duration) -> Self {
        let now = OffsetDateTime::now_utc();
        let back = (lifetime / 10).min(Duration::from_secs(300));
        Self {
            not_before: now - back,
            not_after: now + lifetime,
        }
    }

    /// `not_after` in ms since the Unix epoch.
    pub fn not_after_ms(&self) -> i64 {
        (self.not_after.unix_timestamp_nanos() / 1_000_000) as i64
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Writes `contents` to `path`; private files get mode 0600 (unix) from creation on.
pub fn write_file(path: &Path, contents: &str, private: bool) -> Result<(), PkiError> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(io_err(parent))?;
    }
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        if private {
            opts.mode(0o600);
        }
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut f = opts.open(path).map_err(io_err(path))?;
    f.write_all(contents.as_bytes()).map_err(io_err(path))?;
    f.sync_all().map_err(io_err(path))?;
    Ok(())
}

/// Creates the CA and the server certificate in `data_dir/pki`. `server_names` are
/// the DNS names and IP addresses agents dial; localhost and loopback are always
/// included.
pub fn init(data_dir: &Path, server_names: &[String]) -> Result<PkiPaths, PkiError> {
    let paths = PkiPaths::new(data_dir);
    if paths.ca_key.exists() {
        return Err(PkiError::Exists(paths.ca_key));
    }
    let (ca_key, ca_cert) = new_ca("Tandem collector CA")?;
    write_file(&paths.ca_cert, &ca_cert, false)?;
    write_file(&paths.ca_key, &ca_key.serialize_pem(), true)?;

    let ca = load_ca(data_dir)?;
    let server = ca.issue_server(server_names)?;
    write_file(&paths.server_cert, &server.cert_pem, false)?;
    write_file(&paths.server_key, &server.key_pem, true)?;
    Ok(paths)
}

fn new_ca(common_name: &str) -> Result<(KeyPair, String), PkiError> {
    let ca_key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let v = Validity::starting_now(CA_VALIDITY);
    params.not_before = v.not_before;
    params.not_after = v.not_after;
    let ca_cert = params.self_signed(&ca_key)?;
    Ok((ca_key, ca_cert.pem()))
}

fn all_cert_ders(pem: &str) -> Vec<Vec<u8>> {
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .filter_map(Result::ok)
        .map(|c| c.to_vec())
        .collect()
}

/// When the CA rotation in progress started (ms since epoch), if one is.
pub fn rotation_started(data_dir: &Path) -> Result<Option<i64>, PkiError> {
    let paths = PkiPaths::new(data_dir);
    match fs::read_to_string(&paths.rotation) {
        Ok(s) => Ok(Some(s.trim().parse().unwrap_or(0))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(&paths.rotation)(e)),
    }
}

/// Step 1 of a CA rotation: a new CA becomes the issuing CA (first in `ca.pem`,
/// key in `ca.key`); the old CA stays in the bundle, so every certificate it issued
/// keeps working, and the server certificate (old CA) stays, so agents that know
/// only the old CA still connect. The old key is kept as `ca.key.retired-<ms>`.
/// Restart the collector afterwards, then have every device renew.
pub fn rotate_begin(data_dir: &Path, now_ms: i64) -> Result<(), PkiError> {
    let paths = PkiPaths::new(data_dir);
    if let Some(started) = rotation_started(data_dir)? {
        return Err(PkiError::RotationInProgress(started.to_string()));
    }
    load_ca(data_dir)?;
    let old_bundle = fs::read_to_string(&paths.ca_cert).map_err(io_err(&paths.ca_cert))?;
    let old_key = fs::read_to_string(&paths.ca_key).map_err(io_err(&paths.ca_key))?;
    let (key, cert) = new_ca(&format!("Tandem collector CA {}", now_ms / 1000))?;
    write_file(
        &paths.dir.join(format!("ca.key.retired-{now_ms}")),
        &old_key,
        true,
    )?;
    // Only the current issuing CA of the old bundle is kept: a rotation retires
    // what an earlier rotation had kept.
    let old_issuing =
        pem_of_first(&old_bundle).ok_or_else(|| PkiError::BadCaCert(paths.ca_cert.clone()))?;
    write_file(&paths.ca_cert, &format!("{cert}{old_issuing}"), false)?;
    write_file(&paths.ca_key, &key.serialize_pem(), true)?;
    write_file(&paths.rotation, &now_ms.to_string(), false)?;
    Ok(())
}

/// The first PEM block of `pem`, as PEM text.
fn pem_of_first(pem: &str) -> Option<String> {
    let start = pem.find("-----BEGIN CERTIFICATE-----")?;
    let end_marker = "-----END CERTIFICATE-----";
    let end = pem[start..].find(end_marker)? + start + end_marker.len();
    Some(format!("{}\n", &pem[start..end]))
}

/// Step 2 of a CA rotation, once every device has renewed: the server certificate
/// is re-issued by the new CA (same names) and the old CA leaves the bundle, so
/// certificates it issued stop working. Restart the collector afterwards.
pub fn rotate_finish(data_dir: &Path) -> Result<(), PkiError> {
    let paths = PkiPaths::new(data_dir);
    if rotation_started(data_dir)?.is_none() {
        return Err(PkiError::NoRotation);
    }
    let ca = load_ca(data_dir)?;
    let server_pem = fs::read_to_string(&paths.server_cert).map_err(io_err(&paths.server_cert))?;
    let names = first_cert_der(&server_pem)
        .map(|der| server_names(&der))
        .unwrap_or_default();
    let server = ca.issue_server(&names)?;
    let issuing =
        pem_of_first(&ca.cert_pem).ok_or_else(|| PkiError::BadCaCert(paths.ca_cert.clone()))?;
    write_file(&paths.server_key, &server.key_pem, true)?;
    write_file(&paths.server_cert, &server.cert_pem, false)?;
    write_file(&paths.ca_cert, &issuing, false)?;
    fs::remove_file(&paths.rotation).map_err(io_err(&paths.rotation))?;
    Ok(())
}

/// DNS names and IP addresses in a certificate's SAN, as text.
fn server_names(der: &[u8]) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return Vec::new();
    };
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(d) => Some((*d).to_owned()),
            GeneralName::IPAddress(b) if b.len() == 4 => {
                Some(std::net::Ipv4Addr::new(b[0], b[1], b[2], b[3]).to_string())
            }
            GeneralName::IPAddress(b) if b.len() == 16 => <[u8; 16]>::try_from(*b)
                .ok()
                .map(|a| std::net::Ipv6Addr::from(a).to_string()),
            _ => None,
        })
        .collect()
}

/// The fingerprint new enrollment tokens pin: that of the CA in the bundle that
/// signed the server certificate (the enrollment listener presents that one, so the
/// agent can verify the server against the pinned CA). Outside a rotation it is the
/// issuing CA; during one, still the old CA until `rotate-ca finish`.
pub fn serving_fingerprint(data_dir: &Path) -> Result<[u8; 32], PkiError> {
    let paths = PkiPaths::new(data_dir);
    let bundle = fs::read_to_string(&paths.ca_cert).map_err(io_err(&paths.ca_cert))?;
    let server_pem = fs::read_to_string(&paths.server_cert).map_err(io_err(&paths.server_cert))?;
    let server_der = first_cert_der(&server_pem)
        .ok_or_else(|| PkiError::BadCaCert(paths.server_cert.clone()))?;
    let (_, server) = x509_parser::parse_x509_certificate(&server_der)
        .map_err(|_| PkiError::BadCaCert(paths.server_cert.clone()))?;
    for der in all_cert_ders(&bundle) {
        if let Ok((_, ca)) = x509_parser::parse_x509_certificate(&der)
            && server.verify_signature(Some(ca.public_key())).is_ok()
        {
            return Ok(tandem_proto::token::sha256(
                ca.tbs_certificate.subject_pki.raw,
            ));
        }
    }
    Err(PkiError::NoServingCa(paths.ca_cert))
}

/// Loads the CA from `data_dir/pki`.
pub fn load_ca(data_dir: &Path) -> Result<Ca, PkiError> {
    let paths = PkiPaths::new(data_dir);
    if !paths.ca_key.exists() {
        return Err(PkiError::NoCa { path: paths.dir });
    }
    let cert_pem = fs::read_to_string(&paths.ca_cert).map_err(io_err(&paths.ca_cert))?;
    let key_pem = fs::read_to_string(&paths.ca_key).map_err(io_err(&paths.ca_key))?;
    let key = KeyPair::from_pem(&key_pem)?;
    let issuer = Issuer::from_ca_cert_pem(&cert_pem, key)?;
    Ok(Ca { cert_pem, issuer })
}

impl Ca {
    fn issue_server(&self, names: &[String]) -> Result<Issued, PkiError> {
        let mut all: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
        if let Ok(h) = hostname::get()
            && let Some(h) = h.to_str()
        {
            all.push(h.to_owned());
        }
        for n in names {
            if !all.contains(n) {
                all.push(n.clone());
            }
        }
        let mut params = CertificateParams::new(all)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "Tandem collector");
        params.distinguished_name = dn;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let v = Validity::starting_now(SERVER_VALIDITY);
        params.not_before = v.not_before;
        params.not_after = v.not_after;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            serial_hex: String::new(),
        })
    }

    /// The SHA-256 fingerprint of this CA's public key, as enrollment tokens carry it.
    pub fn fingerprint(&self) -> Result<[u8; 32], PkiError> {
        first_cert_der(&self.cert_pem)
            .and_then(|der| tandem_proto::token::spki_fingerprint(&der))
            .ok_or_else(|| PkiError::BadCaCert(PathBuf::from("ca.pem")))
    }

    fn device_params(
        tenant: &str,
        device_id: &str,
        validity: Validity,
    ) -> Result<(CertificateParams, String), PkiError> {
        if !tandem_proto::is_valid_name(tenant) {
            return Err(PkiError::BadTenant(tenant.to_owned()));
        }
        if !tandem_proto::is_valid_device_id(device_id) {
            return Err(PkiError::BadDevice(device_id.to_owned()));
        }
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, device_id);
        dn.push(DnType::OrganizationName, tenant);
        params.distinguished_name = dn;
        let uri = tandem_proto::device_uri(tenant, device_id);
        params.subject_alt_names = vec![SanType::URI(uri.try_into()?)];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.not_before = validity.not_before;
        params.not_after = validity.not_after;
        let serial = random_serial()?;
        let serial_hex = tandem_proto::token::hex(&serial);
        params.serial_number = Some(serial.into());
        Ok((params, serial_hex))
    }

    /// Signs a device certificate for the public key of a checked CSR. Nothing else
    /// of the CSR is used.
    pub fn sign_device(
        &self,
        csr: &rcgen::CertificateSigningRequestParams,
        tenant: &str,
        device_id: &str,
        validity: Validity,
    ) -> Result<(String, String), PkiError> {
        let (params, serial_hex) = Self::device_params(tenant, device_id, validity)?;
        let cert = params.signed_by(&csr.public_key, &self.issuer)?;
        Ok((cert.pem(), serial_hex))
    }

    /// Issues a client certificate for `device_id` of `tenant`, with a key made here
    /// (manual provisioning; token enrollment signs a CSR instead).
    pub fn issue_agent(
        &self,
        tenant: &str,
        device_id: &str,
        validity: Validity,
    ) -> Result<Issued, PkiError> {
        let (params, serial_hex) = Self::device_params(tenant, device_id, validity)?;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            serial_hex,
        })
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_agent_cert_carries_its_identity() {
        let dir = tempfile::tempdir().unwrap();
        init(dir.path(), &[]).unwrap();
        let ca = load_ca(dir.path()).unwrap();
        let issued = ca
            .issue_agent(
                "acme",
                "dev-1",
                Validity::starting_now(DEFAULT_AGENT_VALIDITY),
            )
            .unwrap();
        let der = rustls_pki_types::pem::PemObject::from_pem_slice(issued.cert_pem.as_bytes())
            .map(|c: rustls_pki_types::CertificateDer<'static>| c)
            .unwrap();
        assert_eq!(
            identity_from_der(&der),
            Some(("acme".to_owned(), "dev-1".to_owned()))
        );
    }

    #[test]
    fn init_refuses_to_overwrite_and_keys_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let paths = init(dir.path(), &[]).unwrap();
        assert!(paths.ca_key.exists() && paths.server_key.exists());
        assert!(matches!(init(dir.path(), &[]), Err(PkiError::Exists(_))));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&paths.ca_key).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    fn csr_der(key: &KeyPair, sans: Vec<String>) -> Vec<u8> {
        let params = CertificateParams::new(sans).unwrap();
        params.serialize_request(key).unwrap().der().to_vec()
    }

    #[test]
    fn signs_only_the_csr_key_with_the_collectors_identity() {
        let dir = tempfile::tempdir().unwrap();
        init(dir.path(), &[]).unwrap();
        let ca = load_ca(dir.path()).unwrap();
        let key = KeyPair::generate().unwrap();
        // The CSR asks for another device's identity; it must not get it.
        let der = csr_der(&key, vec![tandem_proto::device_uri("evil", "someone-else")]);
        let csr = check_csr(&der).unwrap();
        let (pem, serial) = ca
            .sign_device(
                &csr,
                "acme",
                "dev-2",
                Validity::device(DEFAULT_AGENT_VALIDITY),
            )
            .unwrap();
        let cert = first_cert_der(&pem).unwrap();
        assert_eq!(
            identity_from_der(&cert),
            Some(("acme".to_owned(), "dev-2".to_owned()))
        );
        assert_eq!(cert_serial_hex(&cert).unwrap(), serial);
        assert_eq!(serial.len(), 32, "128-bit serial");
        assert_eq!(cert_key_bits(&cert).unwrap(), csr_key_bits(&csr));
    }

    #[test]
    fn csr_checks_say_what_is_wrong() {
        assert_eq!(check_csr(&[]).unwrap_err(), CsrError::Empty);
        assert_eq!(
            check_csr(&vec![0u8; MAX_CSR_BYTES + 1]).unwrap_err(),
            CsrError::TooLarge(MAX_CSR_BYTES + 1)
        );
        assert_eq!(check_csr(b"not a csr").unwrap_err(), CsrError::Invalid);
        let key = KeyPair::generate().unwrap();
        let mut der = csr_der(&key, vec![]);
        // Flip a bit of the signature (the last bytes): the self-signature fails.
        let n = der.len();
        der[n - 3] ^= 0x01;
        assert_eq!(check_csr(&der).unwrap_err(), CsrError::Invalid);
        let ed = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        assert!(check_csr(&csr_der(&ed, vec![])).is_ok());
    }

    #[test]
    fn fingerprint_is_the_sha256_of_the_ca_public_key() {
        let dir = tempfile::tempdir().unwrap();
        init(dir.path(), &[]).unwrap();
        let ca = load_ca(dir.path()).unwrap();
        let der = first_cert_der(&ca.cert_pem).unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        let spki = cert.tbs_certificate.subject_pki.raw;
        assert_eq!(ca.fingerprint().unwrap(), tandem_proto::token::sha256(spki));
        let other = tempfile::tempdir().unwrap();
        init(other.path(), &[]).unwrap();
        assert_ne!(
            load_ca(other.path()).unwrap().fingerprint().unwrap(),
            ca.fingerprint().unwrap()
        );
    }

    #[test]
    fn ca_rotation_keeps_old_certificates_valid_until_finished() {
        let dir = tempfile::tempdir().unwrap();
        let paths = init(dir.path(), &["collector.example.net".to_owned()]).unwrap();
        let old_fp = load_ca(dir.path()).unwrap().fingerprint().unwrap();
        assert_eq!(serving_fingerprint(dir.path()).unwrap(), old_fp);
        assert!(matches!(
            rotate_finish(dir.path()),
            Err(PkiError::NoRotation)
        ));
        rotate_begin(dir.path(), 1_000).unwrap();
        assert!(matches!(
            rotate_begin(dir.path(), 2_000),
            Err(PkiError::RotationInProgress(_))
        ));
        let ca = load_ca(dir.path()).unwrap();
        let new_fp = ca.fingerprint().unwrap();
        assert_ne!(new_fp, old_fp, "a new issuing CA");
        assert_eq!(all_cert_ders(&ca.cert_pem).len(), 2, "bundle: new + old");
        // The server certificate is still the old CA's, and tokens pin that.
        assert_eq!(serving_fingerprint(dir.path()).unwrap(), old_fp);
        assert!(paths.dir.join("ca.key.retired-1000").exists());
        rotate_finish(dir.path()).unwrap();
        let ca = load_ca(dir.path()).unwrap();
        assert_eq!(all_cert_ders(&ca.cert_pem).len(), 1, "old CA retired");
        assert_eq!(serving_fingerprint(dir.path()).unwrap(), new_fp);
        let server = fs::read_to_string(&paths.server_cert).unwrap();
        let names = server_names(&first_cert_der(&server).unwrap());
        assert!(
            names.contains(&"collector.example.net".to_owned()),
            "{names:?}"
        );
        assert!(names.contains(&"127.0.0.1".to_owned()), "{names:?}");
        assert_eq!(rotation_started(dir.path()).unwrap(), None);
    }

    #[test]
    fn rejects_bad_tenant_names() {
        let dir = tempfile::tempdir().unwrap();
        init(dir.path(), &[]).unwrap();
        let ca = load_ca(dir.path()).unwrap();
        let v = Validity::starting_now(DEFAULT_AGENT_VALIDITY);
        assert!(matches!(
            ca.issue_agent("Acme Corp", "d", v),
            Err(PkiError::BadTenant(_))
        ));
    }
}
