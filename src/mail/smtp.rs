//! A small blocking SMTP client (RFC 5321): `smtp://host:port` in the clear, `ssmtp://` with
//! TLS from the first byte (RFC 8314), AUTH PLAIN when a user is set. One message to its
//! recipients per connection.

use base64::Engine as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;
use tokio_rustls::rustls;

/// How long one read or write may wait.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Where mail goes.
#[derive(Debug, Clone)]
pub struct Server {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// User and password for AUTH PLAIN.
    pub login: Option<(String, String)>,
    /// The CA certificates (PEM) a TLS server's certificate is checked against.
    pub ca_file: String,
}

impl Server {
    /// Parses `smtp://host[:port]` (port 25) or `ssmtp://host[:port]` (port 465).
    pub fn parse(url: &str) -> Result<Server, String> {
        let (tls, rest) = match url.split_once("://") {
            Some(("smtp", rest)) => (false, rest),
            Some(("ssmtp", rest)) => (true, rest),
            _ => {
                return Err(format!(
                    "'{url}' is not smtp://host[:port] or ssmtp://host[:port]"
                ));
            }
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (
                h,
                p.parse::<u16>()
                    .map_err(|_| format!("'{url}': port '{p}' is not a number"))?,
            ),
            None => (rest, if tls { 465 } else { 25 }),
        };
        if host.is_empty() || host.contains(['/', '@']) {
            return Err(format!("'{url}': no host"));
        }
        Ok(Server {
            tls,
            host: host.trim_matches(['[', ']']).to_string(),
            port,
            login: None,
            ca_file: "/etc/ssl/certs/ca-certificates.crt".to_string(),
        })
    }

    /// Sends `message` (headers and body, `\n` line ends) from `from` to `to`.
    pub fn send(&self, helo: &str, from: &str, to: &[String], message: &str) -> Result<(), String> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .map_err(|e| format!("connecting to {}:{}: {e}", self.host, self.port))?;
        tcp.set_read_timeout(Some(TIMEOUT))
            .map_err(|e| e.to_string())?;
        tcp.set_write_timeout(Some(TIMEOUT))
            .map_err(|e| e.to_string())?;
        let stream: Box<dyn Stream> = match self.tls {
            false => Box::new(tcp),
            true => Box::new(self.tls_stream(tcp)?),
        };
        let mut s = Session {
            io: BufReader::new(stream),
        };
        s.expect(220, "greeting")?;
        s.command(&format!("EHLO {helo}"), 250)?;
        if let Some((user, password)) = &self.login {
            let token =
                base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"));
            // Not through `command`: the token is a secret and never goes into an error.
            s.write(&format!("AUTH PLAIN {token}"))?;
            s.expect(235, "AUTH PLAIN")?;
        }
        s.command(&format!("MAIL FROM:<{from}>"), 250)?;
        for rcpt in to {
            s.command(&format!("RCPT TO:<{rcpt}>"), 250)?;
        }
        s.command("DATA", 354)?;
        s.write(&dot_stuffed(message))?;
        s.command(".", 250)?;
        // The message is taken; a failing QUIT changes nothing.
        let _ = s.command("QUIT", 221);
        Ok(())
    }

    fn tls_stream(
        &self,
        tcp: TcpStream,
    ) -> Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>, String> {
        use rustls_pki_types::pem::PemObject;
        let bad = |e: String| format!("TLS to {}:{}: {e}", self.host, self.port);
        let mut roots = rustls::RootCertStore::empty();
        let certs = rustls_pki_types::CertificateDer::pem_file_iter(&self.ca_file)
            .map_err(|e| bad(format!("{}: {e}", self.ca_file)))?;
        for cert in certs.flatten() {
            let _ = roots.add(cert);
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| bad(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = rustls_pki_types::ServerName::try_from(self.host.clone())
            .map_err(|e| bad(e.to_string()))?;
        let conn = rustls::ClientConnection::new(Arc::new(config), name)
            .map_err(|e| bad(e.to_string()))?;
        Ok(rustls::StreamOwned::new(conn, tcp))
    }
}

trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

struct Session {
    io: BufReader<Box<dyn Stream>>,
}

impl Session {
    fn write(&mut self, line: &str) -> Result<(), String> {
        let w = self.io.get_mut();
        w.write_all(line.as_bytes())
            .and_then(|()| w.write_all(b"\r\n"))
            .and_then(|()| w.flush())
            .map_err(|e| format!("sending: {e}"))
    }

    /// Reads one reply (its continuation lines too); an error unless its code is `code`.
    fn expect(&mut self, code: u16, what: &str) -> Result<(), String> {
        let mut text = String::new();
        loop {
            let mut line = String::new();
            let n = (&mut self.io)
                .take(1024)
                .read_line(&mut line)
                .map_err(|e| format!("{what}: reading the reply: {e}"))?;
            if n == 0 {
                return Err(format!("{what}: the server closed the connection"));
            }
            text.push_str(line.trim_end());
            if line.as_bytes().get(3) != Some(&b'-') {
                break;
            }
            text.push(' ');
            if text.len() > 8192 {
                return Err(format!("{what}: the reply does not end"));
            }
        }
        match text.get(..3).and_then(|c| c.parse::<u16>().ok()) {
            Some(c) if c == code => Ok(()),
            _ => Err(format!("{what}: {text}")),
        }
    }

    fn command(&mut self, line: &str, code: u16) -> Result<(), String> {
        self.write(line)?;
        let verb = line.split([' ', ':']).next().unwrap_or(line);
        self.expect(code, verb)
    }
}

/// The message with CRLF line ends, lines starting with `.` doubled, and lines cut at 998
/// bytes (SMTP's limit), without the final `.` line.
fn dot_stuffed(message: &str) -> String {
    let mut out = String::with_capacity(message.len() + 64);
    for line in message.lines() {
        let mut line = line;
        if line.len() > 998 {
            let mut cut = 998;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line = &line[..cut];
        }
        if line.starts_with('.') {
            out.push('.');
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    // `write` adds the last line end.
    out.truncate(out.len().saturating_sub(2));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let s = Server::parse("smtp://mail.example.org").unwrap();
        assert_eq!(
            (s.tls, s.host.as_str(), s.port),
            (false, "mail.example.org", 25)
        );
        let s = Server::parse("ssmtp://127.0.0.1:2465").unwrap();
        assert_eq!((s.tls, s.host.as_str(), s.port), (true, "127.0.0.1", 2465));
        assert_eq!(Server::parse("ssmtp://h").unwrap().port, 465);
        for bad in ["http://h", "smtp://", "smtp://h:x", "smtp://u@h"] {
            assert!(Server::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dots_are_stuffed_and_lines_end_in_crlf() {
        assert_eq!(dot_stuffed("a\n.b\n..\nc"), "a\r\n..b\r\n...\r\nc");
        assert_eq!(dot_stuffed(&"é".repeat(600)).len(), 998);
    }
}
