//! The presets: `Debian` or `Ubuntu` (a bootstrap from that origin), `Current` and `Extend`
//! (what exists).

use super::Request;
use crate::config::origin;
use crate::config::{Archive, ConfigError, Source};
use crate::repo::Engine;
use crate::state::StateStore;

/// Fills in what the request's preset stands for (nothing without a preset).
pub(super) fn apply_preset(
    engine: &Engine,
    state: &StateStore,
    req: &mut Request,
) -> Result<(), ConfigError> {
    if let Some(p) = req
        .preset
        .clone()
        .filter(|p| p == "Current" || p == "Extend")
    {
        current(engine, state, req)?;
        if p == "Extend" {
            req.update = true;
            req.pca = true;
        }
    } else if let Some(p) = req.preset.clone() {
        let o = origin::find(&p).ok_or_else(|| {
            ConfigError::Setup(format!(
                "unknown preset '{p}' (known: {}, Current, Extend)",
                origin::names()
            ))
        })?;
        if req.from_origins.is_empty() {
            req.from_origins = vec![o.name.to_string()];
        }
        req.archives_from_origins |= req.archives.is_empty() && !req.archives_from_apt_sources;
        req.sources_from_origins |= req.sources.is_empty();
        req.distributions_from_sources |= req.distributions.is_empty();
        if req.repositories.is_empty() && req.repositories_from_distributions.is_empty() {
            req.repositories_from_distributions = vec!["test".to_string()];
        }
        req.chroots_from_sources |= req.chroots.is_empty();
        req.update = true;
        req.pca = true;
    }
    Ok(())
}

/// The `Current` and `Extend` presets: the request that names what exists (archives, the
/// distributions' base sources and their origins, distributions, repositories, chroots), added
/// to what the request names itself. Its report shows every object's status and what differs
/// from what setup would make now; `Extend` also applies it (update, pca), which brings
/// changed or failed objects back and adds what the objects imply but lacks (an extra source
/// that became available, a repository's new codename).
fn current(engine: &Engine, state: &StateStore, req: &mut Request) -> Result<(), ConfigError> {
    let push = |list: &mut Vec<String>, item: String| {
        if !list.contains(&item) {
            list.push(item);
        }
    };
    for (_, a) in state.all::<Archive>()? {
        push(&mut req.archives, a.url);
    }
    for d in engine.distributions()? {
        let base = if d.base_source.is_empty() {
            d.codename.clone()
        } else {
            d.base_source.clone()
        };
        if let Some(s) = state.get::<Source>(&Source::key(&base))? {
            push(&mut req.from_origins, s.origin.clone());
            push(&mut req.sources, base);
        }
        push(
            &mut req.distributions,
            format!("{}:{}", d.codename, d.architectures.join("+")),
        );
    }
    for r in engine.repositories()? {
        push(
            &mut req.repositories,
            format!("{}:{}:{}", r.identity, r.layout, r.codenames.join("+")),
        );
    }
    for c in crate::build::chroot::all(state)? {
        push(
            &mut req.chroots,
            format!("{}:{}", c.codename, c.architecture),
        );
    }
    Ok(())
}
