//! [`LockTable`]: the held locks of every file and the requests waiting for them.

use alloc::boxed::Box;
use alloc::vec::Vec;

use hashbrown::HashMap;
use spin::Mutex;

use super::{Conflict, LockKind, LockOwner, LockRange, LockRequest, LockSpace};
use crate::{Errno, Fh, Ino, Result};

/// Told the outcome of a parked request, exactly once: `Ok(())` when the lock was granted (it
/// is held from then on), `Err(Interrupted)` when the wait was given up.
pub type Wake = Box<dyn FnOnce(Result<()>) + Send>;

/// Names a parked request, for [`LockTable::cancel`].
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct WaitId(u64);

/// A lock as the table holds it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct HeldLock {
    /// Its space.
    pub space: LockSpace,
    /// Its owner.
    pub owner: LockOwner,
    /// Its bytes.
    pub range: LockRange,
    /// Read or write.
    pub kind: LockKind,
    /// The process that took it.
    pub pid: u32,
    /// The description it was taken through.
    pub fh: Fh,
}

impl HeldLock {
    fn conflict(&self) -> Conflict {
        Conflict {
            owner: self.owner,
            kind: self.kind,
            range: self.range,
            pid: self.pid,
        }
    }

    /// Whether this lock stands in the way of `req`.
    fn blocks(&self, req: &LockRequest, kind: LockKind) -> bool {
        self.space == req.space
            && self.owner != req.owner
            && self.range.overlaps(req.range)
            && self.kind.conflicts_with(kind)
    }
}

struct Waiter {
    id: WaitId,
    ino: Ino,
    req: LockRequest,
    kind: LockKind,
    fh: Fh,
    wake: Wake,
}

#[derive(Default)]
struct Inner {
    /// Held locks per file; a file with none has no entry. Within a file, an owner's record
    /// locks never overlap one another, and two of the same kind never touch.
    files: HashMap<Ino, Vec<HeldLock>>,
    /// Parked requests, oldest first.
    waiters: Vec<Waiter>,
    next_wait: u64,
}

/// The locks of every file of one engine (see the [module documentation](super)).
#[derive(Default)]
pub struct LockTable {
    inner: Mutex<Inner>,
}

/// Callbacks to run once the table's lock is released.
type Wakes = Vec<(Wake, Result<()>)>;

fn run(wakes: Wakes) {
    for (wake, outcome) in wakes {
        wake(outcome);
    }
}

impl LockTable {
    /// An empty table.
    pub fn new() -> LockTable {
        LockTable::default()
    }

    /// `F_GETLK`: the first lock on `ino` that would stand in the way of `req` (whose kind is
    /// the one to test; `None` tests nothing and finds nothing).
    pub fn get(&self, ino: Ino, req: &LockRequest) -> Option<Conflict> {
        let kind = req.kind?;
        let inner = self.inner.lock();
        let held = inner.files.get(&ino)?;
        // Linux lists a file's locks grouped by owner, each owner's by start: the first
        // conflicting owner's lowest conflicting lock is what it reports.
        let first = held.iter().find(|h| h.blocks(req, kind))?;
        held.iter()
            .filter(|h| h.owner == first.owner && h.blocks(req, kind))
            .min_by_key(|h| h.range.start)
            .map(HeldLock::conflict)
    }

    /// `F_SETLK` and `flock(LOCK_NB)`: applies `req` now, through the description `fh`, or
    /// fails with `EAGAIN` and changes nothing (except that `flock` gives up a lock of the other
    /// kind first, as Linux's does).
    pub fn set(&self, ino: Ino, req: &LockRequest, fh: Fh) -> Result<()> {
        let mut wakes = Wakes::new();
        let result = {
            let mut inner = self.inner.lock();
            let result = inner.try_apply(ino, req, fh);
            inner.changed(ino, &mut wakes);
            result
        };
        run(wakes);
        result.map_err(|_| Errno::TryAgain)
    }

    /// `F_SETLKW` and `flock` without `LOCK_NB`: `wake` is told the outcome exactly once. If
    /// it is decided now (granted, or `EDEADLK` because waiting would close a cycle of waits
    /// of process owners), `wake` runs before this returns `None`; otherwise the request is
    /// parked, this returns at once with its id, and `wake` runs when it is granted or given
    /// up.
    pub fn set_wait(&self, ino: Ino, req: &LockRequest, fh: Fh, wake: Wake) -> Option<WaitId> {
        let mut wakes = Wakes::new();
        let parked = {
            let mut inner = self.inner.lock();
            let parked = match inner.try_apply(ino, req, fh) {
                Ok(()) => {
                    wakes.push((wake, Ok(())));
                    None
                }
                Err(kind)
                    if req.owner.detects_deadlock() && inner.would_deadlock(ino, req, kind) =>
                {
                    wakes.push((wake, Err(Errno::Deadlock)));
                    None
                }
                Err(kind) => {
                    let id = WaitId(inner.next_wait);
                    inner.next_wait += 1;
                    inner.waiters.push(Waiter {
                        id,
                        ino,
                        req: *req,
                        kind,
                        fh,
                        wake,
                    });
                    Some(id)
                }
            };
            inner.changed(ino, &mut wakes);
            parked
        };
        run(wakes);
        parked
    }

    /// Gives up a parked request: its callback is told `Err(Interrupted)`. `false` when it is
    /// no longer parked (granted or given up already: its callback has run or is running).
    pub fn cancel(&self, id: WaitId) -> bool {
        let waiter = {
            let mut inner = self.inner.lock();
            let Some(at) = inner.waiters.iter().position(|w| w.id == id) else {
                return false;
            };
            inner.waiters.remove(at)
        };
        (waiter.wake)(Err(Errno::Interrupted));
        true
    }

    /// Drops every lock `owner` holds on `ino`: a process closed a descriptor of the file.
    pub fn unlock_owner(&self, ino: Ino, owner: LockOwner) {
        self.drop_where(Some(ino), |h| h.owner == owner, |_| false);
    }

    /// Drops every lock taken through the description `fh` of `ino`, and gives up its parked
    /// requests: the description's last close.
    pub fn release_description(&self, ino: Ino, fh: Fh) {
        self.drop_where(Some(ino), |h| h.fh == fh, |w| w.fh == fh);
    }

    /// Drops every lock of `owner` on every file and gives up its parked requests: the client
    /// that owned it is gone.
    pub fn release_owner(&self, owner: LockOwner) {
        self.drop_where(None, |h| h.owner == owner, |w| w.req.owner == owner);
    }

    /// The locks held on `ino`, in a fixed order (for tests and diagnostics).
    pub fn held(&self, ino: Ino) -> Vec<HeldLock> {
        let inner = self.inner.lock();
        let mut held = inner.files.get(&ino).cloned().unwrap_or_default();
        held.sort_unstable();
        held
    }

    /// Whether a lock held on `ino` satisfies `which` (no copy of the list is made).
    pub fn holds(&self, ino: Ino, which: impl Fn(&HeldLock) -> bool) -> bool {
        self.inner
            .lock()
            .files
            .get(&ino)
            .is_some_and(|held| held.iter().any(which))
    }

    /// How many requests are parked.
    pub fn waiting(&self) -> usize {
        self.inner.lock().waiters.len()
    }

    fn drop_where(
        &self,
        only: Option<Ino>,
        lock_goes: impl Fn(&HeldLock) -> bool,
        waiter_goes: impl Fn(&Waiter) -> bool,
    ) {
        let mut wakes = Wakes::new();
        {
            let mut inner = self.inner.lock();
            // Every close comes here: a file nobody locks or waits on costs one lookup.
            if let Some(ino) = only
                && !inner.files.contains_key(&ino)
                && !inner.waiters.iter().any(|w| w.ino == ino)
            {
                return;
            }
            let mut touched: Vec<Ino> = Vec::new();
            let mut kept = Vec::with_capacity(inner.waiters.len());
            for w in core::mem::take(&mut inner.waiters) {
                if only.is_none_or(|ino| ino == w.ino) && waiter_goes(&w) {
                    wakes.push((w.wake, Err(Errno::Interrupted)));
                } else {
                    kept.push(w);
                }
            }
            inner.waiters = kept;
            inner.files.retain(|&ino, held| {
                if only.is_none_or(|only| only == ino) {
                    let before = held.len();
                    held.retain(|h| !lock_goes(h));
                    if held.len() != before {
                        touched.push(ino);
                    }
                }
                !held.is_empty()
            });
            for ino in touched {
                inner.changed(ino, &mut wakes);
            }
        }
        run(wakes);
    }
}

impl Inner {
    /// Applies `req` if nothing stands in its way; otherwise returns the kind it waits for.
    fn try_apply(
        &mut self,
        ino: Ino,
        req: &LockRequest,
        fh: Fh,
    ) -> core::result::Result<(), LockKind> {
        let held = self.files.entry(ino).or_default();
        if req.space == LockSpace::Flock {
            // Linux converts a flock lock by dropping the old one first: a conversion that then
            // fails leaves the description with no lock at all.
            if let Some(kind) = req.kind
                && held
                    .iter()
                    .any(|h| h.space == LockSpace::Flock && h.owner == req.owner && h.kind == kind)
            {
                return Ok(());
            }
            held.retain(|h| !(h.space == LockSpace::Flock && h.owner == req.owner));
        }
        let Some(kind) = req.kind else {
            if req.space == LockSpace::Record {
                carve(held, req.owner, req.range);
            }
            return Ok(());
        };
        if held.iter().any(|h| h.blocks(req, kind)) {
            return Err(kind);
        }
        let mut new = HeldLock {
            space: req.space,
            owner: req.owner,
            range: req.range,
            kind,
            pid: req.pid,
            fh,
        };
        if req.space == LockSpace::Record {
            carve(held, req.owner, req.range);
            // Absorb the owner's locks of the same kind that touch the new one.
            held.retain(|h| {
                let merge = h.space == LockSpace::Record
                    && h.owner == req.owner
                    && h.kind == kind
                    && h.range.touches(new.range);
                if merge {
                    new.range = LockRange {
                        start: new.range.start.min(h.range.start),
                        end: new.range.end.max(h.range.end),
                    };
                }
                !merge
            });
        }
        held.push(new);
        Ok(())
    }

    /// After the locks of `ino` changed: drops its entry if empty and grants, oldest first,
    /// the parked requests for it that now fit.
    fn changed(&mut self, ino: Ino, wakes: &mut Wakes) {
        // A grant may convert part of its owner's locks from write to read, which can let an
        // older request through: scan again until a pass grants nothing.
        loop {
            let mut granted = false;
            let mut at = 0;
            while at < self.waiters.len() {
                if self.waiters[at].ino != ino {
                    at += 1;
                    continue;
                }
                let (req, fh) = (self.waiters[at].req, self.waiters[at].fh);
                if self.try_apply(ino, &req, fh).is_ok() {
                    let waiter = self.waiters.remove(at);
                    wakes.push((waiter.wake, Ok(())));
                    granted = true;
                } else {
                    at += 1;
                }
            }
            if !granted {
                break;
            }
        }
        if self.files.get(&ino).is_some_and(Vec::is_empty) {
            self.files.remove(&ino);
        }
    }

    /// Whether parking `req` would close a cycle: some owner it would wait for waits, directly
    /// or through others, for `req`'s owner.
    fn would_deadlock(&self, ino: Ino, req: &LockRequest, kind: LockKind) -> bool {
        let mut seen: Vec<LockOwner> = Vec::new();
        let mut next: Vec<LockOwner> = self.blockers(ino, req, kind).collect();
        while let Some(owner) = next.pop() {
            if owner == req.owner {
                return true;
            }
            if seen.contains(&owner) || !owner.detects_deadlock() {
                continue;
            }
            seen.push(owner);
            for w in self.waiters.iter().filter(|w| w.req.owner == owner) {
                next.extend(self.blockers(w.ino, &w.req, w.kind));
            }
        }
        false
    }

    fn blockers<'a>(
        &'a self,
        ino: Ino,
        req: &'a LockRequest,
        kind: LockKind,
    ) -> impl Iterator<Item = LockOwner> + 'a {
        self.files
            .get(&ino)
            .into_iter()
            .flatten()
            .filter(move |h| h.blocks(req, kind))
            .map(|h| h.owner)
    }
}

/// Removes `range` from `owner`'s record locks in `held`, keeping the parts outside it.
fn carve(held: &mut Vec<HeldLock>, owner: LockOwner, range: LockRange) {
    let mut kept = Vec::with_capacity(held.len() + 1);
    for h in held.drain(..) {
        if h.space != LockSpace::Record || h.owner != owner || !h.range.overlaps(range) {
            kept.push(h);
            continue;
        }
        if h.range.start < range.start {
            kept.push(HeldLock {
                range: LockRange {
                    start: h.range.start,
                    end: range.start - 1,
                },
                ..h
            });
        }
        if h.range.end > range.end {
            kept.push(HeldLock {
                range: LockRange {
                    start: range.end + 1,
                    end: h.range.end,
                },
                ..h
            });
        }
    }
    *held = kept;
}
