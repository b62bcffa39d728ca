//! A client of the feed (`alerts tail`, and the tests): `GET /api/v1/feed` over
//! HTTP/1.1 (TLS for `https://`, trusting the collector CA), server-sent events
//! parsed line by line, reconnecting with `Last-Event-ID` so nothing is missed or
//! repeated across a dropped connection.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

/// One event of the feed.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedEvent {
    pub id: i64,
    pub kind: String,
    pub data: serde_json::Value,
}

/// One line for a terminal.
pub(crate) fn describe(e: &FeedEvent) -> String {
    let i = &e.data["incident"];
    let s = |k: &str| i[k].as_str().unwrap_or("").to_owned();
    let host = if s("hostname").is_empty() {
        s("device_id")
    } else {
        s("hostname")
    };
    let by = match e.kind.as_str() {
        "acked" | "snoozed" => format!(
            " by {}{}",
            s("acked_by"),
            i["ack_note"]
                .as_str()
                .map(|n| format!(" \"{n}\""))
                .unwrap_or_default()
        ),
        "resolved" => i["duration_secs"]
            .as_i64()
            .map(|d| format!(" after {d} s"))
            .unwrap_or_default(),
        _ => String::new(),
    };
    format!(
        "{} #{:<5} {:<9} {:<8} {} on {} ({}){by}",
        e.data["event"]["at"].as_str().unwrap_or(""),
        i["id"],
        e.kind,
        s("severity"),
        s("rule"),
        host,
        s("tenant")
    )
}

/// Parses SSE text into complete events; returns the unparsed rest.
pub(crate) fn parse_events(buf: &str) -> (Vec<FeedEvent>, usize) {
    let mut out = Vec::new();
    let mut used = 0;
    while let Some(end) = buf[used..].find("\n\n") {
        let block = &buf[used..used + end];
        used += end + 2;
        let (mut id, mut kind, mut data) = (None, String::from("message"), String::new());
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("id:") {
                id = v.trim().parse().ok();
            } else if let Some(v) = line.strip_prefix("event:") {
                kind = v.trim().to_owned();
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push_str(v.strip_prefix(' ').unwrap_or(v));
            }
        }
        if let (Some(id), Ok(data)) = (id, serde_json::from_str(&data)) {
            out.push(FeedEvent { id, kind, data });
        }
    }
    (out, used)
}

/// How a client reaches the listener: its credential and, for `https://`, whom it
/// trusts.
#[derive(Clone, Default)]
pub struct Access {
    /// An API token, sent as `Authorization: Bearer …` (the feed needs one).
    pub(crate) token: Option<String>,
    /// For `https://` URLs: the TLS client configuration ([`client_tls`]).
    pub(crate) tls: Option<Arc<rustls::ClientConfig>>,
}

impl Access {
    pub fn token(token: &str) -> Self {
        Access {
            token: Some(token.to_owned()),
            tls: None,
        }
    }
}

/// A TLS client that trusts the certificates in `ca_pem` (the collector CA,
/// `pki/ca.pem` in its data dir) and nothing else.
pub fn client_tls(ca_pem: &Path) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    use rustls_pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    let certs = rustls_pki_types::CertificateDer::pem_file_iter(ca_pem)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| anyhow::anyhow!("{}: not a PEM certificate file: {e}", ca_pem.display()))?;
    if certs.is_empty() {
        anyhow::bail!("{}: no certificate in it", ca_pem.display());
    }
    for c in certs {
        roots.add(c)?;
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

/// One HTTP/1.1 connection to `host:port`, TLS when `tls` is set; the connection's
/// driver runs on its own task (abort it when done).
pub async fn connect(
    host: &str,
    port: u16,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> anyhow::Result<(Sender, tokio::task::JoinHandle<()>)> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let tcp = tokio::net::TcpStream::connect((bare, port)).await?;
    let _ = tcp.set_nodelay(true);
    match tls {
        None => {
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
            Ok((
                sender,
                tokio::spawn(async move {
                    let _ = conn.await;
                }),
            ))
        }
        Some(cfg) => {
            let name = rustls_pki_types::ServerName::try_from(bare.to_owned())
                .map_err(|e| anyhow::anyhow!("{host}: not a TLS server name: {e}"))?;
            let stream = tokio_rustls::TlsConnector::from(cfg.clone())
                .connect(name, tcp)
                .await
                .map_err(|e| anyhow::anyhow!("feed refused: TLS with {host}:{port}: {e}"))?;
            let (sender, conn) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            Ok((
                sender,
                tokio::spawn(async move {
                    let _ = conn.await;
                }),
            ))
        }
    }
}

/// Follows the feed at `base_url` (e.g. `https://collector:8080`) until `on_event`
/// returns false. Reconnects (1 s, doubling to 30 s) when the connection drops; a
/// refusal (no or bad token, a certificate not trusted) ends it with the error.
pub async fn follow(
    base_url: &str,
    tenant: Option<&str>,
    severity: Option<&str>,
    access: &Access,
    mut on_event: impl FnMut(&FeedEvent) -> bool,
) -> anyhow::Result<()> {
    let base: hyper::Uri = base_url.parse()?;
    let host = base
        .host()
        .ok_or_else(|| anyhow::anyhow!("{base_url}: no host"))?
        .to_owned();
    let (tls, default_port) = match base.scheme_str() {
        Some("http") => (None, 80),
        Some("https") => (
            Some(access.tls.clone().ok_or_else(|| {
                anyhow::anyhow!("{base_url}: https needs the collector CA to trust (--ca FILE)")
            })?),
            443,
        ),
        _ => anyhow::bail!("{base_url}: use http:// (loopback) or https://"),
    };
    let port = base.port_u16().unwrap_or(default_port);
    let token = access.token.as_deref();
    let mut query = Vec::new();
    if let Some(t) = tenant {
        query.push(format!("tenant={t}"));
    }
    if let Some(s) = severity {
        query.push(format!("min_severity={s}"));
    }
    let path = if query.is_empty() {
        "/api/v1/feed".to_owned()
    } else {
        format!("/api/v1/feed?{}", query.join("&"))
    };
    let mut last: Option<i64> = None;
    let mut backoff = Duration::from_secs(1);
    loop {
        let r: anyhow::Result<bool> = async {
            let (mut sender, driver) = connect(&host, port, tls.as_ref()).await?;
            let mut req = hyper::Request::get(&path)
                .header(hyper::header::HOST, format!("{host}:{port}"))
                .header(hyper::header::ACCEPT, "text/event-stream");
            if let Some(id) = last {
                req = req.header("last-event-id", id.to_string());
            }
            if let Some(t) = token {
                req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {t}"));
            }
            let resp = sender
                .send_request(req.body(Empty::<Bytes>::new())?)
                .await?;
            if !resp.status().is_success() {
                let status = resp.status();
                let body = resp
                    .into_body()
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                anyhow::bail!(
                    "feed refused: {status} {}",
                    String::from_utf8_lossy(&body).trim()
                );
            }
            let mut body = resp.into_body();
            let mut buf = String::new();
            while let Some(frame) = body.frame().await {
                let frame = frame?;
                if let Some(d) = frame.data_ref() {
                    buf.push_str(&String::from_utf8_lossy(d));
                    let (events, used) = parse_events(&buf);
                    buf.drain(..used);
                    for e in events {
                        last = Some(e.id);
                        if !on_event(&e) {
                            driver.abort();
                            return Ok(true);
                        }
                    }
                }
            }
            driver.abort();
            Ok(false)
        }
        .await;
        match r {
            Ok(true) => return Ok(()),
            Ok(false) => backoff = Duration::from_secs(1),
            Err(e) if e.to_string().starts_with("feed refused") => return Err(e),
            Err(e) => eprintln!(
                "feed connection lost ({e}); reconnecting in {} s",
                backoff.as_secs()
            ),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_blocks_are_parsed_and_a_partial_one_waits() {
        let text = "id: 3\nevent: opened\ndata: {\"incident\":{\"id\":1}}\n\n: keep-alive\n\nid: 4\nevent: acked\ndata: {\"a\"";
        let (ev, used) = parse_events(text);
        assert_eq!(ev.len(), 1);
        assert_eq!((ev[0].id, ev[0].kind.as_str()), (3, "opened"));
        assert_eq!(&text[used..], "id: 4\nevent: acked\ndata: {\"a\"");
    }
}
