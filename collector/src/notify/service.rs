//! Wiring of notifications into a serving collector: at bind, the policies are
//! checked (a bad file stops the start, as bad rules do), the mail transport and the
//! link key are made and the HTTP listener is bound; while serving, the dispatcher
//! and the HTTP server run as tasks that stop with the collector's shutdown token.

use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::dispatch::{self, DispatchError, Sender};
use super::policy::{self, PolicySet};
use crate::config::Config;

#[derive(Debug, thiserror::Error)]
pub enum NotifyStartError {
    #[error(transparent)]
    Dispatch(#[from] DispatchError),
    #[error(transparent)]
    HttpTls(#[from] crate::http::ListenerTlsError),
    #[error("cannot listen for HTTP on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Notifications and the HTTP listener of one collector, bound, not yet running.
pub(crate) struct Notifier {
    /// `None` without a `[notify]` section (the HTTP listener may still serve the feed).
    dispatch: Option<(Sender, PolicySet)>,
    http: Option<(TcpListener, crate::http::HttpState)>,
    db_path: std::path::PathBuf,
}

impl Notifier {
    /// `None` when the config has neither `[notify]` nor `[http]`. `listeners`: the
    /// enrollment and telemetry listeners as bound (for the console's defaults).
    pub(crate) async fn bind(
        config: &Config,
        listeners: crate::console::Listeners,
    ) -> Result<Option<Notifier>, NotifyStartError> {
        if config.notify.is_none() && config.http.is_none() {
            return Ok(None);
        }
        let key =
            super::link::LinkKey::load_or_create(&config.data_dir).map_err(DispatchError::from)?;
        let http = match &config.http {
            None => None,
            Some(h) => {
                // Issue 15: TLS unless on loopback; plain off loopback is refused here.
                let tls = crate::http::listener_tls(h, &config.data_dir)?;
                let l =
                    TcpListener::bind(h.listen)
                        .await
                        .map_err(|source| NotifyStartError::Bind {
                            addr: h.listen,
                            source,
                        })?;
                Some((
                    l,
                    crate::http::HttpState::new(
                        config.db_path(),
                        key,
                        tls,
                        crate::http::Limits::from_config(h),
                    )
                    .with_listeners(listeners),
                ))
            }
        };
        // Links in mails point at the listener as bound unless a public URL is set.
        let mut http_cfg = config.http.clone();
        if let (Some(h), Some((l, st))) = (http_cfg.as_mut(), http.as_ref())
            && h.public_url.is_empty()
            && let Ok(a) = l.local_addr()
        {
            h.public_url = format!("{}://{a}", st.scheme());
        }
        let dispatch = match &config.notify {
            None => None,
            Some(n) => {
                let dir = n.policies_dir.clone();
                let set = tokio::task::spawn_blocking(move || {
                    if !dir.exists() {
                        // A fresh install: an empty folder to put policies in.
                        let _ = std::fs::create_dir_all(&dir);
                    }
                    policy::load_dir(&dir)
                })
                .await
                .map_err(|e| {
                    DispatchError::Store(crate::store::StoreError::CommitFailed(e.to_string()))
                })?
                .map_err(DispatchError::from)?;
                let sender = Sender::new(n.clone(), http_cfg.clone(), &config.data_dir)?;
                Some((sender, set))
            }
        };
        Ok(Some(Notifier {
            dispatch,
            http,
            db_path: config.db_path(),
        }))
    }

    /// The HTTP listener's base URL (`https://` unless plain on loopback).
    #[cfg(feature = "demo")]
    pub(crate) fn http_url(&self) -> Option<String> {
        let (l, st) = self.http.as_ref()?;
        Some(format!("{}://{}", st.scheme(), l.local_addr().ok()?))
    }

    /// The address the HTTP listener bound.
    pub(crate) fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().and_then(|(l, _)| l.local_addr().ok())
    }

    /// Starts the dispatcher and the HTTP server; both end when `stop` is cancelled.
    pub(crate) fn spawn(self, stop: CancellationToken) -> JoinHandle<()> {
        tokio::spawn(async move {
            let d = self.dispatch.map(|(sender, set)| {
                let (db, stop) = (self.db_path.clone(), stop.clone());
                tokio::spawn(async move {
                    if let Err(e) = dispatch::run(sender, db, set, stop).await {
                        tracing::error!(error = %e, "notification dispatcher failed");
                    }
                })
            });
            let h = self.http.and_then(|(l, mut st)| {
                let stop = stop.clone();
                st.stop = stop.clone();
                crate::http::serve_apart(l, st, stop)
                    .map_err(|e| tracing::error!(error = %e, "http listener failed to start"))
                    .ok()
            });
            if let Some(d) = d {
                let _ = d.await;
            }
            if let Some(h) = h {
                let _ = h.await;
            }
        })
    }
}
