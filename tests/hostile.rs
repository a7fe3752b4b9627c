//! Hostile input against the real daemon on loopback: what an anonymous client can send must
//! neither end the process, nor grow it without bound, nor touch what is not its own, nor
//! be served back as a page that runs on our origin.

use crate::daemon::{
    Daemon, assert_rejected, header, names_in, put_upload, setup_home, setup_with_packages,
    wait_for_events,
};
use crate::util::{fixtures, pkg};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The daemon's peak resident memory so far (VmHWM), in KiB.
fn peak_rss_kib(d: &Daemon) -> u64 {
    let pid = d.pid();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// A PUT of `len` bytes produced by `byte(i)`, streamed; the status line's code and the body.
fn put_streamed(d: &Daemon, name: &str, len: u64, headers: &str, byte: u8) -> (u16, String) {
    let addr = d.url.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let head =
        format!("PUT /incoming/{name} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{headers}\r\n");
    s.write_all(head.as_bytes()).unwrap();
    let chunk = vec![byte; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        if s.write_all(&chunk[..n]).is_err() {
            // Refused early: the daemon answered and closed.
            break;
        }
        left -= n as u64;
    }
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    let code = answer
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, answer)
}

/// An HTML file planted in the pool (as a `.dsc` could list one) is served as an opaque
/// download with `nosniff` and a sandbox, on the connection's own path and through the
/// router; the web UI's pages carry a content policy that allows their one inline style
/// (by its hash), scripts only from the daemon (no inline script) and nothing else, and
/// refuse framing.
#[test]
fn pool_files_are_never_html_and_pages_carry_a_content_policy() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    setup_with_packages(&home);
    let d = Daemon::start(&home);
    let evil = "repositories/test/pool/main/m/mbd-hello/evil.html";
    std::fs::write(
        home.join(evil),
        "<html><script>fetch('/api/user_add')</script></html>",
    )
    .unwrap();
    let check = |head: &str| {
        assert_eq!(
            header(head, "content-type"),
            Some("application/octet-stream"),
            "{head}"
        );
        assert_eq!(header(head, "x-content-type-options"), Some("nosniff"));
        assert!(
            header(head, "content-security-policy").is_some_and(|p| p.contains("sandbox")),
            "{head}"
        );
    };
    let (code, head, _) = d.get(&format!("/{evil}"), &[]);
    assert_eq!(code, 200);
    check(&head);
    // Through the router: an API call first hands the connection over.
    let addr = d.url.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(
        format!("GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /{evil} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .unwrap();
    let mut both = String::new();
    s.read_to_string(&mut both).unwrap();
    let second = both.rsplit("HTTP/1.1 ").next().unwrap();
    assert!(second.starts_with("200"), "{both}");
    check(second);

    let (code, head, body) = d.get("/", &[]);
    assert_eq!(code, 200, "{head}");
    let page = String::from_utf8(body).unwrap();
    let policy = header(&head, "content-security-policy")
        .unwrap()
        .to_string();
    let style = page
        .split_once("<style>")
        .and_then(|(_, r)| r.split_once("</style>"))
        .unwrap()
        .0;
    use base64::Engine as _;
    use sha2::Digest;
    let hash = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(style));
    assert!(
        policy.contains(&format!("style-src 'sha256-{hash}'")),
        "the policy does not allow the page's own style: {policy}"
    );
    // Scripts only from the daemon itself (the live-update script), never inline.
    assert!(policy.contains("default-src 'none'") && policy.contains("script-src 'self';"));
    assert!(
        !policy.contains("unsafe-inline") && !policy.contains("unsafe-eval"),
        "{policy}"
    );
    assert!(
        page.match_indices("<script")
            .all(|(i, _)| page[i..].starts_with("<script src=\"/static/")),
        "an inline script in the page: {page}"
    );
    assert_eq!(header(&head, "x-frame-options"), Some("DENY"));
    assert_eq!(header(&head, "x-content-type-options"), Some("nosniff"));
}

/// The digests of `old` in a `.changes` text replaced by those of `new` (its `.dsc` edited).
fn relisted(changes: &str, old: &[u8], new: &[u8]) -> String {
    let (o, n) = (
        mbd::checksums::Digests::of(old),
        mbd::checksums::Digests::of(new),
    );
    changes
        .replace(
            &format!("{} {}", o.sha1, o.size),
            &format!("{} {}", n.sha1, n.size),
        )
        .replace(
            &format!("{} {}", o.sha256, o.size),
            &format!("{} {}", n.sha256, n.size),
        )
        .replace(
            &format!("{} {}", o.md5, o.size),
            &format!("{} {}", n.md5, n.size),
        )
}

/// A source upload of mbd-greeter with its `.changes` text changed by `edit` and its `.dsc`
/// by `edit_dsc` (the `.changes` then lists the edited `.dsc`'s digests), in `dir`.
fn greeter_upload(
    dir: &Path,
    edit: impl Fn(&str) -> String,
    edit_dsc: impl Fn(&str) -> String,
) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    let base = "mbd-greeter_1.0~test12+1";
    let dsc = std::fs::read_to_string(pkg(&format!("{base}.dsc"))).unwrap();
    let new_dsc = edit_dsc(&dsc);
    let changes = std::fs::read_to_string(pkg(&format!("{base}_source.changes"))).unwrap();
    let changes = edit(&relisted(&changes, dsc.as_bytes(), new_dsc.as_bytes()));
    let files = [
        (format!("{base}.dsc"), new_dsc.into_bytes()),
        (
            format!("{base}.tar.xz"),
            std::fs::read(pkg(&format!("{base}.tar.xz"))).unwrap(),
        ),
        (
            format!("{base}_source.buildinfo"),
            std::fs::read(pkg(&format!("{base}_source.buildinfo"))).unwrap(),
        ),
        (format!("{base}_source.changes"), changes.into_bytes()),
    ];
    files
        .iter()
        .map(|(name, data)| {
            let p = dir.join(name);
            std::fs::write(&p, data).unwrap();
            p
        })
        .collect()
}

/// Waits until no `.changes` waits in incoming.
fn wait_decided(home: &Path) {
    let started = Instant::now();
    while names_in(&home.join("var/incoming"))
        .iter()
        .any(|n| n.ends_with(".changes"))
    {
        assert!(started.elapsed() < Duration::from_secs(20));
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// An anonymous garbage `.changes` that names another upload's files removes only itself;
/// the other upload then goes through. A `.dsc` of another version, and a binary-only
/// upload that carries a source, are rejected saying so.
#[test]
fn untrusted_changes_touch_no_other_files_and_sources_are_cross_checked() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    setup_home(&home);
    let d = Daemon::start(&home);
    let hello = crate::daemon::source_upload();
    let (changes, others): (Vec<PathBuf>, Vec<PathBuf>) = hello
        .into_iter()
        .partition(|f| f.to_string_lossy().ends_with(".changes"));
    put_upload(&d, &others);
    let listed: String = others
        .iter()
        .map(|f| {
            format!(
                " 00000000000000000000000000000000 1 x x {}\n",
                f.file_name().unwrap().to_string_lossy()
            )
        })
        .collect();
    let garbage = dir.path().join("evil_1_source.changes");
    std::fs::write(&garbage, format!("Source: evil\nFiles:\n{listed}")).unwrap();
    put_upload(&d, std::slice::from_ref(&garbage));
    let events = wait_for_events(&d, 1);
    assert_rejected(&events[0], "evil_1_source.changes");
    wait_decided(&home);
    let waiting = names_in(&home.join("var/incoming"));
    for f in &others {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            waiting.contains(&name),
            "{name} was removed by someone else's .changes: {waiting:?}"
        );
    }
    put_upload(&d, &changes);
    let events = wait_for_events(&d, 2);
    assert_eq!(events[1]["kind"], "ACCEPTED", "{}", events[1]);

    // A .dsc for another version than the .changes says.
    let files = greeter_upload(
        &dir.path().join("version"),
        |c| c.to_string(),
        |dsc| dsc.replace("Version: 1.0~test12+1", "Version: 1.0~test12+2"),
    );
    put_upload(&d, &files);
    let events = wait_for_events(&d, 3);
    assert_rejected(
        &events[2],
        "mbd-greeter_1.0~test12+1.dsc is mbd-greeter 1.0~test12+2, the .changes is for mbd-greeter 1.0~test12+1",
    );
    wait_decided(&home);

    // A binary-only upload may not carry a source, even where binary uploads are taken.
    d.api_ok(&[
        "set_repository",
        "test",
        "--allow-unauthenticated-uploads",
        "--allow-binary-uploads",
    ]);
    let files = greeter_upload(
        &dir.path().join("binary"),
        |c| c.replace("Architecture: source", "Architecture: all"),
        |dsc| dsc.to_string(),
    );
    put_upload(&d, &files);
    let events = wait_for_events(&d, 4);
    assert_rejected(
        &events[3],
        "lists mbd-greeter_1.0~test12+1.dsc but its Architecture has no 'source'",
    );
    let ls = crate::daemon::json(&d.api_ok(&["ls", "mbd-greeter"]));
    assert_eq!(
        ls,
        serde_json::json!({}),
        "a rejected upload changed the store"
    );
}

/// A control file over its limit is refused before it is stored (413, naming the limit),
/// announced or streamed; a large file uploaded again under its name is compared a block at
/// a time: the daemon's peak memory does not grow by the file's size.
#[test]
fn oversized_control_files_and_repeated_uploads_keep_the_daemon_small() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    setup_home(&home);
    let d = Daemon::start(&home);
    let big = 2 << 20;
    let (code, answer) = put_streamed(
        &d,
        "x_1_source.changes",
        big,
        &format!("Content-Length: {big}\r\n"),
        b'a',
    );
    assert_eq!(code, 413, "{answer}");
    assert!(answer.contains("x_1_source.changes") && answer.contains("at most 1048576 bytes"));
    let (code, answer) = put_streamed(&d, "x_1.dsc", big, "Transfer-Encoding: chunked\r\n", b'a');
    // Chunked: the daemon reads chunk sizes from the body; ours is not chunked framing, so
    // either the framing or the limit refuses it, never a stored file.
    assert!(code == 413 || code == 400, "{answer}");
    assert!(names_in(&home.join("var/incoming")).is_empty());

    let before = peak_rss_kib(&d);
    let len: u64 = 400 << 20;
    let header = format!("Content-Length: {len}\r\n");
    assert_eq!(
        put_streamed(&d, "big_1.0.orig.tar.gz", len, &header, 7).0,
        201
    );
    assert_eq!(
        put_streamed(&d, "big_1.0.orig.tar.gz", len, &header, 7).0,
        201
    );
    // Other content: a file no upload claims yet (an interrupted transfer) is replaced.
    assert_eq!(
        put_streamed(&d, "big_1.0.orig.tar.gz", len, &header, 8).0,
        201
    );
    let mut first = [0u8; 4];
    std::io::Read::read_exact(
        &mut std::fs::File::open(home.join("var/incoming/big_1.0.orig.tar.gz")).unwrap(),
        &mut first,
    )
    .unwrap();
    assert_eq!(first, [8; 4]);
    let after = peak_rss_kib(&d);
    assert!(
        after < before + 64 * 1024,
        "peak RSS grew from {before} KiB to {after} KiB for 400 MiB uploads"
    );
    println!("peak RSS: {before} KiB before, {after} KiB after three 400 MiB uploads");
}

/// FTP clients that vanish without reading their replies (3,000 NOOPs, then close) end
/// their own session, not the daemon.
#[test]
fn ftp_clients_that_vanish_do_not_end_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    setup_home(&home);
    let d = Daemon::start(&home);
    let conf = d.api_ok(&["dput_conf"]);
    let ftp = crate::daemon::ftp_address(&conf);
    for _ in 0..3 {
        let mut s = std::net::TcpStream::connect(&ftp).unwrap();
        let mut banner = [0u8; 64];
        let _ = s.read(&mut banner).unwrap();
        let noops = "NOOP\r\n".repeat(3000);
        let _ = s.write_all(noops.as_bytes());
        drop(s);
    }
    std::thread::sleep(Duration::from_millis(500));
    let (code, _, _) = d.get("/health", &[]);
    assert_eq!(code, 200, "{}", d.log());
    // And it still serves: an anonymous login works, active mode (`PORT`) is refused.
    let s = std::net::TcpStream::connect(&ftp).unwrap();
    let mut r = std::io::BufReader::new(s.try_clone().unwrap());
    let mut w = s;
    let mut reply = |send: &str| {
        if !send.is_empty() {
            w.write_all(format!("{send}\r\n").as_bytes()).unwrap();
        }
        loop {
            let mut line = String::new();
            std::io::BufRead::read_line(&mut r, &mut line).unwrap();
            // The last line of a reply is "NNN text" (a continued one is "NNN-text").
            if line.len() >= 4 && line.as_bytes()[3] == b' ' {
                return line;
            }
            assert!(!line.is_empty(), "FTP closed the connection");
        }
    };
    assert!(reply("").starts_with("220"), "FTP no longer answers");
    assert!(reply("USER anonymous").starts_with("331"));
    assert!(reply("PASS x").starts_with("230"));
    let port = reply("PORT 127,0,0,1,200,10");
    assert!(port.starts_with('5'), "active mode answered: {port}");
}

/// `mbd pub-key` reads the key file, not the store: it works while the daemon owns the home,
/// and gives the same key as before the daemon started.
#[test]
fn pub_key_works_while_the_daemon_runs() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    setup_home(&home);
    let before = crate::util::mbd_ok(&home, &["pub-key"]);
    assert!(
        before.starts_with("-----BEGIN PGP PUBLIC KEY BLOCK-----"),
        "{before}"
    );
    let _d = Daemon::start(&home);
    assert_eq!(crate::util::mbd_ok(&home, &["pub-key"]), before);
}

/// The token secret in `token_create`'s answer (its longest word of 32 or more letters and
/// digits).
fn secret_in(out: &str) -> String {
    out.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| w.len() >= 32)
        .max_by_key(|w| w.len())
        .unwrap_or_else(|| panic!("no secret in {out}"))
        .to_string()
}

/// The mode bits of a path.
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// A first start generates the administrator's password into a 0600 file that the banner
/// names (the password itself is nowhere else); the home and what holds secrets are closed
/// to others; after the password, a token, a query-string password and an upload naming a
/// distribution in terminal escapes, no log holds a secret or a raw control character.
#[test]
fn secrets_stay_out_of_logs_and_the_home_is_closed_to_others() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let d = Daemon::start_env(&home, &[("MBD_ADMIN_PASSWORD", "")]);
    let file = home.join("etc/admin-password");
    let password = std::fs::read_to_string(&file).unwrap().trim().to_string();
    assert!(password.len() >= 16, "{password}");
    let banner = d.banner();
    assert!(
        banner.contains(&file.display().to_string()) && !banner.contains(&password),
        "{banner}"
    );
    let (ok, out) = d.api_as(
        Some(("admin", &password)),
        &["token_create", "--label", "ci"],
    );
    assert!(ok, "{out}");
    let token = secret_in(&out);
    // A password in a POST's query string.
    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("admin:{password}"));
    let (code, head, _) = d.raw(&format!(
        "POST /api/user_add?name=eve&password=hunter2-in-the-query HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {basic}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    ));
    assert!(code < 500, "{head}");
    // An upload whose distribution name is terminal escapes.
    let unsigned = fixtures().join("broken/unsigned");
    let mut files = crate::util::files_ending(&unsigned, "");
    let changes = files
        .iter()
        .position(|f| f.to_string_lossy().ends_with(".changes"))
        .unwrap();
    let text = std::fs::read_to_string(&files[changes]).unwrap();
    let evil = dir.path().join(files[changes].file_name().unwrap());
    std::fs::write(
        &evil,
        text.replace(
            "Distribution: bookworm-test-unstable",
            "Distribution: \u{1b}[31mevil\u{1b}[0m\r",
        ),
    )
    .unwrap();
    files[changes] = evil;
    put_upload(&d, &files);
    wait_for_events(&d, 1);
    let started = Instant::now();
    let logs = |name: &str| std::fs::read(home.join("var/log").join(name)).unwrap();
    // Both logs are written every 50 ms by their own threads.
    while !String::from_utf8_lossy(&logs("access.log")).contains("/incoming/")
        || !String::from_utf8_lossy(&logs("daemon.log")).contains("evil")
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the upload is not in the logs"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for name in ["daemon.log", "access.log"] {
        let text = logs(name);
        let shown = String::from_utf8_lossy(&text);
        for secret in [&password, &token, "hunter2-in-the-query", "PRIVATE KEY"] {
            assert!(!shown.contains(secret), "{name} holds '{secret}'");
        }
        assert!(
            !text.iter().any(|&b| b == 0x1b || b == b'\r'),
            "{name} holds a raw control character"
        );
        assert_eq!(mode(&home.join("var/log").join(name)), 0o640, "{name}");
    }
    assert!(
        String::from_utf8_lossy(&logs("daemon.log")).contains("\\x1b[31mevil"),
        "the escaped name is not in daemon.log"
    );
    for (path, want) in [
        ("", 0o750),
        ("etc", 0o750),
        ("keys", 0o700),
        ("keys/archive.key", 0o600),
        ("mbd.redb", 0o600),
        ("state.redb", 0o600),
        ("etc/api-token", 0o600),
        ("etc/admin-password", 0o600),
    ] {
        assert_eq!(mode(&home.join(path)), want, "{path}");
    }
}

/// The value of the session cookie a `Set-Cookie` header in `head` sets.
fn session_from(head: &str) -> String {
    head.lines()
        .find_map(|l| l.strip_prefix("set-cookie: mbd_session="))
        .and_then(|v| v.split(';').next())
        .unwrap_or_else(|| panic!("no session cookie in {head}"))
        .to_string()
}

/// A state change with the session cookie is refused unless it comes from our own origin
/// (`Origin`, or `Sec-Fetch-Site: same-origin`); scripts with an Authorization header are
/// not concerned. A new password ends the user's web sessions and revokes their tokens.
#[test]
fn cookie_state_changes_need_our_origin_and_a_new_password_ends_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    setup_home(&home);
    let d = Daemon::start(&home);
    d.api_ok(&[
        "user_add",
        "dev",
        "--level",
        "staff",
        "--password",
        "dev-pw-1",
    ]);
    let body = "user=dev&password=dev-pw-1";
    let (code, head, _) = d.raw(&format!(
        "POST /ui/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ));
    assert_eq!(code, 303, "{head}");
    let cookie = session_from(&head);
    let (ok, out) = d.api_as(
        Some(("dev", "dev-pw-1")),
        &["token_create", "--label", "ci"],
    );
    assert!(ok, "{out}");
    let token = secret_in(&out);
    let post = |extra: &str| {
        d.raw(&format!(
            "POST /api/token_create?label=x HTTP/1.1\r\nHost: x\r\nCookie: mbd_session={cookie}\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n"
        ))
        .0
    };
    assert_eq!(post("Origin: http://evil.example\r\n"), 403);
    assert_eq!(post("Sec-Fetch-Site: cross-site\r\n"), 403);
    assert_eq!(post(""), 403, "no Origin at all");
    assert_eq!(post("Origin: http://x\r\n"), 200);
    assert_eq!(post("Sec-Fetch-Site: same-origin\r\n"), 200);
    let get = |auth: &str| {
        d.raw(&format!(
            "GET /api/status HTTP/1.1\r\nHost: x\r\n{auth}\r\nConnection: close\r\n\r\n"
        ))
        .0
    };
    assert_eq!(get(&format!("Cookie: mbd_session={cookie}")), 200);
    assert_eq!(get(&format!("Authorization: Bearer {token}")), 200);
    // A new password (set by an admin here) ends both.
    d.api_ok(&[
        "user_add",
        "dev",
        "--level",
        "staff",
        "--password",
        "dev-pw-2",
    ]);
    assert_eq!(get(&format!("Cookie: mbd_session={cookie}")), 401);
    assert_eq!(get(&format!("Authorization: Bearer {token}")), 401);
    let (ok, _) = d.api_as(Some(("dev", "dev-pw-2")), &["status"]);
    assert!(ok);
}

/// Slowloris from one address: 1,100 connections that never finish their request head.
/// The daemon keeps at most its per-client share of them open (the rest are closed at
/// once), and a request from another address is answered meanwhile.
#[test]
fn half_open_connections_from_one_client_leave_room_for_others() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    setup_home(&home);
    let d = Daemon::start(&home);
    let (host, port) = d
        .url
        .trim_start_matches("http://")
        .rsplit_once(':')
        .unwrap();
    let closed = half_open_flood(&d, host, port, false);
    assert!(
        closed >= 1100 - 128,
        "only {closed} of 1,100 half-open connections were closed"
    );
}

/// The same over HTTPS: connections are counted from their TCP accept (before the
/// handshake), and one whose request head does not come in 30 s is closed.
#[test]
fn half_open_https_connections_are_bounded_and_time_out() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    setup_home(&home);
    std::fs::create_dir_all(home.join("etc")).unwrap();
    let (ok, out) = crate::util::run(
        std::process::Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "30"])
            .args(["-subj", "/CN=127.0.0.1"])
            .arg("-keyout")
            .arg(home.join("etc/tls.key"))
            .arg("-out")
            .arg(home.join("etc/tls.crt")),
    );
    assert!(ok, "openssl: {out}");
    std::fs::write(
        home.join("etc/mbd.toml"),
        "http_endpoints = [\"127.0.0.1:0\"]\nhttps_endpoints = [\"127.0.0.1:0\"]\nftp_endpoints = []\n\
         tls_certificate = \"etc/tls.crt\"\ntls_key = \"etc/tls.key\"\nlog_level = \"info\"\nbuild_slots = 1\n",
    )
    .unwrap();
    let d = Daemon::start(&home);
    let conf = d.api_ok(&["dput_conf"]);
    let https = conf
        .split("[mbd-")
        .find(|s| s.contains("method   = https"))
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("fqdn     = ")))
        .unwrap_or_else(|| panic!("no https in {conf}"))
        .to_string();
    let (host, port) = https.rsplit_once(':').unwrap();
    let closed = half_open_flood(&d, host, port, true);
    // The 128 admitted ones are closed too, once their head is 30 s late.
    assert_eq!(closed, 1100, "{closed} of 1,100 closed after 31 s");
}

/// Opens 1,100 connections from 127.0.0.2 that each send half a request head (over TLS:
/// after the handshake, where one is granted), asks `/health` from 127.0.0.1 meanwhile (it
/// must answer at once), and returns how many of the 1,100 the daemon has closed: after
/// 1.5 s, or over TLS after 31 s.
fn half_open_flood(d: &Daemon, host: &str, port: &str, tls: bool) -> usize {
    let script = format!(
        r#"
import socket, ssl, sys, time
tls = {tls}
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
held = []
refused = 0
for _ in range(1100):
    s = socket.create_connection(("{host}", {port}), source_address=("127.0.0.2", 0))
    try:
        if tls:
            s.settimeout(5)
            s = ctx.wrap_socket(s)
        s.sendall(b"GET /repositories/ HTTP/1.1\r\nHost: x\r\n")
        held.append(s)
    except (OSError, ssl.SSLError):
        refused += 1
print("asking", flush=True)
sys.stdin.readline()
time.sleep(31 if tls else 1.5)
closed = refused
for s in held:
    s.setblocking(False)
    try:
        if s.recv(1) == b"":
            closed += 1
    except (BlockingIOError, ssl.SSLWantReadError):
        pass
    except (OSError, ssl.SSLError):
        closed += 1
print("closed", closed, flush=True)
"#,
        tls = if tls { "True" } else { "False" }
    );
    let mut attacker = std::process::Command::new("/usr/bin/python3")
        .args(["-c", &script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(attacker.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    assert_eq!(line.trim(), "asking");
    // Every connection is still open on the attacker's side: ask from another address.
    let asked = Instant::now();
    let (code, _, _) = d.get("/health", &[]);
    let took = asked.elapsed();
    attacker.stdin.take().unwrap().write_all(b"go\n").unwrap();
    line.clear();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    let _ = attacker.wait();
    assert_eq!(code, 200);
    assert!(
        took < Duration::from_secs(2),
        "a normal request took {took:?}"
    );
    line.trim()
        .strip_prefix("closed ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("attacker said: {line}"))
}

/// Uploads without a login are taken only from `anonymous_uploads_from` (loopback by
/// default): here narrowed to 127.0.0.1, a PUT and an FTP login from 127.0.0.2 are refused
/// naming the setting, and 127.0.0.1 still uploads. The banner names the setting.
#[test]
fn anonymous_uploads_come_only_from_the_networks_the_settings_name() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    setup_home(&home);
    std::fs::create_dir_all(home.join("etc")).unwrap();
    std::fs::write(
        home.join("etc/mbd.toml"),
        "http_endpoints = [\"127.0.0.1:0\"]\nlog_level = \"info\"\nbuild_slots = 1\nanonymous_uploads_from = [\"127.0.0.1/32\"]\n",
    )
    .unwrap();
    let d = Daemon::start(&home);
    assert!(
        d.banner().contains("taken from 127.0.0.1/32 only"),
        "{}",
        d.banner()
    );
    let conf = d.api_ok(&["dput_conf"]);
    let ftp = crate::daemon::ftp_address(&conf);
    let (host, port) = d
        .url
        .trim_start_matches("http://")
        .rsplit_once(':')
        .unwrap();
    let (fhost, fport) = ftp.rsplit_once(':').unwrap();
    let script = format!(
        r#"
import ftplib, socket
def put(source):
    s = socket.create_connection(("{host}", {port}), source_address=(source, 0))
    s.sendall(b"PUT /incoming/x_1.dsc HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx")
    answer = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        answer += chunk
    return answer.decode()
far = put("127.0.0.2")
print("far", far.split(" ")[1], "anonymous_uploads_from" in far)
print("near", put("127.0.0.1").split(" ")[1])
f = ftplib.FTP(source_address=("127.0.0.2", 0))
f.connect("{fhost}", {fport}, timeout=20)
try:
    f.login()
    print("ftp far allowed")
except ftplib.error_perm as e:
    print("ftp far refused", str(e).split()[0])
"#
    );
    let (ok, out) =
        crate::util::run(std::process::Command::new("/usr/bin/python3").args(["-c", &script]));
    assert!(ok, "{out}");
    assert!(out.contains("far 403 True"), "{out}");
    assert!(out.contains("near 201"), "{out}");
    assert!(out.contains("ftp far refused 530"), "{out}");
    assert_eq!(names_in(&home.join("var/incoming")), ["x_1.dsc"]);
}

/// On a repository that wants signatures, a correctly signed `.changes` whose armor gpg
/// would refuse (a wrong CRC-24, text after the signature) is rejected saying so; the
/// untouched one is accepted.
#[test]
fn signed_uploads_with_broken_armor_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    setup_home(&home);
    let d = Daemon::start(&home);
    crate::daemon::require_signed_uploads(&d);
    let upload = crate::daemon::source_upload();
    let changes = upload
        .iter()
        .find(|f| f.to_string_lossy().ends_with(".changes"))
        .unwrap()
        .clone();
    let good = std::fs::read_to_string(&changes).unwrap();
    let crc = good
        .lines()
        .find(|l| l.starts_with('=') && l.len() == 5)
        .unwrap()
        .to_string();
    let flipped = if crc == "=AAAA" { "=AAAB" } else { "=AAAA" };
    let cases = [
        (
            good.replace(&crc, flipped),
            "the armor checksum does not match",
        ),
        (
            format!("{good}Distribution: elsewhere\n"),
            "text after the signature block",
        ),
    ];
    for (i, (text, why)) in cases.iter().enumerate() {
        let work = dir.path().join(format!("case{i}"));
        std::fs::create_dir_all(&work).unwrap();
        let files: Vec<PathBuf> = upload
            .iter()
            .map(|f| {
                let to = work.join(f.file_name().unwrap());
                if *f == changes {
                    std::fs::write(&to, text).unwrap();
                } else {
                    std::fs::copy(f, &to).unwrap();
                }
                to
            })
            .collect();
        put_upload(&d, &files);
        let events = wait_for_events(&d, i + 1);
        assert_rejected(&events[i], why);
        wait_decided(&home);
    }
    put_upload(&d, &upload);
    let events = wait_for_events(&d, 3);
    assert_eq!(events[2]["kind"], "ACCEPTED", "{}", events[2]);
}

/// Calls that grow the store are checked and bounded: a subscription's names (no 32 KiB
/// values), at most 100 subscriptions and 100 tokens per user, token labels of 200 characters.
#[test]
fn store_growing_calls_are_checked_and_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    setup_home(&home);
    let d = Daemon::start(&home);
    use base64::Engine as _;
    let local = std::fs::read_to_string(home.join("etc/api-token")).unwrap();
    let basic = base64::engine::general_purpose::STANDARD.encode(local.trim());
    let call = |query: &str| {
        let (code, _, body) = d.raw(&format!(
            "POST /api/{query} HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {basic}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        ));
        (code, String::from_utf8_lossy(&body).into_owned())
    };
    let huge = "a".repeat(32 * 1024);
    let (code, body) = call(&format!("subscribe?source={huge}"));
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("is not a name"), "{body}");
    for i in 0..100 {
        assert_eq!(call(&format!("subscribe?source=pkg-{i}")).0, 200);
    }
    let (code, body) = call("subscribe?source=one-more");
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("100 subscriptions"), "{body}");
    let (code, body) = call(&format!("token_create?label={}", "l".repeat(201)));
    assert_eq!(code, 400, "{body}");
    // The local admin token is one of admin's: 99 more fit.
    for i in 0..99 {
        let (code, body) = call(&format!("token_create?label=t{i}"));
        assert_eq!(code, 200, "{i}: {body}");
    }
    let (code, body) = call("token_create?label=one-more");
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("100 tokens"), "{body}");
}

/// Incoming holds at most `incoming_max_bytes` (here 100,000): a file that would pass it is
/// refused with 507 naming the setting, announced or streamed, over HTTP and FTP; nothing is
/// kept of it.
#[test]
fn incoming_space_is_capped() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    setup_home(&home);
    std::fs::create_dir_all(home.join("etc")).unwrap();
    std::fs::write(
        home.join("etc/mbd.toml"),
        "http_endpoints = [\"127.0.0.1:0\"]\nlog_level = \"info\"\nbuild_slots = 1\nincoming_max_bytes = 100000\n",
    )
    .unwrap();
    let d = Daemon::start(&home);
    let len = "Content-Length: 60000\r\n";
    assert_eq!(put_streamed(&d, "a_1.orig.tar.gz", 60_000, len, 1).0, 201);
    let (code, answer) = put_streamed(&d, "b_1.orig.tar.gz", 60_000, len, 2);
    assert_eq!(code, 507, "{answer}");
    assert!(answer.contains("incoming_max_bytes"), "{answer}");
    let (code, answer) = put_streamed(
        &d,
        "c_1.orig.tar.gz",
        60_000,
        "Transfer-Encoding: chunked\r\n",
        3,
    );
    assert!(code == 507 || code == 400, "{answer}");
    let ftp = crate::daemon::ftp_address(&d.api_ok(&["dput_conf"]));
    let (host, port) = ftp.rsplit_once(':').unwrap();
    let script = format!(
        r#"
import ftplib, io
f = ftplib.FTP(); f.connect("{host}", {port}, timeout=20); f.login()
try:
    f.storbinary("STOR d_1.orig.tar.gz", io.BytesIO(b"d" * 60000))
    print("ftp stored")
except ftplib.all_errors as e:
    print("ftp refused", str(e).split()[0])
"#
    );
    let (ok, out) =
        crate::util::run(std::process::Command::new("/usr/bin/python3").args(["-c", &script]));
    assert!(ok, "{out}");
    // 452 (insufficient storage, a transient refusal) or, when the refusal closes the data
    // connection while the client still sends, a reset: never stored.
    assert!(out.contains("ftp refused"), "{out}");
    assert_eq!(names_in(&home.join("var/incoming")), ["a_1.orig.tar.gz"]);
}

/// An address that keeps failing to log in waits: after its free failures its next
/// credentials get 429 with Retry-After at once (no password check); other addresses are
/// not concerned; once the wait is over a good login goes through and clears it.
#[test]
fn failed_logins_from_one_address_back_off() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    setup_home(&home);
    let d = Daemon::start(&home);
    d.api_ok(&[
        "user_add",
        "dev",
        "--level",
        "staff",
        "--password",
        "dev-pw",
    ]);
    let (host, port) = d
        .url
        .trim_start_matches("http://")
        .rsplit_once(':')
        .unwrap();
    let script = format!(
        r#"
import base64, http.client, time
def status(source, password, user="dev"):
    c = http.client.HTTPConnection("{host}", {port}, timeout=20, source_address=(source, 0))
    auth = base64.b64encode((user + ":" + password).encode()).decode()
    c.request("GET", "/api/status", headers={{"Authorization": "Basic " + auth}})
    r = c.getresponse()
    return r.status, r.getheader("Retry-After"), r.read().decode()
print("wrong", [status("127.0.0.2", "wrong")[0] for _ in range(11)])
print("then", status("127.0.0.2", "dev-pw")[:2])
print("other", status("127.0.0.3", "dev-pw")[0])
time.sleep(1.2)
print("later", status("127.0.0.2", "dev-pw")[0], status("127.0.0.2", "wrong")[0])
# One user's password guessed from many addresses (5 each, no address waits): past 50
# failures the name waits, whoever asks; the user's token still works.
for i in range(11):
    for _ in range(5):
        status("127.0.1.%d" % i, "guess", "admin")
s, _, body = status("127.0.2.1", "guess", "admin")
print("many", s, "for this user name" in body)
"#
    );
    let (ok, out) =
        crate::util::run(std::process::Command::new("/usr/bin/python3").args(["-c", &script]));
    assert!(ok, "{out}");
    assert!(out.contains(&format!("wrong {:?}", [401; 11])), "{out}");
    assert!(out.contains("then (429, '1')"), "{out}");
    assert!(out.contains("many 401 True"), "{out}");
    // The admin's token is not a password login: it still works.
    assert!(d.api_ok(&["status"]).contains("identity"));
    assert!(out.contains("other 200"), "{out}");
    assert!(
        out.contains("later 200 401"),
        "a good login did not clear the record: {out}"
    );
}

/// A caller's URL reaches no service only this host can reach: `port_ext` refuses loopback,
/// private and link-local hosts (no connection is made) unless `fetch_from_private_networks`
/// is set; `chroot_prepare` takes a mirror only as a plain URL.
#[test]
fn urls_from_callers_reach_public_hosts_only() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    setup_home(&home);
    let d = Daemon::start(&home);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("[::ffff:127.0.0.1]:{port}"),
        "169.254.169.254".to_string(),
        "10.0.0.1".to_string(),
    ] {
        let url = format!("http://{host}/pool/x_1.0.dsc");
        let (ok, out) = d.api(&["port_ext", &url, "bookworm-test-unstable"]);
        assert!(!ok, "{url}: {out}");
        assert!(
            out.contains("resolves only to loopback, private or link-local addresses")
                && out.contains("fetch_from_private_networks"),
            "{url}: {out}"
        );
    }
    assert!(
        listener.accept().is_err(),
        "port_ext connected to a loopback service"
    );
    for mirror in [
        "--customize-hook=touch /pwned",
        "http://h/debian --include=x",
        "/etc/shadow",
        "file:///srv/../etc",
        "ftp://h/debian",
    ] {
        let arg = format!("--mirror={mirror}");
        let (ok, out) = d.api(&["chroot_prepare", "bookworm", "amd64", &arg]);
        assert!(
            !ok && out.contains("chroot_prepare: mirror '"),
            "{mirror}: {out}"
        );
    }
    let (ok, out) = d.api(&["chroot_prepare", "--", "--x", "amd64"]);
    assert!(!ok, "{out}");
    assert!(
        d.api_ok(&["chroots"])
            .trim_matches(['[', ']', '\n', ' '])
            .is_empty()
    );
}

/// FTP floods cost bounded descriptors and leave room for others: 1,100 `PASV` in one
/// session open at most 8 listeners (the rest get 425), a client's 65th control connection
/// gets 421, and meanwhile another client uploads. A transfer cut with a reset keeps nothing;
/// one cut short is replaced by its retry. libunftp's session state stays out of the log.
#[test]
fn ftp_floods_are_bounded_and_interrupted_transfers_are_retried() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    setup_home(&home);
    let d = Daemon::start(&home);
    let conf = d.api_ok(&["dput_conf"]);
    let ftp = crate::daemon::ftp_address(&conf);
    let (host, port) = ftp.rsplit_once(':').unwrap();
    let fds = || {
        std::fs::read_dir(format!("/proc/{}/fd", d.pid()))
            .unwrap()
            .count()
    };
    let before = fds();
    let script = format!(
        r#"
import ftplib, io, socket, struct
def client(source):
    f = ftplib.FTP(source_address=(source, 0))
    f.connect("{host}", {port}, timeout=20)
    f.login()
    return f
# 1,100 PASV in one session.
f = client("127.0.0.2")
opened = refused = 0
for i in range(1100):
    try:
        f.sendcmd("PASV"); opened += 1
    except ftplib.error_temp as e:
        refused += 1
print("PASV", opened, refused, flush=True)
input()
# Control connections from one address: the 17th is refused.
held = []
answers = []
for i in range(70):
    s = socket.create_connection(("{host}", {port}), source_address=("127.0.0.3", 0))
    answers.append(s.recv(100)[:3].decode())
    held.append(s)
print("CONNECT", answers.count("220"), answers.count("421"), flush=True)
# Meanwhile another client uploads; a transfer cut with a reset keeps nothing.
g = client("127.0.0.4")
g.cwd("/incoming")
c = g.transfercmd("STOR cut_1.0.dsc")
c.sendall(b"x" * 1000)
c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
c.close()
try:
    g.voidresp(); print("RESET kept")
except ftplib.all_errors as e:
    print("RESET refused", str(e).split()[0])
g.quit()
# Cut short (an orderly close): stored as far as it came; the retry replaces it.
g = client("127.0.0.4")
g.cwd("/incoming")
c = g.transfercmd("STOR part_1.0.dsc")
c.sendall(b"y" * 1000)
c.close()
g.voidresp()
g.storbinary("STOR part_1.0.dsc", io.BytesIO(b"z" * 4000))
print("RETRY done")
g.quit()
"#
    );
    let mut child = std::process::Command::new("/usr/bin/python3")
        .args(["-c", &script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    // While the flood's listeners are open: bounded descriptors, HTTP answers.
    let during = fds();
    let (code, _, _) = d.get("/health", &[]);
    assert_eq!(code, 200);
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(words, ["PASV", "8", "1092"], "{line}");
    assert!(
        during < before + 8 + 16,
        "descriptors grew from {before} to {during}"
    );
    child.stdin.take().unwrap().write_all(b"\n").unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    let status = child.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(status.success(), "{rest}{err}");
    assert!(rest.contains("CONNECT 64 6"), "{rest}");
    assert!(!rest.contains("RESET kept"), "{rest}");
    assert!(rest.contains("RETRY done"), "{rest}");
    let incoming = home.join("var/incoming");
    assert!(!incoming.join("cut_1.0.dsc").exists());
    assert_eq!(
        std::fs::read(incoming.join("part_1.0.dsc")).unwrap(),
        vec![b'z'; 4000]
    );
    let log = std::fs::read_to_string(home.join("var/log/daemon.log")).unwrap();
    assert!(log.contains("upload received (ftp)"), "{log}");
    let longest = log.lines().map(str::len).max().unwrap_or(0);
    assert!(longest < 1000, "a log line of {longest} bytes: {log}");
}

/// Waiting uploads are decided again at start: one over the limits (a 2 MiB `.changes`,
/// as an older mbd let in) is rejected once, naming the limit, and is gone for the next
/// start; a normal one next to it is decided as usual.
#[test]
fn a_waiting_upload_over_the_limits_is_rejected_once_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    setup_home(&home);
    let uploads = crate::daemon::generated(dir.path(), 1, "--source");
    let incoming = home.join("var/incoming");
    std::fs::create_dir_all(&incoming).unwrap();
    for f in std::fs::read_dir(&uploads[0]).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, incoming.join(f.file_name().unwrap())).unwrap();
    }
    let huge = "huge_1.0_source.changes";
    let mut text = b"Format: 1.8\nSource: huge\nDescription:\n".to_vec();
    text.resize(2 << 20, b'a');
    std::fs::write(incoming.join(huge), text).unwrap();
    let decided = |d: &Daemon| crate::daemon::wait_for_events(d, 2);
    let d = Daemon::start(&home);
    let events = decided(&d);
    let of = |name: &str| {
        events
            .iter()
            .find(|e| e["file"] == name)
            .unwrap_or_else(|| panic!("no event for {name}: {events:?}"))
            .clone()
    };
    let rejected = of(huge);
    assert_eq!(rejected["kind"], "REJECTED", "{rejected}");
    assert!(
        rejected["reason"]
            .as_str()
            .unwrap()
            .contains("at most 1048576 bytes"),
        "{rejected}"
    );
    assert!(events.iter().any(|e| e["kind"] == "ACCEPTED"), "{events:?}");
    assert!(!incoming.join(huge).exists());
    drop(d);
    let d = Daemon::start(&home);
    std::thread::sleep(std::time::Duration::from_secs(1));
    let again = crate::daemon::json(&d.api_ok(&["events"]));
    let count = again
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["file"] == huge)
        .count();
    assert_eq!(count, 1, "decided again: {again}");
}

/// Each client address has its quota in incoming (`incoming_client_max_bytes`, here
/// 100,000) and each file its limit (`incoming_file_max_bytes`, here 70,000): past them
/// uploads are refused naming the setting, over HTTP and FTP, while another address still
/// uploads.
#[test]
fn each_client_has_its_quota_and_each_file_its_limit() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    setup_home(&home);
    std::fs::create_dir_all(home.join("etc")).unwrap();
    std::fs::write(
        home.join("etc/mbd.toml"),
        "http_endpoints = [\"127.0.0.1:0\"]\nlog_level = \"info\"\nbuild_slots = 1\n\
         incoming_client_max_bytes = 100000\nincoming_file_max_bytes = 70000\n",
    )
    .unwrap();
    let d = Daemon::start(&home);
    let (host, port) = d
        .url
        .trim_start_matches("http://")
        .rsplit_once(':')
        .unwrap();
    let ftp = crate::daemon::ftp_address(&d.api_ok(&["dput_conf"]));
    let (ftp_host, ftp_port) = ftp.rsplit_once(':').unwrap();
    let script = format!(
        r#"
import ftplib, http.client, io
def put(source, name, size):
    c = http.client.HTTPConnection("{host}", {port}, timeout=20, source_address=(source, 0))
    c.request("PUT", "/incoming/" + name, body=b"x" * size)
    r = c.getresponse()
    return r.status, r.read().decode()
def stor(source, name, size):
    f = ftplib.FTP(source_address=(source, 0)); f.connect("{ftp_host}", {ftp_port}, timeout=20); f.login()
    try:
        f.storbinary("STOR " + name, io.BytesIO(b"y" * size)); return "stored"
    except ftplib.all_errors as e:
        return str(e)
print("big", put("127.0.0.2", "big_1.orig.tar.gz", 70001))
print("first", put("127.0.0.2", "a_1.orig.tar.gz", 60000)[0])
print("second", put("127.0.0.2", "a_1.debian.tar.xz", 60000))
print("ftp", stor("127.0.0.2", "a_1.dsc", 50000))
print("other", put("127.0.0.3", "b_1.orig.tar.gz", 60000)[0])
"#
    );
    let (ok, out) =
        crate::util::run(std::process::Command::new("/usr/bin/python3").args(["-c", &script]));
    assert!(ok, "{out}");
    let line = |what: &str| {
        out.lines()
            .find(|l| l.starts_with(what))
            .unwrap_or_else(|| panic!("no {what} in {out}"))
            .to_string()
    };
    assert!(
        line("big").contains("(413, ") && line("big").contains("incoming_file_max_bytes"),
        "{out}"
    );
    assert_eq!(line("first"), "first 201");
    assert!(
        line("second").contains("(507, ") && line("second").contains("incoming_client_max_bytes"),
        "{out}"
    );
    assert!(line("ftp").starts_with("ftp 452"), "{out}");
    assert_eq!(line("other"), "other 201");
    assert_eq!(
        names_in(&home.join("var/incoming")),
        ["a_1.orig.tar.gz", "b_1.orig.tar.gz"]
    );
}
