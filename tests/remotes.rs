//! Remotes: three real daemons peer as the seed's three steps say, list each other, shake
//! hands only with keys they know, and drop to auto-reactivate when a peer forgets them.

use crate::daemon::{Daemon, json};
use crate::util::mbd_ok;
use std::path::Path;
use std::time::{Duration, Instant};

/// A daemon with its own identity (and archive key), polling its remotes every second.
pub(crate) fn peer(dir: &Path, identity: &str) -> Daemon {
    let home = dir.join(identity);
    mbd_ok(&home, &["setup", "--identity", identity]);
    Daemon::start_env(&home, &[("MBD_TEST_REMOTES_EVERY", "1")])
}

/// The label of `url` among `d`'s remotes.
pub(crate) fn remote_label(d: &Daemon, url: &str) -> String {
    let all = json(&d.api_ok(&["config_objects", "--kind", "remote"]));
    all["remote"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["url"] == url)
        .map(|r| r["label"].as_str().unwrap().to_string())
        .unwrap_or_else(|| panic!("{url} is not a remote: {all}"))
}

pub(crate) fn wait_for_label(d: &Daemon, url: &str, want: &str) {
    let started = Instant::now();
    loop {
        let label = remote_label(d, url);
        if label == want {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{url} stays {label} on {}, not {want}:\n{}",
            d.url,
            d.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The seed's peering: A adds B (its activation fails: B does not know A; A waits as
/// auto-reactivate), B adds A (works: A lists B), then A activates B.
pub(crate) fn peer_up(a: &Daemon, b: &Daemon) {
    let (_, report) = a.api(&["setup", "--remotes", &b.url, "--update", "--pca"]);
    assert!(report.contains("does not know us"), "{report}");
    assert_eq!(remote_label(a, &b.url), "Prepared (A)");
    let report = b.api_ok(&["setup", "--remotes", &a.url, "--update", "--pca"]);
    assert!(report.contains("active"), "{report}");
    assert_eq!(remote_label(b, &a.url), "Active (C)");
    let out = a.api_ok(&["config_action", "remote", &b.url, "activate"]);
    assert!(out.contains("Active (C)"), "{out}");
}

#[test]
fn instances_peer_in_three_steps_and_shake_hands_only_with_known_keys() {
    let dir = tempfile::tempdir().unwrap();
    let a = peer(dir.path(), "alpha");
    let b = peer(dir.path(), "beta");
    let c = peer(dir.path(), "gamma");
    peer_up(&a, &b);
    // Each lists the other in its status; a remote's key is the peer's archive key.
    let status = |d: &Daemon| json(&d.api_ok(&["status"]));
    assert_eq!(status(&a)["remotes"], serde_json::json!([b.url]));
    assert_eq!(status(&b)["remotes"], serde_json::json!([a.url]));
    let listed = json(&a.api_ok(&["config_objects", "--kind", "remote"]));
    let key_b = b.api_ok(&["pub_key"]);
    let fingerprint_b = mbd::openpgp::Keyring::from_bytes(key_b.as_bytes())
        .unwrap()
        .fingerprints()[0]
        .clone();
    assert_eq!(listed["remote"][0]["fingerprint"], fingerprint_b.as_str());
    assert_eq!(listed["remote"][0]["peer"]["identity"], "beta");
    // The setup page lists it with its status and actions.
    let basic = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("admin:{}", crate::daemon::ADMIN_PASSWORD)
        )
    );
    let page =
        String::from_utf8_lossy(&a.get("/ui/setup", &[("Authorization", &basic)]).2).into_owned();
    let row = page
        .split("<tr>")
        .find(|r| r.contains(&b.url.replace('/', "&#x2f;")))
        .unwrap_or_else(|| panic!("{page}"));
    assert!(row.contains("Active (C)") && row.contains("beta"), "{row}");
    // C is nobody's remote: its handshake with A is refused, and so is a stranger's.
    let stranger =
        mbd::openpgp::ArchiveKey::generate("stranger", mbd::openpgp::KeyAlgorithm::Ed25519)
            .unwrap();
    let signed = String::from_utf8(stranger.clearsign(b"hello\n").unwrap()).unwrap();
    let (ok, out) = a.api(&["handshake", "--", &signed]);
    assert!(
        !ok && out.contains("not signed by a remote we know"),
        "{out}"
    );
    let (_, report) = c.api(&["setup", "--remotes", &a.url, "--update", "--pca"]);
    assert!(report.contains("does not know us"), "{report}");
    // A deactivates B: B's next poll finds A no longer lists it, and B waits for A again.
    a.api_ok(&["config_action", "remote", &b.url, "deactivate"]);
    wait_for_label(&b, &a.url, "Prepared (A)");
    let why =
        json(&b.api_ok(&["config_objects", "--kind", "remote"]))["remote"][0]["status"]["message"]
            .clone();
    assert!(why.as_str().unwrap().contains("does not know us"), "{why}");
    // Activated again on A: B's poll re-activates A by itself.
    a.api_ok(&["config_action", "remote", &b.url, "activate"]);
    wait_for_label(&b, &a.url, "Active (C)");
    // A peer that is down: the remote goes to auto-reactivate with "is down", its load
    // reads negative, and wake runs its wake command.
    drop(c);
    let gamma_url = {
        let (_, r) = a.api(&["setup", "--remotes", "127.0.0.1:9", "--update"]);
        assert!(r.contains("http://127.0.0.1:9"), "{r}");
        "http://127.0.0.1:9".to_string()
    };
    let marker = dir.path().join("woken");
    a.api_ok(&[
        "config_set",
        "remote",
        &gamma_url,
        "wake_command",
        "--value",
        &format!("touch {}", marker.display()),
    ]);
    let (ok, out) = a.api(&["config_action", "remote", &gamma_url, "pca"]);
    assert!(!ok && out.contains("is down"), "{out}");
    let listed = json(&a.api_ok(&["config_objects", "--kind", "remote"]));
    let gamma = listed["remote"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["url"] == gamma_url.as_str())
        .unwrap()
        .clone();
    assert_eq!(gamma["load"], -1.0, "{gamma}");
    let (ok, out) = a.api(&["wake", &gamma_url, "--sleep", "0", "--attempts", "2"]);
    assert!(
        !ok && out.contains("still down after 2 wake attempts"),
        "{out}"
    );
    assert!(marker.exists(), "the wake command ran");
}
