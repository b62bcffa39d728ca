//! Signed, expiring, single-purpose acknowledge links, and API tokens.
//!
//! A link token is `base64url(payload) "." base64url(HMAC-SHA256(key, "ack\n" payload))`
//! with payload `incident.expires_ms.recipient`. The `ack` purpose prefix means a
//! signature made for anything else never verifies as an ack. The key (32 random
//! bytes) lives in the data dir (`notify-link.key`, mode 0600), created on first
//! use; deleting it voids every link sent.
//!
//! API tokens (`token create-api`) are 32 random bytes shown once; only their
//! SHA-256 is stored (`api_tokens`).

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

/// File name of the link key inside the data dir.
pub(crate) const KEY_FILE: &str = "notify-link.key";

const PURPOSE: &[u8] = b"ack\n";

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("cannot read or create the link key {path}: {source}")]
    Key {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the link is malformed")]
    Malformed,
    #[error("the link's signature is not valid")]
    BadSignature,
    #[error("the link expired")]
    Expired,
}

/// What a verified link says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AckLink {
    pub(crate) incident: i64,
    pub(crate) expires_ms: i64,
    pub(crate) recipient: String,
}

/// The HMAC key of ack links (cheap to clone).
#[derive(Clone)]
pub(crate) struct LinkKey(hmac::Key);

impl std::fmt::Debug for LinkKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkKey(..)")
    }
}

impl LinkKey {
    /// Loads the key from the data dir, creating it on first use.
    pub(crate) fn load_or_create(data_dir: &Path) -> Result<LinkKey, LinkError> {
        let path = data_dir.join(KEY_FILE);
        let err = |source| LinkError::Key {
            path: path.clone(),
            source,
        };
        match std::fs::read(&path) {
            Ok(bytes) if bytes.len() >= 32 => return Ok(LinkKey::from_bytes(&bytes)),
            Ok(_) => {
                return Err(err(std::io::Error::other(
                    "shorter than 32 bytes (delete it to make a new one; sent links stop working)",
                )));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(err(e)),
        }
        let mut bytes = [0u8; 32];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| err(std::io::Error::other("no randomness")))?;
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        crate::pki::write_file(&path, &hex, true)
            .map_err(|e| err(std::io::Error::other(e.to_string())))?;
        // Read back what is on disk: a concurrent first use by another process wins.
        let on_disk = std::fs::read(&path).map_err(err)?;
        Ok(LinkKey::from_bytes(&on_disk))
    }

    pub(crate) fn from_bytes(bytes: &[u8]) -> LinkKey {
        LinkKey(hmac::Key::new(hmac::HMAC_SHA256, bytes))
    }

    fn sign(&self, payload: &[u8]) -> hmac::Tag {
        let mut ctx = hmac::Context::with_key(&self.0);
        ctx.update(PURPOSE);
        ctx.update(payload);
        ctx.sign()
    }

    /// A token acknowledging `incident` on behalf of `recipient` until `expires_ms`.
    pub(crate) fn ack_token(&self, incident: i64, recipient: &str, expires_ms: i64) -> String {
        let payload = format!("{incident}.{expires_ms}.{recipient}");
        let tag = self.sign(payload.as_bytes());
        format!("{}.{}", B64.encode(payload), B64.encode(tag.as_ref()))
    }

    /// Checks a token's signature and expiry at `now_ms`.
    pub(crate) fn verify(&self, token: &str, now_ms: i64) -> Result<AckLink, LinkError> {
        let (p, t) = token.split_once('.').ok_or(LinkError::Malformed)?;
        let payload = B64.decode(p).map_err(|_| LinkError::Malformed)?;
        let tag = B64.decode(t).map_err(|_| LinkError::Malformed)?;
        let mut ctx = Vec::with_capacity(PURPOSE.len() + payload.len());
        ctx.extend_from_slice(PURPOSE);
        ctx.extend_from_slice(&payload);
        hmac::verify(&self.0, &ctx, &tag).map_err(|_| LinkError::BadSignature)?;
        let text = String::from_utf8(payload).map_err(|_| LinkError::Malformed)?;
        let mut parts = text.splitn(3, '.');
        let incident = parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or(LinkError::Malformed)?;
        let expires_ms: i64 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or(LinkError::Malformed)?;
        let recipient = parts.next().ok_or(LinkError::Malformed)?.to_owned();
        if now_ms >= expires_ms {
            return Err(LinkError::Expired);
        }
        Ok(AckLink {
            incident,
            expires_ms,
            recipient,
        })
    }
}

/// A new API token (shown once) and the hex SHA-256 to store.
pub(crate) fn new_api_token() -> Result<(String, String), LinkError> {
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| LinkError::Key {
            path: "randomness".into(),
            source: std::io::Error::other("no randomness"),
        })?;
    let token = format!("tdm_{}", B64.encode(bytes));
    let hash = token_hash(&token);
    Ok((token, hash))
}

/// Hex SHA-256 of an API token, as stored.
pub(crate) fn token_hash(token: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, token.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// HMAC-SHA256 of `timestamp "." body`, hex: the generic webhook's signature.
pub(crate) fn webhook_signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    ctx.sign()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_verifies_until_it_expires_and_not_after_tampering() {
        let k = LinkKey::from_bytes(&[7; 32]);
        let t = k.ack_token(42, "it@acme.example", 1000);
        assert_eq!(
            k.verify(&t, 999).unwrap(),
            AckLink {
                incident: 42,
                expires_ms: 1000,
                recipient: "it@acme.example".into()
            }
        );
        assert!(matches!(k.verify(&t, 1000), Err(LinkError::Expired)));
        let other = LinkKey::from_bytes(&[8; 32]);
        assert!(matches!(other.verify(&t, 0), Err(LinkError::BadSignature)));
        let (p, s) = t.split_once('.').unwrap();
        let forged = format!("{}.{s}", B64.encode("43.1000.it@acme.example"));
        assert!(
            matches!(k.verify(&forged, 0), Err(LinkError::BadSignature)),
            "{p}"
        );
        assert!(matches!(k.verify("nonsense", 0), Err(LinkError::Malformed)));
    }

    #[test]
    fn the_key_is_created_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let a = LinkKey::load_or_create(dir.path()).unwrap();
        let b = LinkKey::load_or_create(dir.path()).unwrap();
        let t = a.ack_token(1, "x@y.z", i64::MAX);
        assert!(b.verify(&t, 0).is_ok());
    }
}
