//! Choosing a builder for one architecture's build (mini-buildd's §2.4, without its quirk of
//! dropping candidates of equal load): this instance, if its chroot for the codename and
//! architecture is ready, and every active or auto-reactivate remote whose last status says
//! it runs and has that chroot. The least loaded wins; on equal load this instance first,
//! then remotes by URL.

use super::BuildError;
use crate::remote::{Remote, counts};
use crate::state::StateStore;

/// This instance as a candidate.
#[derive(Debug, Clone)]
pub struct Here {
    /// It has a chroot for the codename and architecture (in any state).
    pub chroot_known: bool,
    /// That chroot is ready and active.
    pub ready: bool,
    /// Running builds per slot.
    pub load: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Choice {
    Here,
    /// A remote, by URL.
    Remote(String),
    /// No candidate now, but one may come: our chroot is being made, or remotes that have
    /// the chroot are down (those with a wake command are listed, to be woken).
    Wait(Vec<String>),
    /// Nothing can build it: no chroot here and no remote that has one.
    NoBuilder(String),
}

/// Chooses the builder of `codename`/`arch`, leaving out the remotes in `exclude` (ones a
/// request already failed on).
pub fn choose(
    state: &StateStore,
    codename: &str,
    arch: &str,
    here: &Here,
    exclude: &[String],
) -> Result<Choice, BuildError> {
    let remotes: Vec<Remote> = crate::remote::all(state)
        .map_err(|e| BuildError::Remote(e.to_string()))?
        .into_iter()
        .filter(|r| counts(r) && !exclude.contains(&r.url))
        .collect();
    Ok(pick(codename, arch, here, &remotes))
}

/// [`choose`] over given remotes (which all count).
pub fn pick(codename: &str, arch: &str, here: &Here, remotes: &[Remote]) -> Choice {
    let mut candidates: Vec<(f64, u8, &str)> = Vec::new();
    if here.ready {
        candidates.push((here.load, 0, ""));
    }
    for r in remotes {
        if let Some(p) = r.peer.as_ref().filter(|p| p.builds(codename, arch)) {
            candidates.push((p.load, 1, &r.url));
        }
    }
    candidates.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.cmp(b.2)));
    if let Some((_, order, url)) = candidates.first() {
        return if *order == 0 {
            Choice::Here
        } else {
            Choice::Remote(url.to_string())
        };
    }
    let chroot = crate::remote::chroot(codename, arch);
    let sleeping: Vec<&Remote> = remotes
        .iter()
        .filter(|r| {
            r.peer
                .as_ref()
                .is_some_and(|p| p.build_chroots.contains(&chroot))
        })
        .collect();
    if here.chroot_known || !sleeping.is_empty() || remotes.is_empty() {
        // A standalone instance (no remotes) waits for its chroot, as before remotes existed.
        return Choice::Wait(
            sleeping
                .iter()
                .filter(|r| !r.wake_command.trim().is_empty())
                .map(|r| r.url.clone())
                .collect(),
        );
    }
    Choice::NoBuilder(format!(
        "no builder for {codename}/{arch}: no chroot here, and none of the remotes ({}) has one",
        remotes
            .iter()
            .map(|r| r.url.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::Peer;
    use crate::status::Status;

    fn remote(url: &str, load: f64, chroots: &[&str], running: bool) -> Remote {
        Remote {
            url: url.to_string(),
            wake_command: String::new(),
            key: String::new(),
            fingerprint: String::new(),
            status: Status::active(),
            peer: Some(Peer {
                running,
                load,
                build_chroots: chroots.iter().map(|s| s.to_string()).collect(),
                ..Peer::default()
            }),
            polled: 0,
        }
    }

    fn here(ready: bool, load: f64) -> Here {
        Here {
            chroot_known: ready,
            ready,
            load,
        }
    }

    #[test]
    fn the_least_loaded_builder_wins_and_ties_are_kept_in_order() {
        let b = remote("http://b:1", 0.5, &["bookworm:amd64"], true);
        let c = remote("http://c:1", 0.0, &["bookworm:amd64"], true);
        let choose = |h: &Here, rs: &[Remote]| pick("bookworm", "amd64", h, rs);
        assert_eq!(
            choose(&here(true, 1.0), &[b.clone(), c.clone()]),
            Choice::Remote("http://c:1".into())
        );
        assert_eq!(
            choose(&here(true, 0.0), &[b.clone(), c.clone()]),
            Choice::Here
        );
        let c_busy = remote("http://c:1", 0.5, &["bookworm:amd64"], true);
        assert_eq!(
            choose(&here(false, 0.0), &[c_busy, b.clone()]),
            Choice::Remote("http://b:1".into()),
            "equal load: by URL, none dropped"
        );
        assert_eq!(
            pick(
                "bookworm",
                "i386",
                &here(true, 0.0),
                std::slice::from_ref(&b)
            ),
            Choice::Here
        );
    }

    #[test]
    fn without_any_builder_the_build_fails_or_waits_for_one_that_may_come() {
        let b = remote("http://b:1", 0.0, &["bookworm:amd64"], true);
        let Choice::NoBuilder(why) = pick(
            "bookworm",
            "i386",
            &here(false, 0.0),
            std::slice::from_ref(&b),
        ) else {
            panic!()
        };
        assert!(why.starts_with("no builder for bookworm/i386"), "{why}");
        // No remotes at all: a standalone instance waits for its chroot.
        assert_eq!(
            pick("bookworm", "i386", &here(false, 0.0), &[]),
            Choice::Wait(vec![])
        );
        // The only remote with the chroot is down: wait, and wake it if it can be woken.
        let mut down = remote("http://b:1", -1.0, &["bookworm:amd64"], false);
        assert_eq!(
            pick(
                "bookworm",
                "amd64",
                &here(false, 0.0),
                std::slice::from_ref(&down)
            ),
            Choice::Wait(vec![])
        );
        down.wake_command = "wakeonlan x".into();
        assert_eq!(
            pick("bookworm", "amd64", &here(false, 0.0), &[down]),
            Choice::Wait(vec!["http://b:1".into()])
        );
    }
}
