//! Plain-HTTP connections: HTTP/1.1 with keep-alive and pipelining, as apt and sbuild use it.
//!
//! Almost every request on such a connection is a GET or HEAD of a published file. Those
//! are read here (with `httparse`) and answered by [`super::archive`], the same code the
//! router uses; a cached file that is still open goes out with `sendfile`, so its bytes are
//! never copied through user space (that copy is what kept us behind a static web server).
//! The first request that is anything else (the API, the web UI, an upload, a request with a
//! body, anything this reader does not take) hands the connection, with every byte read from
//! it so far, to hyper and the router, which serve it from then on.
//!
//! **Invariant:** a request is answered the same way on both paths: the same archive code
//! makes the response, and the same access-log record and metrics count it.
//!
//! Timeouts: a request head must arrive within [`HEADER_READ`] of its first byte, a
//! keep-alive connection is closed after [`IDLE`] without a request, and a response whose
//! reader stops reading is abandoned after [`WRITE_STALL`] without progress.

use super::AppState;
use super::archive::SendFile;
use super::endpoints::Access;
use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;

/// How long a request head may take from its first byte.
pub const HEADER_READ: Duration = Duration::from_secs(30);
/// How long a keep-alive connection may wait for its next request.
pub const IDLE: Duration = Duration::from_secs(60);
/// How long a response may wait for its reader to take more.
pub const WRITE_STALL: Duration = Duration::from_secs(60);
/// The largest request head read here (a larger one goes to hyper, which refuses it).
const MAX_HEAD: usize = 16 * 1024;
const MAX_HEADERS: usize = 64;
/// Bodies up to this size are sent in the same write as their head.
const ONE_WRITE: usize = 64 * 1024;

/// Open plain-HTTP connections one client address may hold.
pub const PER_CLIENT: usize = 128;
/// Open plain-HTTP connections in all.
pub const TOTAL: usize = 4096;

/// Who holds how many connections: a client over [`PER_CLIENT`], or everyone over [`TOTAL`],
/// gets its new connection closed at once, so that one address cannot take every
/// descriptor (half-open connections wait up to [`HEADER_READ`] each).
pub(crate) struct Admission {
    open: std::sync::Mutex<(usize, std::collections::HashMap<std::net::IpAddr, usize>)>,
    total: usize,
    per_client: usize,
}

impl Default for Admission {
    /// The plain-HTTP limits.
    fn default() -> Admission {
        Admission::new(TOTAL, PER_CLIENT)
    }
}

/// A connection counted by [`Admission`] until it is dropped.
pub(crate) struct Admitted {
    admission: std::sync::Arc<Admission>,
    ip: std::net::IpAddr,
}

impl Admission {
    /// At most `total` connections, and `per_client` from one address.
    pub fn new(total: usize, per_client: usize) -> Admission {
        Admission {
            open: Default::default(),
            total,
            per_client,
        }
    }

    pub fn admit(self: &std::sync::Arc<Self>, ip: std::net::IpAddr) -> Option<Admitted> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let (total, per) = &mut *open;
        let mine = per.entry(ip).or_insert(0);
        if *total >= self.total || *mine >= self.per_client {
            return None;
        }
        *mine += 1;
        *total += 1;
        Some(Admitted {
            admission: self.clone(),
            ip,
        })
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut open = self
            .admission
            .open
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let (total, per) = &mut *open;
        *total -= 1;
        if let Some(n) = per.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per.remove(&self.ip);
            }
        }
    }
}

/// Serves one accepted connection until the client closes it, a timeout passes, or the
/// daemon stops (`stop` turns true).
pub(super) async fn serve(
    tcp: TcpStream,
    peer: SocketAddr,
    state: AppState,
    app: Router,
    mut stop: watch::Receiver<bool>,
) {
    let mut read = bytes::BytesMut::with_capacity(4096);
    let mut head_started: Option<Instant> = None;
    loop {
        if *stop.borrow() {
            return;
        }
        match next_request(&read) {
            Next::File(request, len) => {
                let _ = read.split_to(len);
                head_started = None;
                if !answer(&tcp, &state, peer, request).await {
                    return;
                }
            }
            Next::Other => return hand_over(tcp, read.freeze(), peer, app, stop).await,
            Next::Partial => {
                let deadline = if read.is_empty() {
                    Instant::now() + IDLE
                } else {
                    *head_started.get_or_insert_with(Instant::now) + HEADER_READ
                };
                let more = tokio::time::timeout_at(deadline.into(), read_more(&tcp, &mut read));
                tokio::select! {
                    got = more => match got {
                        Ok(Ok(n)) if n > 0 => {}
                        _ => return,
                    },
                    _ = stop.changed() => return,
                }
            }
        }
    }
}

async fn read_more(tcp: &TcpStream, read: &mut bytes::BytesMut) -> io::Result<usize> {
    read.reserve(4096);
    loop {
        tcp.readable().await?;
        match tcp.try_read_buf(read) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            got => return got,
        }
    }
}

/// A request answered here.
struct FileRequest {
    method: Method,
    /// The request target as sent (for the access log).
    target: String,
    /// The path below `/repositories/`, still percent-encoded.
    raw: String,
    headers: HeaderMap,
    /// Whether the connection ends after the answer.
    close: bool,
    /// HTTP/1.0 (a kept connection is then announced).
    old: bool,
}

enum Next {
    /// A complete request for a published file, and the length of its head.
    File(FileRequest, usize),
    /// No complete request head yet.
    Partial,
    /// Anything else: hyper takes the connection.
    Other,
}

/// Reads the request at the start of `read`.
fn next_request(read: &[u8]) -> Next {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(read) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if read.len() < MAX_HEAD => return Next::Partial,
        _ => return Next::Other,
    };
    let method = match req.method {
        Some("GET") => Method::GET,
        Some("HEAD") => Method::HEAD,
        _ => return Next::Other,
    };
    let (Some(target), Some(version)) = (req.path, req.version) else {
        return Next::Other;
    };
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    let raw = match path.strip_prefix("/repositories") {
        Some("") => "",
        Some(rest) => match rest.strip_prefix('/') {
            Some(raw) => raw,
            None => return Next::Other,
        },
        None => return Next::Other,
    };
    let old = version == 0;
    let mut request = FileRequest {
        method,
        target: target.to_string(),
        raw: raw.to_string(),
        headers: HeaderMap::with_capacity(req.headers.len()),
        close: old,
        old,
    };
    for h in req.headers.iter() {
        let Ok(name) = HeaderName::from_bytes(h.name.as_bytes()) else {
            return Next::Other;
        };
        if [
            header::CONTENT_LENGTH,
            header::TRANSFER_ENCODING,
            header::EXPECT,
            header::UPGRADE,
        ]
        .contains(&name)
        {
            // A body or a protocol change: hyper's to handle.
            return Next::Other;
        }
        let Ok(value) = HeaderValue::from_bytes(h.value) else {
            return Next::Other;
        };
        if name == header::CONNECTION {
            let tokens = value.to_str().unwrap_or("").to_ascii_lowercase();
            for token in tokens.split(',').map(str::trim) {
                match token {
                    "close" => request.close = true,
                    "keep-alive" if old => request.close = false,
                    _ => {}
                }
            }
        }
        request.headers.append(name, value);
    }
    Next::File(request, len)
}

/// Answers one request; whether the connection stays open.
async fn answer(tcp: &TcpStream, state: &AppState, peer: SocketAddr, request: FileRequest) -> bool {
    let started = Instant::now();
    let agent = request
        .headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_string();
    let response = super::serve_archive(
        state.clone(),
        request.raw,
        request.method.clone(),
        request.headers,
    )
    .await;
    let (parts, body) = response.into_parts();
    let send_file = parts.extensions.get::<SendFile>().cloned();
    let body = match send_file {
        Some(_) => Bytes::new(),
        // Archive responses are in memory already: this takes their one buffer.
        None => axum::body::to_bytes(body, usize::MAX)
            .await
            .unwrap_or_default(),
    };
    let length = send_file.as_ref().map_or(body.len() as u64, |f| f.count);
    let head = Head {
        status: parts.status,
        headers: &parts.headers,
        length,
        close: request.close,
        old: request.old,
    };
    let head = head.render();
    let bodiless = request.method == Method::HEAD || !status_has_body(parts.status);
    let sent = match (&send_file, bodiless) {
        (_, true) => send_all(tcp, &head, false).await,
        (Some(file), false) => send_head_and_file(tcp, &head, file).await,
        (None, false) => send_head_and_body(tcp, head, &body).await,
    };
    let logged_length = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .map_or_else(|| length.to_string(), str::to_string);
    let access = Access {
        peer: &peer.ip().to_string(),
        method: request.method.as_str(),
        uri: &request.target,
        agent: &agent,
    };
    access.record(state, parts.status.as_u16(), &logged_length, started);
    sent.is_ok() && !request.close
}

fn status_has_body(status: StatusCode) -> bool {
    !(status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED)
}

/// A response head.
struct Head<'a> {
    status: StatusCode,
    headers: &'a HeaderMap,
    /// The body's length (announced unless the headers do, or the status has no body).
    length: u64,
    close: bool,
    old: bool,
}

impl Head<'_> {
    fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(384);
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(self.status.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.status.canonical_reason().unwrap_or("").as_bytes());
        out.extend_from_slice(b"\r\n");
        for (name, value) in self.headers {
            line(&mut out, name.as_str(), value.as_bytes());
        }
        if !self.headers.contains_key(header::CONTENT_LENGTH) && status_has_body(self.status) {
            line(
                &mut out,
                "content-length",
                self.length.to_string().as_bytes(),
            );
        }
        let date = httpdate::fmt_http_date(std::time::SystemTime::now());
        line(&mut out, "date", date.as_bytes());
        if self.close {
            line(&mut out, "connection", b"close");
        } else if self.old {
            line(&mut out, "connection", b"keep-alive");
        }
        out.extend_from_slice(b"\r\n");
        out
    }
}

fn line(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

async fn send_head_and_body(tcp: &TcpStream, mut head: Vec<u8>, body: &[u8]) -> io::Result<()> {
    if body.len() <= ONE_WRITE {
        head.extend_from_slice(body);
        return send_all(tcp, &head, false).await;
    }
    send_all(tcp, &head, true).await?;
    send_all(tcp, body, false).await
}

async fn send_head_and_file(tcp: &TcpStream, head: &[u8], file: &SendFile) -> io::Result<()> {
    send_all(tcp, head, true).await?;
    let mut offset = libc::off_t::try_from(file.start).map_err(|_| io::ErrorKind::InvalidInput)?;
    let end = file.start + file.count;
    while (offset as u64) < end {
        let left = usize::try_from(end - offset as u64).unwrap_or(usize::MAX);
        let sent = written(tcp, || {
            // SAFETY: both descriptors are open for the call (the stream and the Arc'd file
            // are borrowed), and `offset` is a valid off_t the kernel advances.
            unsafe { libc::sendfile(tcp.as_raw_fd(), file.file.as_raw_fd(), &mut offset, left) }
        })
        .await?;
        if sent == 0 {
            // The file is shorter than when it was read: nothing more to send.
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
    Ok(())
}

/// Sends `data` whole; with `more`, the kernel may hold it back for what follows
/// (`MSG_MORE`: the head leaves in the same packet as the body's start).
async fn send_all(tcp: &TcpStream, mut data: &[u8], more: bool) -> io::Result<()> {
    let flags = libc::MSG_NOSIGNAL | if more { libc::MSG_MORE } else { 0 };
    while !data.is_empty() {
        let n = written(tcp, || {
            // SAFETY: a valid buffer of that length, and the stream's open socket.
            unsafe { libc::send(tcp.as_raw_fd(), data.as_ptr().cast(), data.len(), flags) }
        })
        .await?;
        data = &data[n..];
    }
    Ok(())
}

/// Runs a non-blocking write call when the socket is writable (again whenever it would
/// block), giving up after [`WRITE_STALL`] without progress.
async fn written(tcp: &TcpStream, mut call: impl FnMut() -> isize) -> io::Result<usize> {
    let attempt = tcp.async_io(Interest::WRITABLE, || match call() {
        n if n < 0 => Err(io::Error::last_os_error()),
        n => Ok(n as usize),
    });
    tokio::time::timeout(WRITE_STALL, attempt)
        .await
        .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))?
}

/// Serves the rest of the connection with hyper and the router: `read` is what was read
/// from it and not answered yet.
async fn hand_over(
    tcp: TcpStream,
    read: Bytes,
    peer: SocketAddr,
    app: Router,
    stop: watch::Receiver<bool>,
) {
    serve_with_router(Rewind { read, tcp }, peer, app, stop).await
}

/// Serves a connection with hyper and the router, a request head at most [`HEADER_READ`]
/// in coming, until the client closes it or the daemon stops (HTTPS connections, and plain
/// ones handed over).
pub(super) async fn serve_with_router<I>(
    io: I,
    peer: SocketAddr,
    app: Router,
    mut stop: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut req: hyper::Request<_>| {
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(peer));
        tower::ServiceExt::oneshot(app.clone(), req)
    });
    let io = hyper_util::rt::TokioIo::new(io);
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_READ)
        .serve_connection(io, service);
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => return,
        _ = stop.changed() => {}
    }
    // The daemon stops: the request in flight is finished, then the connection closes.
    connection.as_mut().graceful_shutdown();
    let _ = connection.await;
}

/// A stream whose first bytes were already read: they are read again first.
struct Rewind {
    read: Bytes,
    tcp: TcpStream,
}

impl AsyncRead for Rewind {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.read.is_empty() {
            let n = self.read.len().min(buf.remaining());
            let first = self.read.split_to(n);
            buf.put_slice(&first);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for Rewind {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(next: Next) -> (FileRequest, usize) {
        match next {
            Next::File(r, len) => (r, len),
            Next::Partial => panic!("partial"),
            Next::Other => panic!("other"),
        }
    }

    #[test]
    fn requests_for_published_files_are_taken_and_the_rest_handed_over() {
        let two = b"GET /repositories/test/dists/d/InRelease?x=1 HTTP/1.1\r\nHost: a\r\nRange: bytes=0-1\r\n\r\nHEAD /repositories HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
        let (first, len) = file(next_request(two));
        assert_eq!(first.raw, "test/dists/d/InRelease");
        assert_eq!(first.target, "/repositories/test/dists/d/InRelease?x=1");
        assert_eq!(first.headers.get(header::RANGE).unwrap(), "bytes=0-1");
        assert!(!first.close && !first.old);
        let (second, _) = file(next_request(&two[len..]));
        assert_eq!((second.method, second.raw.as_str()), (Method::HEAD, ""));
        assert!(!second.close && second.old);
        let (old, _) = file(next_request(b"GET /repositories/ HTTP/1.0\r\n\r\n"));
        assert!(old.close);
        let (closing, _) = file(next_request(
            b"GET /repositories/t/pool/x HTTP/1.1\r\nConnection: Close\r\n\r\n",
        ));
        assert!(closing.close);
        assert!(matches!(
            next_request(b"GET /repositories/t/dists/x HTTP/1.1\r\nHost"),
            Next::Partial
        ));
        for other in [
            &b"GET /api/status HTTP/1.1\r\n\r\n"[..],
            b"GET /repositoriesx HTTP/1.1\r\n\r\n",
            b"POST /repositories/x HTTP/1.1\r\n\r\n",
            b"GET /repositories/x HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
            b"GET /repositories/x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET http://h/repositories/x HTTP/1.1\r\n\r\n",
            b"GARBAGE\r\n\r\n",
        ] {
            assert!(
                matches!(next_request(other), Next::Other),
                "{}",
                String::from_utf8_lossy(other)
            );
        }
        let long = format!(
            "GET /repositories/x HTTP/1.1\r\nX: {}",
            "y".repeat(MAX_HEAD)
        );
        assert!(matches!(next_request(long.as_bytes()), Next::Other));
    }

    #[test]
    fn admission_caps_each_client_and_gives_places_back() {
        let a = std::sync::Arc::new(Admission::default());
        let (one, two) = ("127.0.0.2".parse().unwrap(), "127.0.0.3".parse().unwrap());
        let held: Vec<Admitted> = (0..PER_CLIENT).map(|_| a.admit(one).unwrap()).collect();
        assert!(a.admit(one).is_none());
        assert!(a.admit(two).is_some(), "another client is not held back");
        drop(held);
        assert!(a.admit(one).is_some());
        assert_eq!(a.open.lock().unwrap().0, 0);
    }

    #[test]
    fn heads_announce_length_and_connection() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        let head = Head {
            status: StatusCode::OK,
            headers: &headers,
            length: 42,
            close: true,
            old: false,
        };
        let text = String::from_utf8(head.render()).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n"));
        assert!(text.contains("\r\ncontent-length: 42\r\n"));
        assert!(text.contains("\r\nconnection: close\r\n"));
        assert!(text.ends_with("\r\n\r\n"));
        let not_modified = Head {
            status: StatusCode::NOT_MODIFIED,
            headers: &headers,
            length: 0,
            close: false,
            old: true,
        };
        let text = String::from_utf8(not_modified.render()).unwrap();
        assert!(!text.contains("content-length"));
        assert!(text.contains("\r\nconnection: keep-alive\r\n"));
    }
}
