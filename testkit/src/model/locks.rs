//! [`LockModel`]: the reference model of `btfuse_core::locks::LockTable`, byte by byte.
//!
//! Where the table keeps ranges that it splits and merges, the model keeps one cell per byte of
//! a short file (`SPAN` bytes) plus one cell for everything from `SPAN` to the end, and asks of
//! every cell who holds what. Ranges the property test draws start and end on cell boundaries,
//! so a cell is always wholly inside or outside a range. The model's answers are what the
//! table's must be: which requests succeed, which waiters are granted or interrupted and when,
//! and every owner's locks as maximal runs of equal cells.
//!
//! Linux rules the model follows (fs/locks.c): a set replaces the owner's locks on its range
//! and the owner's same-kind locks that touch the result merge into one lock, which takes the
//! new request's pid (and here, its description); `flock` converts by dropping the old lock
//! first; waiters are tried again, oldest first, whenever a file's locks change; a process's
//! wait that would close a cycle of process waits fails with `EDEADLK`.

use std::collections::BTreeMap;

use btfuse_core::locks::{
    Conflict, HeldLock, LockKind, LockOwner, LockRange, LockRequest, LockSpace, OFFSET_MAX,
    OwnerKind,
};
use btfuse_core::{Errno, Fh, Ino, Result};

/// Bytes modelled one by one; everything from here to [`OFFSET_MAX`] is one more cell.
pub const SPAN: u64 = 16;
const CELLS: usize = SPAN as usize + 1;

/// What one owner holds on one byte.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Cell {
    kind: LockKind,
    pid: u32,
    fh: Fh,
}

/// A parked request of the model.
#[derive(Clone, Debug)]
struct Waiter {
    id: u64,
    ino: Ino,
    req: LockRequest,
    fh: Fh,
}

/// What happened to a parked request: the id [`LockModel::set_wait`] gave it, and its outcome.
pub type Woken = (u64, Result<()>);

/// The reference lock table.
#[derive(Default, Debug)]
pub struct LockModel {
    cells: BTreeMap<(Ino, LockSpace, LockOwner), [Option<Cell>; CELLS]>,
    waiters: Vec<Waiter>,
    next_wait: u64,
}

fn cell_span(range: LockRange) -> std::ops::RangeInclusive<usize> {
    let cell = |b: u64| b.min(SPAN) as usize;
    cell(range.start())..=cell(range.end())
}

fn cell_range(first: usize, last: usize) -> LockRange {
    let end = if last == CELLS - 1 {
        OFFSET_MAX
    } else {
        last as u64
    };
    LockRange::new(first as u64, end).expect("cells make valid ranges")
}

impl LockModel {
    /// An empty model.
    pub fn new() -> LockModel {
        LockModel::default()
    }

    /// Every lock a request of `req`'s kind on `ino` would meet: any one of them is a right
    /// answer for `F_GETLK`.
    pub fn conflicts(&self, ino: Ino, req: &LockRequest) -> Vec<Conflict> {
        let Some(kind) = req.kind else {
            return Vec::new();
        };
        self.held(ino)
            .into_iter()
            .filter(|h| {
                h.space == req.space
                    && h.owner != req.owner
                    && h.range.start() <= req.range.end()
                    && req.range.start() <= h.range.end()
                    && (h.kind == LockKind::Write || kind == LockKind::Write)
            })
            .map(|h| Conflict {
                owner: h.owner,
                kind: h.kind,
                range: h.range,
                pid: h.pid,
            })
            .collect()
    }

    /// `F_SETLK`: `EAGAIN` if anything stands in the way. Returns the waiters it woke.
    pub fn set(&mut self, ino: Ino, req: &LockRequest, fh: Fh) -> (Result<()>, Vec<Woken>) {
        let applied = self.apply(ino, req, fh);
        let woken = self.retry(ino);
        (applied.then_some(()).ok_or(Errno::TryAgain), woken)
    }

    /// `F_SETLKW`: `Ok(None)` if granted now, `Ok(Some(id))` if parked, `EDEADLK`.
    pub fn set_wait(
        &mut self,
        ino: Ino,
        req: &LockRequest,
        fh: Fh,
    ) -> (Result<Option<u64>>, Vec<Woken>) {
        let result = if self.apply(ino, req, fh) {
            Ok(None)
        } else if self.deadlocks(ino, req) {
            Err(Errno::Deadlock)
        } else {
            let id = self.next_wait;
            self.next_wait += 1;
            self.waiters.push(Waiter {
                id,
                ino,
                req: *req,
                fh,
            });
            Ok(Some(id))
        };
        (result, self.retry(ino))
    }

    /// Gives up a parked request; `false` if it is not parked.
    pub fn cancel(&mut self, id: u64) -> bool {
        let before = self.waiters.len();
        self.waiters.retain(|w| w.id != id);
        self.waiters.len() != before
    }

    /// Ids of the parked requests, oldest first.
    pub fn parked(&self) -> Vec<u64> {
        self.waiters.iter().map(|w| w.id).collect()
    }

    /// A process closed a descriptor of `ino`: its locks there go.
    pub fn unlock_owner(&mut self, ino: Ino, owner: LockOwner) -> Vec<Woken> {
        self.cells.retain(|k, _| !(k.0 == ino && k.2 == owner));
        self.retry(ino)
    }

    /// The last close of `fh`: every byte locked through it is unlocked, its waiters given up.
    pub fn release_description(&mut self, ino: Ino, fh: Fh) -> Vec<Woken> {
        let mut woken = self.give_up(|w| w.ino == ino && w.fh == fh);
        for ((i, _, _), cells) in self.cells.iter_mut() {
            if *i == ino {
                for c in cells.iter_mut() {
                    if c.is_some_and(|c| c.fh == fh) {
                        *c = None;
                    }
                }
            }
        }
        self.cells
            .retain(|_, cells| cells.iter().any(Option::is_some));
        woken.extend(self.retry(ino));
        woken
    }

    /// A client died: all of `owner`'s locks and waits go.
    pub fn release_owner(&mut self, owner: LockOwner) -> Vec<Woken> {
        let mut woken = self.give_up(|w| w.req.owner == owner);
        let files: Vec<Ino> = self
            .cells
            .keys()
            .filter(|k| k.2 == owner)
            .map(|k| k.0)
            .collect();
        self.cells.retain(|k, _| k.2 != owner);
        for ino in files {
            woken.extend(self.retry(ino));
        }
        woken
    }

    /// The locks on `ino` as maximal runs, sorted as `LockTable::held` sorts them.
    pub fn held(&self, ino: Ino) -> Vec<HeldLock> {
        let mut held = Vec::new();
        for (&(i, space, owner), cells) in &self.cells {
            if i != ino {
                continue;
            }
            let mut at = 0;
            while at < CELLS {
                let Some(first) = cells[at] else {
                    at += 1;
                    continue;
                };
                let mut last = at;
                while last + 1 < CELLS && cells[last + 1].is_some_and(|c| c.kind == first.kind) {
                    last += 1;
                }
                // A run is one lock, so it has one pid and one description.
                assert!(
                    cells[at..=last].iter().all(|c| *c == Some(first)),
                    "model run of {owner:?} on {ino:?} mixes pids or descriptions"
                );
                held.push(HeldLock {
                    space,
                    owner,
                    range: cell_range(at, last),
                    kind: first.kind,
                    pid: first.pid,
                    fh: first.fh,
                });
                at = last + 1;
            }
        }
        held.sort_unstable();
        held
    }

    fn give_up(&mut self, goes: impl Fn(&Waiter) -> bool) -> Vec<Woken> {
        let (gone, kept): (Vec<Waiter>, Vec<Waiter>) = std::mem::take(&mut self.waiters)
            .into_iter()
            .partition(goes);
        self.waiters = kept;
        gone.into_iter()
            .map(|w| (w.id, Err(Errno::Interrupted)))
            .collect()
    }

    fn blocked(&self, ino: Ino, req: &LockRequest) -> bool {
        !self.conflicts(ino, req).is_empty()
    }

    /// Applies `req` if nothing stands in its way; `false` if something does.
    fn apply(&mut self, ino: Ino, req: &LockRequest, fh: Fh) -> bool {
        let key = (ino, req.space, req.owner);
        if req.space == LockSpace::Flock {
            let same = self.cells.get(&key).is_some_and(|cells| {
                cells
                    .iter()
                    .all(|c| c.is_some_and(|c| Some(c.kind) == req.kind))
            });
            if same {
                return true;
            }
            self.cells.remove(&key);
        }
        if req.kind.is_some() && self.blocked(ino, req) {
            return false;
        }
        let mut cells = self.cells.remove(&key).unwrap_or([None; CELLS]);
        let span = cell_span(req.range);
        if let Some(kind) = req.kind {
            let new = Cell {
                kind,
                pid: req.pid,
                fh,
            };
            for c in &mut cells[span.clone()] {
                *c = Some(new);
            }
            // The run of equal kind around the new range becomes one lock: the new one.
            let mut first = *span.start();
            while first > 0 && cells[first - 1].is_some_and(|c| c.kind == kind) {
                first -= 1;
            }
            let mut last = *span.end();
            while last + 1 < CELLS && cells[last + 1].is_some_and(|c| c.kind == kind) {
                last += 1;
            }
            for c in &mut cells[first..=last] {
                *c = Some(new);
            }
        } else {
            for c in &mut cells[span] {
                *c = None;
            }
        }
        if cells.iter().any(Option::is_some) {
            self.cells.insert(key, cells);
        }
        true
    }

    /// Grants, oldest first and until a pass grants nothing, the waiters of `ino` that fit.
    fn retry(&mut self, ino: Ino) -> Vec<Woken> {
        let mut woken = Vec::new();
        loop {
            let mut granted = false;
            let mut at = 0;
            while at < self.waiters.len() {
                let w = self.waiters[at].clone();
                if w.ino == ino && self.apply(ino, &w.req, w.fh) {
                    self.waiters.remove(at);
                    woken.push((w.id, Ok(())));
                    granted = true;
                } else {
                    at += 1;
                }
            }
            if !granted {
                return woken;
            }
        }
    }

    /// Whether `req`'s owner is reachable from the holders blocking it through waits of
    /// processes (and kernel owners), as Linux's `posix_locks_deadlock` looks.
    fn deadlocks(&self, ino: Ino, req: &LockRequest) -> bool {
        let follows = |o: LockOwner| matches!(o.kind, OwnerKind::Process | OwnerKind::Kernel);
        if !follows(req.owner) {
            return false;
        }
        let mut reached: Vec<LockOwner> =
            self.conflicts(ino, req).iter().map(|c| c.owner).collect();
        let mut grew = true;
        while grew {
            grew = false;
            for w in &self.waiters {
                if follows(w.req.owner) && reached.contains(&w.req.owner) {
                    for c in self.conflicts(w.ino, &w.req) {
                        if !reached.contains(&c.owner) {
                            reached.push(c.owner);
                            grew = true;
                        }
                    }
                }
            }
        }
        reached.contains(&req.owner)
    }
}
