//! The status model of configuration objects, as mini-buildd's manual describes it: a state
//! (Removed, Prepared, Active) and a check mark (Unchecked `-`, Changed `*`, Failed `x`,
//! Failed_Reactivate `A`, or the time of the last good check). Pure transitions; the objects'
//! own prepare and check work is done by their callers.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Removed,
    Prepared,
    Active,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    /// `-`: never checked since the last prepare.
    Unchecked,
    /// `*`: edited since the last prepare; prepare again.
    Changed,
    /// `x`: the last check failed.
    Failed,
    /// `A`: failed while active; becomes active again when a check succeeds.
    FailedReactivate,
    /// The last check succeeded at this time (seconds since the epoch).
    Checked(i64),
}

/// A status: where an object stands and why (the message of the last failure, if any).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub state: State,
    pub check: Check,
    #[serde(default)]
    pub message: String,
}

impl Default for Status {
    fn default() -> Self {
        Status {
            state: State::Removed,
            check: Check::Unchecked,
            message: String::new(),
        }
    }
}

/// Why an action is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    NotPrepared,
    Changed,
    NotChecked,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refusal::NotPrepared => "not prepared: prepare it first",
            Refusal::Changed => "changed since it was prepared: prepare it again",
            Refusal::NotChecked => "prepare and check it first",
        })
    }
}

impl Status {
    /// Active and checked (at time 0: before checks were recorded), for objects that existed
    /// before they had a status.
    pub fn active() -> Status {
        Status {
            state: State::Active,
            check: Check::Checked(0),
            message: String::new(),
        }
    }

    pub fn is_prepared(&self) -> bool {
        self.state >= State::Prepared
    }

    pub fn is_active(&self) -> bool {
        self.state == State::Active
    }

    pub fn is_checked(&self) -> bool {
        matches!(self.check, Check::Checked(_))
    }

    /// The one-letter mark of the manual: `-`, `*`, `x`, `A`, or `C` when checked.
    pub fn mark(&self) -> char {
        match self.check {
            Check::Unchecked => '-',
            Check::Changed => '*',
            Check::Failed => 'x',
            Check::FailedReactivate => 'A',
            Check::Checked(_) => 'C',
        }
    }

    /// "Active", "Prepared (x)", ... as lists show it.
    pub fn label(&self) -> String {
        match self.state {
            State::Removed if self.check == Check::Failed => "Removed (x)".to_string(),
            State::Removed => "Removed".to_string(),
            State::Prepared => format!("Prepared ({})", self.mark()),
            State::Active => format!("Active ({})", self.mark()),
        }
    }

    /// Whether prepare has work to do: not prepared yet, or changed since.
    pub fn needs_prepare(&self) -> bool {
        !self.is_prepared() || self.check == Check::Changed
    }

    /// After a successful prepare (a no-op when prepared and unchanged).
    pub fn prepared(&mut self) {
        if self.needs_prepare() {
            self.state = State::Prepared;
            self.check = Check::Unchecked;
            self.message.clear();
        }
    }

    /// Whether a check may run now.
    pub fn may_check(&self) -> Result<(), Refusal> {
        if !self.is_prepared() {
            return Err(Refusal::NotPrepared);
        }
        if self.check == Check::Changed {
            return Err(Refusal::Changed);
        }
        Ok(())
    }

    /// After a successful check at `now`: a Failed_Reactivate object becomes active again.
    pub fn checked(&mut self, now: i64) {
        if self.check == Check::FailedReactivate {
            self.state = State::Active;
        }
        self.check = Check::Checked(now);
        self.message.clear();
    }

    /// After a failed check: Failed, or Failed_Reactivate (and Prepared) if it was active.
    pub fn failed(&mut self, message: impl Into<String>) {
        if self.state == State::Active || self.check == Check::FailedReactivate {
            self.state = State::Prepared.min(self.state);
            self.check = Check::FailedReactivate;
        } else {
            self.check = Check::Failed;
        }
        self.message = message.into();
    }

    /// Activate: checked objects become active; prepared but unchecked or failed ones are
    /// marked to activate on their next good check.
    pub fn activate(&mut self) -> Result<(), Refusal> {
        if !self.is_prepared() {
            return Err(Refusal::NotChecked);
        }
        match self.check {
            Check::Checked(_) => {
                self.state = State::Active;
                Ok(())
            }
            Check::Unchecked | Check::Failed => {
                self.check = Check::FailedReactivate;
                Ok(())
            }
            Check::FailedReactivate => Ok(()),
            Check::Changed => Err(Refusal::NotChecked),
        }
    }

    pub fn deactivate(&mut self) {
        self.state = self.state.min(State::Prepared);
        if self.check == Check::FailedReactivate {
            self.check = Check::Failed;
        }
    }

    pub fn remove(&mut self) {
        self.state = State::Removed;
        self.check = Check::Unchecked;
        self.message.clear();
    }

    /// An edit: an active object drops to Prepared and must be prepared again.
    pub fn changed(&mut self) {
        if self.is_prepared() {
            self.state = State::Prepared;
            self.check = Check::Changed;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepare_check_activate() {
        let mut s = Status::default();
        assert_eq!(s.label(), "Removed");
        assert_eq!(s.may_check(), Err(Refusal::NotPrepared));
        assert_eq!(s.activate(), Err(Refusal::NotChecked));
        s.prepared();
        assert_eq!(s.label(), "Prepared (-)");
        s.checked(10);
        assert_eq!(s.mark(), 'C');
        s.activate().unwrap();
        assert!(s.is_active());
        assert_eq!(s.label(), "Active (C)");
    }

    #[test]
    fn a_failure_while_active_reactivates_on_the_next_good_check() {
        let mut s = Status::default();
        s.prepared();
        s.checked(1);
        s.activate().unwrap();
        s.failed("archive unreachable");
        assert_eq!(s.state, State::Prepared);
        assert_eq!(s.mark(), 'A');
        assert_eq!(s.message, "archive unreachable");
        s.checked(2);
        assert!(s.is_active());
        assert!(s.message.is_empty());
    }

    #[test]
    fn a_failure_when_not_active_stays_failed_and_activate_waits_for_a_good_check() {
        let mut s = Status::default();
        s.prepared();
        s.failed("bad key");
        assert_eq!(s.label(), "Prepared (x)");
        s.activate().unwrap();
        assert_eq!(s.mark(), 'A');
        assert!(!s.is_active());
        s.deactivate();
        assert_eq!(s.mark(), 'x');
        s.checked(3);
        assert!(!s.is_active());
    }

    #[test]
    fn an_edit_needs_a_new_prepare_before_checks() {
        let mut s = Status::default();
        s.prepared();
        s.checked(1);
        s.activate().unwrap();
        s.changed();
        assert_eq!(s.label(), "Prepared (*)");
        assert_eq!(s.may_check(), Err(Refusal::Changed));
        assert_eq!(s.activate(), Err(Refusal::NotChecked));
        assert!(s.needs_prepare());
        s.prepared();
        assert_eq!(s.may_check(), Ok(()));
        s.remove();
        assert_eq!(s.label(), "Removed");
        // An edit to a removed object changes nothing about its state.
        s.changed();
        assert_eq!(s.label(), "Removed");
    }
}
