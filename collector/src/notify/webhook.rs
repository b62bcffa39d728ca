//! Webhooks: the generic JSON document (schema `tandem.notify/v1`, signed with
//! HMAC-SHA256 over `timestamp "." body` in `X-Tandem-Signature`, as GitHub and
//! Stripe sign theirs), Slack and Microsoft Teams message formats, and one POST
//! over HTTP/1.1 (`http://`, or `https://` with the system's root certificates).
//!
//! An answer of 2xx is delivered; 408, 429 and 5xx and network errors are retried;
//! any other 4xx is dead-lettered at once (the receiver will not change its mind).

use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::json;

use super::incident::{IncidentRow, SCHEMA, incident_json};
use super::outbox::Attempt;
use super::policy::{Webhook, WebhookFormat};

/// Headers of the generic format.
pub(crate) const SIGNATURE_HEADER: &str = "x-tandem-signature";
pub(crate) const TIMESTAMP_HEADER: &str = "x-tandem-timestamp";
pub(crate) const IDEMPOTENCY_HEADER: &str = "x-tandem-idempotency-key";

/// The body for one incident event in the webhook's format.
pub(crate) fn payload(
    format: WebhookFormat,
    event: &str,
    i: &IncidentRow,
    ack_link: Option<&str>,
) -> serde_json::Value {
    let host = if i.hostname.is_empty() {
        &i.device_id
    } else {
        &i.hostname
    };
    let line = format!(
        "{} {}: {} on {host} ({}){}",
        match event {
            "resolved" => "RESOLVED",
            "test" => "TEST",
            _ => "ALERT",
        },
        i.severity,
        i.rule,
        i.tenant,
        i.acked_by
            .as_ref()
            .map(|b| format!(", acknowledged by {b}"))
            .unwrap_or_default()
    );
    match format {
        WebhookFormat::Generic => json!({
            "schema": SCHEMA,
            "event": { "kind": event },
            "incident": incident_json(i),
            "ack_url": ack_link,
        }),
        WebhookFormat::Slack => json!({ "text": line }),
        WebhookFormat::Teams => json!({
            "type": "message",
            "attachments": [{
                "contentType": "application/vnd.microsoft.card.adaptive",
                "content": {
                    "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                    "type": "AdaptiveCard",
                    "version": "1.4",
                    "body": [{ "type": "TextBlock", "text": line, "wrap": true }]
                }
            }]
        }),
    }
}

#[derive(Debug, thiserror::Error)]
enum PostError {
    #[error("bad url {0:?}")]
    Url(String),
    #[error("connect: {0}")]
    Connect(String),
    #[error("http: {0}")]
    Http(String),
    #[error("timed out")]
    Timeout,
}

/// POSTs `body`; classifies the answer.
pub(crate) async fn deliver(hook: &Webhook, body: &[u8], idem_key: &str, now_secs: i64) -> Attempt {
    let sig = (!hook.secret.is_empty()).then(|| {
        format!(
            "v1={}",
            super::link::webhook_signature(&hook.secret, now_secs, body)
        )
    });
    match tokio::time::timeout(
        Duration::from_secs(15),
        post(hook, body, idem_key, now_secs, sig),
    )
    .await
    {
        Err(_) => Attempt::Retry {
            answer: PostError::Timeout.to_string(),
        },
        Ok(Err(e)) => Attempt::Retry {
            answer: e.to_string(),
        },
        Ok(Ok((status, text))) => {
            let answer = format!("{status} {}", text.chars().take(200).collect::<String>());
            match status {
                200..=299 => Attempt::Sent {
                    answer,
                    message_id: None,
                },
                408 | 429 | 500..=599 => Attempt::Retry { answer },
                _ => Attempt::Dead { answer },
            }
        }
    }
}

async fn post(
    hook: &Webhook,
    body: &[u8],
    idem_key: &str,
    ts: i64,
    sig: Option<String>,
) -> Result<(u16, String), PostError> {
    let uri: hyper::Uri = hook
        .url
        .parse()
        .map_err(|_| PostError::Url(hook.url.clone()))?;
    let https = uri.scheme_str() == Some("https");
    let host = uri
        .host()
        .ok_or_else(|| PostError::Url(hook.url.clone()))?
        .to_owned();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| PostError::Connect(e.to_string()))?;
    let mut req = hyper::Request::post(uri.path_and_query().map_or("/", |p| p.as_str()))
        .header(
            hyper::header::HOST,
            uri.authority().map_or(host.clone(), |a| a.to_string()),
        )
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(
            hyper::header::USER_AGENT,
            concat!("tandem-collector/", env!("CARGO_PKG_VERSION")),
        )
        .header(TIMESTAMP_HEADER, ts.to_string())
        .header(IDEMPOTENCY_HEADER, idem_key);
    if let Some(s) = sig {
        req = req.header(SIGNATURE_HEADER, s);
    }
    let req = req
        .body(Full::new(Bytes::copy_from_slice(body)))
        .map_err(|e| PostError::Http(e.to_string()))?;
    if https {
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(c);
        }
        let cfg = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = rustls_pki_types::ServerName::try_from(host.clone())
            .map_err(|_| PostError::Url(hook.url.clone()))?;
        let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg))
            .connect(name, tcp)
            .await
            .map_err(|e| PostError::Connect(format!("tls: {e}")))?;
        send(TokioIo::new(tls), req).await
    } else {
        send(TokioIo::new(tcp), req).await
    }
}

async fn send<T>(io: T, req: hyper::Request<Full<Bytes>>) -> Result<(u16, String), PostError>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| PostError::Http(e.to_string()))?;
    // The connection task ends with the request (one request per connection).
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| PostError::Http(e.to_string()));
    let out = match resp {
        Ok(r) => {
            let status = r.status().as_u16();
            let body = r
                .into_body()
                .collect()
                .await
                .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
                .unwrap_or_default();
            Ok((status, body))
        }
        Err(e) => Err(e),
    };
    drop(sender);
    let _ = driver.await;
    out
}
