//! The collector's own certificate authority: it issues the collector's server
//! certificate and the agents' client certificates, and reads device identities
//! back out of presented certificates.
//!
//! Files live in `<data_dir>/pki/`: `ca.pem`, `ca.key`, `server.pem`, `server.key`.
//! Keys are ECDSA P-256.
//!
//! Every file is written atomically and durably ([`crate::private_fs::write_atomic`]:
//! temp file, fsync, rename, directory fsync); keys and the rotation marker are 0600
//! from creation, the pki directory 0700. A change that spans several files (`init`,
//! both CA-rotation steps) is staged as `<name>.new` files, then committed by
//! writing the list of renames to `pki/commit`; [`recover`] (run before the PKI is
//! read) finishes a committed change or discards an uncommitted one, so a crash
//! never pairs a new `ca.pem` with the old `ca.key`. [`load_ca`] refuses a key that
//! does not match the issuing certificate, and a rotation marker that does not
//! parse is an error, never "started at 0".
//!
//! Enrolled devices send a CSR: [`check_csr`] accepts only a well-formed request
//! with a valid self-signature over an ECDSA P-256/P-384 or Ed25519 key, and
//! [`Ca::sign_device`] uses nothing from it but the public key; the identity (URI
//! SAN, subject, usages, lifetime) is always the collector's decision. Every issued
//! certificate gets a random 128-bit serial, which is what revocation names.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::OffsetDateTime;

mod bundle;
mod csr;
mod files;
mod peer;

pub(crate) use bundle::write_agent_bundle;
#[cfg(test)]
pub(crate) use csr::{CsrError, MAX_CSR_BYTES};
pub(crate) use csr::{check_csr, csr_key_bits};
pub(crate) use files::recover;
use files::{Step, commit_files, recover_dir};
#[cfg(test)]
pub(crate) use peer::bundle_ders;
pub(crate) use peer::{PolicyError, cert_key_bits, check_client_policy};
pub use peer::{cert_serial_hex, identity_from_der};

/// Default lifetime of a manually issued agent certificate.
#[cfg(any(test, feature = "demo"))]
pub(crate) const DEFAULT_AGENT_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
const SERVER_VALIDITY: Duration = Duration::from_secs(2 * 365 * 24 * 3600);
/// Certificates are valid from well before "now" (as public CAs backdate), so a
/// device whose clock is days behind the collector's (a flat CMOS battery, a VM
/// restored from a snapshot) still accepts the CA and server certificate issued
/// just now, reaches the collector and learns the right time from it. One hour
/// stranded an agent a day behind (issue 16). Device certificates issued by
/// enrollment use [`Validity::device`]: only the collector, whose clock is right,
/// checks them.
const BACKDATE: Duration = Duration::from_secs(30 * 24 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{0} already exists; refusing to overwrite an existing CA (to change the server certificate's names use `tandem-collector pki server-cert --name …`; a new CA would strand every enrolled device)"
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
    #[error(transparent)]
    Fs(#[from] crate::private_fs::FsError),
    #[error(
        "{path}: the CA rotation marker holds {found:?}, not a start time in ms; restore it or remove it with care (a rotation may be half done)"
    )]
    BadMarker { path: PathBuf, found: String },
    #[error("{path}: line {line}: {text:?} is not a step of a PKI change")]
    BadCommit {
        path: PathBuf,
        line: usize,
        text: String,
    },
    #[error("{key}: this key does not belong to the issuing CA certificate in {cert}")]
    KeyMismatch { key: PathBuf, cert: PathBuf },
    #[error(
        "a CA rotation is in progress (since {0}): the server certificate must stay with the old CA until `tandem-collector pki rotate-ca finish`, which reissues it (with its names); run server-cert after that"
    )]
    ServerCertDuringRotation(String),
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
    pub(crate) dir: PathBuf,
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub(crate) server_cert: PathBuf,
    pub(crate) server_key: PathBuf,
    /// Present while a CA rotation is in progress; holds its start (ms since epoch).
    pub(crate) rotation: PathBuf,
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
    pub(crate) fn device(lifetime: Duration) -> Self {
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

/// Writes `contents` to `path` atomically and durably; private files are 0600
/// (unix) from creation on, the directory 0700 if it is made here.
pub fn write_file(path: &Path, contents: &str, private: bool) -> Result<(), PkiError> {
    crate::private_fs::write_atomic(path, contents.as_bytes(), private)?;
    Ok(())
}

/// Creates the CA and the server certificate in `data_dir/pki`. `server_names` are
/// the DNS names and IP addresses agents dial; localhost and loopback are always
/// included.
pub fn init(data_dir: &Path, server_names: &[String]) -> Result<PkiPaths, PkiError> {
    let paths = PkiPaths::new(data_dir);
    crate::private_fs::create_dir(&paths.dir)?;
    recover_dir(&paths.dir)?;
    if paths.ca_key.exists() {
        return Err(PkiError::Exists(paths.ca_key));
    }
    let (ca_key, ca_cert) = new_ca("Tandem collector CA")?;
    let ca = Ca {
        cert_pem: ca_cert.clone(),
        issuer: Issuer::from_ca_cert_pem(&ca_cert, KeyPair::from_pem(&ca_key.serialize_pem())?)?,
    };
    let server = ca.issue_server(server_names)?;
    commit_files(
        &paths.dir,
        &[
            Step::Put(paths.ca_cert.clone(), ca_cert, false),
            Step::Put(paths.ca_key.clone(), ca_key.serialize_pem(), true),
            Step::Put(paths.server_cert.clone(), server.cert_pem, false),
            Step::Put(paths.server_key.clone(), server.key_pem, true),
        ],
    )?;
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
pub(crate) fn rotation_started(data_dir: &Path) -> Result<Option<i64>, PkiError> {
    let paths = PkiPaths::new(data_dir);
    recover_dir(&paths.dir)?;
    match fs::read_to_string(&paths.rotation) {
        Ok(s) => match s.trim().parse::<i64>() {
            Ok(ms) if ms > 0 => Ok(Some(ms)),
            _ => Err(PkiError::BadMarker {
                path: paths.rotation,
                found: s.chars().take(64).collect(),
            }),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(&paths.rotation)(e)),
    }
}

/// Step 1 of a CA rotation: a new CA becomes the issuing CA (first in `ca.pem`,
/// key in `ca.key`); the old CA stays in the bundle, so every certificate it issued
/// keeps working, and the server certificate (old CA) stays, so agents that know
/// only the old CA still connect. The old key is kept as `ca.key.retired-<ms>`.
/// Restart the collector afterwards, then have every device renew.
pub(crate) fn rotate_begin(data_dir: &Path, now_ms: i64) -> Result<(), PkiError> {
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
    // One commit: the new bundle, its key and the marker land together or not at all.
    commit_files(
        &paths.dir,
        &[
            Step::Put(paths.ca_key.clone(), key.serialize_pem(), true),
            Step::Put(paths.ca_cert.clone(), format!("{cert}{old_issuing}"), false),
            Step::Put(paths.rotation.clone(), now_ms.max(1).to_string(), true),
        ],
    )
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
pub(crate) fn rotate_finish(data_dir: &Path) -> Result<(), PkiError> {
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
    commit_files(
        &paths.dir,
        &[
            Step::Put(paths.server_key.clone(), server.key_pem, true),
            Step::Put(paths.server_cert.clone(), server.cert_pem, false),
            Step::Put(paths.ca_cert.clone(), issuing, false),
            Step::Remove(paths.rotation.clone()),
        ],
    )
}

/// Reissues the server certificate under the same CA with new names (issue 16,
/// item 12): the DNS names and IP addresses agents dial, plus localhost, loopback
/// and this host's name, as `init` does. The CA is untouched, so every enrolled
/// device keeps working; the collector serves the new certificate after a restart.
/// Returns (names before, names now). Refused during a CA rotation (the issuing CA
/// is then the new one, which not every agent trusts yet).
pub fn server_cert(
    data_dir: &Path,
    names: &[String],
) -> Result<(Vec<String>, Vec<String>), PkiError> {
    let paths = PkiPaths::new(data_dir);
    if let Some(started) = rotation_started(data_dir)? {
        return Err(PkiError::ServerCertDuringRotation(started.to_string()));
    }
    let ca = load_ca(data_dir)?;
    let before = fs::read_to_string(&paths.server_cert)
        .ok()
        .and_then(|pem| first_cert_der(&pem))
        .map(|der| server_names(&der))
        .unwrap_or_default();
    let server = ca.issue_server(names)?;
    let now = first_cert_der(&server.cert_pem)
        .map(|der| server_names(&der))
        .unwrap_or_default();
    // Key and certificate change together or not at all (issue 10, item 7).
    commit_files(
        &paths.dir,
        &[
            Step::Put(paths.server_key.clone(), server.key_pem, true),
            Step::Put(paths.server_cert.clone(), server.cert_pem, false),
        ],
    )?;
    Ok((before, now))
}

/// DNS names and IP addresses in a certificate's SAN, as text.
pub(crate) fn server_names(der: &[u8]) -> Vec<String> {
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
pub(crate) fn serving_fingerprint(data_dir: &Path) -> Result<[u8; 32], PkiError> {
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
    recover_dir(&paths.dir)?;
    if !paths.ca_key.exists() {
        return Err(PkiError::NoCa { path: paths.dir });
    }
    let cert_pem = fs::read_to_string(&paths.ca_cert).map_err(io_err(&paths.ca_cert))?;
    let key_pem = fs::read_to_string(&paths.ca_key).map_err(io_err(&paths.ca_key))?;
    let key = KeyPair::from_pem(&key_pem)?;
    {
        use rcgen::PublicKeyData;
        let cert_key = first_cert_der(&cert_pem).and_then(|der| cert_key_bits(&der));
        if cert_key.as_deref() != Some(key.der_bytes()) {
            return Err(PkiError::KeyMismatch {
                key: paths.ca_key,
                cert: paths.ca_cert,
            });
        }
    }
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
    pub(crate) fn sign_device(
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

#[cfg(test)]
mod tests {
    use super::files::{COMMIT_FILE, stage_and_commit, staged};
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

    /// DER of a CSR with the given SubjectPublicKeyInfo algorithm and key bits (the
    /// signature is junk: the key check comes first). rcgen cannot make RSA,
    /// secp256k1 or P-521 keys, so the request is built by hand.
    fn csr_with_key(alg: &[u8], key: &[u8]) -> Vec<u8> {
        fn tlv(tag: u8, c: &[u8]) -> Vec<u8> {
            let mut v = vec![tag];
            match c.len() {
                n if n < 128 => v.push(n as u8),
                n if n < 256 => v.extend([0x81, n as u8]),
                n => v.extend([0x82, (n >> 8) as u8, n as u8]),
            }
            v.extend_from_slice(c);
            v
        }
        let mut bits = vec![0u8];
        bits.extend_from_slice(key);
        let spki = tlv(0x30, &[tlv(0x30, alg), tlv(0x03, &bits)].concat());
        let info = tlv(
            0x30,
            &[tlv(0x02, &[0]), tlv(0x30, &[]), spki, vec![0xa0, 0]].concat(),
        );
        // ecdsa-with-SHA256
        let sig_alg = tlv(
            0x30,
            &tlv(0x06, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02]),
        );
        tlv(0x30, &[info, sig_alg, tlv(0x03, &[0, 1, 2, 3])].concat())
    }

    #[test]
    fn csr_keys_we_do_not_sign_are_named_as_such() {
        let ec = [0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
        let point = |n: usize| [vec![4u8], vec![7u8; n - 1]].concat();
        // secp256k1 (1.3.132.0.10) and P-521 (1.3.132.0.35)
        let k1 = [&ec[..], &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x0a]].concat();
        let p521 = [&ec[..], &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23]].concat();
        // rsaEncryption, NULL; a 512-bit modulus
        let rsa_alg = [
            0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
        ];
        let mut rsa_key = vec![0x30, 0x48, 0x02, 0x41, 0x00];
        rsa_key.extend([0xc3; 64]);
        rsa_key.extend([0x02, 0x03, 0x01, 0x00, 0x01]);
        for (what, der) in [
            ("secp256k1", csr_with_key(&k1, &point(65))),
            ("P-521", csr_with_key(&p521, &point(133))),
            ("RSA-512", csr_with_key(&rsa_alg, &rsa_key)),
        ] {
            assert_eq!(check_csr(&der).unwrap_err(), CsrError::Algorithm, "{what}");
        }
        // A P-256 key in the same hand-made request passes the key check and then
        // fails on its junk signature.
        let p256 = [
            &ec[..],
            &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07],
        ]
        .concat();
        assert_eq!(
            check_csr(&csr_with_key(&p256, &point(65))).unwrap_err(),
            CsrError::Invalid
        );
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

    /// The crash the old code allowed: `ca.pem` of a new CA next to the old `ca.key`.
    /// The CA must refuse to load rather than sign certificates nothing verifies.
    #[test]
    fn a_ca_key_that_does_not_match_the_certificate_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let paths = init(dir.path(), &[]).unwrap();
        let (_, other_cert) = new_ca("another CA").unwrap();
        fs::write(&paths.ca_cert, other_cert).unwrap();
        let err = load_ca(dir.path()).err().expect("mismatch refused");
        assert!(matches!(err, PkiError::KeyMismatch { .. }), "{err}");
        assert!(err.to_string().contains("does not belong"), "{err}");
    }

    /// A rotation interrupted after its commit point is finished by the next reader;
    /// one interrupted before it is discarded. Either way key and certificate match.
    #[test]
    fn an_interrupted_rotation_is_finished_or_discarded_never_half_applied() {
        let dir = tempfile::tempdir().unwrap();
        let paths = init(dir.path(), &[]).unwrap();
        let old_fp = load_ca(dir.path()).unwrap().fingerprint().unwrap();
        let (key, cert) = new_ca("next").unwrap();
        let steps = [
            Step::Put(paths.ca_key.clone(), key.serialize_pem(), true),
            Step::Put(paths.ca_cert.clone(), cert.clone(), false),
            Step::Put(paths.rotation.clone(), "5".into(), true),
        ];
        // Crash before the commit point: staged files only.
        for step in &steps {
            if let Step::Put(p, c, private) = step {
                write_file(&staged(p), c, *private).unwrap();
            }
        }
        assert_eq!(load_ca(dir.path()).unwrap().fingerprint().unwrap(), old_fp);
        assert_eq!(rotation_started(dir.path()).unwrap(), None);
        assert!(!staged(&paths.ca_key).exists(), "staged files discarded");
        // Crash after the commit point, with one rename done (the key).
        stage_and_commit(&paths.dir, &steps).unwrap();
        fs::rename(staged(&paths.ca_key), &paths.ca_key).unwrap();
        let ca = load_ca(dir.path()).expect("finished on load");
        assert_ne!(ca.fingerprint().unwrap(), old_fp);
        assert_eq!(rotation_started(dir.path()).unwrap(), Some(5));
        assert!(!paths.dir.join(COMMIT_FILE).exists());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for p in [&paths.ca_key, &paths.rotation, &paths.server_key] {
                let mode = fs::metadata(p).unwrap().permissions().mode();
                assert_eq!(mode & 0o777, 0o600, "{}", p.display());
            }
            let mode = fs::metadata(&paths.dir).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700);
        }
    }

    /// A corrupt marker used to read as "started at 0", and `rotate-ca finish` then
    /// cut off every device that had not renewed, without `--force`.
    #[test]
    fn a_corrupt_rotation_marker_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let paths = init(dir.path(), &[]).unwrap();
        rotate_begin(dir.path(), 1_000).unwrap();
        for garbage in ["", "garbage", "-5", "0"] {
            fs::write(&paths.rotation, garbage).unwrap();
            let err = rotation_started(dir.path()).unwrap_err();
            assert!(
                matches!(err, PkiError::BadMarker { .. }),
                "{garbage:?}: {err}"
            );
            assert!(matches!(
                rotate_finish(dir.path()),
                Err(PkiError::BadMarker { .. })
            ));
        }
    }

    /// docs/PROTOCOL.md requires clientAuth; the CA says pathlen:0. A certificate
    /// without the usage, or one issued by a sub-CA below ours, is refused; what
    /// the collector issues passes.
    #[test]
    fn client_policy_requires_client_auth_and_a_direct_signature() {
        let dir = tempfile::tempdir().unwrap();
        let paths = init(dir.path(), &[]).unwrap();
        let ca = load_ca(dir.path()).unwrap();
        let cas = bundle_ders(&ca.cert_pem);
        let v = Validity::starting_now(DEFAULT_AGENT_VALIDITY);
        let good = ca.issue_agent("acme", "d1", v).unwrap();
        check_client_policy(&first_cert_der(&good.cert_pem).unwrap(), &cas).unwrap();

        let ca_key = KeyPair::from_pem(&fs::read_to_string(&paths.ca_key).unwrap()).unwrap();
        let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, ca_key).unwrap();
        let leaf_params = |eku: bool| {
            let (mut p, _) = Ca::device_params("acme", "d2", v).unwrap();
            if !eku {
                p.extended_key_usages.clear();
            }
            p
        };
        let key = KeyPair::generate().unwrap();
        let no_eku = leaf_params(false).signed_by(&key, &issuer).unwrap();
        assert_eq!(
            check_client_policy(no_eku.der(), &cas),
            Err(PolicyError::NoClientAuth)
        );
        let mut sub = CertificateParams::default();
        sub.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        sub.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        let sub_key = KeyPair::generate().unwrap();
        let sub_cert = sub.signed_by(&sub_key, &issuer).unwrap();
        let sub_issuer = Issuer::from_ca_cert_der(sub_cert.der(), sub_key).unwrap();
        let below_sub = leaf_params(true).signed_by(&key, &sub_issuer).unwrap();
        assert_eq!(
            check_client_policy(below_sub.der(), &cas),
            Err(PolicyError::NotDirectlyIssued)
        );
    }

    #[test]
    fn server_cert_gets_new_names_under_the_same_ca() {
        let dir = tempfile::tempdir().unwrap();
        init(dir.path(), &["old.example".into()]).unwrap();
        let paths = PkiPaths::new(dir.path());
        let ca_before = fs::read(&paths.ca_cert).unwrap();
        let fp = serving_fingerprint(dir.path()).unwrap();
        let (before, now) =
            server_cert(dir.path(), &["new.example".into(), "10.0.0.7".into()]).unwrap();
        assert!(before.contains(&"old.example".to_owned()));
        assert!(!now.contains(&"old.example".to_owned()), "{now:?}");
        assert!(now.contains(&"new.example".to_owned()) && now.contains(&"10.0.0.7".to_owned()));
        assert!(now.contains(&"localhost".to_owned()));
        assert_eq!(fs::read(&paths.ca_cert).unwrap(), ca_before, "CA untouched");
        assert_eq!(
            serving_fingerprint(dir.path()).unwrap(),
            fp,
            "signed by the same CA"
        );
        rotate_begin(dir.path(), 1).unwrap();
        assert!(matches!(
            server_cert(dir.path(), &[]),
            Err(PkiError::ServerCertDuringRotation(_))
        ));
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
