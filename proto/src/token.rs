//! The enrollment token: the one string an operator hands to a new agent.
//!
//! It carries everything the agent needs and nothing it must trust blindly:
//! where to enroll (`host:port` of the collector's enrollment listener), the SHA-256
//! fingerprint of the collector CA's public key (SubjectPublicKeyInfo), so the agent
//! pins the collector before it sends anything (as kubeadm's discovery hash does),
//! and a token id plus a 256-bit secret that the collector stores only hashed.
//!
//! Layout: `tdm1_` followed by base64url (no padding) of
//! `version (1) | ca_fingerprint (32) | id (8) | secret (32) | address (utf-8) | check (4)`,
//! where `check` is the first 4 bytes of SHA-256 over everything before it. The check
//! catches a token damaged in copy and paste before the agent dials anything; it is
//! not a security feature (the secret is: the collector refuses a token whose secret
//! hash does not match).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Text every token starts with.
pub const TOKEN_PREFIX: &str = "tdm1_";
const VERSION: u8 = 1;
const FIXED: usize = 1 + 32 + 8 + 32;
const CHECK: usize = 4;
/// Longest enrollment address a token may carry.
pub const MAX_ADDRESS_BYTES: usize = 255;

/// A parsed enrollment token. `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct EnrollToken {
    /// `host:port` of the enrollment listener (`[v6]:port` for IPv6).
    pub address: String,
    /// SHA-256 of the collector CA certificate's SubjectPublicKeyInfo (DER).
    pub ca_fingerprint: [u8; 32],
    pub id: [u8; 8],
    pub secret: [u8; 32],
}

impl std::fmt::Debug for EnrollToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnrollToken")
            .field("address", &self.address)
            .field("ca_fingerprint", &hex(&self.ca_fingerprint))
            .field("id", &self.id_hex())
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// Why a token string could not be read. Each says what is wrong, so an operator
/// can tell a mistyped token from a truncated one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    NoPrefix,
    NotBase64,
    TooShort(usize),
    UnknownVersion(u8),
    Damaged,
    BadAddress(String),
}

impl std::fmt::Display for TokenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenError::NoPrefix => write!(
                f,
                "this is not a Tandem enrollment token (it must start with {TOKEN_PREFIX:?})"
            ),
            TokenError::NotBase64 => write!(
                f,
                "the enrollment token is damaged: it has characters outside base64url"
            ),
            TokenError::TooShort(n) => write!(
                f,
                "the enrollment token is damaged: {n} bytes, too short to hold a token (truncated?)"
            ),
            TokenError::UnknownVersion(v) => write!(
                f,
                "the enrollment token has format version {v}, which this agent does not know"
            ),
            TokenError::Damaged => write!(
                f,
                "the enrollment token is damaged or tampered with: its checksum does not match"
            ),
            TokenError::BadAddress(a) => write!(
                f,
                "the enrollment token carries an invalid address {a:?} (expected host:port)"
            ),
        }
    }
}

impl std::error::Error for TokenError {}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// The fingerprint a token pins: SHA-256 of the certificate's SubjectPublicKeyInfo
/// (DER). Pinning the key rather than the whole certificate lets the CA certificate
/// be re-issued with the same key (e.g. a longer validity) without new tokens.
/// `None` if `cert_der` is not a certificate.
pub fn spki_fingerprint(cert_der: &[u8]) -> Option<[u8; 32]> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).ok()?;
    Some(sha256(cert.tbs_certificate.subject_pki.raw))
}

/// Splits `host:port` (or `[v6]:port`) into host and port.
pub fn split_address(addr: &str) -> Option<(&str, u16)> {
    let (host, port) = addr.rsplit_once(':')?;
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.strip_suffix(']')?,
        None if host.contains(':') => return None,
        None => host,
    };
    let ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b':');
    ok.then_some((host, port))
}

impl EnrollToken {
    /// The token id as shown by `token list`.
    pub fn id_hex(&self) -> String {
        hex(&self.id)
    }

    /// SHA-256 of the secret: what the collector stores.
    pub fn secret_hash(&self) -> [u8; 32] {
        sha256(&self.secret)
    }

    /// The token as one string.
    pub fn encode(&self) -> String {
        let mut b = Vec::with_capacity(FIXED + self.address.len() + CHECK);
        b.push(VERSION);
        b.extend_from_slice(&self.ca_fingerprint);
        b.extend_from_slice(&self.id);
        b.extend_from_slice(&self.secret);
        b.extend_from_slice(self.address.as_bytes());
        let check = sha256(&b);
        b.extend_from_slice(&check[..CHECK]);
        format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(b))
    }

    /// Reads a token string (surrounding whitespace ignored).
    pub fn parse(s: &str) -> Result<Self, TokenError> {
        let body = s
            .trim()
            .strip_prefix(TOKEN_PREFIX)
            .ok_or(TokenError::NoPrefix)?;
        let b = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| TokenError::NotBase64)?;
        if b.len() < FIXED + CHECK + 3 {
            return Err(TokenError::TooShort(b.len()));
        }
        let (payload, check) = b.split_at(b.len() - CHECK);
        if sha256(payload)[..CHECK] != *check {
            return Err(TokenError::Damaged);
        }
        if payload[0] != VERSION {
            return Err(TokenError::UnknownVersion(payload[0]));
        }
        let mut ca_fingerprint = [0u8; 32];
        ca_fingerprint.copy_from_slice(&payload[1..33]);
        let mut id = [0u8; 8];
        id.copy_from_slice(&payload[33..41]);
        let mut secret = [0u8; 32];
        secret.copy_from_slice(&payload[41..73]);
        let address = String::from_utf8_lossy(&payload[FIXED..]).into_owned();
        if address.len() > MAX_ADDRESS_BYTES || split_address(&address).is_none() {
            return Err(TokenError::BadAddress(address));
        }
        Ok(Self {
            address,
            ca_fingerprint,
            id,
            secret,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> EnrollToken {
        EnrollToken {
            address: "collector.example.net:4444".into(),
            ca_fingerprint: [7; 32],
            id: [1, 2, 3, 4, 5, 6, 7, 8],
            secret: [9; 32],
        }
    }

    #[test]
    fn round_trips() {
        let t = sample();
        let s = t.encode();
        assert!(s.starts_with("tdm1_"), "{s}");
        assert_eq!(EnrollToken::parse(&s).unwrap(), t);
        assert_eq!(EnrollToken::parse(&format!("  {s}\n")).unwrap(), t);
        let v6 = EnrollToken {
            address: "[::1]:4444".into(),
            ..sample()
        };
        assert_eq!(EnrollToken::parse(&v6.encode()).unwrap(), v6);
    }

    #[test]
    fn every_single_character_change_is_caught() {
        let s = sample().encode();
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        for i in TOKEN_PREFIX.len()..s.len() - 1 {
            let mut b = s.clone().into_bytes();
            b[i] = if b[i] == alphabet[0] {
                alphabet[1]
            } else {
                alphabet[0]
            };
            let t = String::from_utf8(b).unwrap();
            let err = EnrollToken::parse(&t).unwrap_err();
            assert!(
                matches!(err, TokenError::Damaged | TokenError::NotBase64),
                "position {i}: {err}"
            );
        }
    }

    #[test]
    fn says_what_is_wrong() {
        let s = sample().encode();
        assert_eq!(EnrollToken::parse("abc"), Err(TokenError::NoPrefix));
        assert_eq!(
            EnrollToken::parse("tdm1_!!notbase64"),
            Err(TokenError::NotBase64)
        );
        assert!(matches!(
            EnrollToken::parse(&s[..33]),
            Err(TokenError::TooShort(_))
        ));
        let bad_addr = EnrollToken {
            address: "no-port".into(),
            ..sample()
        };
        assert!(matches!(
            EnrollToken::parse(&bad_addr.encode()),
            Err(TokenError::BadAddress(_))
        ));
    }

    #[test]
    fn debug_hides_the_secret() {
        let d = format!("{:?}", sample());
        assert!(d.contains("<redacted>") && !d.contains("9, 9"), "{d}");
        assert!(!d.contains(&hex(&[9; 32])), "{d}");
    }

    #[test]
    fn secret_hash_is_sha256() {
        // SHA-256("abc"), FIPS 180-2 test vector.
        assert_eq!(
            hex(&sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_ne!(sample().secret_hash(), sha256(&[8; 32]));
    }

    #[test]
    fn addresses() {
        assert_eq!(split_address("c.example:4444"), Some(("c.example", 4444)));
        assert_eq!(split_address("127.0.0.1:1"), Some(("127.0.0.1", 1)));
        assert_eq!(split_address("[::1]:4444"), Some(("::1", 4444)));
        assert_eq!(split_address("::1:4444"), None);
        assert_eq!(split_address("c.example:0"), None);
        assert_eq!(split_address("c.example"), None);
        assert_eq!(split_address(":4444"), None);
        assert_eq!(split_address("a b:4444"), None);
    }
}
