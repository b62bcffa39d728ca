//! The device's identity on disk, and keeping it fresh.
//!
//! Files (paths from `agent.toml`): `key` (the private key, made here and never
//! sent anywhere; mode 0600 through the platform facade), `cert` (the client
//! certificate), `ca_cert` (the collector CA), and `<state_dir>/enrollment.toml`
//! (where the collector is and who this device is, written by enrollment).
//!
//! Renewal: at two thirds of the certificate's lifetime, or at once when the
//! collector sends `Settings { renew_now }`, the agent makes a new key and CSR and
//! calls `Identity.Renew` over mTLS with its current certificate. On failure it
//! retries with exponential backoff and keeps using the old certificate, which stays
//! valid until it expires. The uplink reads the files at every connect, so the new
//! certificate is used from the next connection on. A renewal also brings the
//! collector's CA bundle, which is how agents learn a new CA during a rotation
//! (docs/SECURITY.md).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rand::Rng;
use serde::{Deserialize, Serialize};
use tandem_proto::v1::RenewRequest;
use tandem_proto::v1::identity_client::IdentityClient;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::AgentConfig;

const RENEW_BACKOFF_MIN: Duration = Duration::from_secs(5);
const RENEW_BACKOFF_MAX: Duration = Duration::from_secs(600);
/// File in the state dir written by enrollment.
pub(crate) const ENROLLMENT_FILE: &str = "enrollment.toml";

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}: not a readable PEM certificate")]
    BadCert(PathBuf),
    #[error("{path}: {message}")]
    BadEnrollmentFile { path: PathBuf, message: String },
    #[error("cannot make a key pair or CSR: {0}")]
    Keygen(#[from] rcgen::Error),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> IdentityError + '_ {
    move |source| IdentityError::Io {
        path: path.to_owned(),
        source,
    }
}

/// What enrollment learned: where to stream and who this device is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Enrollment {
    pub collector_url: String,
    pub device_id: String,
    pub tenant: String,
    #[serde(default)]
    pub site: String,
}

impl Enrollment {
    pub(crate) fn path(state_dir: &Path) -> PathBuf {
        state_dir.join(ENROLLMENT_FILE)
    }

    /// Reads `<state_dir>/enrollment.toml`; `Ok(None)` if the agent never enrolled.
    pub fn load(state_dir: &Path) -> Result<Option<Self>, IdentityError> {
        let path = Self::path(state_dir);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&path)(e)),
        };
        toml::from_str(&text)
            .map(Some)
            .map_err(|e| IdentityError::BadEnrollmentFile {
                path,
                message: e.message().to_owned(),
            })
    }

    pub(crate) fn save(&self, state_dir: &Path) -> Result<(), IdentityError> {
        std::fs::create_dir_all(state_dir).map_err(io_err(state_dir))?;
        let path = Self::path(state_dir);
        let text = format!(
            "# Written by `tandem-agent enroll`; do not edit.\n{}",
            toml::to_string(self).unwrap_or_default()
        );
        write_atomic(&path, text.as_bytes())
    }
}

/// A new P-256 key pair (PEM) and a CSR for it (DER). The CSR names nothing: the
/// collector decides the identity.
pub(crate) fn new_key_and_csr() -> Result<(String, Vec<u8>), IdentityError> {
    let key = rcgen::KeyPair::generate()?;
    let csr = rcgen::CertificateParams::default().serialize_request(&key)?;
    Ok((key.serialize_pem(), csr.der().to_vec()))
}

fn write_atomic(path: &Path, contents: &[u8]) -> Result<(), IdentityError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err(path))
}

/// Writes the key (private), the certificate and, if given, the CA. The
/// certificate and CA are staged first, so the key and the certificate change
/// within microseconds of each other; an uplink that reads them in between fails
/// one connection attempt and retries.
pub(crate) fn store(
    cfg: &AgentConfig,
    key_pem: &str,
    cert_pem: &str,
    ca_pem: Option<&str>,
) -> Result<(), IdentityError> {
    for p in [&cfg.key, &cfg.cert, &cfg.ca_cert] {
        if let Some(dir) = p.parent() {
            std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        }
    }
    let staged = |p: &Path| p.with_extension("new");
    let stage = |p: &Path, text: &str| -> Result<(), IdentityError> {
        let tmp = staged(p);
        std::fs::write(&tmp, text).map_err(io_err(&tmp))
    };
    stage(&cfg.cert, cert_pem)?;
    if let Some(ca) = ca_pem {
        stage(&cfg.ca_cert, ca)?;
    }
    crate::platform::write_private_file(&cfg.key, key_pem.as_bytes()).map_err(io_err(&cfg.key))?;
    let commit = |p: &Path| std::fs::rename(staged(p), p).map_err(io_err(p));
    commit(&cfg.cert)?;
    if ca_pem.is_some() {
        commit(&cfg.ca_cert)?;
    }
    Ok(())
}

/// `(not_before, not_after)` of the first certificate in a PEM file.
pub(crate) fn cert_validity(path: &Path) -> Result<(SystemTime, SystemTime), IdentityError> {
    use rustls_pki_types::pem::PemObject;
    let pem = std::fs::read(path).map_err(io_err(path))?;
    let bad = || IdentityError::BadCert(path.to_owned());
    let der = rustls_pki_types::CertificateDer::pem_slice_iter(&pem)
        .next()
        .ok_or_else(bad)?
        .map_err(|_| bad())?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).map_err(|_| bad())?;
    let v = cert.validity();
    let at = |t: i64| SystemTime::UNIX_EPOCH + Duration::from_secs(t.max(0) as u64);
    Ok((at(v.not_before.timestamp()), at(v.not_after.timestamp())))
}

/// When to renew: two thirds into the certificate's lifetime.
pub(crate) fn renew_at(not_before: SystemTime, not_after: SystemTime) -> SystemTime {
    let life = not_after
        .duration_since(not_before)
        .unwrap_or(Duration::ZERO);
    not_before + life * 2 / 3
}

/// Why one renewal did not happen (the current certificate stays in use).
#[derive(Debug, thiserror::Error)]
pub(crate) enum RenewError {
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error(transparent)]
    Uplink(#[from] crate::uplink::UplinkError),
    #[error("cannot connect to {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: tonic::transport::Error,
    },
    /// The collector's refusal message (its code is in the refusal table of `proto`).
    #[error("collector refused the renewal: {0}")]
    Refused(String),
}

/// Renews once: new key and CSR, `Identity.Renew` over mTLS, files replaced.
pub(crate) async fn renew_once(cfg: &AgentConfig) -> Result<(), RenewError> {
    let (key_pem, csr_der) = new_key_and_csr()?;
    let channel = crate::uplink::endpoint(cfg)?
        .connect()
        .await
        .map_err(|source| RenewError::Connect {
            url: cfg.collector_url.clone(),
            source,
        })?;
    let resp = IdentityClient::new(channel)
        .renew(RenewRequest { csr_der })
        .await
        .map_err(|s| RenewError::Refused(s.message().to_owned()))?
        .into_inner();
    // The CA bundle replaces ours only if it still holds a CA we trust now, so a
    // renewal answer cannot swap our trust for an unrelated CA.
    let ca = (!resp.ca_pem.is_empty() && bundle_overlaps(&cfg.ca_cert, &resp.ca_pem))
        .then_some(resp.ca_pem.as_str());
    Ok(store(cfg, &key_pem, &resp.cert_pem, ca)?)
}

/// Whether `new_pem` contains at least one certificate of the bundle at `current`.
fn bundle_overlaps(current: &Path, new_pem: &str) -> bool {
    use rustls_pki_types::pem::PemObject;
    let ders = |pem: &[u8]| -> Vec<Vec<u8>> {
        rustls_pki_types::CertificateDer::pem_slice_iter(pem)
            .filter_map(Result::ok)
            .map(|c| c.to_vec())
            .collect()
    };
    let Ok(cur) = std::fs::read(current) else {
        return false;
    };
    let cur = ders(&cur);
    ders(new_pem.as_bytes()).iter().any(|c| cur.contains(c))
}

/// Keeps the certificate fresh until `stop`: renews at two thirds of its lifetime
/// or when `renew_now` is notified; on failure retries with backoff and jitter.
pub(crate) async fn renew_loop(
    cfg: Arc<AgentConfig>,
    renew_now: Arc<Notify>,
    stop: CancellationToken,
) {
    let mut backoff = RENEW_BACKOFF_MIN;
    let mut forced = false;
    loop {
        let due = match cert_validity(&cfg.cert) {
            Ok((nb, na)) => {
                let at = renew_at(nb, na);
                if SystemTime::now() >= na {
                    tracing::error!(cert = %cfg.cert.display(), "the client certificate has expired; renewal over mTLS is no longer possible, re-enroll this device");
                }
                at
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot read the client certificate; retrying");
                SystemTime::now() + backoff
            }
        };
        if !forced {
            let wait = due
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO);
            tracing::debug!(in_secs = wait.as_secs(), "next certificate renewal");
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
                _ = renew_now.notified() => tracing::info!("collector asked for a certificate renewal"),
            }
        }
        match renew_once(&cfg).await {
            Ok(()) => {
                tracing::info!(cert = %cfg.cert.display(), "client certificate renewed");
                backoff = RENEW_BACKOFF_MIN;
                forced = false;
            }
            Err(err) => {
                let wait = rand::rng().random_range(backoff / 2..=backoff);
                tracing::warn!(error = %err, retry_in_secs = wait.as_secs(), "certificate renewal failed; the current certificate stays in use");
                backoff = (backoff * 2).min(RENEW_BACKOFF_MAX);
                // A failed renewal is retried after the backoff, whatever was due.
                forced = true;
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renews_at_two_thirds() {
        let nb = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let na = nb + Duration::from_secs(30 * 86_400);
        assert_eq!(renew_at(nb, na), nb + Duration::from_secs(20 * 86_400));
        // A certificate whose end is before its start renews at once.
        assert_eq!(renew_at(na, nb), na);
    }

    #[test]
    fn key_and_csr_match() {
        let (key, csr) = new_key_and_csr().unwrap();
        assert!(key.contains("PRIVATE KEY"));
        let parsed = rcgen::CertificateSigningRequestParams::from_der(&csr.clone().into()).unwrap();
        let kp = rcgen::KeyPair::from_pem(&key).unwrap();
        use rcgen::PublicKeyData;
        assert_eq!(parsed.public_key.der_bytes(), kp.der_bytes());
    }

    #[test]
    fn enrollment_file_round_trips_and_reports_bad_content() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Enrollment::load(dir.path()).unwrap(), None);
        let e = Enrollment {
            collector_url: "https://c.example:4443".into(),
            device_id: "d".into(),
            tenant: "acme".into(),
            site: String::new(),
        };
        e.save(dir.path()).unwrap();
        assert_eq!(Enrollment::load(dir.path()).unwrap(), Some(e));
        std::fs::write(Enrollment::path(dir.path()), "nonsense = 1\n").unwrap();
        let err = Enrollment::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("enrollment.toml"), "{err}");
    }

    fn ca_pem() -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.self_signed(&key).unwrap().pem()
    }

    #[test]
    fn a_renewal_bundle_is_adopted_only_if_it_keeps_a_trusted_ca() {
        let dir = tempfile::tempdir().unwrap();
        let current = dir.path().join("ca.pem");
        let (old, new, stranger) = (ca_pem(), ca_pem(), ca_pem());
        std::fs::write(&current, &old).unwrap();
        assert!(bundle_overlaps(&current, &format!("{new}{old}")));
        assert!(!bundle_overlaps(&current, &stranger));
        assert!(!bundle_overlaps(&current, "not pem"));
        assert!(!bundle_overlaps(&dir.path().join("missing.pem"), &old));
    }

    #[cfg(unix)]
    #[test]
    fn the_key_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let cfg = crate::config::parse(
            &dir.path().join("agent.toml"),
            "collector_url = \"https://c:1\"\n",
        )
        .unwrap();
        // An existing world-readable file is replaced by a private one.
        std::fs::write(&cfg.key, "old").unwrap();
        std::fs::set_permissions(&cfg.key, std::fs::Permissions::from_mode(0o644)).unwrap();
        store(&cfg, "KEY", "CERT", Some("CA")).unwrap();
        let mode = std::fs::metadata(&cfg.key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(std::fs::read_to_string(&cfg.key).unwrap(), "KEY");
        assert_eq!(std::fs::read_to_string(&cfg.ca_cert).unwrap(), "CA");
    }
}
