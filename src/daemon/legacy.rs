//! Opening the state store of a home, moving in what an earlier mbd kept in the engine's
//! store (objects under `user/`, `event/`, `upload/`, ... in its configuration table).
//!
//! The move is safe at any kill: the records are written to the state store first, then
//! deleted from the engine's; a second run finds the rest and writes them again (the same
//! JSON), so nothing is lost and nothing is duplicated.

use super::DaemonError;
use crate::repo::Engine;
use crate::state::{Record, StateStore};

/// Where each kind of record lived in the engine's store.
fn legacy_prefixes() -> [(&'static str, &'static str); 11] {
    use crate::build::{chroot::Chroot, queue};
    use crate::config::{AptKey, Archive, Source};
    [
        ("user/", crate::users::User::TABLE),
        ("token/", crate::users::Token::TABLE),
        ("subscriptions/", "subscriptions"),
        ("event/", crate::incoming::Event::TABLE),
        ("upload/", queue::Upload::TABLE),
        ("build/", queue::Build::TABLE),
        ("chroot/", Chroot::TABLE),
        ("archive/", Archive::TABLE),
        ("aptkey/", AptKey::TABLE),
        ("source/", Source::TABLE),
        ("after_install/", crate::port::AfterInstall::TABLE),
    ]
}

/// Opens `<home>/state.redb`, moving legacy records into it first.
pub fn open_state(engine: &Engine) -> Result<StateStore, DaemonError> {
    let state = StateStore::open(engine.home())?;
    for (prefix, table) in legacy_prefixes() {
        let rows = engine.legacy_objects(prefix)?;
        if rows.is_empty() {
            continue;
        }
        state.import(table, &rows)?;
        let keys: Vec<String> = rows.iter().map(|(id, _)| format!("{prefix}{id}")).collect();
        engine.forget_legacy(&keys)?;
        tracing::info!(records = rows.len(), %table, "moved into the state store");
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::SetupOptions;

    #[test]
    fn records_of_an_earlier_version_move_into_the_state_store_once() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::setup(
            dir.path(),
            &SetupOptions {
                identity: Some("t".into()),
                ..Default::default()
            },
        )
        .unwrap();
        let user = crate::users::User {
            name: "jane".into(),
            level: crate::users::Level::Staff,
            password: "x".into(),
            key: None,
            key_fingerprint: None,
            uploader: Default::default(),
            may_upload_to: Vec::new(),
            email: String::new(),
        };
        engine
            .put_legacy("user/jane", &serde_json::to_value(&user).unwrap())
            .unwrap();
        let sub = serde_json::json!([{"source": "hello", "distribution": ""}]);
        engine.put_legacy("subscriptions/jane", &sub).unwrap();
        let state = open_state(&engine).unwrap();
        let moved: crate::users::User = state.get("jane").unwrap().unwrap();
        assert_eq!(moved.level, crate::users::Level::Staff);
        assert!(engine.legacy_objects("user/").unwrap().is_empty());
        assert!(engine.legacy_objects("subscriptions/").unwrap().is_empty());
        #[derive(serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        struct Subscriptions(serde_json::Value);
        impl Record for Subscriptions {
            const TABLE: &'static str = "subscriptions";
        }
        let subs: Subscriptions = state.get("jane").unwrap().unwrap();
        assert_eq!(subs.0, sub);
        drop(state);
        // A second open finds nothing to move and keeps what was moved.
        let state = open_state(&engine).unwrap();
        assert_eq!(state.all::<crate::users::User>().unwrap().len(), 1);
    }
}
