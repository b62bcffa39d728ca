//! The collector's own certificate authority: it issues the collector's server
//! certificate and the agents' client certificates, and reads device identities
//! back out of presented certificates.
//!
//! Files live in `<data_dir>/pki/`: `ca.pem`, `ca.key`, `server.pem`, `server.key`.
//! Private keys are written with mode 0600 on unix. Keys are ECDSA P-256.

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
}

/// Paths of the PKI files in a data dir.
#[derive(Debug, Clone)]
pub struct PkiPaths {
    pub dir: PathBuf,
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

impl PkiPaths {
    pub fn new(data_dir: &Path) -> Self {
        let dir = data_dir.join("pki");
        Self {
            ca_cert: dir.join("ca.pem"),
            ca_key: dir.join("ca.key"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
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
    let ca_key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "Tandem collector CA");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let v = Validity::starting_now(CA_VALIDITY);
    params.not_before = v.not_before;
    params.not_after = v.not_after;
    let ca_cert = params.self_signed(&ca_key)?;
    write_file(&paths.ca_cert, &ca_cert.pem(), false)?;
    write_file(&paths.ca_key, &ca_key.serialize_pem(), true)?;

    let ca = load_ca(data_dir)?;
    let server = ca.issue_server(server_names)?;
    write_file(&paths.server_cert, &server.cert_pem, false)?;
    write_file(&paths.server_key, &server.key_pem, true)?;
    Ok(paths)
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
        })
    }

    /// Issues a client certificate for `device_id` of `tenant`, with a key made here
    /// (manual provisioning; token enrollment signs a CSR instead).
    pub fn issue_agent(
        &self,
        tenant: &str,
        device_id: &str,
        validity: Validity,
    ) -> Result<Issued, PkiError> {
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
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
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
