//! Fuzzing what the network reaches of the real daemon: every API call with generated and
//! mutated arguments (anonymous, so every call's arguments are parsed; and as the admin, so
//! the handlers of the calls that touch only the home run), and the FTP command path with
//! generated commands, garbage lines and sessions that vanish.
//!
//! Properties: no answer is a 500 (an internal failure or a panic behind the API), every FTP
//! reply is well formed, and the daemon answers `/health` with no task panic counted. Each
//! test runs until `MBD_FUZZ_SECONDS` (default 3) have passed; `scripts/fuzz.sh` runs them
//! longer. A failure prints the request.

use crate::daemon::{Daemon, setup_with_packages};
use proptest::test_runner::{RngAlgorithm, TestRng};
use rand::Rng;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn budget() -> Duration {
    Duration::from_secs(
        std::env::var("MBD_FUZZ_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(3),
    )
}

fn rng(test: &str) -> TestRng {
    let mut seed = [0u8; 32];
    for (i, b) in test.bytes().enumerate() {
        seed[i % 32] ^= b;
    }
    TestRng::from_seed(RngAlgorithm::ChaCha, &seed)
}

/// Values that mean something to some call, and values that mean trouble.
const VALUES: &[&str] = &[
    "bookworm-test-unstable",
    "bookworm-test-testing",
    "bookworm-test-unstable-rollback0",
    "bookworm",
    "test",
    "mbd-hello",
    "1.0-1~test12+1",
    "1.0-2~test12+1",
    "amd64",
    "admin",
    "true",
    "false",
    "0",
    "-1",
    "18446744073709551616",
    "",
    " ",
    "..",
    "../../etc/passwd",
    "/etc/passwd",
    "a,b,,c",
    "%00",
    "\u{0}",
    "\u{1b}[31m",
    "ÿ",
    "名前",
    "*",
    "x\ny",
    "deb http://127.0.0.1/ x main",
    "http://127.0.0.1:1/x.dsc",
    "Default",
    "snap",
];

/// Calls whose handlers reach outside the home (chroots as root, archives over the network,
/// the host's schroot configuration) or take the fuzzer's own access away: their arguments
/// are fuzzed anonymously only.
const NOT_AS_ADMIN: &[&str] = &[
    "setup",
    "chroot_prepare",
    "chroot_check",
    "chroot_remove",
    "config_action",
    "config_set",
    "port_ext",
    "user_remove",
    "token_revoke",
    "stop",
];

fn value(rng: &mut TestRng) -> String {
    let mut v: Vec<u8> = VALUES[rng.random_range(0..VALUES.len())]
        .as_bytes()
        .to_vec();
    for _ in 0..rng.random_range(0..3) {
        match rng.random_range(0..4) {
            0 if !v.is_empty() => {
                let i = rng.random_range(0..v.len());
                v[i] ^= rng.random_range(1..=255u8);
            }
            1 => {
                let i = rng.random_range(0..=v.len());
                v.insert(i, rng.random());
            }
            2 => v.truncate(rng.random_range(0..=v.len())),
            _ => v.extend(std::iter::repeat_n(b'a', rng.random_range(0..40_000))),
        }
    }
    String::from_utf8_lossy(&v).into_owned()
}

/// `name=value` pairs for a call: some of its own arguments, now and then an unknown or a
/// repeated one.
fn arguments(rng: &mut TestRng, call: &mbd::api::Call) -> String {
    let mut pairs = form_urlencoded::Serializer::new(String::new());
    for a in call.args {
        if rng.random_bool(0.7) {
            let mut v = value(rng);
            if call.name == "user_add" && a.name == "name" && v == "admin" {
                // A new password for the admin would end the fuzzer's own token.
                v = "someone".to_string();
            }
            pairs.append_pair(a.name, &v);
        }
    }
    if rng.random_bool(0.1) {
        pairs.append_pair(&value(rng), &value(rng));
    }
    if rng.random_bool(0.05) {
        if let Some(a) = call.args.first() {
            pairs.append_pair(a.name, "again");
        }
    }
    pairs.finish()
}

/// One HTTP request on a new connection: its status and body.
fn request(d: &Daemon, req: &[u8]) -> (u16, String) {
    let addr = d.url.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.write_all(req).unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "no HTTP answer to {:?}: {text:?}",
                String::from_utf8_lossy(req)
            )
        });
    (status, text)
}

fn panics(d: &Daemon) -> u64 {
    let (_, _, body) = d.get("/metrics", &[]);
    String::from_utf8_lossy(&body)
        .lines()
        .find_map(|l| l.strip_prefix("mbd_task_panics_total "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn api_calls_answer_every_argument_without_an_internal_failure() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    setup_with_packages(&home);
    let d = Daemon::start(&home);
    let token = std::fs::read_to_string(home.join("etc/api-token")).unwrap();
    use base64::Engine as _;
    let admin = base64::engine::general_purpose::STANDARD.encode(token.trim());
    let mut rng = rng("api");
    let calls = mbd::api::calls::CALLS;
    let started = Instant::now();
    let (mut sent, mut statuses) = (0u64, std::collections::BTreeMap::<u16, u64>::new());
    while started.elapsed() < budget() || sent == 0 {
        let call = &calls[rng.random_range(0..calls.len())];
        let as_admin = rng.random_bool(0.6) && !NOT_AS_ADMIN.contains(&call.name);
        let args = arguments(&mut rng, call);
        let auth = if as_admin {
            format!("Authorization: Basic {admin}\r\n")
        } else {
            String::new()
        };
        let method = if rng.random_bool(0.9) {
            call.method()
        } else {
            "PUT"
        };
        let req = if method == "POST" {
            format!(
                "POST /api/{} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{args}",
                call.name,
                args.len()
            )
        } else {
            format!(
                "{method} /api/{}?{args} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n",
                call.name
            )
        };
        let (status, text) = request(&d, req.as_bytes());
        let shown: String = req.chars().take(600).collect();
        assert!(
            status != 500 && status < 600,
            "{status} for {shown}\n{text}\n{}",
            d.log()
        );
        *statuses.entry(status).or_default() += 1;
        sent += 1;
    }
    let (code, _, _) = d.get("/health", &[]);
    assert_eq!(code, 200);
    assert_eq!(panics(&d), 0, "a task panicked: {}", d.log());
    eprintln!(
        "fuzz: {sent} API requests in {:.1} s, statuses {statuses:?}",
        started.elapsed().as_secs_f64()
    );
    assert!(
        statuses.keys().any(|s| *s < 300) && statuses.keys().any(|s| *s >= 400),
        "the calls never (or always) succeeded: {statuses:?}"
    );
}

/// FTP verbs, with and without arguments that mean something.
const VERBS: &[&str] = &[
    "USER", "PASS", "ACCT", "CWD", "CDUP", "PWD", "TYPE", "MODE", "STRU", "PASV", "EPSV", "PORT",
    "EPRT", "STOR", "STOU", "APPE", "RETR", "LIST", "NLST", "MLSD", "MLST", "SIZE", "MDTM", "DELE",
    "RNFR", "RNTO", "MKD", "RMD", "REST", "ABOR", "NOOP", "SYST", "FEAT", "OPTS", "HELP", "STAT",
    "SITE", "AUTH", "PBSZ", "PROT", "CCC", "ALLO", "QUIT", "XYZZY",
];

fn ftp_line(rng: &mut TestRng) -> Vec<u8> {
    let mut line = VERBS[rng.random_range(0..VERBS.len())].as_bytes().to_vec();
    if rng.random_bool(0.7) {
        line.push(b' ');
        line.extend(value(rng).bytes().take(2000));
    }
    if rng.random_bool(0.05) {
        line = (0..rng.random_range(0..3000))
            .map(|_| rng.random())
            .collect();
    }
    line.retain(|b| *b != b'\n');
    line.extend_from_slice(b"\r\n");
    line
}

/// Reads one FTP reply: its lines, or `None` when the server closed or went quiet. A reply
/// is one line `NNN text`, or `NNN-text`, more lines, and `NNN text` (RFC 959).
fn ftp_reply(r: &mut BufReader<TcpStream>) -> Option<Vec<String>> {
    let mut lines: Vec<String> = Vec::new();
    loop {
        let mut raw = Vec::new();
        match r.read_until(b'\n', &mut raw) {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
        let line = String::from_utf8_lossy(&raw).trim_end().to_string();
        let code = lines
            .first()
            .map_or(&line, |l| l)
            .chars()
            .take(3)
            .collect::<String>();
        let done = line.starts_with(&format!("{code} ")) || (lines.is_empty() && line.len() == 3);
        lines.push(line);
        if done {
            return Some(lines);
        }
        if lines.len() > 200 {
            panic!("an endless FTP reply: {lines:?}");
        }
    }
}

#[test]
fn ftp_sessions_of_generated_commands_leave_the_daemon_serving() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    setup_with_packages(&home);
    let d = Daemon::start(&home);
    let ftp = crate::daemon::ftp_address(&d.api_ok(&["dput_conf"]));
    let mut rng = rng("ftp");
    let started = Instant::now();
    let (mut sessions, mut commands, mut replies) = (0u64, 0u64, 0u64);
    while started.elapsed() < budget() || sessions == 0 {
        sessions += 1;
        let s = TcpStream::connect(&ftp).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(400)))
            .unwrap();
        let mut w = s.try_clone().unwrap();
        let mut r = BufReader::new(s);
        let Some(banner) = ftp_reply(&mut r) else {
            continue;
        };
        assert!(banner[0].starts_with("220"), "{banner:?}");
        if rng.random_bool(0.8) {
            let _ = w.write_all(b"USER anonymous\r\n");
            let _ = ftp_reply(&mut r);
            let _ = w.write_all(b"PASS x\r\n");
            let _ = ftp_reply(&mut r);
        }
        for _ in 0..rng.random_range(1..40) {
            let line = ftp_line(&mut rng);
            commands += 1;
            if w.write_all(&line).is_err() {
                break;
            }
            if rng.random_bool(0.05) {
                // Gone without reading the answer.
                break;
            }
            match ftp_reply(&mut r) {
                None => break,
                Some(reply) => {
                    replies += 1;
                    let (first, last) = (&reply[0], reply.last().unwrap());
                    assert!(
                        first.len() >= 3
                            && first[..3].bytes().all(|b| b.is_ascii_digit())
                            && last.starts_with(&first[..3]),
                        "a malformed reply to {:?}: {reply:?}",
                        String::from_utf8_lossy(&line)
                    );
                }
            }
        }
    }
    let (code, _, _) = d.get("/health", &[]);
    assert_eq!(code, 200, "{}", d.log());
    assert_eq!(panics(&d), 0, "a task panicked: {}", d.log());
    // Still an FTP server: a fresh session logs in.
    let mut s = TcpStream::connect(&ftp).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    assert!(ftp_reply(&mut r).unwrap()[0].starts_with("220"));
    s.write_all(b"USER anonymous\r\n").unwrap();
    assert!(ftp_reply(&mut r).unwrap()[0].starts_with("331"));
    eprintln!(
        "fuzz: {sessions} FTP sessions, {commands} commands, {replies} replies in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
