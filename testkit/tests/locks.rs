//! Guards `btfuse_core::locks::LockTable` against the byte-by-byte reference model
//! `btfuse_testkit::model::locks::LockModel`.
//!
//! `table_matches_model` draws sequences of up to 60 lock calls on two files by three processes
//! and three open file descriptions (record locks of both, `flock` of the descriptions), with
//! waits, cancels, closes, last closes and dead clients, and runs them on the table and the
//! model in lockstep: every answer, every waiter woken (granted or interrupted, and which), and
//! every file's locks after every step must be identical; an `F_GETLK` answer must be one of
//! the locks the model says conflict. `BTFUSE_PROPTEST_CASES` sets the number of cases
//! (default 256).

use std::sync::{Arc, Mutex};

use btfuse_core::locks::{
    LockKind, LockOwner, LockRange, LockRequest, LockSpace, LockTable, OFFSET_MAX, OwnerKind,
    WaitId,
};
use btfuse_core::{Errno, Fh, Ino, Result};
use btfuse_testkit::model::locks::{LockModel, SPAN};
use proptest::prelude::*;

const FILES: [Ino; 2] = [Ino(2), Ino(3)];

/// The id under which a wait decided at once reports.
const NOW: u64 = u64::MAX;

/// Process `n` (pid `100 + n`) or description `n` (which is also engine handle `n`).
#[derive(Clone, Copy, Debug)]
enum Who {
    Process(u64),
    Description(u64),
}

impl Who {
    fn owner(self) -> LockOwner {
        match self {
            Who::Process(n) => LockOwner {
                kind: OwnerKind::Process,
                id: n,
            },
            Who::Description(n) => LockOwner {
                kind: OwnerKind::Description,
                id: n,
            },
        }
    }

    fn pid(self) -> u32 {
        match self {
            Who::Process(n) | Who::Description(n) => 100 + n as u32,
        }
    }
}

#[derive(Clone, Debug)]
enum Call {
    Get(usize, LockRequest),
    Set(usize, LockRequest, Fh),
    SetWait(usize, LockRequest, Fh),
    /// Cancels the n-th parked request (modulo how many there are).
    Cancel(usize),
    UnlockOwner(usize, LockOwner),
    ReleaseDescription(usize, Fh),
    ReleaseOwner(LockOwner),
}

fn who() -> impl Strategy<Value = Who> {
    prop_oneof![
        (1u64..=3).prop_map(Who::Process),
        (1u64..=3).prop_map(Who::Description)
    ]
}

fn kind() -> impl Strategy<Value = Option<LockKind>> {
    prop_oneof![
        2 => Just(Some(LockKind::Read)),
        2 => Just(Some(LockKind::Write)),
        1 => Just(None),
    ]
}

/// Ranges on cell boundaries: bytes below `SPAN`, or running to the end.
fn range() -> impl Strategy<Value = LockRange> {
    (0..SPAN, 0..=SPAN).prop_map(|(start, len)| {
        let end = if start + len >= SPAN {
            OFFSET_MAX
        } else {
            start + len
        };
        LockRange::new(start, end).unwrap()
    })
}

/// A request and the description it goes through: a process picks any description, a
/// description locks through itself, and only descriptions `flock`.
fn request() -> impl Strategy<Value = (LockRequest, Fh)> {
    (who(), kind(), range(), any::<bool>(), 1u64..=3).prop_map(|(who, kind, range, flock, fh)| {
        let (space, range, fh) = match who {
            Who::Process(_) => (LockSpace::Record, range, Fh(fh)),
            Who::Description(n) if flock => (LockSpace::Flock, LockRange::WHOLE, Fh(n)),
            Who::Description(n) => (LockSpace::Record, range, Fh(n)),
        };
        let req = LockRequest {
            owner: who.owner(),
            space,
            kind,
            range,
            pid: who.pid(),
        };
        (req, fh)
    })
}

fn call() -> impl Strategy<Value = Call> {
    let file = 0..FILES.len();
    prop_oneof![
        2 => (file.clone(), request()).prop_map(|(f, (r, _))| Call::Get(f, r)),
        5 => (file.clone(), request()).prop_map(|(f, (r, fh))| Call::Set(f, r, fh)),
        4 => (file.clone(), request()).prop_map(|(f, (r, fh))| Call::SetWait(f, r, fh)),
        1 => (0usize..4).prop_map(Call::Cancel),
        1 => (file.clone(), 1u64..=3).prop_map(|(f, n)| Call::UnlockOwner(f, Who::Process(n).owner())),
        1 => (file, 1u64..=3).prop_map(|(f, n)| Call::ReleaseDescription(f, Fh(n))),
        1 => who().prop_map(|w| Call::ReleaseOwner(w.owner())),
    ]
}

/// Outcomes the table's callbacks reported, by the model's id of the wait.
type Log = Arc<Mutex<Vec<(u64, Result<()>)>>>;

fn run(calls: &[Call]) -> std::result::Result<(), TestCaseError> {
    let table = LockTable::new();
    let mut model = LockModel::new();
    let log: Log = Arc::default();
    // Parked requests: the model's id and the table's.
    let mut parked: Vec<(u64, WaitId)> = Vec::new();
    for (step, call) in calls.iter().enumerate() {
        let woken = match call {
            Call::Get(f, req) => {
                let got = table.get(FILES[*f], req);
                let expected = model.conflicts(FILES[*f], req);
                match got {
                    None => prop_assert!(expected.is_empty(), "step {step}: {expected:?}"),
                    Some(c) => prop_assert!(expected.contains(&c), "step {step}: {c:?}"),
                }
                Vec::new()
            }
            Call::Set(f, req, fh) => {
                let (expected, woken) = model.set(FILES[*f], req, *fh);
                prop_assert_eq!(table.set(FILES[*f], req, *fh), expected, "step {}", step);
                woken
            }
            Call::SetWait(f, req, fh) => {
                let (expected, mut woken) = model.set_wait(FILES[*f], req, *fh);
                // Decided at once: the callback runs before `set_wait` returns.
                let id = match expected {
                    Ok(Some(id)) => id,
                    Ok(None) => {
                        woken.push((NOW, Ok(())));
                        NOW
                    }
                    Err(e) => {
                        woken.push((NOW, Err(e)));
                        NOW
                    }
                };
                let seen = Arc::clone(&log);
                let wake = Box::new(move |r| seen.lock().unwrap().push((id, r)));
                let got = table.set_wait(FILES[*f], req, *fh, wake);
                prop_assert_eq!(got.is_some(), id != NOW, "step {}", step);
                if let Some(wait) = got {
                    parked.push((id, wait));
                }
                woken
            }
            Call::Cancel(n) => {
                let ids = model.parked();
                if ids.is_empty() {
                    Vec::new()
                } else {
                    let id = ids[n % ids.len()];
                    let wait = parked.iter().find(|p| p.0 == id).unwrap().1;
                    prop_assert!(model.cancel(id));
                    prop_assert!(table.cancel(wait));
                    vec![(id, Err(Errno::Interrupted))]
                }
            }
            Call::UnlockOwner(f, owner) => {
                table.unlock_owner(FILES[*f], *owner);
                model.unlock_owner(FILES[*f], *owner)
            }
            Call::ReleaseDescription(f, fh) => {
                table.release_description(FILES[*f], *fh);
                model.release_description(FILES[*f], *fh)
            }
            Call::ReleaseOwner(owner) => {
                table.release_owner(*owner);
                model.release_owner(*owner)
            }
        };
        let mut reported = std::mem::take(&mut *log.lock().unwrap());
        let mut woken = woken;
        reported.sort_by_key(|w| w.0);
        woken.sort_by_key(|w| w.0);
        prop_assert_eq!(reported, woken, "step {}: {:?}", step, call);
        for ino in FILES {
            prop_assert_eq!(
                table.held(ino),
                model.held(ino),
                "step {}: {:?}",
                step,
                call
            );
        }
        prop_assert_eq!(table.waiting(), model.parked().len());
    }
    Ok(())
}

fn cases() -> u32 {
    std::env::var("BTFUSE_PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(256)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn table_matches_model(calls in proptest::collection::vec(call(), 1..60)) {
        run(&calls)?;
    }
}

/// The model itself, pinned to Linux behaviours the property test then holds the table to.
#[test]
fn model_splits_merges_and_detects_a_cycle() {
    let mut m = LockModel::new();
    let (a, b) = (Who::Process(1), Who::Process(2));
    let req = |who: Who, kind, start, end| LockRequest {
        owner: who.owner(),
        space: LockSpace::Record,
        kind,
        range: LockRange::new(start, end).unwrap(),
        pid: who.pid(),
    };
    let f = FILES[0];
    assert_eq!(
        m.set(f, &req(a, Some(LockKind::Write), 0, 9), Fh(1)).0,
        Ok(())
    );
    assert_eq!(m.set(f, &req(a, None, 3, 4), Fh(1)).0, Ok(()));
    let ranges: Vec<(u64, u64)> = m
        .held(f)
        .iter()
        .map(|h| (h.range.start(), h.range.end()))
        .collect();
    assert_eq!(ranges, vec![(0, 2), (5, 9)]);
    assert_eq!(
        m.set(f, &req(a, Some(LockKind::Write), 3, 4), Fh(2)).0,
        Ok(())
    );
    assert_eq!(m.held(f).len(), 1);
    assert_eq!(m.held(f)[0].fh, Fh(2));
    assert_eq!(
        m.set(f, &req(b, Some(LockKind::Read), 9, 9), Fh(3)).0,
        Err(Errno::TryAgain)
    );
    assert_eq!(
        m.set(f, &req(b, Some(LockKind::Read), 12, 12), Fh(3)).0,
        Ok(())
    );
    assert!(matches!(
        m.set_wait(f, &req(a, Some(LockKind::Write), 12, 12), Fh(1))
            .0,
        Ok(Some(_))
    ));
    assert_eq!(
        m.set_wait(f, &req(b, Some(LockKind::Write), 0, 0), Fh(3)).0,
        Err(Errno::Deadlock)
    );
}
