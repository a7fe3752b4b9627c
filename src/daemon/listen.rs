//! The daemon's endpoints: HTTP, HTTPS and FTP bound before anything is served (a busy port
//! fails the start), then served until SIGTERM or SIGINT with a graceful shutdown.

use super::{AppState, DaemonError, connection, io, tls};
use crate::settings::{Settings, settings_path};
use axum::Router;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

/// Every endpoint of the settings, bound.
pub(super) struct Listeners {
    http: Vec<tokio::net::TcpListener>,
    https: Vec<tls::TlsListener>,
    /// FTP endpoints, bound (port 0 resolved, a busy port fails the start); the FTP server
    /// takes them.
    pub ftp: Vec<std::net::TcpListener>,
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
            let l = std::net::TcpListener::bind(ep).map_err(|source| DaemonError::Bind {
                addr: ep.clone(),
                source,
            })?;
            ftp.push(l);
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
        self.https.first().map(tls::TlsListener::local_addr)
    }

    /// Serves `app` on every HTTP and HTTPS endpoint until SIGTERM or SIGINT, then lets the
    /// requests in flight finish. Plain-HTTP connections start in [`connection::serve`]
    /// (published files sent by the kernel); HTTPS ones go to the router directly.
    pub async fn serve(self, app: Router, state: AppState, signals: ShutdownSignals) {
        let (stop, _) = tokio::sync::watch::channel(false);
        let mut servers = Vec::new();
        for l in self.http {
            let (app, state, stop) = (app.clone(), state.clone(), stop.subscribe());
            servers.push(tokio::spawn(serve_plain(l, app, state, stop)));
        }
        for l in self.https {
            let app = app.clone().layer(axum::Extension(super::ui::Tls));
            servers.push(tokio::spawn(serve_tls(l, app, stop.subscribe())));
        }
        signals.received().await;
        tracing::info!("shutting down");
        let _ = stop.send(true);
        for s in servers {
            if let Err(e) = s.await {
                tracing::error!(error = %e, "an endpoint stopped");
            }
        }
    }
}

/// Accepts plain-HTTP connections until `stop`, then waits for the open ones to end.
async fn serve_plain(
    listener: tokio::net::TcpListener,
    app: Router,
    state: AppState,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    // Every connection holds a sender; `recv` answers `None` once all of them are gone.
    let (open, mut all_closed) = tokio::sync::mpsc::channel::<()>(1);
    let admission = Arc::new(connection::Admission::default());
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.changed() => break,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors, most likely: let some connections end first.
                tracing::warn!(error = %e, "accepting a connection failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(admitted) = admission.admit(peer.ip()) else {
            // Too many from this client (or in all): closed at once.
            continue;
        };
        // Without TCP_NODELAY a response whose head and body go out in two writes waits
        // for the client's delayed ACK (tens of milliseconds) on every request.
        let _ = tcp.set_nodelay(true);
        let (app, state, stop, open) = (app.clone(), state.clone(), stop.clone(), open.clone());
        tokio::spawn(async move {
            connection::serve(tcp, peer, state, app, stop).await;
            drop((admitted, open));
        });
    }
    drop((listener, open));
    let _ = all_closed.recv().await;
}

/// Serves HTTPS connections (counted and handshaken by the listener) with the router until
/// `stop`, then waits for the open ones to end.
async fn serve_tls(
    mut listener: tls::TlsListener,
    app: Router,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let (open, mut all_closed) = tokio::sync::mpsc::channel::<()>(1);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.changed() => break,
        };
        let Some((tls, peer, admitted)) = accepted else {
            break;
        };
        let (app, stop, open) = (app.clone(), stop.clone(), open.clone());
        tokio::spawn(async move {
            connection::serve_with_router(tls, peer, app, stop).await;
            drop((admitted, open));
        });
    }
    drop((listener, open));
    let _ = all_closed.recv().await;
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

/// SIGTERM and SIGINT, taken over before the daemon says it serves (its URL file): a signal
/// that arrives right after that ends it gracefully, never by the default action.
pub struct ShutdownSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    pub fn register() -> std::io::Result<ShutdownSignals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(ShutdownSignals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    async fn received(mut self) {
        tokio::select! {
            _ = self.term.recv() => {},
            _ = self.int.recv() => {},
        }
    }
}
