//! Enrollment (a token and a CSR in, a device certificate out) and renewal (a CSR
//! in over mTLS, a new certificate for the same identity out).
//!
//! `Enrollment` runs on its own listener with server-only TLS; `Identity` runs on
//! the telemetry listener, so the caller is authenticated by its current client
//! certificate, which must not be revoked. Both sign only the CSR's public key: the
//! identity in the certificate comes from the token (tenant, site, new or replaced
//! device id) or from the presented certificate (renewal).
//!
//! Refusals tell the agent which check failed (unknown token, secret mismatch,
//! revoked, expired, used up, bad CSR, rate limit); internal errors are logged here
//! and reach the agent only as "retry later".

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tandem_proto::util::now_ms;

use tandem_proto::Refusal;
use tandem_proto::v1::enrollment_server::Enrollment;
use tandem_proto::v1::identity_server::Identity;
use tandem_proto::v1::{EnrollRequest, EnrollResponse, RenewRequest, RenewResponse};
use tonic::{Request, Response, Status};

use super::ratelimit::RateLimiter;
use crate::pki::{self, Ca, Validity};
use crate::revocation::Revocations;
use crate::store::admin::{AdminError, EnrollFailure, IssuedCert};
use crate::store::api::AdminStore;

/// Longest hostname an enrolling agent may report.
const MAX_HOSTNAME_BYTES: usize = 1024;

/// What both services need to sign and record certificates.
pub(crate) struct Issuing {
    pub(crate) ca: Ca,
    /// The database, opened on first use by an admin connection of its own; a std
    /// mutex because it is only used inside `spawn_blocking`.
    pub(crate) db: Mutex<Option<crate::store::Db>>,
    pub(crate) db_path: PathBuf,
    pub(crate) lifetime: Duration,
    /// Serials known to be recorded in `certificates` (a cache of the table: rows
    /// are never deleted, so a serial once found stays valid here; revocation is
    /// checked separately).
    pub(crate) issued: std::sync::RwLock<std::collections::HashSet<String>>,
}

const NOT_ISSUED: &str = "this certificate was not issued by this collector";

impl Issuing {
    /// The certificate policy's last rule: only a certificate the collector
    /// recorded as issued (its serial in `certificates`, for this device) is
    /// accepted, so a certificate the CA key signed outside the collector creates
    /// no device or tenant rows. Known serials are answered from memory; others
    /// are looked up once.
    pub(crate) async fn check_issued(
        self: &Arc<Self>,
        device_id: &str,
        serial: &str,
    ) -> Result<(), Status> {
        let key = format!("{device_id}/{serial}");
        if self
            .issued
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&key)
        {
            return Ok(());
        }
        let (dev, ser) = (device_id.to_owned(), serial.to_owned());
        let found = self
            .with_db(move |conn, _| conn.certificate_issued(&dev, &ser))
            .await?;
        match found {
            Ok(true) => {
                self.remember_issued(device_id, serial);
                Ok(())
            }
            Ok(false) => {
                tracing::warn!(device = %device_id, serial = %serial, "certificate not issued by this collector refused");
                Err(tandem_proto::Refusal::WrongIdentity.status(NOT_ISSUED))
            }
            Err(e) => {
                tracing::error!(device = %device_id, error = %e, "cannot check the certificate's serial");
                Err(unavailable())
            }
        }
    }

    fn remember_issued(&self, device_id: &str, serial: &str) {
        self.issued
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(format!("{device_id}/{serial}"));
    }
}

impl Issuing {
    /// Runs `f` on the admin connection on a blocking thread.
    async fn with_db<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut crate::store::Db, &Issuing) -> T + Send + 'static,
    ) -> Result<T, Status> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = me.db.lock().unwrap_or_else(|p| p.into_inner());
            if guard.is_none() {
                match crate::store::Db::open(&me.db_path) {
                    Ok(c) => *guard = Some(c),
                    Err(e) => {
                        tracing::error!(error = %e, "cannot open the database for enrollment");
                        return Err(unavailable());
                    }
                }
            }
            let conn = guard.as_mut().ok_or_else(unavailable)?;
            Ok(f(conn, &me))
        })
        .await
        .map_err(|_| unavailable())?
    }

    fn sign(
        &self,
        csr: &rcgen::CertificateSigningRequestParams,
        tenant: &str,
        device_id: &str,
    ) -> Result<IssuedCert, pki::PkiError> {
        let validity = Validity::device(self.lifetime);
        let (cert_pem, serial_hex) = self.ca.sign_device(csr, tenant, device_id, validity)?;
        Ok(IssuedCert {
            cert_pem,
            serial_hex,
            not_after_ms: validity.not_after_ms(),
        })
    }
}

fn unavailable() -> Status {
    Refusal::Unavailable.status("the collector cannot issue certificates right now; retry later")
}

/// The `Enrollment` service (enrollment listener).
pub(crate) struct EnrollService {
    pub(crate) issuing: Arc<Issuing>,
    /// Per source address; a std mutex held only for one bucket update.
    pub(crate) limiter: Mutex<RateLimiter>,
    /// Told to the agent, which dials the enrollment host at this port for telemetry.
    pub(crate) telemetry_port: u16,
}

fn check_hostname(h: &str) -> Result<(), Status> {
    if h.len() > MAX_HOSTNAME_BYTES || h.chars().any(char::is_control) {
        return Err(Refusal::BadInput.status(format!(
            "hostname is longer than {MAX_HOSTNAME_BYTES} bytes or has control characters"
        )));
    }
    Ok(())
}

#[tonic::async_trait]
impl Enrollment for EnrollService {
    async fn enroll(
        &self,
        request: Request<EnrollRequest>,
    ) -> Result<Response<EnrollResponse>, Status> {
        let peer = request
            .remote_addr()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip());
        let limited = self
            .limiter
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .check(peer, Instant::now());
        if let Err(wait) = limited {
            // A peer can cause this line at will: one per minute, with a count.
            static LOGGED: crate::lograte::Every =
                crate::lograte::Every::new(std::time::Duration::from_secs(60));
            if let Some(left_out) = LOGGED.check(Instant::now()) {
                tracing::warn!(%peer, left_out, "enrollment attempt rate-limited (one line a minute; left_out: attempts not logged since the last line)");
            }
            return Err(Refusal::RateLimited.status(format!(
                "too many enrollment attempts from {peer}; retry in {} s",
                wait.as_secs().max(1)
            )));
        }
        let req = request.into_inner();
        let id_ok = req.token_id.len() == 16 && req.token_id.bytes().all(|b| b.is_ascii_hexdigit());
        if !id_ok || req.token_secret.len() != 32 {
            return Err(Refusal::BadInput.status(
                "the enrollment token is malformed (token id or secret has the wrong length)",
            ));
        }
        check_hostname(&req.hostname)?;
        let csr = pki::check_csr(&req.csr_der)
            .map_err(|e| Refusal::BadInput.status(format!("csr: {e}")))?;
        let secret_hash = tandem_proto::token::sha256(&req.token_secret);
        let token_id = req.token_id.to_ascii_lowercase();
        let hostname = req.hostname.clone();
        let result = self
            .issuing
            .with_db(move |conn, issuing| {
                // The store's enroll takes the signing failure as text (it only logs
                // it: the peer gets `unavailable()`, never this text).
                conn.enroll(&token_id, &secret_hash, &hostname, now_ms(), |g| {
                    issuing
                        .sign(&csr, &g.tenant, &g.device_id)
                        .map_err(|e| e.to_string())
                })
                .map(|(g, c)| (g, c, token_id))
            })
            .await?;
        match result {
            Ok((grant, cert, token_id)) => {
                self.issuing
                    .remember_issued(&grant.device_id, &cert.serial_hex);
                tracing::info!(device = %grant.device_id, tenant = %grant.tenant,
                    site = grant.site.as_deref().unwrap_or(""), token = %token_id,
                    replaced = grant.replaces, %peer, hostname = %req.hostname, "device enrolled");
                Ok(Response::new(EnrollResponse {
                    device_id: grant.device_id,
                    tenant: grant.tenant,
                    site: grant.site.unwrap_or_default(),
                    cert_pem: cert.cert_pem,
                    ca_pem: self.issuing.ca.cert_pem.clone(),
                    telemetry_port: u32::from(self.telemetry_port),
                }))
            }
            Err(EnrollFailure::Refused(r)) => {
                tracing::warn!(%peer, token = %req.token_id, reason = %r.message(), "enrollment refused");
                Err(Refusal::NotPermitted.status(r.message()))
            }
            Err(err) => {
                tracing::error!(%peer, error = %err, "enrollment failed");
                Err(unavailable())
            }
        }
    }
}

/// Renewals one device may make at once, before [`renew_refill`] applies.
pub(crate) const RENEW_BURST: f64 = 3.0;

/// One more renewal per device every thirtieth of the certificate lifetime (a day
/// for 30-day certificates), at least a second: an agent renews once per two
/// thirds of a lifetime, so this leaves room for `device renew` and retries while
/// a stolen certificate can no longer mint dozens of 30-day certificates a second.
pub(crate) fn renew_refill(lifetime: Duration) -> Duration {
    (lifetime / 30).max(Duration::from_secs(1))
}

/// The `Identity` service (telemetry listener, mTLS).
pub(crate) struct RenewService {
    pub(crate) issuing: Arc<Issuing>,
    pub(crate) revocations: Arc<Revocations>,
    /// Renewals per device; a std mutex held only for one bucket update.
    pub(crate) limiter: Mutex<RateLimiter<String>>,
}

#[tonic::async_trait]
impl Identity for RenewService {
    async fn renew(
        &self,
        request: Request<RenewRequest>,
    ) -> Result<Response<RenewResponse>, Status> {
        let leaf = request
            .peer_certs()
            .and_then(|c| c.first().map(|c| c.to_vec()))
            .ok_or_else(|| Refusal::NoIdentity.status("a client certificate is required"))?;
        let (tenant, device) = pki::identity_from_der(&leaf).ok_or_else(|| {
            Refusal::NoIdentity.status("the client certificate carries no tandem device identity")
        })?;
        let serial = pki::cert_serial_hex(&leaf).unwrap_or_default();
        if self.revocations.is_revoked(&device, &serial) {
            return Err(Refusal::Revoked.status("the certificate of this device has been revoked"));
        }
        self.issuing.check_issued(&device, &serial).await?;
        let req = request.into_inner();
        let csr = pki::check_csr(&req.csr_der)
            .map_err(|e| Refusal::BadInput.status(format!("csr: {e}")))?;
        if pki::cert_key_bits(&leaf).is_some_and(|k| k == pki::csr_key_bits(&csr)) {
            return Err(Refusal::BadInput
                .status("csr: a renewal must use a new key, not the current certificate's"));
        }
        // Counted only for requests that would mint a certificate.
        let limited = self
            .limiter
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .check(device.clone(), Instant::now());
        if let Err(wait) = limited {
            tracing::warn!(device = %device, "renewal rate-limited");
            return Err(Refusal::RateLimited.status(format!(
                "too many renewals for this device; retry in {} s",
                wait.as_secs().max(1)
            )));
        }
        let dev = device.clone();
        let result = self
            .issuing
            .with_db(move |conn, issuing| -> Result<IssuedCert, Status> {
                match conn.device_in_good_standing(&dev) {
                    Ok(true) => {}
                    Ok(false) => {
                        return Err(Refusal::Revoked
                            .status("the certificate of this device has been revoked"));
                    }
                    Err(AdminError::NoDevice(_)) => {
                        return Err(Refusal::OutOfOrder.status(
                            "this device is not registered yet; stream once before renewing",
                        ));
                    }
                    Err(e) => {
                        tracing::error!(device = %dev, error = %e, "renewal: database error");
                        return Err(unavailable());
                    }
                }
                let cert = issuing.sign(&csr, &tenant, &dev).map_err(|e| {
                    tracing::error!(device = %dev, error = %e, "renewal: cannot sign");
                    unavailable()
                })?;
                conn.record_certificate(&dev, &cert, "renew", now_ms())
                    .map_err(|e| {
                        tracing::error!(device = %dev, error = %e, "renewal: cannot record");
                        unavailable()
                    })?;
                Ok(cert)
            })
            .await?;
        let cert = result?;
        self.issuing.remember_issued(&device, &cert.serial_hex);
        self.revocations.renewed(&device);
        tracing::info!(device = %device, serial = %cert.serial_hex, "certificate renewed");
        Ok(Response::new(RenewResponse {
            cert_pem: cert.cert_pem,
            ca_pem: self.issuing.ca.cert_pem.clone(),
        }))
    }
}
