//! Notifications to the outside: mail to a real SMTP server on loopback (aiosmtpd), and
//! webhooks POSTed to a receiver on loopback (Python's
//! `http.server` and `hmac`, an implementation of its own) that checks every signature.

use crate::daemon::{Daemon, generated_uploads, json, put_upload, setup_home, wait_for_events};
use crate::util::files_ending;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// The receiver: answers 503 to its first `fail_first` requests, then checks the signature
/// (HMAC-SHA256 of `<timestamp>.<body>` with the secret, timestamp within 5 minutes) and
/// writes one line per request it took: verified or FORGED, the kind header, the event's
/// kind and source, the path.
const RECEIVER: &str = r#"
import hashlib, hmac, http.server, json, sys, time
secret, log, fail_first, port = open(sys.argv[1]).read().strip().encode(), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
seen = 0
class Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        global seen
        body = self.rfile.read(int(self.headers["Content-Length"]))
        seen += 1
        if seen <= fail_first:
            self.send_response(503)
            self.end_headers()
            return
        stamp = self.headers["X-Mbd-Timestamp"]
        want = "sha256=" + hmac.new(secret, stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        good = hmac.compare_digest(want, self.headers["X-Mbd-Signature"]) and abs(time.time() - int(stamp)) < 300
        event = json.loads(body)
        with open(log, "a") as f:
            f.write("%s %s %s %s %s\n" % ("verified" if good else "FORGED", self.headers["X-Mbd-Event"], event["kind"], event["source"], self.path))
        self.send_response(200 if good else 401)
        self.end_headers()
    def log_message(self, *args):
        pass
class Server(http.server.HTTPServer):
    allow_reuse_address = True
Server(("127.0.0.1", port), Hook).serve_forever()
"#;

struct Receiver(Child);

impl Receiver {
    fn start(dir: &Path, secret: &Path, port: u16, fail_first: u32) -> Receiver {
        let script = dir.join("receiver.py");
        std::fs::write(&script, RECEIVER).unwrap();
        let child = Command::new("/usr/bin/python3")
            .arg(&script)
            .arg(secret)
            .arg(dir.join("received"))
            .arg(fail_first.to_string())
            .arg(port.to_string())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed() < Duration::from_secs(20), "no receiver");
            std::thread::sleep(Duration::from_millis(50));
        }
        Receiver(child)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn received(dir: &Path, n: usize, d: &Daemon) -> Vec<String> {
    let started = Instant::now();
    loop {
        let text = std::fs::read_to_string(dir.join("received")).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        if lines.len() >= n {
            return lines;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{} of {n} deliveries:\n{text}\n{}",
            lines.len(),
            d.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Webhooks: events of the kinds a target filters for are POSTed, signed (the receiver checks
/// every signature); a target whose filter matches nothing gets nothing; a 503 is retried;
/// a delivery to a receiver that is down is kept, shown as failing (`webhooks`, the home
/// page), and made after the daemon's restart once the receiver is back.
#[test]
fn webhooks_are_signed_filtered_retried_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    setup_home(&home);
    let mut d = Daemon::start(&home);
    d.stop();
    let secret = home.join("etc/webhook.secret");
    std::fs::write(&secret, "s3cret-for-the-hooks\n").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let settings = home.join("etc/mbd.toml");
    let text = std::fs::read_to_string(&settings).unwrap();
    assert!(text.contains("webhook_retry_seconds = 10\n"), "{text}");
    let text = text.replace(
        "webhook_retry_seconds = 10\n",
        "webhook_retry_seconds = 1\n",
    );
    std::fs::write(
        &settings,
        format!(
            "{text}\n\
             [[webhooks]]\nurl = \"http://127.0.0.1:{port}/hook\"\nsecret_file = \"etc/webhook.secret\"\nkinds = [\"REJECTED\"]\n\n\
             [[webhooks]]\nurl = \"http://127.0.0.1:{port}/other\"\nsecret_file = \"etc/webhook.secret\"\nsources = [\"no-such-source\"]\n"
        ),
    )
    .unwrap();

    // The first POST gets a 503: it is tried again.
    let receiver = Receiver::start(dir.path(), &secret, port, 1);
    let mut d = Daemon::start(&home);
    let uploads = generated_uploads(dir.path(), 3, true);
    for u in &uploads[..2] {
        put_upload(&d, &files_ending(u, ""));
    }
    let events = wait_for_events(&d, 2);
    assert!(events.iter().all(|e| e["kind"] == "REJECTED"), "{events:?}");
    let lines = received(dir.path(), 2, &d);
    assert_eq!(lines.len(), 2, "{lines:?}");
    for line in &lines {
        assert!(line.starts_with("verified REJECTED REJECTED "), "{line}");
        assert!(line.ends_with(" /hook"), "{line}");
    }
    assert!(
        json(&d.api_ok(&["webhooks"]))
            .as_array()
            .unwrap()
            .is_empty()
    );

    // The receiver is down: the delivery waits, shown as failing.
    drop(receiver);
    put_upload(&d, &files_ending(&uploads[2], ""));
    let started = Instant::now();
    let failing = loop {
        let w = json(&d.api_ok(&["webhooks"]));
        if w.as_array()
            .unwrap()
            .iter()
            .any(|x| x["attempts"].as_u64() >= Some(1))
        {
            break w;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{w}\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let f = &failing[0];
    assert_eq!(f["kind"], "REJECTED");
    assert_eq!(f["url"], format!("http://127.0.0.1:{port}/hook"));
    assert!(!f["last_error"].as_str().unwrap().is_empty(), "{f}");
    let (_, _, page) = d.get("/", &[]);
    let page = String::from_utf8_lossy(&page);
    assert!(
        page.contains("Webhooks failing") && page.contains("Connection refused"),
        "{page}"
    );
    let (ok, out) = d.api_as(None, &["webhooks"]);
    assert!(!ok && out.contains("needs authorization: STAFF"), "{out}");
    d.stop();

    // Back up, and the daemon restarted: the kept delivery is made.
    let _receiver = Receiver::start(dir.path(), &secret, port, 0);
    let d = Daemon::start(&home);
    let lines = received(dir.path(), 3, &d);
    assert!(
        lines[2].starts_with("verified REJECTED REJECTED "),
        "{lines:?}"
    );
    let started = Instant::now();
    while !json(&d.api_ok(&["webhooks"]))
        .as_array()
        .unwrap()
        .is_empty()
    {
        assert!(started.elapsed() < Duration::from_secs(30));
        std::thread::sleep(Duration::from_millis(100));
    }
    // Nothing went to the target whose filter matches nothing.
    let text = std::fs::read_to_string(dir.path().join("received")).unwrap();
    assert!(!text.contains("/other"), "{text}");
    assert_eq!(text.lines().count(), 3, "{text}");
}

/// Two SMTP servers of aiosmtpd on loopback: in the clear on the first port, and with TLS
/// from the first byte and AUTH required (user `mbd`, the password in argv) on the second.
/// Each message taken is one JSON line: port, envelope sender, recipients, content.
const SMTP_SERVERS: &str = r#"
import json, ssl, sys, time
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
log, plain, tls, cert, key, password = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6].encode()
class Keep:
    def __init__(self, port):
        self.port = port
    async def handle_DATA(self, server, session, envelope):
        with open(log, "a") as f:
            f.write(json.dumps({"port": self.port, "from": envelope.mail_from, "to": envelope.rcpt_tos,
                                "content": envelope.content.decode()}) + "\n")
        return "250 OK"
def check(server, session, envelope, mechanism, auth_data):
    good = auth_data.login == b"mbd" and auth_data.password == password
    # A refusal needs its reply spelled out (aiosmtpd 1.4 sends none otherwise).
    return AuthResult(success=good, handled=False, message=None if good else "535 5.7.8 Authentication credentials invalid")
context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
context.load_cert_chain(cert, key)
Controller(Keep(plain), hostname="127.0.0.1", port=plain).start()
Controller(Keep(tls), hostname="127.0.0.1", port=tls, ssl_context=context, authenticator=check,
           auth_required=True, auth_require_tls=False).start()
print("ready", flush=True)
while True:
    time.sleep(3600)
"#;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The mails the servers took, once there are `n`.
fn mails(log: &Path, n: usize, d: &Daemon) -> Vec<serde_json::Value> {
    let started = Instant::now();
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.lines().count() >= n {
            return text.lines().map(json).collect();
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{} of {n} mails:\n{text}\n{}",
            text.lines().count(),
            d.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Rewrites `[mail]` of the home's settings.
fn set_mail(home: &Path, mail: toml::Table) {
    let path = home.join("etc/mbd.toml");
    let mut settings: toml::Table = std::fs::read_to_string(&path).unwrap().parse().unwrap();
    settings.insert("mail".into(), toml::Value::Table(mail));
    std::fs::write(&path, toml::to_string(&settings).unwrap()).unwrap();
}

/// Mail to a real SMTP server (aiosmtpd) on loopback: a REJECTED upload is mailed to the
/// daemon's notify list, the repository's, and the subscriber who set an address, one mail
/// each with its reason in the footer, and so is a migration (MIGRATED); the same over
/// `ssmtp://` (TLS checked against the server's certificate, AUTH PLAIN); a wrong password
/// is logged as not sent, without the password, and the decision was made all the same.
#[test]
fn mail_reaches_lists_and_subscribers_over_smtp_and_ssmtp() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    crate::daemon::setup_with_packages(&home);
    // A CA, and the server's certificate for 127.0.0.1 signed by it.
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let (ca, ca_key, cert, key, csr) = (
        p("ca.crt"),
        p("ca.key"),
        p("smtp.crt"),
        p("smtp.key"),
        p("smtp.csr"),
    );
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    for args in [
        [
            &["req", "-x509"][..],
            &ec,
            &[
                "-subj",
                "/CN=test CA",
                "-days",
                "2",
                "-keyout",
                &ca_key,
                "-out",
                &ca,
            ],
        ]
        .concat(),
        [
            &["req"][..],
            &ec,
            &["-subj", "/CN=127.0.0.1", "-keyout", &key, "-out", &csr],
        ]
        .concat(),
    ] {
        let (ok, out) = crate::util::run(Command::new("openssl").args(&args));
        assert!(ok, "{out}");
    }
    let ext = p("ext");
    std::fs::write(
        &ext,
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\n",
    )
    .unwrap();
    let (ok, out) = crate::util::run(Command::new("openssl").args([
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        &ca,
        "-CAkey",
        &ca_key,
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        &ext,
        "-out",
        &cert,
    ]));
    assert!(ok, "{out}");
    let (plain, tls) = (free_port(), free_port());
    let log = dir.path().join("mails");
    let script = dir.path().join("smtp.py");
    std::fs::write(&script, SMTP_SERVERS).unwrap();
    let mut server = Command::new("/usr/bin/python3")
        .arg(&script)
        .args([log.to_str().unwrap(), &plain.to_string(), &tls.to_string()])
        .args([&cert, &key, "the-smtp-password"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(server.stdout.take().unwrap()),
        &mut ready,
    )
    .unwrap();
    assert_eq!(ready.trim(), "ready");
    struct Kill(Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _server = Kill(server);

    let mut d = Daemon::start(&home);
    d.stop();
    let mail = |smtp: String, extra: &[(&str, &str)]| {
        let mut m: toml::Table = format!(
            "smtp = \"{smtp}\"\nfrom = \"mbd@example.org\"\nnotify = [\"admin@example.org\"]\nretry_seconds = 1\n\
             [repositories.test]\nnotify = [\"qa@example.org\", \"admin@example.org\"]\n"
        )
        .parse()
        .unwrap();
        for (k, v) in extra {
            m.insert(k.to_string(), toml::Value::String(v.to_string()));
        }
        m
    };
    set_mail(&home, mail(format!("smtp://127.0.0.1:{plain}"), &[]));
    let mut d = Daemon::start(&home);
    d.api_ok(&["user_add", "ann", "--password", "ann-password-1"]);
    let ann = Some(("ann", "ann-password-1"));
    let (ok, out) = d.api_as(ann, &["set_user_email", "ann@example.org"]);
    assert!(ok, "{out}");
    let (ok, out) = d.api_as(ann, &["subscribe"]);
    assert!(ok, "{out}");
    let uploads = generated_uploads(dir.path(), 3, true);
    put_upload(&d, &files_ending(&uploads[0], ""));
    let events = wait_for_events(&d, 1);
    let mut got = mails(&log, 3, &d);
    got.sort_by_key(|m| m["to"][0].as_str().unwrap().to_string());
    let source = events[0]["source"].as_str().unwrap();
    for (m, (to, why)) in got.iter().zip([
        ("admin@example.org", "you are on the daemon's notify list"),
        ("ann@example.org", "you subscribed to"),
        ("qa@example.org", "you are on repository test's notify list"),
    ]) {
        assert_eq!(m["port"], plain);
        assert_eq!(m["from"], "mbd@example.org");
        assert_eq!(m["to"], serde_json::json!([to]));
        let content = m["content"].as_str().unwrap();
        assert!(
            content.contains(&format!(
                "Subject: [mbd-testhost] REJECTED (bookworm-test-unstable): {source} "
            )),
            "{content}"
        );
        assert!(content.contains(&format!("To: {to}\r\n")), "{content}");
        assert!(
            content.contains(&format!("You get this mail because {why}")),
            "{content}"
        );
    }
    // A migration is mailed too (MIGRATED into the target distribution).
    d.api_ok(&["migrate", "mbd-hello", "bookworm-test-unstable"]);
    let got = mails(&log, 6, &d);
    for m in &got[3..] {
        let content = m["content"].as_str().unwrap();
        assert!(
            content.contains("Subject: [mbd-testhost] MIGRATED (bookworm-test-testing): mbd-hello 1.0-2~test12+1: migrated from bookworm-test-unstable\r\n"),
            "{content}"
        );
    }
    d.stop();

    // TLS from the first byte, the server's certificate checked, AUTH PLAIN.
    let password = home.join("etc/smtp.password");
    std::fs::write(&password, "the-smtp-password\n").unwrap();
    let tls_mail = |password_file: &str| {
        mail(
            format!("ssmtp://127.0.0.1:{tls}"),
            &[
                ("user", "mbd"),
                ("password_file", password_file),
                ("ca_file", &ca),
            ],
        )
    };
    set_mail(&home, tls_mail("etc/smtp.password"));
    let mut d = Daemon::start(&home);
    put_upload(&d, &files_ending(&uploads[1], ""));
    let got = mails(&log, 9, &d);
    assert!(got[6..].iter().all(|m| m["port"] == tls), "{got:?}");
    d.stop();

    // A wrong password: logged as not sent (without the password); the decision stands.
    std::fs::write(home.join("etc/wrong.password"), "not-the-password\n").unwrap();
    set_mail(&home, tls_mail("etc/wrong.password"));
    let d = Daemon::start(&home);
    put_upload(&d, &files_ending(&uploads[2], ""));
    wait_for_events(&d, 3);
    let started = Instant::now();
    while !d.log().contains("mail not sent") {
        assert!(started.elapsed() < Duration::from_secs(30), "{}", d.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    let daemon_log = d.log();
    assert!(daemon_log.contains("AUTH PLAIN: 535"), "{daemon_log}");
    assert!(
        !daemon_log.contains("not-the-password"),
        "the password is in the log"
    );
    assert_eq!(std::fs::read_to_string(&log).unwrap().lines().count(), 9);
}
