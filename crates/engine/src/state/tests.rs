use super::*;
use Op::*;
use SandboxState::*;

/// The full table, written out independently of `transition`'s match:
/// (from, op) → Some((to, action)) or None for illegal.
fn expected(from: SandboxState, op: Op) -> Option<(SandboxState, Action)> {
    Some(match (from, op) {
        (Hot, Pause) => (Warm, Action::Pause),
        (Hot, Resume) => (Hot, Action::None),
        (Hot, Freeze) => return None,
        (Hot, Wake) => (Hot, Action::None),
        (Hot, Stop) => (Stopped, Action::Snapshot),
        (Hot, Start) => (Hot, Action::None),
        (Hot, Destroy) => (Destroyed, Action::Destroy),

        (Warm, Pause) => (Warm, Action::None),
        (Warm, Resume) => (Hot, Action::Resume),
        (Warm, Freeze) => (Cold, Action::Snapshot),
        (Warm, Wake) => (Hot, Action::Resume),
        (Warm, Stop) => (Stopped, Action::Snapshot),
        (Warm, Start) => (Hot, Action::Resume),
        (Warm, Destroy) => (Destroyed, Action::Destroy),

        (Cold, Pause) => return None,
        (Cold, Resume) => return None,
        (Cold, Freeze) => (Cold, Action::None),
        (Cold, Wake) => (Hot, Action::Restore),
        (Cold, Stop) => (Stopped, Action::None),
        (Cold, Start) => (Hot, Action::Restore),
        (Cold, Destroy) => (Destroyed, Action::Destroy),

        (Stopped, Pause | Resume | Freeze | Wake) => return None,
        (Stopped, Stop) => (Stopped, Action::None),
        (Stopped, Start) => (Hot, Action::Restore),
        (Stopped, Destroy) => (Destroyed, Action::Destroy),

        (Destroyed, _) => return None,
    })
}

#[test]
fn every_state_and_op_matches_the_table() {
    for from in SandboxState::ALL {
        for op in Op::ALL {
            let got = transition(from, op);
            match expected(from, op) {
                Some((to, action)) => {
                    assert_eq!(got, Ok(Transition { from, to, action }), "{from} {op:?}")
                }
                None => assert_eq!(got, Err(StateError { state: from, op }), "{from} {op:?}"),
            }
        }
    }
}

#[test]
fn destroyed_is_terminal() {
    for op in Op::ALL {
        assert!(transition(Destroyed, op).is_err(), "{op:?}");
    }
}

#[test]
fn actions_match_vmm_presence() {
    // A transition that needs a VMM starts where one exists, and one that
    // restores starts where none does.
    for from in SandboxState::ALL {
        for op in Op::ALL {
            let Ok(t) = transition(from, op) else {
                continue;
            };
            match t.action {
                Action::Pause | Action::Resume | Action::Snapshot => assert!(from.has_vmm()),
                Action::Restore => assert!(!from.has_vmm()),
                Action::None => assert_eq!(from.has_vmm(), t.to.has_vmm(), "{from} {op:?}"),
                Action::Destroy => assert_eq!(t.to, Destroyed),
            }
            if t.action == Action::Restore || t.action == Action::Resume {
                assert_eq!(t.to, Hot);
            }
        }
    }
}

#[test]
fn wake_coalesces_once_hot() {
    // The second of two concurrent wakes sees Hot and does nothing.
    let first = transition(Cold, Wake).map(|t| (t.to, t.action));
    assert_eq!(first, Ok((Hot, Action::Restore)));
    let second = transition(Hot, Wake).map(|t| t.action);
    assert_eq!(second, Ok(Action::None));
}

#[test]
fn states_serialise_lowercase_and_errors_read_well() {
    assert_eq!(
        serde_json::to_string(&Cold).ok().as_deref(),
        Some("\"cold\"")
    );
    let err = transition(Stopped, Wake).err().map(|e| e.to_string());
    assert_eq!(
        err.as_deref(),
        Some("cannot Wake a sandbox that is stopped")
    );
    assert!(Cold.is_running() && !Stopped.is_running() && !Cold.has_vmm());
}
