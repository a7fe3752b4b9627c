use super::*;
use crate::openpgp::KeyAlgorithm;
use std::cell::RefCell;

/// A peer on the network: its key, what its status says, and whom it answers handshakes.
struct FakePeer {
    url: String,
    key: ArchiveKey,
    running: bool,
    remotes: Vec<String>,
    /// Keys whose handshakes it answers.
    knows: Keyring,
    asked: RefCell<Vec<String>>,
}

impl Fetch for FakePeer {
    fn get(&self, url: &str) -> Result<(u16, Vec<u8>), String> {
        self.asked.borrow_mut().push(url.to_string());
        let path = url
            .strip_prefix(&self.url)
            .ok_or_else(|| "connection refused".to_string())?;
        if path == "/api/pub_key?output=plain" {
            return Ok((200, self.key.public_armored()));
        }
        if path == "/api/status" {
            let body = serde_json::json!({
                "identity": "peer", "url": self.url, "running": self.running, "load": 0.5,
                "build_chroots": ["bookworm:amd64"], "remotes": self.remotes,
            });
            return Ok((200, body.to_string().into_bytes()));
        }
        if let Some(q) = path.strip_prefix("/api/handshake?output=plain&") {
            let msg = form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "signed_message")
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default();
            return match self.knows.verify_cleartext(msg.as_bytes()) {
                Ok(_) => Ok((200, self.key.clearsign(b"hello").unwrap())),
                Err(e) => Ok((400, e.to_string().into_bytes())),
            };
        }
        Ok((404, Vec::new()))
    }
}

fn key(name: &str) -> ArchiveKey {
    ArchiveKey::generate(name, KeyAlgorithm::Ed25519).unwrap()
}

fn peer(remotes: &[&str]) -> FakePeer {
    FakePeer {
        url: "http://b.example:8066".to_string(),
        key: key("b"),
        running: true,
        remotes: remotes.iter().map(|s| s.to_string()).collect(),
        knows: Keyring::new(),
        asked: RefCell::new(Vec::new()),
    }
}

fn no_token() -> Box<dyn Token> {
    Box::new(())
}

#[test]
fn urls_are_normalized_and_hostile_ones_refused() {
    assert_eq!(normalize_url("b:8066").unwrap(), "http://b:8066");
    assert_eq!(normalize_url("b").unwrap(), "http://b:8066");
    assert_eq!(
        normalize_url("https://b.example:443/").unwrap(),
        "https://b.example:443"
    );
    assert_eq!(
        normalize_url("http://127.0.0.1:41").unwrap(),
        "http://127.0.0.1:41"
    );
    for bad in ["ftp://b", "http://b/x", "b c", "", "http://b:1/../"] {
        assert!(normalize_url(bad).is_err(), "{bad}");
    }
}

#[test]
fn peering_fails_to_auto_reactivate_until_the_peer_knows_us_then_activates() {
    let state = StateStore::in_memory();
    let ours = key("a");
    let mut b = peer(&[]);
    add(&state, &b.url, "").unwrap();
    fn us<'a>(b: &'a FakePeer, key: &'a ArchiveKey) -> Us<'a> {
        Us {
            fetch: b,
            url: "http://a.example:1",
            key,
        }
    }
    // Step 1 of the seed: B does not know us yet.
    let e = act(&state, &b.url, "pca", &us(&b, &ours), 10, &no_token).unwrap_err();
    assert!(e.to_string().contains("does not know us"), "{e}");
    let r: Remote = state.get(&b.url).unwrap().unwrap();
    assert_eq!(r.status.label(), "Prepared (A)", "{r:?}");
    assert_eq!(r.fingerprint, b.key.fingerprint());
    assert!(known(&state).unwrap().contains(&b.url), "A counts as known");
    // B lists us but has not our key: the handshake is refused.
    b.remotes = vec!["http://a.example:1".to_string()];
    let e = act(&state, &b.url, "check", &us(&b, &ours), 11, &no_token).unwrap_err();
    assert!(e.to_string().contains("handshake was refused"), "{e}");
    // Step 2 of the seed happened on B: it knows us now. A refresh re-activates.
    b.knows.add_bytes(&ours.public_armored()).unwrap();
    let after = refresh(&state, &us(&b, &ours), 12, &no_token).unwrap();
    assert_eq!(after[0].status.label(), "Active (C)");
    assert_eq!(after[0].peer.as_ref().unwrap().load, 0.5);
    assert!(after[0].peer.as_ref().unwrap().builds("bookworm", "amd64"));
    assert!(!after[0].peer.as_ref().unwrap().builds("bookworm", "i386"));
    // Down: auto-reactivate again, with the reason.
    b.url = "http://elsewhere:1".to_string();
    let after = refresh(&state, &us(&b, &ours), 13, &no_token).unwrap();
    assert_eq!(after[0].status.label(), "Prepared (A)");
    assert!(after[0].status.message.starts_with("is down"), "{after:?}");
    let peer = after[0].peer.as_ref().unwrap();
    assert!(!peer.running && peer.load < 0.0, "{peer:?}");
    assert!(!peer.builds("bookworm", "amd64"));
}

#[test]
fn a_stopped_peer_is_down_and_a_deactivated_remote_is_not_checked() {
    let state = StateStore::in_memory();
    let ours = key("a");
    let mut b = peer(&["http://a.example:1"]);
    b.knows.add_bytes(&ours.public_armored()).unwrap();
    add(&state, &b.url, "").unwrap();
    let us = Us {
        fetch: &b,
        url: "http://a.example:1/",
        key: &ours,
    };
    assert!(
        act(&state, &b.url, "pca", &us, 1, &no_token)
            .unwrap()
            .is_active()
    );
    act(&state, &b.url, "deactivate", &us, 2, &no_token).unwrap();
    assert!(refresh(&state, &us, 3, &no_token).unwrap().is_empty());
    assert!(keyring(&state).unwrap().is_empty());
    b.running = false;
    let us = Us {
        fetch: &b,
        url: "http://a.example:1",
        key: &ours,
    };
    let e = act(&state, &b.url, "activate", &us, 4, &no_token).unwrap_err();
    assert!(e.to_string().contains("is down: it is stopped"), "{e}");
}

#[test]
fn handshakes_are_answered_only_for_known_keys() {
    let state = StateStore::in_memory();
    let ours = key("a");
    let theirs = key("b");
    let stranger = key("c");
    let message = |k: &ArchiveKey| k.clearsign(b"mbd handshake\n").unwrap();
    let e = answer_handshake(&state, &ours, &message(&theirs)).unwrap_err();
    assert!(
        e.to_string().contains("not signed by a remote we know"),
        "{e}"
    );
    let mut r = add(&state, "b:1", "").unwrap();
    r.key = String::from_utf8(theirs.public_armored()).unwrap();
    r.fingerprint = theirs.fingerprint();
    r.status = Status::active();
    state.put(&r.url, &r).unwrap();
    let answer = answer_handshake(&state, &ours, &message(&theirs)).unwrap();
    let verified = ours.keyring().verify_cleartext(&answer).unwrap();
    assert!(String::from_utf8_lossy(&verified.body).contains(&theirs.fingerprint()));
    assert!(answer_handshake(&state, &ours, &message(&stranger)).is_err());
    assert!(answer_handshake(&state, &ours, b"plain text").is_err());
}

#[test]
fn wake_runs_the_command_until_the_peer_answers() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("woken");
    let b = peer(&[]);
    let mut r = add(&StateStore::in_memory(), &b.url, "").unwrap();
    assert!(
        wake(&r, &b, std::time::Duration::ZERO, 1).is_ok(),
        "up already"
    );
    r.url = "http://down.example:1".to_string();
    assert!(
        wake(&r, &b, std::time::Duration::ZERO, 1)
            .unwrap_err()
            .to_string()
            .contains("no wake_command")
    );
    r.wake_command = format!("echo x >> {}", marker.display());
    let e = wake(&r, &b, std::time::Duration::ZERO, 3).unwrap_err();
    assert!(
        e.to_string().contains("still down after 3 wake attempts"),
        "{e}"
    );
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "x\nx\nx\n");
}
