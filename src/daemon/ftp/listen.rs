//! The FTP endpoint: our own accept loop, so that every client is counted before libunftp
//! sees it, and every passive data port it opens is too.
//!
//! - Control connections: at most [`PER_CLIENT`] per client address and [`TOTAL`] in all; a
//!   connection over either gets `421` and is closed.
//! - Passive listeners (`PASV`/`EPSV`): libunftp keeps each one open until the client
//!   connects or 15 s pass, also after its session has ended, and we cannot see when it goes.
//!   So they are counted as opened in the last 15 s: at most [`PASSIVE_PER_SESSION`] per
//!   session (dput needs one per file, one at a time), and in the [`Ledger`] at most
//!   [`PASSIVE_PER_CLIENT`] per client address and [`PASSIVE_TOTAL`] in all; over that,
//!   `PASV` is answered 425 and nothing is opened. A flood of `PASV` therefore costs a bounded
//!   number of descriptors.

use super::{AnonymousFrom, IncomingStorage, UserLogin};
use crate::api::Context;
use crate::daemon::connection::Admission;
use async_trait::async_trait;
use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long an FTP session may stay idle.
const IDLE_SESSION_SECONDS: u64 = 120;
/// Control connections one client address may hold (a build farm behind one address uploads
/// in parallel).
pub const PER_CLIENT: usize = 64;
/// Control connections in all.
pub const TOTAL: usize = 512;
/// Passive listeners one session may have opened in the last [`PASSIVE_WINDOW`].
pub const PASSIVE_PER_SESSION: usize = 8;
/// Passive listeners one client address may have opened in the last [`PASSIVE_WINDOW`].
pub const PASSIVE_PER_CLIENT: usize = 512;
/// Passive listeners opened in the last [`PASSIVE_WINDOW`], in all.
pub const PASSIVE_TOTAL: usize = 2048;
/// How long libunftp keeps a passive listener waiting for its client.
const PASSIVE_WINDOW: Duration = Duration::from_secs(15);
const PASSIVE_PORTS: RangeInclusive<u16> = 49152..=65534;

/// Forgets what was opened a [`PASSIVE_WINDOW`] or longer before `now`.
fn expire<T>(opened: &mut VecDeque<(Instant, T)>, now: Instant) {
    while opened
        .front()
        .is_some_and(|(t, _)| now.duration_since(*t) >= PASSIVE_WINDOW)
    {
        opened.pop_front();
    }
}

/// The passive listeners opened recently, by client address.
#[derive(Debug, Default)]
pub struct Ledger {
    opened: Mutex<VecDeque<(Instant, IpAddr)>>,
}

impl Ledger {
    /// Counts one more listener for `client`, unless that passes a limit.
    fn open(&self, client: IpAddr, now: Instant) -> bool {
        let mut opened = self.opened.lock().unwrap_or_else(|e| e.into_inner());
        expire(&mut opened, now);
        let mine = opened.iter().filter(|(_, ip)| *ip == client).count();
        if opened.len() >= PASSIVE_TOTAL || mine >= PASSIVE_PER_CLIENT {
            return false;
        }
        opened.push_back((now, client));
        true
    }
}

/// Binds one session's passive listeners, as its own budget and the ledger allow.
#[derive(Debug)]
struct CountedBinder {
    ledger: Arc<Ledger>,
    client: IpAddr,
    /// This session's recent listeners.
    mine: VecDeque<(Instant, ())>,
}

#[async_trait]
impl libunftp::options::Binder for CountedBinder {
    async fn bind(
        &mut self,
        local: IpAddr,
        ports: RangeInclusive<u16>,
    ) -> std::io::Result<tokio::net::TcpSocket> {
        let now = Instant::now();
        expire(&mut self.mine, now);
        if self.mine.len() >= PASSIVE_PER_SESSION || !self.ledger.open(self.client, now) {
            tracing::info!(peer = %self.client, "ftp: passive listener refused (too many open)");
            return Err(std::io::Error::other("too many passive listeners"));
        }
        self.mine.push_back((now, ()));
        let span = u32::from(ports.end() - ports.start()) + 1;
        let mut last = std::io::Error::other("no free passive port");
        for _ in 0..16 {
            let mut random = [0u8; 4];
            getrandom::fill(&mut random).map_err(|e| std::io::Error::other(e.to_string()))?;
            let port = *ports.start() as u32 + u32::from_ne_bytes(random) % span;
            let s = match local {
                IpAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
                IpAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
            };
            s.set_reuseaddr(true)?;
            match s.bind(SocketAddr::new(local, port as u16)) {
                Ok(()) => return Ok(s),
                Err(e) => last = e,
            }
        }
        Err(last)
    }
}

/// One session's server: libunftp's options, our storage and login, and a binder that
/// counts the session's passive listeners in `ledger`.
fn session(
    ctx: &Arc<Context>,
    ftps: &Option<(PathBuf, PathBuf)>,
    ledger: &Arc<Ledger>,
    client: IpAddr,
) -> Result<libunftp::Server<IncomingStorage, unftp_core::auth::DefaultUser>, String> {
    let login = ctx.incoming_login;
    let storage = IncomingStorage::new(ctx.clone(), client);
    let mut builder = libunftp::ServerBuilder::new(Box::new(move || storage.clone()))
        .greeting(if login {
            "mbd incoming: uploads with a user's login"
        } else {
            "mbd incoming: anonymous uploads"
        })
        .passive_ports(PASSIVE_PORTS)
        // Passive only (what dput uses): `PORT` would let a client make us connect anywhere.
        .active_passive_mode(libunftp::options::ActivePassiveMode::PassiveOnly)
        .idle_session_timeout(IDLE_SESSION_SECONDS)
        .binder(CountedBinder {
            ledger: ledger.clone(),
            client,
            mine: VecDeque::new(),
        });
    if login {
        builder = builder.authenticator(Arc::new(UserLogin { ctx: ctx.clone() }));
    } else {
        builder = builder.authenticator(Arc::new(AnonymousFrom { ctx: ctx.clone() }));
    }
    if let Some((certificate, key)) = ftps {
        use libunftp::options::FtpsRequired;
        // A login's password never crosses the network in clear once TLS is offered.
        let required = if login {
            FtpsRequired::Accounts
        } else {
            FtpsRequired::None
        };
        builder = builder
            .ftps(certificate.clone(), key.clone())
            .ftps_required(required, required);
    }
    builder.build().map_err(|e| e.to_string())
}

/// Serves FTP uploads on `listener` (bound at start) until the daemon stops: anonymous, or
/// with users' logins when the daemon requires them (then over TLS only, when a certificate
/// is set); FTPS (explicit, `AUTH TLS`) is offered when `ftps` names a certificate and key.
/// Passive mode only.
pub async fn serve(
    ctx: Arc<Context>,
    listener: std::net::TcpListener,
    ftps: Option<(PathBuf, PathBuf)>,
) -> Result<(), String> {
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let listener = tokio::net::TcpListener::from_std(listener).map_err(|e| e.to_string())?;
    let admission = Arc::new(Admission::new(TOTAL, PER_CLIENT));
    let ledger = Arc::new(Ledger::default());
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors, most likely: wait for some to be given back.
                tracing::warn!(error = %e, "ftp: accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(admitted) = admission.admit(peer.ip()) else {
            tracing::info!(%peer, "ftp: connection refused (too many open)");
            let _ = stream.try_write(b"421 Too many connections, try again later.\r\n");
            continue;
        };
        let server = match session(&ctx, &ftps, &ledger, peer.ip()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "ftp: a session could not be set up");
                continue;
            }
        };
        tokio::spawn(async move {
            let _admitted = admitted;
            if let Err(e) = server.service(stream).await {
                tracing::info!(%peer, error = %e, "ftp session ended with an error");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ledger_counts_listeners_of_the_last_window() {
        let l = Ledger::default();
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let t0 = Instant::now();
        for _ in 0..PASSIVE_PER_CLIENT {
            assert!(l.open(a, t0));
        }
        assert!(!l.open(a, t0), "one client past its limit");
        assert!(l.open(b, t0), "another client has room");
        assert!(
            l.open(a, t0 + PASSIVE_WINDOW),
            "room again after the window"
        );
    }
}
