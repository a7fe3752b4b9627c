//! Handlers of the calls on users, uploaders, tokens and subscriptions.

use crate::api::auth::{self, Subscription, Token, User};
use crate::api::{ApiError, Context, Invocation, Level, Output};
use crate::state::StateStore;
use serde_json::json;
use std::collections::BTreeMap;

pub(crate) fn all_users(state: &StateStore) -> Result<Vec<User>, ApiError> {
    Ok(state.all::<User>()?.into_iter().map(|(_, u)| u).collect())
}

pub(crate) fn uploaders(ctx: &Context, inv: &Invocation) -> Result<Output, ApiError> {
    let engine = ctx.engine();
    let repos = inv.args.list("repositories");
    let users = all_users(ctx.state())?;
    let mut out = BTreeMap::new();
    for r in engine.repositories()? {
        if repos.is_empty() || repos.contains(&r.identity) {
            let keys: Vec<serde_json::Value> = users
                .iter()
                .filter(|u| u.may_upload_to.is_empty() || u.may_upload_to.contains(&r.identity))
                .filter_map(|u| {
                    u.key_fingerprint.as_ref().map(|f| {
                        json!({
                            "user": u.name,
                            "fingerprint": f,
                            "status": u.uploader.label(),
                            "active": u.may_upload(&r.identity),
                        })
                    })
                })
                .collect();
            out.insert(
                r.identity.clone(),
                json!({
                    "allow_unauthenticated_uploads": r.allow_unauthenticated_uploads,
                    "allow_binary_uploads": r.allow_binary_uploads,
                    "uploaders": keys,
                }),
            );
        }
    }
    Output::json(&out)
}

pub(crate) fn set_repository(ctx: &Context, inv: &Invocation) -> Result<Output, ApiError> {
    let repo = ctx.writer().set_upload_policy(
        inv.args.str("repository"),
        inv.args.bool("allow_unauthenticated_uploads"),
        inv.args.bool("allow_binary_uploads"),
    )?;
    Output::json(&repo)
}

/// The calling user (calls at LOGIN or above always have one).
pub(crate) fn caller(inv: &Invocation) -> Result<&User, ApiError> {
    inv.user
        .as_ref()
        .ok_or_else(|| ApiError::Internal("authorized call without a user".to_string()))
}

pub(crate) fn load_user(state: &StateStore, name: &str) -> Result<User, ApiError> {
    state
        .get::<User>(name)?
        .ok_or_else(|| ApiError::NotFound(format!("No user '{name}'")))
}

pub(crate) fn uploader_activate(ctx: &Context, inv: &Invocation) -> Result<Output, ApiError> {
    let _token = ctx.writer();
    let state = ctx.state();
    let name = inv.args.str("name");
    let mut user = load_user(state, name)?;
    let Some(key) = user.key.clone() else {
        return Err(ApiError::BadRequest(format!(
            "uploader_activate: '{name}' has set no key (set_user_key)"
        )));
    };
    let repos = inv.args.list("repositories").to_vec();
    let known: Vec<String> = ctx
        .engine()
        .repositories()?
        .into_iter()
        .map(|r| r.identity)
        .collect();
    if let Some(bad) = repos.iter().find(|r| !known.contains(r)) {
        return Err(ApiError::NotFound(format!("No repository '{bad}'")));
    }
    // Prepare, check (the key still parses), activate.
    user.uploader.prepared();
    match crate::openpgp::Keyring::from_bytes(key.as_bytes()) {
        Ok(_) => user.uploader.checked(crate::repo::publish_time()),
        Err(e) => {
            user.uploader.failed(e.to_string());
            state.put(name, &user)?;
            return Err(ApiError::BadRequest(format!(
                "uploader_activate: the key of '{name}' is not usable: {e}"
            )));
        }
    }
    user.uploader
        .activate()
        .map_err(|r| ApiError::BadRequest(format!("uploader_activate: {r}")))?;
    user.may_upload_to = repos;
    state.put(name, &user)?;
    Output::json(
        &json!({"user": name, "status": user.uploader.label(), "may_upload_to": user.may_upload_to}),
    )
}

pub(crate) fn uploader_deactivate(ctx: &Context, inv: &Invocation) -> Result<Output, ApiError> {
    let _token = ctx.writer();
    let state = ctx.state();
    let name = inv.args.str("name");
    let mut user = load_user(state, name)?;
    user.uploader.deactivate();
    state.put(name, &user)?;
    Output::json(&json!({"user": name, "status": user.uploader.label()}))
}

pub(crate) fn set_user_email(ctx: &Context, inv: &Invocation) -> Result<Output, ApiError> {
    let email = inv.args.str("email").trim();
    if !email.is_empty() && !crate::users::valid_email(email) {
        return Err(ApiError::BadRequest(format!(
            "set_user_email: '{email}' is not an address like name@example.org"
        )));
    }
    let _token = ctx.writer();
    let name = caller(inv)?.name.clone();
    let mut user = load_user(ctx.state(), &name)?;
    user.email = email.to_string();
    ctx.state().put(&name, &user)?;
    Ok(Output::Text(match email {
        "" => format!("{name} gets no mail"),
        e => format!("mail for {name}'s subscriptions goes to {e}"),
    }))
}

pub(crate) fn set_user_key(ctx: &Context, inv: &Invocation) -> Result<Output, ApiError> {
    let _token = ctx.writer();
    let state = ctx.state();
    let text = inv.args.str("key");
    let keyring = crate::openpgp::Keyring::from_bytes(text.as_bytes())
        .map_err(|e| ApiError::BadRequest(format!("set_user_key: not a usable key: {e}")))?;
    let fingerprints = keyring.fingerprints();
    let [fingerprint] = fingerprints.as_slice() else {
        return Err(ApiError::BadRequest(format!(
            "set_user_key: give exactly one key, not {}",
            fingerprints.len()
        )));
    };
    let name = caller(inv)?.name.clone();
    let mut user = load_user(state, &name)?;
    user.key = Some(text.to_string());
    user.key_fingerprint = Some(fingerprint.clone());
    // A new key waits for staff: the uploader is Prepared, not active.
    user.uploader.changed();
    user.uploader.prepared();
    state.put(&name, &user)?;
    Ok(Output::Text(format!(
        "key {fingerprint} set for {name}; uploads signed with it are taken once staff activates it (uploader_activate)"
    )))
}

pub(crate) fn subscribe(ctx: &Context, inv: &Invocation) -> Result<Output, ApiError> {
    let wanted = Subscription {
        source: inv.args.str("source").to_string(),
        distribution: inv.args.str("distribution").to_string(),
    };
    if !wanted.distribution.is_empty() {
        ctx.engine().resolve(&wanted.distribution)?;
    }
    let _token = ctx.writer();
    let created = auth::subscribe(ctx.state(), &caller(inv)?.name, &wanted)?;
    Ok(Output::Json(json!({
        "created": created,
        "source": wanted.source,
        "distribution": wanted.distribution,
    })))
}

pub(crate) fn unsubscribe(ctx: &Context, inv: &Invocation) -> Result<Output, ApiError> {
    let gone = Subscription {
        source: inv.args.str("source").to_string(),
        distribution: inv.args.str("distribution").to_string(),
    };
    let _token = ctx.writer();
    let removed = if auth::unsubscribe(ctx.state(), &caller(inv)?.name, &gone)? {
        vec![gone]
    } else {
        vec![]
    };
    Output::json(&removed)
}

pub(crate) fn subscriptions(ctx: &Context, inv: &Invocation) -> Result<Output, ApiError> {
    Output::json(&auth::subscriptions(ctx.state(), &caller(inv)?.name)?)
}

pub(crate) fn user_add(ctx: &Context, inv: &Invocation) -> Result<Output, ApiError> {
    let a = &inv.args;
    let level = Level::parse(a.str("level")).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "user_add: level '{}' is not login, staff or admin",
            a.str("level")
        ))
    })?;
    let generated = a.opt("password").is_none();
    let password = a
        .opt("password")
        .map_or_else(auth::new_password, str::to_string);
    let user = auth::put_user(ctx.state(), a.str("name"), level, &password)?;
    Ok(Output::Json(json!({
        "name": user.name,
        "level": user.level,
        "password": if generated { Some(password) } else { None },
    })))
}

pub(crate) fn user_remove(ctx: &Context, inv: &Invocation) -> Result<Output, ApiError> {
    let _token = ctx.writer();
    let state = ctx.state();
    let name = inv.args.str("name");
    if caller(inv)?.name == name {
        return Err(ApiError::Conflict(format!(
            "user_remove: you cannot remove yourself ('{name}')"
        )));
    }
    if !state.delete::<User>(name)? {
        return Err(ApiError::NotFound(format!("No user '{name}'")));
    }
    for (key, token) in auth::tokens(state)? {
        if token.user == name {
            state.delete::<Token>(&key)?;
        }
    }
    state.delete::<Vec<Subscription>>(name)?;
    Ok(Output::Text(format!("removed user {name}")))
}

pub(crate) fn users(ctx: &Context, _: &Invocation) -> Result<Output, ApiError> {
    let list: Vec<serde_json::Value> = all_users(ctx.state())?
        .into_iter()
        .map(|u| json!({"name": u.name, "level": u.level, "key_fingerprint": u.key_fingerprint}))
        .collect();
    Output::json(&list)
}

pub(crate) fn token_create(ctx: &Context, inv: &Invocation) -> Result<Output, ApiError> {
    let user = caller(inv)?;
    let (secret, token) = auth::create_token(ctx.state(), &user.name, inv.args.str("label"))?;
    Ok(Output::Json(json!({
        "id": token.id,
        "user": token.user,
        "label": token.label,
        "token": secret,
    })))
}

pub(crate) fn visible_tokens(
    state: &StateStore,
    user: &User,
) -> Result<Vec<(String, Token)>, ApiError> {
    Ok(auth::tokens(state)?
        .into_iter()
        .filter(|(_, t)| user.level == Level::Admin || t.user == user.name)
        .collect())
}

pub(crate) fn token_ls(ctx: &Context, inv: &Invocation) -> Result<Output, ApiError> {
    let tokens: Vec<Token> = visible_tokens(ctx.state(), caller(inv)?)?
        .into_iter()
        .map(|(_, t)| t)
        .collect();
    Output::json(&tokens)
}

pub(crate) fn token_revoke(ctx: &Context, inv: &Invocation) -> Result<Output, ApiError> {
    let _token = ctx.writer();
    let state = ctx.state();
    let id = inv.args.str("id");
    let Some((key, _)) = visible_tokens(state, caller(inv)?)?
        .into_iter()
        .find(|(_, t)| t.id == id)
    else {
        return Err(ApiError::NotFound(format!("No token '{id}' of yours")));
    };
    state.delete::<Token>(&key)?;
    Ok(Output::Text(format!("revoked token {id}")))
}
