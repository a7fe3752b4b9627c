use super::*;
use crate::users::{Level, Subscription, User};

fn event(kind: EventKind, source: &str, dist: &str) -> Event {
    Event {
        id: "000001".into(),
        time: 0,
        kind,
        file: format!("{source}_1_amd64.changes"),
        source: source.into(),
        version: "1.0-1".into(),
        distribution: dist.into(),
        reason: "installed: amd64".into(),
        changed_by: "Jane Dev <jane@example.org>".into(),
        maintainer: "Team <team@lists.example.org>".into(),
    }
}

fn mailer(dir: &Path, s: MailSettings) -> Mailer {
    Mailer::load(
        dir,
        &s,
        "host1",
        "http://mbd.example.org:8066",
        "mbd.example.org",
    )
    .unwrap()
}

fn user(state: &StateStore, name: &str, email: &str, subs: &[(&str, &str)]) {
    let u = User {
        name: name.into(),
        level: Level::Login,
        password: String::new(),
        key: None,
        key_fingerprint: None,
        uploader: Default::default(),
        may_upload_to: Vec::new(),
        email: email.into(),
    };
    state.put(name, &u).unwrap();
    let list: Vec<Subscription> = subs
        .iter()
        .map(|(s, d)| Subscription {
            source: s.to_string(),
            distribution: d.to_string(),
        })
        .collect();
    state.put(name, &list).unwrap();
}

fn settings() -> MailSettings {
    MailSettings {
        smtp: "smtp://127.0.0.1:25".into(),
        notify: vec!["admin@example.org".into()],
        allow_emails_to: vec![".*@example\\.org".into()],
        repositories: [(
            "test".to_string(),
            RepositoryMail {
                notify: vec!["qa@example.org".into(), "admin@example.org".into()],
                changed_by: true,
                maintainer: true,
            },
        )]
        .into(),
        ..Default::default()
    }
}

#[test]
fn recipients_each_once_with_their_reason_automatic_ones_filtered() {
    let dir = tempfile::tempdir().unwrap();
    let state = StateStore::in_memory();
    user(&state, "ann", "ann@example.org", &[("hello", "")]);
    user(
        &state,
        "bob",
        "bob@example.com",
        &[("", "bookworm-test-unstable")],
    );
    user(&state, "cy", "cy@example.org", &[("other", "")]);
    user(&state, "dee", "", &[("", "")]);
    // A subscriber who is also on a list is mailed once, for the list.
    user(&state, "qa", "qa@example.org", &[("", "")]);
    let m = mailer(dir.path(), settings());
    let got = m
        .recipients(
            &state,
            &event(EventKind::Installed, "hello", "bookworm-test-unstable"),
        )
        .unwrap();
    let want = [
        ("admin@example.org", "you are on the daemon's notify list"),
        ("qa@example.org", "you are on repository test's notify list"),
        ("jane@example.org", "you are the upload's Changed-By"),
        (
            "ann@example.org",
            "you subscribed to hello in bookworm-test-unstable",
        ),
        (
            "bob@example.com",
            "you subscribed to hello in bookworm-test-unstable",
        ),
    ];
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    // The maintainer's list is not in allow_emails_to (lists.example.org).
    assert_eq!(got, want);
    // A rejection names no automatic address.
    let got = m
        .recipients(
            &state,
            &event(EventKind::Rejected, "hello", "bookworm-test-unstable"),
        )
        .unwrap();
    assert!(!got.iter().any(|(a, _)| a == "jane@example.org"), "{got:?}");
    // Another repository: no repository list, no automatic addresses.
    let got = m
        .recipients(
            &state,
            &event(EventKind::Installed, "hello", "bookworm-prod-unstable"),
        )
        .unwrap();
    let addresses: Vec<&str> = got.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(
        addresses,
        ["admin@example.org", "ann@example.org", "qa@example.org"]
    );
}

#[test]
fn a_mail_names_the_event_its_logs_and_why_it_was_sent() {
    let dir = tempfile::tempdir().unwrap();
    let m = mailer(dir.path(), settings());
    let mut e = event(EventKind::Installed, "hello", "bookworm-test-unstable");
    e.reason = "installed\r\nBcc: evil@example.com".into();
    let logs = [("amd64".to_string(), "/logs/hello_1.0-1/amd64".to_string())];
    let (subject, message) = m.compose(
        &e,
        &logs,
        "ann@example.org",
        "you subscribed",
        1_796_515_200,
    );
    assert_eq!(
        subject,
        "[mbd-host1] INSTALLED (bookworm-test-unstable): hello 1.0-1: installed  Bcc: evil@example.com"
    );
    let (headers, body) = message.split_once("\n\n").unwrap();
    assert!(headers.starts_with(
        "From: mbd@mbd.example.org\nTo: ann@example.org\nSubject: [mbd-host1] INSTALLED"
    ));
    assert!(
        headers.contains("\nDate: Sun, 06 Dec 2026 00:00:00 +0000\n"),
        "{headers}"
    );
    assert!(!headers.contains("\nBcc:"), "{headers}");
    assert!(
        body.starts_with("INSTALLED (bookworm-test-unstable): hello 1.0-1\n====="),
        "{body}"
    );
    assert!(
        body.contains("  amd64: http://mbd.example.org:8066/logs/hello_1.0-1/amd64\n"),
        "{body}"
    );
    assert!(
        body.ends_with("You get this mail because you subscribed.\n"),
        "{body}"
    );
}

#[test]
fn bad_settings_are_named() {
    let dir = tempfile::tempdir().unwrap();
    for (change, says) in [
        (
            MailSettings {
                smtp: "imap://h".into(),
                ..settings()
            },
            "smtp: 'imap://h'",
        ),
        (
            MailSettings {
                allow_emails_to: vec!["(".into()],
                ..settings()
            },
            "allow_emails_to '('",
        ),
        (
            MailSettings {
                notify: vec!["root".into()],
                ..settings()
            },
            "'root' is not an address",
        ),
        (
            MailSettings {
                user: "u".into(),
                password_file: "nope".into(),
                ..settings()
            },
            "password_file",
        ),
    ] {
        let e = Mailer::load(dir.path(), &change, "i", "u", "h.example.org")
            .err()
            .unwrap()
            .to_string();
        assert!(e.starts_with("[mail] ") && e.contains(says), "{e}");
    }
    // No SMTP server: nothing is queued.
    let state = StateStore::in_memory();
    let m = mailer(dir.path(), MailSettings::default());
    m.enqueue(&state, &event(EventKind::Failed, "x", "a-test-b"), &[], 0)
        .unwrap();
    assert!(unsent(&state).unwrap().is_empty());
}

#[test]
fn a_failing_server_is_tried_a_bounded_number_of_times() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let s = MailSettings {
        smtp: format!("smtp://127.0.0.1:{port}"),
        retry_seconds: 5,
        ..settings()
    };
    let m = mailer(dir.path(), s);
    let state = StateStore::in_memory();
    m.enqueue(&state, &event(EventKind::Failed, "x", "a-test-b"), &[], 100)
        .unwrap();
    let mut now = 100;
    let mut waits = Vec::new();
    while let Some(w) = m.deliver_due(&state, now).unwrap() {
        waits.push(w);
        now += w;
    }
    assert_eq!(waits, [5, 10, 20, 40]);
    let left = unsent(&state).unwrap();
    // The daemon's list, the repository's ("test") and Changed-By.
    assert_eq!(left.len(), 3);
    assert!(
        left.iter()
            .all(|(_, m)| m.attempts == MAX_ATTEMPTS && m.next_try.is_none())
    );
    assert!(
        left[0].1.last_error.starts_with("connecting to 127.0.0.1:"),
        "{}",
        left[0].1.last_error
    );
}
