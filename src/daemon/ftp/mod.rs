//! FTP into incoming (libunftp), as mini-buildd's dput.cf uses it: anonymous by default, with
//! users' logins when the daemon requires them, and FTPS (`AUTH TLS`) when a certificate is
//! configured.
//!
//! The storage backend is write-only: a client may change into `/` or `/incoming` and store
//! files there, nothing else — no listing (of others' uploads), no download, no delete,
//! rename or directories, no resumed uploads. Files are received like `PUT /incoming/<file>`:
//! to a hidden name, then linked into place when complete (never overwriting other content),
//! and a `.changes` triggers its decision.

mod listen;

pub use listen::serve;

use crate::api::Context;
use async_trait::async_trait;
use std::fmt::Debug;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;
use unftp_core::auth::DefaultUser;
use unftp_core::storage::{Error, ErrorKind, Fileinfo, Metadata, Result, StorageBackend};

/// The FTP view of incoming.
#[derive(Clone)]
pub struct IncomingStorage {
    ctx: Arc<Context>,
    /// The session's client address (its uploads count against its quota).
    client: std::net::IpAddr,
}

impl Debug for IncomingStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IncomingStorage")
            .field("dir", &self.ctx.incoming.dir)
            .finish()
    }
}

impl IncomingStorage {
    pub fn new(ctx: Arc<Context>, client: std::net::IpAddr) -> IncomingStorage {
        IncomingStorage { ctx, client }
    }
}

/// Metadata of the one directory there is.
#[derive(Debug)]
pub struct DirMeta;

impl Metadata for DirMeta {
    fn len(&self) -> u64 {
        0
    }
    fn is_dir(&self) -> bool {
        true
    }
    fn is_file(&self) -> bool {
        false
    }
    fn is_symlink(&self) -> bool {
        false
    }
    fn modified(&self) -> Result<SystemTime> {
        Ok(SystemTime::UNIX_EPOCH)
    }
    fn gid(&self) -> u32 {
        0
    }
    fn uid(&self) -> u32 {
        0
    }
}

/// The normal names of a path (`/`, `.` dropped); `..` is refused outright.
fn names(path: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for c in path.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => out.push(n.to_string_lossy().into_owned()),
            Component::ParentDir | Component::Prefix(_) => {
                return Err(ErrorKind::PermissionDenied.into());
            }
        }
    }
    Ok(out)
}

/// Whether a path is the incoming directory (`/` or `/incoming`).
fn is_incoming(path: &Path) -> bool {
    match names(path) {
        Ok(n) => n.is_empty() || n == ["incoming"],
        Err(_) => false,
    }
}

/// The file name a store command names: `x`, `/x`, `incoming/x` or `/incoming/x`.
fn file_name(path: &Path) -> Result<String> {
    match names(path)?.as_slice() {
        [name] => Ok(name.clone()),
        [dir, name] if dir == "incoming" => Ok(name.clone()),
        _ => Err(ErrorKind::PermissionDenied.into()),
    }
}

fn denied<T>() -> Result<T> {
    Err(ErrorKind::PermissionDenied.into())
}

#[async_trait]
impl StorageBackend<DefaultUser> for IncomingStorage {
    type Metadata = DirMeta;

    fn supported_features(&self) -> u32 {
        0
    }

    async fn metadata<P: AsRef<Path> + Send + Debug>(
        &self,
        _user: &DefaultUser,
        path: P,
    ) -> Result<DirMeta> {
        if is_incoming(path.as_ref()) {
            Ok(DirMeta)
        } else {
            Err(ErrorKind::PermanentFileNotAvailable.into())
        }
    }

    async fn list<P: AsRef<Path> + Send + Debug>(
        &self,
        _user: &DefaultUser,
        _path: P,
    ) -> Result<Vec<Fileinfo<PathBuf, DirMeta>>> {
        // Other people's uploads are not listed.
        Ok(Vec::new())
    }

    async fn get<P: AsRef<Path> + Send + Debug>(
        &self,
        _user: &DefaultUser,
        _path: P,
        _start_pos: u64,
    ) -> Result<Box<dyn tokio::io::AsyncRead + Send + Sync + Unpin>> {
        denied()
    }

    async fn put<
        P: AsRef<Path> + Send + Debug,
        R: tokio::io::AsyncRead + Send + Sync + Unpin + 'static,
    >(
        &self,
        _user: &DefaultUser,
        input: R,
        path: P,
        start_pos: u64,
    ) -> Result<u64> {
        use tokio::io::AsyncWriteExt;
        if start_pos != 0 {
            return denied();
        }
        let name = file_name(path.as_ref())?;
        let incoming = self.ctx.incoming.clone();
        incoming
            .target(&name)
            .map_err(|e| Error::new(ErrorKind::PermissionDenied, e))?;
        let allowance = {
            let (incoming, name, max) = (incoming.clone(), name.clone(), self.ctx.incoming_limits);
            let client = self.client;
            tokio::task::spawn_blocking(move || incoming.allowance(&name, &max, Some(client)))
                .await
                .map_err(|e| Error::new(ErrorKind::LocalError, e))?
                .map_err(refused)?
        };
        let tmp = incoming.temporary();
        let mut file = tokio::fs::File::create(&tmp).await?;
        let mut input = tokio::io::AsyncReadExt::take(input, allowance.most() + 1);
        let copied = tokio::io::copy(&mut input, &mut file).await;
        let flushed = file.flush().await;
        drop(file);
        let checked = match (copied, flushed) {
            (Ok(n), Ok(())) => allowance.check(n).map(|()| n).map_err(refused),
            (Err(e), _) | (_, Err(e)) => Err(e.into()),
        };
        let n = match checked {
            Ok(n) => n,
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                return Err(e);
            }
        };
        let committed = {
            let (incoming, name) = (incoming.clone(), name.clone());
            let client = self.client;
            tokio::task::spawn_blocking(move || incoming.commit(&tmp, &name, Some(client)))
                .await
                .map_err(|e| Error::new(ErrorKind::LocalError, e))?
        };
        let path = committed.map_err(|e| Error::new(ErrorKind::PermanentFileNotAvailable, e))?;
        tracing::info!(file = %name, bytes = n, "upload received (ftp)");
        if name.ends_with(".changes") {
            let ctx = self.ctx.clone();
            tokio::task::spawn_blocking(move || ctx.process_uploads(Some(&path)));
        }
        Ok(n)
    }

    async fn del<P: AsRef<Path> + Send + Debug>(
        &self,
        _user: &DefaultUser,
        _path: P,
    ) -> Result<()> {
        denied()
    }

    async fn mkd<P: AsRef<Path> + Send + Debug>(
        &self,
        _user: &DefaultUser,
        _path: P,
    ) -> Result<()> {
        denied()
    }

    async fn rename<P: AsRef<Path> + Send + Debug>(
        &self,
        _user: &DefaultUser,
        _from: P,
        _to: P,
    ) -> Result<()> {
        denied()
    }

    async fn rmd<P: AsRef<Path> + Send + Debug>(
        &self,
        _user: &DefaultUser,
        _path: P,
    ) -> Result<()> {
        denied()
    }

    async fn cwd<P: AsRef<Path> + Send + Debug>(&self, _user: &DefaultUser, path: P) -> Result<()> {
        if is_incoming(path.as_ref()) {
            Ok(())
        } else {
            Err(ErrorKind::PermanentDirectoryNotAvailable.into())
        }
    }
}

/// Logins when uploads need one: a user name with the user's password or one of their tokens.
pub(super) struct UserLogin {
    pub ctx: Arc<Context>,
}

impl Debug for UserLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UserLogin")
    }
}

#[async_trait]
impl unftp_core::auth::Authenticator for UserLogin {
    async fn authenticate(
        &self,
        username: &str,
        creds: &unftp_core::auth::Credentials,
    ) -> std::result::Result<unftp_core::auth::Principal, unftp_core::auth::AuthenticationError>
    {
        use unftp_core::auth::AuthenticationError;
        let backoff = crate::users::Backoff::global();
        if backoff
            .wait(&creds.source_ip, std::time::Instant::now())
            .is_some()
        {
            return Err(AuthenticationError::BadPassword);
        }
        let ctx = self.ctx.clone();
        let (name, password) = (
            username.to_string(),
            creds.password.clone().unwrap_or_default(),
        );
        let checked = tokio::task::spawn_blocking(move || {
            crate::api::auth::login(ctx.state(), &name, &password)
        })
        .await;
        match checked {
            Ok(Ok(user)) => {
                backoff.succeeded(&creds.source_ip);
                Ok(unftp_core::auth::Principal {
                    username: user.name,
                })
            }
            _ => {
                backoff.failed(creds.source_ip, std::time::Instant::now());
                Err(AuthenticationError::BadPassword)
            }
        }
    }
}

/// Anonymous logins (any name and password) from the networks `anonymous_uploads_from`
/// names; from anywhere else, none.
pub(super) struct AnonymousFrom {
    pub ctx: Arc<Context>,
}

impl Debug for AnonymousFrom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AnonymousFrom")
    }
}

#[async_trait]
impl unftp_core::auth::Authenticator for AnonymousFrom {
    async fn authenticate(
        &self,
        _username: &str,
        creds: &unftp_core::auth::Credentials,
    ) -> std::result::Result<unftp_core::auth::Principal, unftp_core::auth::AuthenticationError>
    {
        match self.ctx.anonymous_upload_refusal(creds.source_ip) {
            None => Ok(unftp_core::auth::Principal {
                username: "anonymous".to_string(),
            }),
            Some(why) => {
                tracing::info!(peer = %creds.source_ip, "ftp login refused: {why}");
                Err(unftp_core::auth::AuthenticationError::BadPassword)
            }
        }
    }
}

/// The FTP answer to a file over its size limit (552) or with no room in incoming (452).
fn refused(oversize: crate::incoming::Oversize) -> Error {
    use crate::incoming::Oversize;
    match oversize {
        Oversize::TooLarge(why) => Error::new(ErrorKind::ExceededStorageAllocationError, why),
        Oversize::NoRoom(why) => Error::new(ErrorKind::InsufficientStorageSpaceError, why),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_incoming_is_reachable() {
        assert!(is_incoming(Path::new("/")));
        assert!(is_incoming(Path::new("/incoming")));
        assert!(is_incoming(Path::new("incoming/")));
        assert!(!is_incoming(Path::new("/etc")));
        assert!(!is_incoming(Path::new("/incoming/..")));
        assert_eq!(file_name(Path::new("/incoming/x.dsc")).unwrap(), "x.dsc");
        assert_eq!(file_name(Path::new("x.dsc")).unwrap(), "x.dsc");
        assert!(file_name(Path::new("/incoming/../x")).is_err());
        assert!(file_name(Path::new("/var/x")).is_err());
        assert!(file_name(Path::new("/")).is_err());
    }
}
