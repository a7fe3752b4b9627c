//! Serving the published trees to apt: `/repositories/<id>/{dists,pool}/...`.
//!
//! Only the two published subtrees of a configured repository are reachable. Every path
//! segment is percent-decoded and checked on its own (no `..`, no `.` files, no separators,
//! no NUL), and the resolved path must still lie inside the repository's directory after
//! symlinks are followed. Nothing else under the home (store, keys, logs) can be named.
//!
//! Responses carry Content-Type, Content-Length, Last-Modified and an ETag; HEAD, single
//! byte ranges (with If-Range), If-None-Match and If-Modified-Since work as apt expects.
//! Pool files and by-hash files never change under their name, so they get a year of
//! caching; everything else under `dists/` must be revalidated.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Why a path is not served.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A segment that could climb out or hide: `..`, `.x`, `a/b` encoded, NUL.
    Invalid(String),
    NotFound,
}

/// Percent-decodes one path segment; `None` if the encoding is broken or not UTF-8.
fn decode_segment(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The decoded segments of a request path below `/repositories/`. An empty last segment
/// (a trailing slash) is kept as a marker for directories.
pub fn segments(raw: &str) -> Result<Vec<String>, Refusal> {
    let mut out = Vec::new();
    let parts: Vec<&str> = raw.split('/').collect();
    for (i, part) in parts.iter().enumerate() {
        if part.is_empty() && i + 1 == parts.len() {
            break;
        }
        let seg = decode_segment(part)
            .ok_or_else(|| Refusal::Invalid(format!("'{part}' is not a valid path segment")))?;
        if seg.is_empty()
            || seg.starts_with('.')
            || seg.contains('/')
            || seg.contains('\\')
            || seg.contains('\0')
        {
            return Err(Refusal::Invalid(format!(
                "'{seg}' is not allowed in a repository path"
            )));
        }
        out.push(seg);
    }
    Ok(out)
}

/// Maps checked segments to a file or directory of a published tree.
pub fn resolve(repositories: &Path, segs: &[String]) -> Result<PathBuf, Refusal> {
    let Some(repo) = segs.first() else {
        return Ok(repositories.to_path_buf());
    };
    if !repo
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        return Err(Refusal::NotFound);
    }
    if let Some(top) = segs.get(1) {
        if top != "dists" && top != "pool" {
            return Err(Refusal::NotFound);
        }
    }
    let root = repositories.join(repo);
    let mut path = root.clone();
    for s in &segs[1..] {
        path.push(s);
    }
    // Follow symlinks, then make sure we are still inside this repository.
    let real = path.canonicalize().map_err(|_| Refusal::NotFound)?;
    let real_root = root.canonicalize().map_err(|_| Refusal::NotFound)?;
    if !real.starts_with(&real_root) {
        return Err(Refusal::NotFound);
    }
    Ok(real)
}

/// The type a published file is served as: a fixed list by extension, anything else
/// `application/octet-stream`. Never HTML, whatever an upload names its files (an HTML pool
/// file on the UI's origin would run its scripts with the viewer's session).
pub fn content_type(name: &str) -> &'static str {
    let ext = name.rsplit_once('.').map_or("", |(_, e)| e);
    match ext {
        "deb" | "udeb" | "ddeb" => "application/vnd.debian.binary-package",
        "gz" => "application/gzip",
        "xz" => "application/x-xz",
        "bz2" => "application/x-bzip2",
        "zst" => "application/zstd",
        "gpg" | "asc" => "application/pgp-signature",
        "dsc" | "changes" | "buildinfo" => "text/plain; charset=utf-8",
        "" if matches!(
            name,
            "Release" | "InRelease" | "Packages" | "Sources" | "Contents" | "Index"
        ) =>
        {
            "text/plain; charset=utf-8"
        }
        _ => "application/octet-stream",
    }
}

/// Files whose content never changes under their name.
fn immutable(segs: &[String]) -> bool {
    segs.get(1).is_some_and(|s| s == "pool") || segs.iter().any(|s| s == "by-hash")
}

fn etag(len: u64, modified: SystemTime) -> String {
    let nanos = modified
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("\"{len:x}-{nanos:x}\"")
}

/// A single byte range `bytes=a-b`, `a-` or `-n` within `len`; `Err` if unsatisfiable,
/// `Ok(None)` if absent, malformed or not understood (then the whole file is sent: RFC 9110
/// says to ignore a Range header that does not parse).
fn parse_range(header: Option<&str>, len: u64) -> Result<Option<(u64, u64)>, ()> {
    let spec = header.and_then(|h| h.trim().strip_prefix("bytes="));
    let well_formed = spec.is_some_and(|s| {
        s.split_once('-').is_some_and(|(a, b)| {
            let (a, b) = (a.trim(), b.trim());
            let digits = |x: &str| x.bytes().all(|c| c.is_ascii_digit()) && x.len() <= 19;
            (!a.is_empty() || !b.is_empty()) && digits(a) && digits(b)
        })
    });
    if !well_formed {
        return Ok(None);
    }
    satisfiable_range(spec, len)
}

/// A well-formed single range (see [`parse_range`]) within `len`.
fn satisfiable_range(spec: Option<&str>, len: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) = spec else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((a, b)) = spec.split_once('-') else {
        return Ok(None);
    };
    let (a, b) = (a.trim(), b.trim());
    let (start, end) = match (a.is_empty(), b.is_empty()) {
        (true, false) => {
            let n: u64 = b.parse().map_err(|_| ())?;
            if n == 0 {
                return Err(());
            }
            (len.saturating_sub(n), len.saturating_sub(1))
        }
        (false, _) => {
            let start: u64 = a.parse().map_err(|_| ())?;
            let end = if b.is_empty() {
                len.saturating_sub(1)
            } else {
                b.parse::<u64>().map_err(|_| ())?.min(len.saturating_sub(1))
            };
            (start, end)
        }
        (true, true) => return Ok(None),
    };
    if len == 0 || start >= len || end < start {
        return Err(());
    }
    Ok(Some((start, end)))
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn listing(dir: &Path, url_path: &str) -> Response {
    let mut names: Vec<(String, bool)> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter_map(|e| {
                    let name = e.file_name().into_string().ok()?;
                    let is_dir = e.file_type().ok()?.is_dir();
                    (!name.starts_with('.')).then_some((name, is_dir))
                })
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    let mut body = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Index of {0}</title></head>\n<body><h1>Index of {0}</h1>\n<ul>\n",
        html_escape(url_path)
    );
    for (name, is_dir) in names {
        let slash = if is_dir { "/" } else { "" };
        let n = html_escape(&name);
        body.push_str(&format!("<li><a href=\"{n}{slash}\">{n}{slash}</a></li>\n"));
    }
    body.push_str("</ul></body></html>\n");
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}

/// Files up to this size (every index but the largest `Contents`) are read in the same
/// blocking step that finds them, sent as one buffer and cached; larger ones are mapped
/// (see [`mapped`]), so a request holds no more than this much heap.
const SMALL: u64 = 1024 * 1024;

/// Cached files larger than this (most `Packages.xz`, `Contents`, larger pool files) keep
/// their file open, so that a plain-HTTP connection has the kernel send them ([`SendFile`]);
/// smaller ones go out with the response head in one write.
const SEND_FILE_FROM: u64 = 64 * 1024;

/// On a response whose body is (part of) a cached file that is still open: what a
/// connection that can use `sendfile` sends instead of the body (the body holds the same
/// bytes, for connections that cannot).
#[derive(Clone)]
pub struct SendFile {
    pub file: std::sync::Arc<std::fs::File>,
    pub start: u64,
    pub count: u64,
}

/// The small files served lately (see [`super::file_cache`]).
pub type Cache = super::file_cache::FileCache<Head>;
type Entry = super::file_cache::Entry<Head>;

/// Serves `raw` (the request path after `/repositories/`). A small file cached in this
/// `generation` of the published trees is answered at once; everything that touches the
/// file system (resolving, `stat`, opening, reading a small file) happens in one blocking
/// step, never on the async threads.
pub async fn serve(
    cache: std::sync::Arc<Cache>,
    generation: u64,
    repositories: std::sync::Arc<Path>,
    raw: String,
    method: Method,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    // Only paths that were checked and resolved are ever cached.
    let cached = cache.get(&raw);
    if let Some(e) = cached.as_ref().filter(|e| e.generation == generation) {
        return Ok(respond(e, &method, &headers));
    }
    let segs = segments(&raw)?;
    let prepared = tokio::task::spawn_blocking(move || {
        let found = Found {
            cache: &cache,
            generation,
            cached,
        };
        prepare(&found, &repositories, &raw, segs, &method, &headers)
    })
    .await
    .map_err(|_| Refusal::NotFound)??;
    Ok(prepared)
}

/// The cache as one request sees it.
struct Found<'a> {
    cache: &'a Cache,
    generation: u64,
    /// The entry of an older generation, if any.
    cached: Option<Entry>,
}

/// The blocking part of [`serve`].
fn prepare(
    found: &Found,
    repositories: &Path,
    raw: &str,
    segs: Vec<String>,
    method: &Method,
    headers: &HeaderMap,
) -> Result<Response, Refusal> {
    let dirs_only = raw.is_empty() || raw.ends_with('/');
    let path = resolve(repositories, &segs).inspect_err(|_| {
        if found.cached.is_some() {
            found.cache.forget(raw);
        }
    })?;
    if let Some(e) = revalidated(found, raw, &path) {
        return Ok(respond(&e, method, headers));
    }
    let mut file = std::fs::File::open(&path).map_err(|_| Refusal::NotFound)?;
    let meta = file.metadata().map_err(|_| Refusal::NotFound)?;
    if meta.is_dir() {
        let url_path = format!("/repositories/{raw}");
        if !dirs_only {
            return Ok((
                StatusCode::MOVED_PERMANENTLY,
                [(header::LOCATION, format!("{url_path}/"))],
            )
                .into_response());
        }
        return Ok(listing(&path, &url_path));
    }
    if dirs_only || !meta.is_file() {
        return Err(Refusal::NotFound);
    }
    let len = meta.len();
    let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
    let name = segs.last().map_or("", String::as_str);
    let head = Head::new(name, immutable(&segs), len, modified);
    if len <= SMALL {
        // Most requests (InRelease, pool files of small packages) are small files: read
        // whole, kept, answered from memory. A file that shrank since the `stat` is not
        // served short: it is gone from under us.
        let mut body = vec![0; len as usize];
        file.read_exact(&mut body).map_err(|_| Refusal::NotFound)?;
        let keep_open = len > SEND_FILE_FROM && found.cache.may_keep_open();
        let entry = Entry {
            generation: found.generation,
            identity: super::file_cache::Identity::of(&meta),
            head: std::sync::Arc::new(head),
            body: body.into(),
            file: keep_open.then(|| std::sync::Arc::new(file)),
        };
        found.cache.put(raw, entry.clone());
        return Ok(respond(&entry, method, headers));
    }
    let (builder, start, count) = match plan(&head, method, headers) {
        Plan::Done(done) => return Ok(done),
        Plan::Send {
            builder,
            start,
            count,
        } => (builder, start, count),
    };
    if count == 0 {
        return Ok(empty(builder));
    }
    let body = mapped(&file, start, count)?;
    Ok(builder.body(Body::from(body)).unwrap_or_default())
}

/// `count` bytes of a large file from `start`, mapped into memory (faulted in here, in the
/// blocking step): sending it costs one copy, into the socket, and no read per chunk.
///
/// Mapping is safe because nothing changes a published file in place: indices, pool and
/// by-hash files are written under another name and renamed into the tree (or unlinked,
/// which leaves a mapping valid). Only someone truncating a file under `repositories/` by
/// hand would break that.
fn mapped(file: &std::fs::File, start: u64, count: u64) -> Result<axum::body::Bytes, Refusal> {
    let len = usize::try_from(count).map_err(|_| Refusal::NotFound)?;
    // SAFETY: see above; the mapping is read-only and lives as long as the Bytes.
    let map = unsafe {
        memmap2::MmapOptions::new()
            .offset(start)
            .len(len)
            .populate()
            .map(file)
    }
    .map_err(|_| Refusal::NotFound)?;
    Ok(axum::body::Bytes::from_owner(map))
}

/// An entry of an older generation whose file is unchanged (same device, inode, size and
/// time), now of this generation; `None` (and the entry forgotten) otherwise.
fn revalidated(found: &Found, raw: &str, path: &Path) -> Option<Entry> {
    let old = found.cached.as_ref()?;
    let same = std::fs::metadata(path)
        .ok()
        .filter(|m| m.is_file())
        .is_some_and(|m| super::file_cache::Identity::of(&m) == old.identity);
    if !same {
        found.cache.forget(raw);
        return None;
    }
    let entry = Entry {
        generation: found.generation,
        ..old.clone()
    };
    found.cache.put(raw, entry.clone());
    Some(entry)
}

/// The response for a file in memory.
fn respond(entry: &Entry, method: &Method, headers: &HeaderMap) -> Response {
    match plan(&entry.head, method, headers) {
        Plan::Done(done) => done,
        Plan::Send {
            builder, count: 0, ..
        } => empty(builder),
        Plan::Send {
            builder,
            start,
            count,
        } => {
            let body = entry.body.slice(start as usize..(start + count) as usize);
            let mut response = builder.body(Body::from(body)).unwrap_or_default();
            if let Some(file) = &entry.file {
                response.extensions_mut().insert(SendFile {
                    file: file.clone(),
                    start,
                    count,
                });
            }
            response
        }
    }
}

/// How to answer a request for a file: a finished response (304, 416), or the status and
/// headers with the byte range to send (none for HEAD).
enum Plan {
    Done(Response),
    Send {
        builder: axum::http::response::Builder,
        start: u64,
        count: u64,
    },
}

fn plan(head: &Head, method: &Method, headers: &HeaderMap) -> Plan {
    let builder = head.builder();
    if head.not_modified(headers) {
        return Plan::Done(empty(builder.status(StatusCode::NOT_MODIFIED)));
    }
    let len = head.len;
    let (builder, start, count) = match head.range(headers) {
        Err(()) => {
            let b = builder
                .status(StatusCode::RANGE_NOT_SATISFIABLE)
                .header(header::CONTENT_RANGE, format!("bytes */{len}"));
            return Plan::Done(empty(b));
        }
        Ok(Some((a, b))) => (
            builder
                .status(StatusCode::PARTIAL_CONTENT)
                .header(header::CONTENT_RANGE, format!("bytes {a}-{b}/{len}")),
            a,
            b - a + 1,
        ),
        Ok(None) => (builder.status(StatusCode::OK), 0, len),
    };
    let builder = builder.header(header::CONTENT_LENGTH, HeaderValue::from(count));
    let count = if method == Method::HEAD { 0 } else { count };
    Plan::Send {
        builder,
        start,
        count,
    }
}

fn empty(builder: axum::http::response::Builder) -> Response {
    builder.body(Body::empty()).unwrap_or_default()
}

/// What the validators and headers of one file's response are made from.
pub struct Head {
    content_type: &'static str,
    immutable: bool,
    len: u64,
    modified: SystemTime,
    tag: String,
    last_modified: String,
    tag_value: HeaderValue,
    last_modified_value: HeaderValue,
}

impl Head {
    fn new(name: &str, immutable: bool, len: u64, modified: SystemTime) -> Head {
        let tag = etag(len, modified);
        let last_modified = httpdate::fmt_http_date(modified);
        Head {
            content_type: content_type(name),
            immutable,
            len,
            modified,
            tag_value: HeaderValue::from_str(&tag).expect("an ETag is ASCII"),
            last_modified_value: HeaderValue::from_str(&last_modified).expect("a date is ASCII"),
            tag,
            last_modified,
        }
    }

    fn builder(&self) -> axum::http::response::Builder {
        Response::builder()
            .header(header::CONTENT_TYPE, self.content_type)
            .header(header::ETAG, self.tag_value.clone())
            .header(header::LAST_MODIFIED, self.last_modified_value.clone())
            .header(header::ACCEPT_RANGES, "bytes")
            .header(
                header::CACHE_CONTROL,
                if self.immutable {
                    "public, max-age=31536000, immutable"
                } else {
                    "no-cache"
                },
            )
    }

    /// Conditional requests: If-None-Match wins over If-Modified-Since (RFC 9110 13.2.2).
    fn not_modified(&self, headers: &HeaderMap) -> bool {
        match header_str(headers, header::IF_NONE_MATCH) {
            Some(inm) => inm.split(',').any(|t| {
                let t = t.trim();
                t == "*" || t.trim_start_matches("W/") == self.tag
            }),
            None => header_str(headers, header::IF_MODIFIED_SINCE)
                .and_then(|s| httpdate::parse_http_date(s).ok())
                .is_some_and(|since| {
                    let secs = |t: SystemTime| {
                        t.duration_since(SystemTime::UNIX_EPOCH)
                            .map_or(0, |d| d.as_secs())
                    };
                    secs(self.modified) <= secs(since)
                }),
        }
    }

    /// The byte range to send (with If-Range: only while the validator still matches).
    fn range(&self, headers: &HeaderMap) -> Result<Option<(u64, u64)>, ()> {
        let if_range_ok = match header_str(headers, header::IF_RANGE) {
            None => true,
            Some(v) if v.starts_with('"') || v.starts_with("W/") => v == self.tag,
            Some(v) => httpdate::parse_http_date(v)
                .ok()
                .is_some_and(|d| httpdate::fmt_http_date(d) == self.last_modified),
        };
        if if_range_ok {
            parse_range(header_str(headers, header::RANGE), self.len)
        } else {
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_refuse_escapes() {
        assert_eq!(
            segments("test/dists/x/InRelease").unwrap(),
            ["test", "dists", "x", "InRelease"]
        );
        assert_eq!(segments("test/dists/").unwrap(), ["test", "dists"]);
        for bad in [
            "test/../mbd.redb",
            "test/%2e%2e/keys",
            "test/dists/%2Fetc",
            "test//dists",
            "test/.hidden",
            "test/a%00b",
            "test/%zz",
        ] {
            assert!(
                matches!(segments(bad), Err(Refusal::Invalid(_))),
                "{bad} was accepted"
            );
        }
    }

    #[test]
    fn resolve_stays_inside_published_trees() {
        let dir = tempfile::tempdir().unwrap();
        let repos = dir.path().join("repositories");
        std::fs::create_dir_all(repos.join("test/dists/d")).unwrap();
        std::fs::create_dir_all(repos.join("test/conf")).unwrap();
        std::fs::write(repos.join("test/dists/d/Release"), "x").unwrap();
        std::fs::write(dir.path().join("secret"), "key").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret"), repos.join("test/dists/link"))
            .unwrap();
        let segs = |s: &str| segments(s).unwrap();
        assert!(resolve(&repos, &segs("test/dists/d/Release")).is_ok());
        assert_eq!(
            resolve(&repos, &segs("test/dists/link")),
            Err(Refusal::NotFound)
        );
        assert_eq!(resolve(&repos, &segs("test/conf")), Err(Refusal::NotFound));
        assert_eq!(resolve(&repos, &segs("Test/dists")), Err(Refusal::NotFound));
    }

    /// A cached file is answered from memory within its generation; in the next one a file
    /// replaced by rename is read again and a deleted one is a 404.
    #[tokio::test]
    async fn cached_files_are_checked_again_in_a_new_generation() {
        let dir = tempfile::tempdir().unwrap();
        let repos = dir.path().join("repositories");
        let d = repos.join("test/dists/d");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("InRelease"), "one").unwrap();
        let cache = std::sync::Arc::new(Cache::default());
        let get = |generation: u64| {
            let (cache, repos) = (cache.clone(), std::sync::Arc::from(repos.as_path()));
            async move {
                let r = serve(
                    cache,
                    generation,
                    repos,
                    "test/dists/d/InRelease".into(),
                    Method::GET,
                    HeaderMap::new(),
                )
                .await;
                match r {
                    Err(e) => Err(e),
                    Ok(r) => {
                        let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
                        Ok(String::from_utf8(body.to_vec()).unwrap())
                    }
                }
            }
        };
        assert_eq!(get(1).await, Ok("one".to_string()));
        std::fs::write(d.join(".new"), "two, longer").unwrap();
        std::fs::rename(d.join(".new"), d.join("InRelease")).unwrap();
        // Same generation: no writer ran, the copy in memory answers.
        assert_eq!(get(1).await, Ok("one".to_string()));
        assert_eq!(get(2).await, Ok("two, longer".to_string()));
        std::fs::remove_file(d.join("InRelease")).unwrap();
        assert_eq!(get(3).await, Err(Refusal::NotFound));
        assert!(cache.get("test/dists/d/InRelease").is_none());
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range(Some("bytes=0-9"), 100), Ok(Some((0, 9))));
        assert_eq!(parse_range(Some("bytes=90-"), 100), Ok(Some((90, 99))));
        assert_eq!(parse_range(Some("bytes=-10"), 100), Ok(Some((90, 99))));
        assert_eq!(parse_range(Some("bytes=50-500"), 100), Ok(Some((50, 99))));
        assert_eq!(parse_range(Some("bytes=100-"), 100), Err(()));
        assert_eq!(parse_range(Some("bytes=0-1,5-6"), 100), Ok(None));
        assert_eq!(parse_range(None, 100), Ok(None));
        // Malformed: ignored, the whole file goes out.
        for bad in [
            "bytes=abc",
            "bytes=-",
            "bytes=1-x",
            "bytes=99999999999999999999-",
            "items=0-1",
        ] {
            assert_eq!(parse_range(Some(bad), 100), Ok(None), "{bad}");
        }
        assert_eq!(parse_range(Some("bytes=-0"), 100), Err(()));
    }

    #[test]
    fn content_types() {
        assert_eq!(
            content_type("a_1_amd64.deb"),
            "application/vnd.debian.binary-package"
        );
        assert_eq!(content_type("InRelease"), "text/plain; charset=utf-8");
        assert_eq!(content_type("Packages.xz"), "application/x-xz");
        assert_eq!(content_type("0123abcd"), "application/octet-stream");
        for name in ["x.html", "x.htm", "x.svg", "x.xhtml", "x.js"] {
            assert_eq!(content_type(name), "application/octet-stream", "{name}");
        }
    }
}
