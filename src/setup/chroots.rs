//! Chroots: one per codename and architecture asked for, prepared (pca) once its source is
//! active, carrying its distribution's security source.

use super::{Entry, Setup, entry};
use crate::build::chroot::{Backend, Chroot, ChrootState};
use crate::config::{self, ConfigError};
use crate::repo::Engine;
use crate::state::StateStore;

/// The chroot backend asked for (`directory`, the default, or `file`).
pub(super) fn parse_backend(name: &str) -> Result<Backend, ConfigError> {
    match name {
        "" | "directory" | "Dir" => Ok(Backend::Directory),
        "file" | "File" => Ok(Backend::File),
        other => Err(ConfigError::Setup(format!(
            "chroot backend '{other}' is not directory or file"
        ))),
    }
}

impl Setup<'_> {
    /// Chroots: those asked for (`codename:arch`), or one for each wanted distribution and
    /// architecture; with pca, a missing or failed one whose source is active is prepared.
    pub(super) fn chroots_step(
        &mut self,
        wanted_dists: &[(String, Vec<String>)],
        backend: Backend,
    ) -> Result<(), ConfigError> {
        let req = &self.req;
        let mut wanted_chroots: Vec<(String, String)> = Vec::new();
        for spec in &req.chroots {
            let (c, a) = spec.split_once(':').ok_or_else(|| {
                ConfigError::Setup(format!("'{spec}' is not '<codename>:<architecture>'"))
            })?;
            wanted_chroots.push((c.to_string(), a.to_string()));
        }
        if req.chroots_from_sources && req.chroots.is_empty() {
            for (c, archs) in wanted_dists {
                for a in archs {
                    wanted_chroots.push((c.clone(), a.clone()));
                }
            }
        }
        let chroots = crate::build::chroot::all(self.state)?;
        for (codename, arch) in &wanted_chroots {
            let e = self.chroot_entry(codename, arch, &chroots, backend)?;
            self.report.push(e);
        }
        Ok(())
    }

    /// One chroot's entry: its state, or why it waits; with pca, the request to prepare it.
    fn chroot_entry(
        &mut self,
        codename: &str,
        arch: &str,
        chroots: &[Chroot],
        backend: Backend,
    ) -> Result<Entry, ConfigError> {
        let id = format!("{codename}-{arch}");
        let mut e = entry("chroot", &id, "missing");
        let existing = chroots.iter().find(|c| c.id() == id);
        if let Some(c) = existing {
            e.status = match c.state {
                ChrootState::Ready => "active",
                ChrootState::Preparing => "preparing",
                ChrootState::Failed => "failed",
            }
            .to_string();
            e.message = c.message.clone();
        }
        let source = self.active_source(codename)?;
        let needs = existing.is_none_or(|c| c.state == ChrootState::Failed);
        match source {
            None if needs => {
                e.status = if existing.is_some() {
                    "failed"
                } else {
                    "waiting"
                }
                .to_string();
                e.message = format!("source '{codename}' is not active");
            }
            Some(s) if needs && self.req.pca => {
                let mirror = s.archives.first().cloned().unwrap_or_default();
                let mut chroot = Chroot::new(codename, arch, &mirror, backend);
                chroot.extra_sources = security_lines(self.state, self.engine, codename)?;
                chroot.check_valid_until = s.check_valid_until;
                match self.env.request_chroot(self.state, chroot) {
                    Ok(()) => {
                        e.status = "preparing".to_string();
                        e.message = format!("from {mirror}");
                        e.actions.push("pca".to_string());
                    }
                    Err(err) => {
                        e.status = "failed".to_string();
                        e.message = err;
                        e.actions.push("pca(failed)".to_string());
                    }
                }
            }
            _ => {}
        }
        Ok(e)
    }
}

/// The apt lines of a distribution's active extra sources that its chroots carry (from
/// [`config::CHROOT_PRIORITY`] up: security updates).
fn security_lines(
    state: &StateStore,
    engine: &Engine,
    codename: &str,
) -> Result<Vec<String>, ConfigError> {
    let Some(d) = engine.find_distribution(codename)? else {
        return Ok(Vec::new());
    };
    Ok(config::pinned_sources(state, &d)?
        .into_iter()
        .filter(|p| p.priority >= config::CHROOT_PRIORITY)
        .map(|p| p.line)
        .collect())
}
