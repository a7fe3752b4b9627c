use super::*;
use crate::incoming::EventKind;

fn event(id: &str, kind: EventKind, source: &str, dist: &str) -> Event {
    Event {
        id: id.to_string(),
        time: 0,
        kind,
        file: format!("{source}_1_source.changes"),
        source: source.to_string(),
        version: "1".into(),
        distribution: dist.to_string(),
        reason: String::new(),
        changed_by: String::new(),
        maintainer: String::new(),
    }
}

fn target(url: &str, kinds: &[&str], repositories: &[&str], sources: &[&str]) -> Armed {
    let list = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
    Armed {
        target: Target {
            url: url.to_string(),
            secret_file: "s".into(),
            kinds: list(kinds),
            repositories: list(repositories),
            sources: list(sources),
        },
        secret: b"k".to_vec(),
    }
}

/// A URL nobody listens on.
fn refused_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}/hook", l.local_addr().unwrap())
}

#[test]
fn targets_get_the_events_they_filter_for() {
    let state = StateStore::in_memory();
    let outbox = Outbox::new(
        vec![
            target("http://a/", &[], &[], &[]),
            target("http://b/", &["INSTALLED"], &["test"], &[]),
            target("http://c/", &[], &[], &["hello"]),
        ],
        10,
    );
    outbox
        .enqueue(
            &state,
            &event("1", EventKind::Installed, "hello", "bookworm-test-unstable"),
            5,
        )
        .unwrap();
    outbox
        .enqueue(
            &state,
            &event("2", EventKind::Failed, "other", "bookworm-test-unstable"),
            5,
        )
        .unwrap();
    outbox
        .enqueue(
            &state,
            &event("3", EventKind::Installed, "other", "bookworm-prod-unstable"),
            5,
        )
        .unwrap();
    let mut sent: Vec<(String, String)> = undelivered(&state)
        .unwrap()
        .into_iter()
        .map(|(_, d)| (d.event, d.url))
        .collect();
    sent.sort();
    let expected: Vec<(String, String)> = [
        ("1", "http://a/"),
        ("1", "http://b/"),
        ("1", "http://c/"),
        ("2", "http://a/"),
        ("3", "http://a/"),
    ]
    .iter()
    .map(|(e, u)| (e.to_string(), u.to_string()))
    .collect();
    assert_eq!(sent, expected);
    let (_, d) = &undelivered(&state).unwrap()[0];
    assert_eq!(d.kind, "INSTALLED");
    assert_eq!(d.next_try, Some(5));
    let body: serde_json::Value = serde_json::from_str(&d.body).unwrap();
    assert_eq!(body["source"], "hello");
}

#[test]
fn a_failing_delivery_waits_doubling_and_ends_as_failed() {
    let state = StateStore::in_memory();
    let url = refused_url();
    let outbox = Outbox::new(vec![target(&url, &[], &[], &[])], 10);
    outbox
        .enqueue(&state, &event("1", EventKind::Rejected, "x", "d"), 100)
        .unwrap();
    // Not due before its time.
    assert_eq!(outbox.deliver_due(&state, 99).unwrap(), Some(1));
    let mut now = 100;
    let mut waits = Vec::new();
    while let Some(wait) = outbox.deliver_due(&state, now).unwrap() {
        waits.push(wait);
        now += wait;
    }
    assert_eq!(
        waits,
        [10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600, 3600]
    );
    let (_, d) = &undelivered(&state).unwrap()[0];
    assert_eq!(d.attempts, MAX_ATTEMPTS);
    assert_eq!(d.next_try, None);
    assert!(d.last_error.contains("onnect"), "{}", d.last_error);
}

#[test]
fn targets_need_a_key_and_an_http_url() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("key"), "  secret\n").unwrap();
    std::fs::write(dir.path().join("empty"), "\n").unwrap();
    let t = |url: &str, file: &str| Target {
        url: url.into(),
        secret_file: file.into(),
        kinds: vec![],
        repositories: vec![],
        sources: vec![],
    };
    let o = Outbox::load(dir.path(), &[t("http://h/", "key")], 10).unwrap();
    assert_eq!(o.targets[0].secret, b"secret");
    for (target, says) in [
        (
            t("ftp://h/", "key"),
            "ftp://h/: the URL is not http:// or https://",
        ),
        (t("http://h/", "missing"), "secret_file"),
        (t("http://h/", "empty"), "is empty"),
    ] {
        let e = Outbox::load(dir.path(), &[target], 10)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains(says), "{e}");
    }
}
