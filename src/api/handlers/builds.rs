//! Handlers of the calls on the build queue and the chroots.

use crate::api::{ApiError, Context, Invocation, Output};
use serde_json::json;
use std::collections::BTreeMap;

pub(crate) fn builds(ctx: &Context, inv: &Invocation) -> Result<Output, ApiError> {
    let list: Vec<serde_json::Value> = crate::build::queue::overview(ctx.state())?
        .into_iter()
        .filter(|(u, _)| inv.args.opt("source").is_none_or(|s| u.source == s))
        .map(|(u, b)| {
            let builds: BTreeMap<String, serde_json::Value> = b
                .into_iter()
                .map(|(arch, b)| {
                    (
                        arch.clone(),
                        json!({
                            "state": crate::build::queue::state_name(b.state),
                            "status": b.status,
                            "fail_stage": b.fail_stage,
                            "arch_all": b.arch_all,
                            "optional": b.optional,
                            "attempts": b.attempts,
                            "started": b.started,
                            "finished": b.finished,
                            "log": format!("{}/logs/{}/{arch}", ctx.url, u.id),
                            // Where it builds: empty here, else the remote's URL, the
                            // request it builds and its live log there.
                            "builder": b.builder,
                            "request": b.request,
                            "remote_log": (!b.builder.is_empty() && !b.request.is_empty())
                                .then(|| format!("{}/remote/logs/{}", b.builder, b.request)),
                        }),
                    )
                })
                .collect();
            json!({
                "upload": u.id,
                "source": u.source,
                "version": u.version,
                "distribution": u.distribution,
                "state": u.state,
                "reason": u.reason,
                "builds": builds,
            })
        })
        .collect();
    Output::json(&list)
}

pub(crate) fn cancel(ctx: &Context, inv: &Invocation) -> Result<Output, ApiError> {
    let id = inv.args.str("upload");
    let events = crate::build::queue::cancel(ctx.state(), id)?;
    ctx.builds.cancel(id);
    for e in events {
        ctx.announce(e);
    }
    Ok(Output::Text(format!("{id}: cancelled")))
}

pub(crate) fn retry(ctx: &Context, inv: &Invocation) -> Result<Output, ApiError> {
    let id = inv.args.str("upload");
    let dirs = crate::build::queue::Dirs::new(&ctx.home());
    let n = crate::build::queue::retry(ctx.state(), &dirs, id)?;
    ctx.builds.forget(id);
    ctx.builds.nudge();
    Ok(Output::Text(format!("{id}: {n} build(s) queued again")))
}

pub(crate) fn chroots(ctx: &Context, _: &Invocation) -> Result<Output, ApiError> {
    let home = ctx.home();
    let all: Vec<serde_json::Value> = crate::build::chroot::all(ctx.state())?
        .into_iter()
        .map(|c| {
            let mut v = json!(c);
            v["label"] = json!(c.status().label());
            v["schroot"] = json!(c.schroot_name(&home));
            v
        })
        .collect();
    Ok(Output::Json(json!(all)))
}

pub(crate) fn find_chroot(
    ctx: &Context,
    id: &str,
) -> Result<crate::build::chroot::Chroot, ApiError> {
    Ok(crate::build::chroot::find(ctx.state(), id)?)
}

pub(crate) fn chroot_prepare(ctx: &Context, inv: &Invocation) -> Result<Output, ApiError> {
    use crate::build::chroot::{Backend, Chroot, ChrootState};
    let a = &inv.args;
    let (codename, arch) = (a.str("codename"), a.str("architecture"));
    use crate::build::chroot::helper;
    helper::check_name("codename", codename)
        .and_then(|()| helper::check_name("architecture", arch))
        .map_err(|e| ApiError::BadRequest(format!("chroot_prepare: {e}")))?;
    let backend = match a.str("backend") {
        "directory" => Backend::Directory,
        "file" => Backend::File,
        other => {
            return Err(ApiError::BadRequest(format!(
                "chroot_prepare: backend '{other}' is not directory or file"
            )));
        }
    };
    let id = format!("{codename}-{arch}");
    if let Ok(c) = find_chroot(ctx, &id) {
        if c.state == ChrootState::Preparing {
            return Err(ApiError::Conflict(format!(
                "chroot {id} is being prepared already"
            )));
        }
    }
    let mirror = match a.opt("mirror") {
        Some(m) => m.to_string(),
        None => crate::build::chroot::mirror_from_apt_sources(std::path::Path::new("/etc/apt"), codename)
            .ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "chroot_prepare: the host's apt sources name no archive for {codename}; give --mirror"
                ))
            })?,
    };
    helper::check_mirror(&mirror)
        .map_err(|e| ApiError::BadRequest(format!("chroot_prepare: {e}")))?;
    ctx.builds
        .request(ctx.state(), Chroot::new(codename, arch, &mirror, backend))?;
    Ok(Output::Text(format!(
        "preparing chroot {id} from {mirror} in the background (see `chroots`)"
    )))
}

pub(crate) fn chroot_check(ctx: &Context, inv: &Invocation) -> Result<Output, ApiError> {
    let c = find_chroot(ctx, inv.args.str("chroot"))?;
    crate::build::chroot::check(&c, &ctx.home())?;
    Ok(Output::Text(format!("chroot {} checked", c.id())))
}

pub(crate) fn chroot_remove(ctx: &Context, inv: &Invocation) -> Result<Output, ApiError> {
    let c = find_chroot(ctx, inv.args.str("chroot"))?;
    if c.state == crate::build::chroot::ChrootState::Preparing {
        return Err(ApiError::Conflict(format!(
            "chroot {} is being prepared",
            c.id()
        )));
    }
    crate::build::chroot::remove(&c, &ctx.home())?;
    ctx.state()
        .delete::<crate::build::chroot::Chroot>(&c.id())?;
    Ok(Output::Text(format!("chroot {} removed", c.id())))
}

/// The status actions on a chroot: prepare (make it again, in the background), check
/// (update and upgrade it), activate, deactivate (no builds start in it), remove; pca
/// prepares it and it is active once ready.
pub(crate) fn chroot_action(ctx: &Context, id: &str, action: &str) -> Result<Output, ApiError> {
    use crate::build::chroot::ChrootState;
    let mut c = find_chroot(ctx, id)?;
    let key = c.id();
    let busy = || ApiError::Conflict(format!("chroot {} is being prepared", c.id()));
    match action {
        "prepare" | "pca" => {
            if c.state == ChrootState::Preparing {
                return Err(busy());
            }
            c.deactivated = false;
            ctx.builds.request(ctx.state(), c.clone())?;
            c = find_chroot(ctx, id)?;
        }
        "check" | "pc" => {
            if c.state == ChrootState::Preparing {
                return Err(busy());
            }
            crate::build::chroot::check_and_record(ctx.state(), &ctx.home(), c.clone())?;
        }
        "activate" => {
            if c.state != ChrootState::Ready {
                return Err(ApiError::BadRequest(format!(
                    "chroot {}: prepare and check it first ({})",
                    c.id(),
                    c.status().label()
                )));
            }
            c.deactivated = false;
            ctx.state().put(&key, &c)?;
            ctx.builds.nudge();
        }
        "deactivate" => {
            c.deactivated = true;
            ctx.state().put(&key, &c)?;
        }
        "remove" => {
            if c.state == ChrootState::Preparing {
                return Err(busy());
            }
            crate::build::chroot::remove(&c, &ctx.home())?;
            ctx.state().delete::<crate::build::chroot::Chroot>(&key)?;
            return Output::json(&json!({"label": "Removed"}));
        }
        other => {
            return Err(ApiError::BadRequest(format!(
                "config_action: unknown action '{other}' (known: {})",
                crate::config::ACTIONS
            )));
        }
    }
    let status = c.status();
    Output::json(&json!({"status": status, "label": status.label()}))
}

/// Prepares the given chroots (all when none is named) again, in the background, as
/// `config_action chroot ID prepare` does for one.
pub(crate) fn remake_chroots(ctx: &Context, inv: &Invocation) -> Result<Output, ApiError> {
    let wanted = inv.args.list("chroots");
    let all: Vec<String> = crate::build::chroot::all(ctx.state())?
        .iter()
        .map(|c| c.id())
        .collect();
    if let Some(unknown) = wanted.iter().find(|w| !all.contains(w)) {
        return Err(ApiError::NotFound(format!(
            "remake_chroots: no chroot '{unknown}' (there are: {})",
            all.join(", ")
        )));
    }
    let mut result = serde_json::Map::new();
    for id in all
        .iter()
        .filter(|id| wanted.is_empty() || wanted.contains(id))
    {
        let outcome = match chroot_action(ctx, id, "prepare") {
            Ok(_) => "preparing".to_string(),
            Err(e) => format!("failed: {e}"),
        };
        result.insert(id.clone(), json!(outcome));
    }
    Ok(Output::Json(serde_json::Value::Object(result)))
}
