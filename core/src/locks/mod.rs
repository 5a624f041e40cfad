//! File locks: POSIX record locks, open file description (OFD) locks and `flock`, kept in one
//! [`LockTable`] that every frontend of an engine consults, so a process on the FUSE mount and
//! one on the ring exclude each other.
//!
//! # Model
//!
//! - A lock lives in one of two **spaces** ([`LockSpace`]): record locks (classic POSIX and
//!   OFD, which conflict with each other, as in Linux) cover byte ranges; `flock` locks cover
//!   the whole file and never conflict with record locks.
//! - A lock has an **owner** ([`LockOwner`]): a process for classic POSIX locks, an open file
//!   description for OFD and `flock` locks, or the kernel's opaque owner for a request that came
//!   through FUSE (which does not say which of the two it is). Two locks conflict when they are
//!   in the same space, belong to different owners, overlap, and one of them is a write lock.
//! - An owner's record locks never overlap each other: setting a range replaces what the owner
//!   held there (splitting a lock that sticks out on either side), and a new lock merges with
//!   the owner's locks of the same kind that touch it. Unlocking is setting nothing.
//! - Each lock remembers the **description** (an engine [`Fh`](crate::Fh)) it was taken
//!   through, so a frontend can drop everything taken through a description at its last close.
//! - The frontends apply Linux's ownership rules with three calls: [`LockTable::unlock_owner`]
//!   when a process closes any descriptor of a file (its POSIX locks on the file go),
//!   [`LockTable::release_description`] at a description's last close (its OFD and `flock`
//!   locks go), and [`LockTable::release_owner`] when a client dies.
//!
//! # Waiting
//!
//! A request that must wait ([`LockTable::set_wait`]) is parked with a [`Wake`] callback and
//! the call returns at once: no thread of the daemon is held up. Whenever locks on the file
//! go away, the parked requests are tried again in the order they came, and each one that now
//! fits is applied and its callback run with `Ok(())`, after the table's lock is released. A
//! waiter that is given up ([`LockTable::cancel`], a signal or a dead client) is told
//! `Err(Interrupted)`. Before parking a request of a process (or of the kernel), the table
//! follows who waits for whom, as Linux does for POSIX locks: if the holders it would wait for
//! are themselves, through a chain of waits, waiting for its owner, the request fails with
//! `EDEADLK` instead.
//!
//! # Concurrency
//!
//! One `spin::Mutex` guards the table. Lock calls are rare next to reads and writes, the
//! critical sections are short (a scan of one file's locks), and deadlock detection needs a
//! consistent view of every waiter anyway (Linux keeps its wait graph under one global lock
//! for the same reason). No callback runs under it.

mod table;
#[cfg(test)]
mod tests;

pub use table::{HeldLock, LockTable, WaitId, Wake};

use crate::{Errno, Result};

/// The largest offset a lock may reach: a range ending here runs to the end of the file,
/// however far it grows (Linux's `OFFSET_MAX`).
pub const OFFSET_MAX: u64 = i64::MAX as u64;

/// Which locks can conflict with which.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum LockSpace {
    /// POSIX record locks and OFD locks: byte ranges.
    Record,
    /// `flock` locks: the whole file, apart from record locks.
    Flock,
}

/// What kind of owner a lock has: it decides deadlock detection (only waits of processes are
/// followed, as Linux follows only classic POSIX locks).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum OwnerKind {
    /// A process: classic POSIX record locks.
    Process,
    /// An open file description: OFD locks and `flock`.
    Description,
    /// The kernel's owner of a request that came through FUSE: a process's files table for
    /// POSIX locks, a file for OFD and `flock` locks; the kernel does not say which.
    Kernel,
}

/// Who owns a lock: the kind and the frontend's number for it. Owners of different kinds are
/// different even with the same number.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct LockOwner {
    /// What the number names.
    pub kind: OwnerKind,
    /// The frontend's number for the owner (a session, a description, the kernel's id).
    pub id: u64,
}

impl LockOwner {
    /// Whether waits of this owner take part in deadlock detection.
    fn detects_deadlock(self) -> bool {
        match self.kind {
            OwnerKind::Process | OwnerKind::Kernel => true,
            OwnerKind::Description => false,
        }
    }
}

/// Shared (read) or exclusive (write).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum LockKind {
    /// Shared: many owners may hold overlapping read locks.
    Read,
    /// Exclusive: no other owner may hold anything overlapping.
    Write,
}

impl LockKind {
    fn conflicts_with(self, other: LockKind) -> bool {
        self == LockKind::Write || other == LockKind::Write
    }
}

/// A byte range `start..=end`; `end == OFFSET_MAX` runs to the end of the file.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct LockRange {
    start: u64,
    end: u64,
}

impl LockRange {
    /// The whole file.
    pub const WHOLE: LockRange = LockRange {
        start: 0,
        end: OFFSET_MAX,
    };

    /// `start..=end`, or `EINVAL` when it is empty or reaches past [`OFFSET_MAX`].
    pub fn new(start: u64, end: u64) -> Result<LockRange> {
        if start > end || end > OFFSET_MAX {
            return Err(Errno::InvalidArgument);
        }
        Ok(LockRange { start, end })
    }

    /// The range of a `struct flock` whose `l_start` has been made absolute (`start`, from
    /// `SEEK_SET`, `SEEK_CUR` or `SEEK_END`) and whose length is `len`, as Linux reads it: a
    /// positive length counts forward from `start`, zero runs to the end of the file, and a
    /// negative one covers the `-len` bytes before `start`. `EINVAL` for a range starting
    /// before 0, `EOVERFLOW` for one ending past [`OFFSET_MAX`].
    pub fn from_posix(start: i64, len: i64) -> Result<LockRange> {
        let (start, end) = if len > 0 {
            let end = start.checked_add(len - 1).ok_or(Errno::Overflow)?;
            (start, end)
        } else if len == 0 {
            (start, i64::MAX)
        } else {
            let first = start.checked_add(len).ok_or(Errno::InvalidArgument)?;
            (first, start - 1)
        };
        if start < 0 || end < 0 {
            return Err(Errno::InvalidArgument);
        }
        LockRange::new(start as u64, end as u64)
    }

    /// The first byte.
    pub fn start(self) -> u64 {
        self.start
    }

    /// The last byte ([`OFFSET_MAX`] for "to the end of the file").
    pub fn end(self) -> u64 {
        self.end
    }

    /// `l_len` of a `struct flock` describing this range: 0 when it runs to the end.
    pub fn posix_len(self) -> u64 {
        if self.end == OFFSET_MAX {
            0
        } else {
            self.end - self.start + 1
        }
    }

    fn overlaps(self, other: LockRange) -> bool {
        self.start <= other.end && other.start <= self.end
    }

    /// Whether the two overlap or one ends right before the other starts.
    fn touches(self, other: LockRange) -> bool {
        self.overlaps(other)
            || self.end.checked_add(1) == Some(other.start)
            || other.end.checked_add(1) == Some(self.start)
    }
}

/// One lock request: who asks, for what, where.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct LockRequest {
    /// Who will own the lock.
    pub owner: LockOwner,
    /// The space it lives in.
    pub space: LockSpace,
    /// `Some` to lock, `None` to unlock.
    pub kind: Option<LockKind>,
    /// The bytes (always [`LockRange::WHOLE`] for `flock`).
    pub range: LockRange,
    /// The process asking, reported to others by `F_GETLK`.
    pub pid: u32,
}

/// A lock that stands in the way of a request: what `F_GETLK` reports.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Conflict {
    /// Its owner.
    pub owner: LockOwner,
    /// Read or write.
    pub kind: LockKind,
    /// Its bytes.
    pub range: LockRange,
    /// The process that took it.
    pub pid: u32,
}
