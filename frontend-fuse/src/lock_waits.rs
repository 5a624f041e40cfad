//! [`KernelWaits`]: the kernel's lock waits (`F_SETLKW`, `flock` without `LOCK_NB`) parked in
//! the engine's lock table, by the id of the FUSE request, so that a `FUSE_INTERRUPT` naming
//! one gives it up and the waiting process gets `EINTR`, as on Linux.
//!
//! The kernel sends an interrupt only for a request a daemon thread has already read, but
//! fuser serves requests on several threads, so the interrupt may be served first, before
//! the wait is parked; and the table may grant the wait (from another thread) at any moment
//! while it is being parked. So a wait is announced ([`KernelWaits::begin`]) before it is
//! handed to the table, recorded with its table id once parked ([`KernelWaits::parked`]), and
//! forgotten when its callback runs ([`KernelWaits::answered`]), all under one mutex; an
//! interrupt that names a request not announced yet is kept (a few, the newest) for the
//! `begin` that may follow.
//!
//! Everything here is bounded: a client can make the daemon hold at most [`MAX_PARKED`] waits
//! (`ENOLCK` beyond) and [`MAX_EARLY_INTERRUPTS`] interrupts it has not matched.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

use btfuse_core::locks::WaitId;

/// Most kernel lock waits parked at once (a new one beyond is refused with `ENOLCK`). Each is
/// a thread blocked in the kernel, so only a client bent on it gets near.
pub(crate) const MAX_PARKED: usize = 1 << 14;

/// Most interrupts kept for a request not announced yet. Interrupts of requests that were
/// answered already, or that never wait (a read that a signal hit), land here too and are
/// never matched: the oldest make way.
pub(crate) const MAX_EARLY_INTERRUPTS: usize = 256;

/// Where an announced wait stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// Announced, being handed to the table.
    Parking,
    /// Interrupted while being handed to the table: to give up once parked.
    Interrupted,
    /// Parked in the table under this id.
    Parked(WaitId),
}

/// Why [`KernelWaits::begin`] refused a wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// An interrupt for it came already: answer `EINTR`.
    Interrupted,
    /// [`MAX_PARKED`] waits are parked: answer `ENOLCK`.
    Full,
}

#[derive(Default)]
struct Inner {
    /// Announced waits whose callback has not run, by request id.
    waits: HashMap<u64, Stage>,
    /// Request ids of interrupts that found no announced wait, oldest first.
    early: VecDeque<u64>,
}

/// The kernel's parked lock waits (see the [module documentation](self)).
#[derive(Default)]
pub(crate) struct KernelWaits {
    inner: Mutex<Inner>,
}

impl KernelWaits {
    fn inner(&self) -> MutexGuard<'_, Inner> {
        // Nothing under this lock can leave it inconsistent halfway: a panic elsewhere must
        // not stop every later lock call.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Announces the wait of request `unique`, before it is handed to the table.
    pub(crate) fn begin(&self, unique: u64) -> Result<(), Refused> {
        let mut inner = self.inner();
        if let Some(at) = inner.early.iter().position(|&u| u == unique) {
            inner.early.remove(at);
            return Err(Refused::Interrupted);
        }
        if inner.waits.len() >= MAX_PARKED {
            return Err(Refused::Full);
        }
        inner.waits.insert(unique, Stage::Parking);
        Ok(())
    }

    /// The table parked the wait of request `unique` as `id`. `true` when an interrupt came
    /// meanwhile: the caller gives the wait up (`LockTable::cancel`).
    pub(crate) fn parked(&self, unique: u64, id: WaitId) -> bool {
        let mut inner = self.inner();
        match inner.waits.get(&unique).copied() {
            // Granted already (from another thread): its callback forgot it.
            None => false,
            Some(Stage::Interrupted) => {
                inner.waits.remove(&unique);
                true
            }
            Some(Stage::Parking | Stage::Parked(_)) => {
                inner.waits.insert(unique, Stage::Parked(id));
                false
            }
        }
    }

    /// The wait of request `unique` was answered (granted, refused or given up): forgets it.
    /// Run by its callback, so never with the table's lock or this one held.
    pub(crate) fn answered(&self, unique: u64) {
        self.inner().waits.remove(&unique);
    }

    /// The kernel asks to interrupt request `unique`: the id of its wait to give up, if it
    /// is parked. Otherwise, if it is being parked, it is marked to be given up once it is;
    /// if it is not known, the interrupt is kept for a [`begin`](Self::begin) to come.
    pub(crate) fn interrupt(&self, unique: u64) -> Option<WaitId> {
        let mut inner = self.inner();
        match inner.waits.get(&unique).copied() {
            Some(Stage::Parked(id)) => {
                inner.waits.remove(&unique);
                Some(id)
            }
            Some(Stage::Parking | Stage::Interrupted) => {
                inner.waits.insert(unique, Stage::Interrupted);
                None
            }
            None => {
                if inner.early.len() >= MAX_EARLY_INTERRUPTS {
                    inner.early.pop_front();
                }
                inner.early.push_back(unique);
                None
            }
        }
    }

    /// How many waits are announced and not answered, and how many interrupts are kept.
    #[cfg(test)]
    fn held(&self) -> (usize, usize) {
        let inner = self.inner();
        (inner.waits.len(), inner.early.len())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::mpsc;

    use btfuse_core::locks::{LockKind, LockOwner, LockRange, LockRequest, LockSpace, OwnerKind};
    use btfuse_core::locks::{LockTable, Wake};
    use btfuse_core::{Errno, Fh, Ino};

    use super::*;

    const FILE: Ino = Ino(7);

    fn flock(owner: u64, kind: Option<LockKind>) -> LockRequest {
        LockRequest {
            owner: LockOwner {
                kind: OwnerKind::Description,
                id: owner,
            },
            space: LockSpace::Flock,
            kind,
            range: LockRange::WHOLE,
            pid: 1,
        }
    }

    /// Parks request `unique` as the adapter does; the receiver gets its outcome.
    fn wait(
        waits: &Arc<KernelWaits>,
        table: &LockTable,
        unique: u64,
        owner: u64,
    ) -> mpsc::Receiver<Result<(), Errno>> {
        let (tell, outcome) = mpsc::channel();
        match waits.begin(unique) {
            Ok(()) => {}
            Err(Refused::Interrupted) => {
                tell.send(Err(Errno::Interrupted)).unwrap();
                return outcome;
            }
            Err(Refused::Full) => panic!("no room for wait {unique}"),
        }
        let forget = Arc::clone(waits);
        let wake: Wake = Box::new(move |result| {
            forget.answered(unique);
            tell.send(result).unwrap();
        });
        let request = flock(owner, Some(LockKind::Write));
        if let Some(id) = table.set_wait(FILE, &request, Fh(owner), wake)
            && waits.parked(unique, id)
        {
            table.cancel(id);
        }
        outcome
    }

    fn held_by_1(table: &LockTable) {
        table
            .set(FILE, &flock(1, Some(LockKind::Write)), Fh(1))
            .unwrap();
    }

    #[test]
    fn an_interrupt_gives_up_a_parked_wait() {
        let (waits, table) = (Arc::new(KernelWaits::default()), LockTable::new());
        held_by_1(&table);
        let outcome = wait(&waits, &table, 10, 2);
        assert!(outcome.try_recv().is_err(), "parked");
        let id = waits.interrupt(10).expect("parked under its id");
        assert!(table.cancel(id));
        assert_eq!(outcome.try_recv(), Ok(Err(Errno::Interrupted)));
        assert_eq!(waits.held(), (0, 0));
    }

    #[test]
    fn an_interrupt_before_the_wait_is_kept_for_it() {
        let (waits, table) = (Arc::new(KernelWaits::default()), LockTable::new());
        held_by_1(&table);
        assert_eq!(waits.interrupt(12), None);
        let outcome = wait(&waits, &table, 12, 2);
        assert_eq!(outcome.try_recv(), Ok(Err(Errno::Interrupted)));
        assert_eq!(table.waiting(), 0);
        assert_eq!(waits.held(), (0, 0));
    }

    #[test]
    fn an_interrupt_while_parking_gives_the_wait_up_once_parked() {
        let (waits, table) = (Arc::new(KernelWaits::default()), LockTable::new());
        held_by_1(&table);
        waits.begin(14).unwrap();
        assert_eq!(waits.interrupt(14), None);
        let (tell, outcome) = mpsc::channel();
        let forget = Arc::clone(&waits);
        let wake: Wake = Box::new(move |result| {
            forget.answered(14);
            tell.send(result).unwrap();
        });
        let request = flock(2, Some(LockKind::Write));
        let id = table.set_wait(FILE, &request, Fh(2), wake).unwrap();
        assert!(waits.parked(14, id));
        assert!(table.cancel(id));
        assert_eq!(outcome.try_recv(), Ok(Err(Errno::Interrupted)));
        assert_eq!(waits.held(), (0, 0));
    }

    #[test]
    fn a_grant_forgets_the_wait_and_a_late_interrupt_changes_nothing() {
        let (waits, table) = (Arc::new(KernelWaits::default()), LockTable::new());
        held_by_1(&table);
        let outcome = wait(&waits, &table, 16, 2);
        table.release_description(FILE, Fh(1));
        assert_eq!(outcome.try_recv(), Ok(Ok(())));
        assert_eq!(waits.held(), (0, 0));
        assert_eq!(waits.interrupt(16), None);
        assert_eq!(table.held(FILE).len(), 1, "the grant stands");
        // A wait granted at once is forgotten as well.
        let (waits, table) = (Arc::new(KernelWaits::default()), LockTable::new());
        let outcome = wait(&waits, &table, 18, 2);
        assert_eq!(outcome.try_recv(), Ok(Ok(())));
        assert_eq!(waits.held(), (0, 0));
    }

    #[test]
    fn what_a_client_can_make_it_hold_is_bounded() {
        let waits = KernelWaits::default();
        for unique in 0..(MAX_EARLY_INTERRUPTS as u64 * 3) {
            assert_eq!(waits.interrupt(unique), None);
        }
        assert_eq!(waits.held(), (0, MAX_EARLY_INTERRUPTS));
        let newest = MAX_EARLY_INTERRUPTS as u64 * 3 - 1;
        assert_eq!(waits.begin(newest), Err(Refused::Interrupted));
        assert_eq!(waits.begin(0), Ok(()), "the oldest made way");
        for unique in 1..MAX_PARKED as u64 {
            waits.begin(1_000_000 + unique).unwrap();
        }
        assert_eq!(waits.begin(2_000_000), Err(Refused::Full));
        waits.answered(0);
        assert_eq!(waits.begin(2_000_000), Ok(()));
    }
}
