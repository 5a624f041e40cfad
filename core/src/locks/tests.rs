//! Unit tests of the lock table: exact expected tables after each step. The property test
//! against the reference model is `testkit/tests/locks.rs`.

use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

use spin::Mutex;

use super::*;
use crate::{Fh, Ino};

const FILE: Ino = Ino(7);

fn process(id: u64) -> LockOwner {
    LockOwner {
        kind: OwnerKind::Process,
        id,
    }
}

fn description(id: u64) -> LockOwner {
    LockOwner {
        kind: OwnerKind::Description,
        id,
    }
}

fn record(owner: LockOwner, kind: Option<LockKind>, start: u64, end: u64) -> LockRequest {
    LockRequest {
        owner,
        space: LockSpace::Record,
        kind,
        range: LockRange::new(start, end).unwrap(),
        pid: owner.id as u32,
    }
}

fn flock(owner: LockOwner, kind: Option<LockKind>) -> LockRequest {
    LockRequest {
        owner,
        space: LockSpace::Flock,
        kind,
        range: LockRange::WHOLE,
        pid: 100 + owner.id as u32,
    }
}

/// The table's locks on `FILE` as (owner id, kind, start, end).
fn ranges(t: &LockTable) -> Vec<(u64, LockKind, u64, u64)> {
    t.held(FILE)
        .iter()
        .map(|h| (h.owner.id, h.kind, h.range.start(), h.range.end()))
        .collect()
}

/// A wake callback that records its outcome.
fn recorder() -> (Arc<Mutex<Vec<crate::Result<()>>>>, Wake) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&log);
    (log, Box::new(move |r| seen.lock().push(r)))
}

use LockKind::{Read, Write};
use alloc::boxed::Box;

#[test]
fn unlocking_the_middle_splits_and_relocking_merges() {
    let t = LockTable::new();
    let a = process(1);
    t.set(FILE, &record(a, Some(Write), 0, 99), Fh(1)).unwrap();
    t.set(FILE, &record(a, None, 40, 59), Fh(1)).unwrap();
    assert_eq!(ranges(&t), vec![(1, Write, 0, 39), (1, Write, 60, 99)]);
    t.set(FILE, &record(a, Some(Read), 50, 69), Fh(1)).unwrap();
    assert_eq!(
        ranges(&t),
        vec![(1, Write, 0, 39), (1, Read, 50, 69), (1, Write, 70, 99)]
    );
    t.set(FILE, &record(a, Some(Write), 40, 69), Fh(1)).unwrap();
    assert_eq!(ranges(&t), vec![(1, Write, 0, 99)]);
    t.set(FILE, &record(a, None, 0, OFFSET_MAX), Fh(1)).unwrap();
    assert!(ranges(&t).is_empty());
}

#[test]
fn readers_share_and_writers_exclude_other_owners_only() {
    let t = LockTable::new();
    let (a, b) = (process(1), process(2));
    t.set(FILE, &record(a, Some(Read), 0, 9), Fh(1)).unwrap();
    t.set(FILE, &record(b, Some(Read), 5, 14), Fh(2)).unwrap();
    assert_eq!(
        t.set(FILE, &record(b, Some(Write), 5, 14), Fh(2)),
        Err(Errno::TryAgain)
    );
    // A failed request changes nothing.
    assert_eq!(ranges(&t), vec![(1, Read, 0, 9), (2, Read, 5, 14)]);
    // Upgrading where no one else reads works, and splits nothing of the other owner.
    t.set(FILE, &record(b, Some(Write), 10, 14), Fh(2)).unwrap();
    let conflict = t.get(FILE, &record(a, Some(Write), 0, 20)).unwrap();
    assert_eq!((conflict.owner, conflict.kind, conflict.pid), (b, Read, 2));
    assert_eq!(t.get(FILE, &record(a, Some(Read), 0, 9)), None);
    // An owner's own locks never conflict with it.
    assert_eq!(t.get(FILE, &record(a, Some(Write), 0, 4)), None);
}

#[test]
fn flock_and_record_locks_live_apart() {
    let t = LockTable::new();
    t.set(FILE, &flock(description(1), Some(Write)), Fh(1))
        .unwrap();
    t.set(FILE, &record(process(2), Some(Write), 0, OFFSET_MAX), Fh(2))
        .unwrap();
    assert_eq!(
        t.set(FILE, &flock(description(3), Some(Read)), Fh(3)),
        Err(Errno::TryAgain)
    );
}

#[test]
fn a_failed_flock_conversion_loses_the_old_lock_as_in_linux() {
    let t = LockTable::new();
    let (a, b) = (description(1), description(2));
    t.set(FILE, &flock(a, Some(Read)), Fh(1)).unwrap();
    t.set(FILE, &flock(b, Some(Read)), Fh(2)).unwrap();
    assert_eq!(
        t.set(FILE, &flock(a, Some(Write)), Fh(1)),
        Err(Errno::TryAgain)
    );
    assert_eq!(ranges(&t), vec![(2, Read, 0, OFFSET_MAX)]);
}

#[test]
fn a_parked_request_is_granted_when_the_holder_unlocks() {
    let t = LockTable::new();
    let (a, b) = (process(1), process(2));
    t.set(FILE, &record(a, Some(Write), 0, 9), Fh(1)).unwrap();
    let (log, wake) = recorder();
    let id = t.set_wait(FILE, &record(b, Some(Write), 5, 5), Fh(2), wake);
    assert!(id.is_some());
    assert!(log.lock().is_empty());
    // Unlocking part that does not cover byte 5 grants nothing.
    t.set(FILE, &record(a, None, 0, 4), Fh(1)).unwrap();
    assert!(log.lock().is_empty());
    t.unlock_owner(FILE, a);
    assert_eq!(*log.lock(), vec![Ok(())]);
    assert_eq!(ranges(&t), vec![(2, Write, 5, 5)]);
    assert!(!t.cancel(id.unwrap()));
}

#[test]
fn cancel_tells_the_waiter_it_was_interrupted() {
    let t = LockTable::new();
    t.set(FILE, &flock(description(1), Some(Write)), Fh(1))
        .unwrap();
    let (log, wake) = recorder();
    let id = t
        .set_wait(FILE, &flock(description(2), Some(Read)), Fh(2), wake)
        .unwrap();
    assert!(t.cancel(id));
    assert_eq!(*log.lock(), vec![Err(Errno::Interrupted)]);
    assert_eq!(t.waiting(), 0);
    t.release_description(FILE, Fh(1));
    assert_eq!(log.lock().len(), 1);
    assert!(ranges(&t).is_empty());
}

#[test]
fn a_two_process_cycle_is_refused_with_edeadlk() {
    let t = LockTable::new();
    let (a, b) = (process(1), process(2));
    t.set(FILE, &record(a, Some(Write), 0, 0), Fh(1)).unwrap();
    t.set(FILE, &record(b, Some(Write), 1, 1), Fh(2)).unwrap();
    let (log, wake) = recorder();
    t.set_wait(FILE, &record(a, Some(Write), 1, 1), Fh(1), wake)
        .unwrap();
    let (refused, wake) = recorder();
    assert_eq!(
        t.set_wait(FILE, &record(b, Some(Write), 0, 0), Fh(2), wake),
        None
    );
    assert_eq!(*refused.lock(), vec![Err(Errno::Deadlock)]);
    // Descriptions' waits are not followed: the same shape with OFD owners just waits.
    let (c, d) = (description(3), description(4));
    t.set(Ino(8), &record(c, Some(Write), 0, 0), Fh(3)).unwrap();
    t.set(Ino(8), &record(d, Some(Write), 1, 1), Fh(4)).unwrap();
    let (_, wake) = recorder();
    assert!(
        t.set_wait(Ino(8), &record(c, Some(Write), 1, 1), Fh(3), wake)
            .is_some()
    );
    let (_, wake) = recorder();
    assert!(
        t.set_wait(Ino(8), &record(d, Some(Write), 0, 0), Fh(4), wake)
            .is_some()
    );
    // B dies: A's wait is granted.
    t.release_owner(b);
    assert_eq!(*log.lock(), vec![Ok(())]);
    assert_eq!(ranges(&t), vec![(1, Write, 0, 1)]);
}

#[test]
fn release_description_drops_its_locks_and_its_waiters() {
    let t = LockTable::new();
    let (a, b) = (description(1), process(2));
    t.set(FILE, &record(a, Some(Read), 0, 9), Fh(1)).unwrap();
    t.set(FILE, &record(b, Some(Read), 0, 9), Fh(2)).unwrap();
    let (log, wake) = recorder();
    t.set_wait(FILE, &record(a, Some(Write), 0, 9), Fh(1), wake)
        .unwrap();
    t.release_description(FILE, Fh(1));
    assert_eq!(*log.lock(), vec![Err(Errno::Interrupted)]);
    assert_eq!(ranges(&t), vec![(2, Read, 0, 9)]);
}

#[test]
fn a_grant_that_downgrades_lets_an_older_waiter_in() {
    let t = LockTable::new();
    let (a, b, c) = (process(1), process(2), process(3));
    t.set(FILE, &record(a, Some(Write), 0, 9), Fh(1)).unwrap();
    t.set(FILE, &record(c, Some(Read), 20, 20), Fh(3)).unwrap();
    let (first, wake) = recorder();
    t.set_wait(FILE, &record(b, Some(Read), 0, 9), Fh(2), wake)
        .unwrap();
    // A asks to turn 0..=20 into a read lock: blocked by nothing; B then fits.
    t.set(FILE, &record(a, Some(Read), 0, 20), Fh(1)).unwrap();
    assert_eq!(*first.lock(), vec![Ok(())]);
}

#[test]
fn flock_ranges_follow_linux() {
    assert_eq!(
        LockRange::from_posix(10, 5).map(|r| (r.start(), r.end())),
        Ok((10, 14))
    );
    assert_eq!(
        LockRange::from_posix(10, -5).map(|r| (r.start(), r.end())),
        Ok((5, 9))
    );
    assert_eq!(
        LockRange::from_posix(10, 0).map(|r| (r.start(), r.end())),
        Ok((10, OFFSET_MAX))
    );
    assert_eq!(LockRange::from_posix(3, -5), Err(Errno::InvalidArgument));
    assert_eq!(LockRange::from_posix(-1, 5), Err(Errno::InvalidArgument));
    assert_eq!(LockRange::from_posix(i64::MAX, 2), Err(Errno::Overflow));
    assert_eq!(LockRange::from_posix(5, 10).unwrap().posix_len(), 10);
    assert_eq!(LockRange::WHOLE.posix_len(), 0);
}
