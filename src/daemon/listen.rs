//! The daemon's endpoints: HTTP, HTTPS and FTP bound before anything is served (a busy port
//! fails the start), then served until SIGTERM or SIGINT with a graceful shutdown.

use super::{DaemonError, io, tls};
use crate::settings::{Settings, settings_path};
use axum::Router;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

/// Every endpoint of the settings, bound.
pub(super) struct Listeners {
    http: Vec<tokio::net::TcpListener>,
    https: Vec<tls::TlsListener>,
    /// FTP addresses, probed (bound once and released) so port 0 resolves and a busy port
    /// fails the start; the FTP server binds them again.
    pub ftp: Vec<SocketAddr>,
    /// The first HTTP endpoint: the daemon's URL.
    pub first: SocketAddr,
}

impl Listeners {
    pub async fn bind(home: &Path, settings: &Settings) -> Result<Listeners, DaemonError> {
        let mut http = Vec::new();
        for ep in &settings.http_endpoints {
            http.push(bind(ep).await?);
        }
        let first = http
            .first()
            .ok_or_else(|| DaemonError::Settings {
                path: settings_path(home),
                reason: "no HTTP endpoint".to_string(),
            })?
            .local_addr()
            .map_err(io(home))?;
        let tls = tls_config(home, settings)?;
        let mut https = Vec::new();
        for ep in &settings.https_endpoints {
            let Some(config) = &tls else {
                return Err(DaemonError::Settings {
                    path: settings_path(home),
                    reason: format!("HTTPS on {ep} needs tls_certificate and tls_key"),
                });
            };
            let l = bind(ep).await?;
            https.push(tls::TlsListener::new(l, config.clone()).map_err(io(home))?);
        }
        let mut ftp = Vec::new();
        for ep in &settings.ftp_endpoints {
            let probe = std::net::TcpListener::bind(ep).map_err(|source| DaemonError::Bind {
                addr: ep.clone(),
                source,
            })?;
            ftp.push(probe.local_addr().map_err(io(home))?);
        }
        Ok(Listeners {
            http,
            https,
            ftp,
            first,
        })
    }

    /// The first HTTPS endpoint's address.
    pub fn first_https(&self) -> Option<SocketAddr> {
        axum::serve::Listener::local_addr(self.https.first()?).ok()
    }

    /// Serves `app` on every HTTP and HTTPS endpoint until SIGTERM or SIGINT, then lets the
    /// requests in flight finish.
    pub async fn serve(self, app: Router) {
        use axum::serve::ListenerExt;
        let (tx, _) = tokio::sync::broadcast::channel::<()>(1);
        let mut servers = Vec::new();
        for l in self.http {
            // Without TCP_NODELAY a response whose head and body go out in two writes waits
            // for the client's delayed ACK (tens of milliseconds) on every request.
            let l = l.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
            let (app, mut stop) = (app.clone(), tx.subscribe());
            servers.push(tokio::spawn(async move {
                axum::serve(l, app.into_make_service_with_connect_info::<SocketAddr>())
                    .with_graceful_shutdown(async move {
                        let _ = stop.recv().await;
                    })
                    .await
            }));
        }
        for l in self.https {
            let (app, mut stop) = (app.clone(), tx.subscribe());
            servers.push(tokio::spawn(async move {
                axum::serve(
                    l.tap_io(|_| {}),
                    app.into_make_service_with_connect_info::<SocketAddr>(),
                )
                .with_graceful_shutdown(async move {
                    let _ = stop.recv().await;
                })
                .await
            }));
        }
        shutdown_signal().await;
        tracing::info!("shutting down");
        let _ = tx.send(());
        for s in servers {
            if let Ok(Err(e)) = s.await {
                tracing::error!(error = %e, "an endpoint stopped");
            }
        }
    }
}

async fn bind(ep: &str) -> Result<tokio::net::TcpListener, DaemonError> {
    tokio::net::TcpListener::bind(ep)
        .await
        .map_err(|source| DaemonError::Bind {
            addr: ep.to_string(),
            source,
        })
}

/// The TLS configuration, if a certificate is set (paths relative to the home).
fn tls_config(
    home: &Path,
    settings: &Settings,
) -> Result<Option<Arc<tokio_rustls::rustls::ServerConfig>>, DaemonError> {
    match (
        settings.tls_certificate.is_empty(),
        settings.tls_key.is_empty(),
    ) {
        (true, true) => Ok(None),
        (false, false) => tls::server_config(
            &home.join(&settings.tls_certificate),
            &home.join(&settings.tls_key),
        )
        .map(Some),
        _ => Err(DaemonError::Settings {
            path: settings_path(home),
            reason: "set both tls_certificate and tls_key, or neither".to_string(),
        }),
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
}
