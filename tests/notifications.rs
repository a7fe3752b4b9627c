//! Notifications to the outside: webhooks POSTed to a receiver on loopback (Python's
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
