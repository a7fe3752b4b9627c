//! Published files over the daemon's HTTP as apt fetches them: from memory, mapped, sent by
//! the kernel, and many requests pipelined on one keep-alive connection.

use crate::daemon::{Daemon, header, setup_with_packages};
use crate::util::mbd_ok;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

/// A `.deb` of `size` bytes of noise (stored uncompressed, so the file is about that size),
/// included into bookworm-test-unstable; its path below the home.
fn include_noise(home: &Path, work: &Path, name: &str, size: usize) -> PathBuf {
    let root = work.join(name);
    std::fs::create_dir_all(root.join("DEBIAN")).unwrap();
    std::fs::create_dir_all(root.join("usr/share/noise")).unwrap();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let noise: Vec<u8> = (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(root.join("usr/share/noise/noise"), &noise).unwrap();
    std::fs::write(
        root.join("DEBIAN/control"),
        format!("Package: {name}\nVersion: 1.0-1\nArchitecture: all\nMaintainer: mbd tests <tests@mbd.invalid>\nDescription: noise\n"),
    )
    .unwrap();
    let deb = work.join(format!("{name}_1.0-1_all.deb"));
    let (ok, text) = crate::util::run(
        std::process::Command::new("dpkg-deb")
            .args(["-Znone", "--root-owner-group", "--build"])
            .arg(&root)
            .arg(&deb),
    );
    assert!(ok, "{text}");
    mbd_ok(
        home,
        &[
            "repo",
            "include",
            "bookworm-test-unstable",
            deb.to_str().unwrap(),
        ],
    );
    let first = name.chars().next().unwrap();
    PathBuf::from(format!(
        "repositories/test/pool/main/{first}/{name}/{name}_1.0-1_all.deb"
    ))
}

/// Small published files are answered from memory; every change through the daemon makes
/// the next request look at the file again (a new `InRelease` after a migration); byte
/// ranges come from the cached copy. (`archive::tests` covers files that go.)
#[test]
fn files_served_from_memory_follow_every_publish() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    setup_with_packages(&home);
    let d = Daemon::start(&home);
    let path = "/repositories/test/dists/bookworm-test-testing/InRelease";
    let disk = || std::fs::read(home.join(&path[1..])).unwrap();
    let before = disk();
    for _ in 0..3 {
        let (code, _, body) = d.get(path, &[]);
        assert_eq!((code, body), (200, before.clone()));
    }
    let (code, head, body) = d.get(path, &[("Range", "bytes=0-9")]);
    assert_eq!((code, body.as_slice()), (206, &before[..10]), "{head}");
    d.api_ok(&["migrate", "mbd-hello", "bookworm-test-unstable"]);
    let after = disk();
    assert_ne!(before, after, "the migration published testing again");
    let (code, _, body) = d.get(path, &[]);
    assert_eq!((code, body), (200, after));
}

/// Files larger than the in-memory limit (1 MiB) are mapped: whole, and byte ranges at
/// offsets that are not page-aligned, come out as they are on disk.
#[test]
fn large_pool_files_are_served_whole_and_in_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    setup_with_packages(&home);
    let pool = include_noise(&home, dir.path(), "big-noise", 3_000_000);
    let d = Daemon::start(&home);
    let path = format!("/{}", pool.display());
    let disk = std::fs::read(home.join(&pool)).unwrap();
    assert!(disk.len() > 2 * 1024 * 1024, "{} bytes", disk.len());
    for _ in 0..2 {
        let (code, head, body) = d.get(&path, &[]);
        assert_eq!(code, 200, "{head}");
        assert!(
            body == disk,
            "the whole file differs ({} bytes)",
            body.len()
        );
    }
    let (code, head, body) = d.get(&path, &[("Range", "bytes=4097-1500000")]);
    assert_eq!(code, 206, "{head}");
    assert!(body == disk[4097..=1_500_000], "the range differs");
    let (code, head, body) = d.get(&path, &[("Range", "bytes=-100")]);
    assert_eq!(code, 206, "{head}");
    assert!(body == disk[disk.len() - 100..], "the suffix differs");
}

/// One response read off a kept connection: status, head, body (none for HEAD and 304).
fn response(r: &mut impl BufRead, head_request: bool) -> (u16, String, Vec<u8>) {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        assert!(r.read_line(&mut line).unwrap() > 0, "closed after {head}");
        if line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    let len: usize = header(&head, "content-length").map_or(0, |v| v.parse().unwrap());
    let mut body = vec![
        0;
        if head_request || status == 304 {
            0
        } else {
            len
        }
    ];
    r.read_exact(&mut body).unwrap();
    (status, head, body)
}

/// apt's way: many requests written at once on one keep-alive connection, answered in
/// order. Files from memory, a cached file the kernel sends (over 64 KiB, whole and a
/// range), a 304, a 404 and a HEAD go out on the fast path; then an API call on the same
/// connection is answered by the router, and so is a file after it. Every request is in the
/// access log. HTTP/1.0 keeps the connection only when asked to.
#[test]
fn pipelined_requests_on_one_connection_are_answered_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    setup_with_packages(&home);
    let pool = include_noise(&home, dir.path(), "mid-noise", 300_000);
    let d = Daemon::start(&home);
    let mid = format!("/{}", pool.display());
    let mid_disk = std::fs::read(home.join(&pool)).unwrap();
    assert!(mid_disk.len() > 256 * 1024, "{} bytes", mid_disk.len());
    let inrelease = "/repositories/test/dists/bookworm-test-unstable/InRelease";
    let in_disk = std::fs::read(home.join(&inrelease[1..])).unwrap();
    let etag = {
        let (_, head, _) = d.get(inrelease, &[]);
        header(&head, "etag").unwrap().to_string()
    };
    // The first round reads the middle file into memory (keeping it open); the second one
    // sends it from the kept file.
    let addr = d.url.trim_start_matches("http://").to_string();
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let get = |path: &str, extra: &str| format!("GET {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n");
    for round in 0..2 {
        let batch = [
            get(inrelease, ""),
            get(&mid, ""),
            get(&mid, "Range: bytes=70000-200000\r\n"),
            get(inrelease, &format!("If-None-Match: {etag}\r\n")),
            format!("HEAD {mid} HTTP/1.1\r\nHost: x\r\n\r\n"),
            get("/repositories/test/dists/nothing/InRelease", ""),
        ]
        .concat();
        s.write_all(batch.as_bytes()).unwrap();
        let (code, _, body) = response(&mut r, false);
        assert_eq!((round, code), (round, 200));
        assert!(body == in_disk);
        let (code, head, body) = response(&mut r, false);
        assert_eq!(code, 200, "{head}");
        assert!(body == mid_disk, "round {round}: the middle file differs");
        let (code, head, body) = response(&mut r, false);
        assert_eq!(code, 206, "{head}");
        assert_eq!(
            header(&head, "content-range"),
            Some(format!("bytes 70000-200000/{}", mid_disk.len()).as_str())
        );
        assert!(
            body == mid_disk[70000..=200_000],
            "round {round}: the range differs"
        );
        assert_eq!(response(&mut r, false).0, 304);
        let (code, head, _) = response(&mut r, true);
        assert_eq!(code, 200);
        assert_eq!(
            header(&head, "content-length"),
            Some(mid_disk.len().to_string().as_str())
        );
        let (code, _, body) = response(&mut r, false);
        assert_eq!(code, 404);
        assert!(String::from_utf8_lossy(&body).contains("nothing"));
    }
    // An API call on the same connection: the router takes over, and answers what follows.
    let rest = [
        get("/api/status", "Accept: application/json\r\n"),
        get(&mid, "Connection: close\r\n"),
    ]
    .concat();
    s.write_all(rest.as_bytes()).unwrap();
    let (code, head, body) = response(&mut r, false);
    assert_eq!(code, 200, "{head}");
    let status = String::from_utf8_lossy(&body).into_owned();
    assert!(status.contains("testhost"), "{head}{status}");
    let (code, _, body) = response(&mut r, false);
    assert_eq!(code, 200);
    assert!(
        body == mid_disk,
        "the middle file through the router differs"
    );
    let mut tail = Vec::new();
    r.read_to_end(&mut tail).unwrap();
    assert!(tail.is_empty(), "the connection was not closed");

    // HTTP/1.0: closed after the answer unless kept alive.
    let (code, head, body) = d.raw(&format!("GET {inrelease} HTTP/1.0\r\n\r\n"));
    assert_eq!((code, header(&head, "connection")), (200, Some("close")));
    assert!(body == in_disk);
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let req = format!("GET {inrelease} HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    s.write_all(format!("{req}{req}").as_bytes()).unwrap();
    for _ in 0..2 {
        let (code, head, body) = response(&mut r, false);
        assert_eq!(
            (code, header(&head, "connection")),
            (200, Some("keep-alive"))
        );
        assert!(body == in_disk);
    }

    // Every request on the fast path is in the access log, like the router's.
    let started = std::time::Instant::now();
    loop {
        let access = std::fs::read_to_string(home.join("var/log/access.log")).unwrap();
        let fast = access
            .matches(&format!("\"GET {mid} HTTP/1.1\" 200"))
            .count();
        let partial = access.matches(" 206 ").count();
        if fast >= 3 && partial >= 2 && access.contains("\"GET /api/status HTTP/1.1\" 200") {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "{access}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
