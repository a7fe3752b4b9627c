//! How much an upload may bring: per file (by kind), per client address, and in all.
//!
//! The limits come from `etc/mbd.toml` ([`Limits`]). A file is refused as soon as it is
//! known to pass one: from its announced length before anything is stored, else while it
//! streams in. What a client has sent is remembered from the moment a file is in place
//! ([`Incoming::received`]) until it leaves incoming (decided, or removed as an orphan); a
//! daemon restart forgets it (the files stay counted in the total).

use super::{Incoming, IncomingError, io};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// The default largest file an upload may carry (control files: [`crate::files::MAX_CONTROL_FILE`]).
pub const MAX_FILE: u64 = 4 << 30;

/// The upload limits of `etc/mbd.toml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// `incoming_max_bytes`: what incoming may hold in all.
    pub total: u64,
    /// `incoming_client_max_bytes`: what the files one client address sent may take.
    pub per_client: u64,
    /// `incoming_file_max_bytes`: the largest file (other than control files).
    pub per_file: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            total: 20 << 30,
            per_client: 8 << 30,
            per_file: MAX_FILE,
        }
    }
}

/// The largest file of this name an upload may carry under `limits`: `.changes`, `.dsc` and
/// `.buildinfo` files are small, so they are capped much lower than packages and tarballs.
pub fn size_limit(name: &str, limits: &Limits) -> u64 {
    if [".changes", ".dsc", ".buildinfo"]
        .iter()
        .any(|ext| name.ends_with(ext))
    {
        crate::files::MAX_CONTROL_FILE.min(limits.per_file)
    } else {
        limits.per_file
    }
}

/// How large a file being received may grow: its kind's limit ([`size_limit`]), the room
/// left in incoming and the room left to its client.
#[derive(Debug, Clone)]
pub struct Allowance {
    name: String,
    limit: u64,
    room: u64,
    client_room: u64,
    /// What the disk takes before the stores' reserve is reached.
    disk_room: u64,
}

/// Why a file is refused for its size; the message names the file and the limit or setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Oversize {
    /// Over the limit for its kind (HTTP 413).
    TooLarge(String),
    /// Over the room left in incoming, or to its client (HTTP 507, FTP 452).
    NoRoom(String),
}

impl Allowance {
    /// The most bytes worth reading: one past this is a refusal.
    pub fn most(&self) -> u64 {
        self.limit
            .min(self.room)
            .min(self.client_room)
            .min(self.disk_room)
    }

    /// Whether `size` bytes (received, or announced) fit.
    pub fn check(&self, size: u64) -> Result<(), Oversize> {
        let name = &self.name;
        if size > self.limit {
            return Err(Oversize::TooLarge(format!(
                "{name}: {size} bytes or more; a file of this kind may be at most {} bytes (incoming_file_max_bytes in etc/mbd.toml; control files at most {})",
                self.limit,
                crate::files::MAX_CONTROL_FILE
            )));
        }
        if size > self.room {
            return Err(Oversize::NoRoom(format!(
                "{name}: incoming has room for {} more bytes, not {size} (incoming_max_bytes in etc/mbd.toml)",
                self.room
            )));
        }
        if size > self.disk_room {
            return Err(Oversize::NoRoom(format!(
                "{name}: No space left on device: the disk takes {} more bytes, not {size}",
                self.disk_room
            )));
        }
        if size > self.client_room {
            return Err(Oversize::NoRoom(format!(
                "{name}: your address may have {} more bytes waiting in incoming, not {size} (incoming_client_max_bytes in etc/mbd.toml); try again once your uploads are decided",
                self.client_room
            )));
        }
        Ok(())
    }
}

/// The files waiting in incoming by the address that sent them, with their sizes.
#[derive(Debug, Clone, Default)]
pub(super) struct Owners(Arc<Mutex<HashMap<String, (IpAddr, u64)>>>);

impl Incoming {
    /// The bytes incoming holds now: files waiting and files being received.
    pub fn used_bytes(&self) -> Result<u64, IncomingError> {
        let mut used = 0;
        for e in std::fs::read_dir(&self.dir).map_err(io(&self.dir))? {
            let e = e.map_err(io(&self.dir))?;
            used += e.metadata().map(|m| m.len()).unwrap_or(0);
        }
        Ok(used)
    }

    /// The bytes of the files `client` sent that still wait (forgetting those gone).
    pub fn client_bytes(&self, client: IpAddr) -> u64 {
        let mut owners = self.owners.0.lock().unwrap_or_else(|e| e.into_inner());
        owners.retain(|name, (_, size)| {
            std::fs::metadata(self.dir.join(name)).is_ok_and(|m| m.len() == *size)
        });
        owners
            .values()
            .filter(|(ip, _)| *ip == client)
            .map(|(_, size)| size)
            .sum()
    }

    /// `client` sent the file `name` now in place.
    pub fn received(&self, name: &str, client: IpAddr) {
        let Ok(m) = std::fs::metadata(self.dir.join(name)) else {
            return;
        };
        self.owners
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), (client, m.len()));
    }

    /// What a new file named `name` from `client` may be, given what incoming holds, what
    /// the client sent and `limits`; [`Oversize::NoRoom`] when there is no room at all.
    pub fn allowance(
        &self,
        name: &str,
        limits: &Limits,
        client: Option<IpAddr>,
    ) -> Result<Allowance, Oversize> {
        let used = self
            .used_bytes()
            .map_err(|e| Oversize::NoRoom(e.to_string()))?;
        let max = limits.total;
        if used >= max {
            return Err(Oversize::NoRoom(format!(
                "{name}: incoming is full: it holds {used} bytes of the {max} allowed (incoming_max_bytes in etc/mbd.toml); try again once waiting uploads are decided"
            )));
        }
        let disk_room = crate::files::free_bytes(&self.dir)
            .map(|free| free.saturating_sub(crate::files::store_reserve()))
            .map_err(|e| Oversize::NoRoom(format!("{name}: {e}")))?;
        if disk_room == 0 {
            return Err(Oversize::NoRoom(format!(
                "{name}: No space left on device: the disk holding incoming is full"
            )));
        }
        let mine = client.map_or(0, |c| self.client_bytes(c));
        if mine >= limits.per_client {
            return Err(Oversize::NoRoom(format!(
                "{name}: your address has {mine} bytes waiting in incoming, of the {} allowed (incoming_client_max_bytes in etc/mbd.toml); try again once your uploads are decided",
                limits.per_client
            )));
        }
        Ok(Allowance {
            name: name.to_string(),
            limit: size_limit(name, limits),
            room: max - used,
            client_room: limits.per_client - mine,
            disk_room,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_limits_by_name() {
        let l = Limits::default();
        assert_eq!(
            size_limit("x_1_source.changes", &l),
            crate::files::MAX_CONTROL_FILE
        );
        assert_eq!(size_limit("x_1.dsc", &l), crate::files::MAX_CONTROL_FILE);
        assert_eq!(size_limit("x_1_amd64.buildinfo", &l), 1 << 20);
        assert_eq!(size_limit("x_1.orig.tar.xz", &l), MAX_FILE);
        let small = Limits {
            per_file: 1000,
            ..l
        };
        assert_eq!(size_limit("x_1.dsc", &small), 1000);
        assert_eq!(size_limit("x_1_all.deb", &small), 1000);
    }

    #[test]
    fn a_client_has_room_for_its_quota_only() {
        let dir = tempfile::tempdir().unwrap();
        let inc = Incoming::new(dir.path());
        inc.create_dirs().unwrap();
        let limits = Limits {
            total: 10_000,
            per_client: 1000,
            per_file: 5000,
        };
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        std::fs::write(inc.dir.join("a_1.orig.tar.gz"), vec![0; 800]).unwrap();
        inc.received("a_1.orig.tar.gz", a);
        let room = inc
            .allowance("a_1.debian.tar.xz", &limits, Some(a))
            .unwrap();
        assert_eq!(room.most(), 200);
        assert!(
            matches!(room.check(201), Err(Oversize::NoRoom(m)) if m.contains("incoming_client_max_bytes"))
        );
        assert_eq!(
            inc.allowance("b_1.tar.gz", &limits, Some(b))
                .unwrap()
                .most(),
            1000
        );
        std::fs::write(inc.dir.join("a_2.tar.gz"), vec![0; 200]).unwrap();
        inc.received("a_2.tar.gz", a);
        assert!(inc.allowance("a_3.tar.gz", &limits, Some(a)).is_err());
        // Once its files are decided (gone), the room is back.
        std::fs::remove_file(inc.dir.join("a_1.orig.tar.gz")).unwrap();
        assert_eq!(inc.client_bytes(a), 200);
    }
}
