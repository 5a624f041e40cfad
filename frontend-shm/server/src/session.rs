//! Open file descriptions and the sessions that hold them, kept in the server as the kernel
//! keeps them: a description has the offset and status flags; a session maps a client's
//! descriptor numbers to descriptions; `dup` shares a description, `fork` copies the map.

use std::collections::HashMap;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, Instant};

use btfuse_core::locks::LockOwner;
use btfuse_core::{Credentials, Errno, Fh, FileType, Filesystem, Ino};

use crate::locks::{Holder, SessionLocks};

/// Most descriptions one session may hold open at once (`EMFILE` beyond).
pub(crate) const MAX_OPEN: usize = 1 << 16;

/// How long the descriptions shared by a `Fork` wait for the child to attach.
const FORK_TTL: Duration = Duration::from_secs(60);

/// How long they wait once the session that made them is gone: long enough for the program an
/// `exec` starts, or the child of a parent that exits at once (`daemon(3)`), to attach.
const ORPHAN_FORK_TTL: Duration = Duration::from_secs(5);

impl<F: Filesystem> Drop for Session<F> {
    fn drop(&mut self) {
        let table = self.table.get_mut().unwrap_or_else(|p| p.into_inner());
        self.budget.give(table.open.len());
    }
}

/// Most forks one session may have waiting for their children at once (`EAGAIN` beyond, as
/// `fork` answers at its process limit).
pub(crate) const MAX_PENDING_FORKS_PER_SESSION: usize = 256;

/// Most descriptor numbers the forks waiting for one user's children may hold in all: each
/// is a copy of a whole table, so this bounds the memory a user's clients can pin with forks
/// that never attach (`EAGAIN` beyond).
pub(crate) const MAX_PENDING_FORK_ENTRIES_PER_USER: usize = 4 * MAX_OPEN;

/// The part of a description that reads and writes change, under one lock: POSIX wants a
/// read or write and its offset update to be one step.
#[derive(Debug)]
pub(crate) struct Cursor {
    /// File offset; for a directory, the readdir cookie to continue after.
    pub(crate) offset: u64,
    /// `O_APPEND`, changeable with `F_SETFL`.
    pub(crate) append: bool,
    /// `O_NONBLOCK`, changeable with `F_SETFL` (kept for `F_GETFL`; a memory file never blocks).
    pub(crate) nonblock: bool,
    /// The engine's handle. Replaced when `F_SETFL` toggles `O_APPEND`, because the engine
    /// fixes append mode when a handle opens.
    pub(crate) fh: Fh,
}

/// One open file description.
///
/// Once handed to the kernel (`Handoff`) it holds a kernel file of the same inode, opened
/// through the mount, and is a proxy of that kernel description from then on: reads, writes,
/// seeks and status flags go to the kernel file, whose offset is shared with whoever received
/// its descriptor, and `cursor`'s offset and flags are no longer used. The kernel file is set
/// once, under the cursor lock, so an engine read or write that holds the lock finishes before
/// the kernel file takes the offset over.
pub(crate) struct Description<F: Filesystem> {
    fs: Arc<F>,
    /// The inode it opened.
    pub(crate) ino: Ino,
    /// Its type at open time.
    pub(crate) kind: FileType,
    /// What it was granted when it opened, checked then with the opener's identity; later
    /// changes of the caller's ids or of the file's mode change nothing here (Linux).
    pub(crate) grant: Grant,
    cursor: Mutex<Cursor>,
    kernel: OnceLock<std::fs::File>,
    /// Names the description in the engine's lock table, for its OFD and `flock` locks: the
    /// engine handle it opened with, whose number stays unique even after `F_SETFL` swaps
    /// the handle (the engine never reuses a handle number).
    pub(crate) lock_fh: Fh,
}

/// What a description may be used for, fixed when it opens.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Grant {
    /// Reading (and, for a directory, listing): read permission was checked at open.
    pub(crate) read: bool,
    /// Writing: write permission was checked at open.
    pub(crate) write: bool,
    /// Access mode 3: read and write permission were checked, neither is granted; kept for
    /// `F_GETFL`.
    pub(crate) check_read_write: bool,
    /// `O_PATH`: names the inode and nothing more. Only the calls Linux serves with
    /// `fdget_raw` take it (`fstat`, `fstatfs`, `faccessat` on it, `F_GETFL`, `dup`, `close`,
    /// a starting directory); every other is `EBADF`.
    pub(crate) path_only: bool,
}

impl Cursor {
    /// A cursor at offset 0 over `fh`, with no status flags.
    pub(crate) fn at_start(fh: Fh) -> Cursor {
        Cursor {
            offset: 0,
            append: false,
            nonblock: false,
            fh,
        }
    }
}

/// Where a call on a description's offset goes.
pub(crate) enum Route<'d> {
    /// The engine, with the offset and flags locked for the call.
    Engine(MutexGuard<'d, Cursor>),
    /// The kernel file the description was handed off as; no lock is held.
    Kernel(&'d std::fs::File),
}

impl<F: Filesystem> Description<F> {
    /// A description over the engine handle `fh`, which it releases when the last reference
    /// to it goes.
    pub(crate) fn new(fs: Arc<F>, ino: Ino, kind: FileType, grant: Grant, cursor: Cursor) -> Self {
        Description {
            fs,
            ino,
            kind,
            grant,
            lock_fh: cursor.fh,
            cursor: Mutex::new(cursor),
            kernel: OnceLock::new(),
        }
    }

    /// Where a call that uses or moves the offset goes. When it says the engine, the cursor is
    /// locked: a handoff cannot take the offset over until the call is done.
    pub(crate) fn route(&self) -> Route<'_> {
        if let Some(kernel) = self.kernel.get() {
            return Route::Kernel(kernel);
        }
        let cursor = self.cursor();
        match self.kernel.get() {
            Some(kernel) => Route::Kernel(kernel),
            None => Route::Engine(cursor),
        }
    }

    /// The kernel file this description was handed off as, opened by `open` from the
    /// cursor (whose offset and flags it must take over) on the first handoff.
    pub(crate) fn kernel_file<E>(
        &self,
        open: impl FnOnce(&Cursor) -> Result<std::fs::File, E>,
    ) -> Result<&std::fs::File, E> {
        if let Some(kernel) = self.kernel.get() {
            return Ok(kernel);
        }
        let cursor = self.cursor();
        if let Some(kernel) = self.kernel.get() {
            return Ok(kernel);
        }
        let file = open(&cursor)?;
        let kernel = self.kernel.get_or_init(|| file);
        drop(cursor);
        Ok(kernel)
    }

    /// The offset, flags and handle, locked for one operation.
    pub(crate) fn cursor(&self) -> MutexGuard<'_, Cursor> {
        // A panic while serving one request must not wedge the description for the others.
        self.cursor
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl<F: Filesystem> Drop for Description<F> {
    fn drop(&mut self) {
        let fh = self.cursor.get_mut().unwrap_or_else(|p| p.into_inner()).fh;
        // The last close: the description's OFD and `flock` locks go.
        if let Some(locks) = self.fs.locks() {
            locks.release_description(self.ino, self.lock_fh);
        }
        if let Err(e) = self.fs.release(fh) {
            log::warn!("releasing handle {fh:?} of inode {:?}: {e}", self.ino);
        }
    }
}

/// Most descriptor numbers all the sessions of one user may hold at once (`EMFILE` beyond):
/// without it, a user's connections times [`MAX_OPEN`] would be the bound.
pub(crate) const MAX_OPEN_PER_USER: usize = 16 * MAX_OPEN;

/// The descriptor numbers one user's sessions hold, against a cap.
#[derive(Debug)]
pub(crate) struct UserBudget {
    used: AtomicUsize,
    max: usize,
}

impl UserBudget {
    /// A budget of `max` numbers, none used.
    pub(crate) fn new(max: usize) -> UserBudget {
        UserBudget {
            used: AtomicUsize::new(0),
            max,
        }
    }

    /// Takes `n` numbers, or `EMFILE` (taking none) when fewer are left.
    fn take(&self, n: usize) -> Result<(), Errno> {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|&total| total <= self.max)
            })
            .map(|_| ())
            .map_err(|_| Errno::TooManyOpenFiles)
    }

    /// Gives back `n` numbers taken before.
    fn give(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::AcqRel);
    }

    /// Numbers in use.
    #[cfg(test)]
    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }
}

/// One [`UserBudget`] per user, shared by that user's sessions while any lives.
#[derive(Default)]
pub(crate) struct Budgets {
    by_uid: Mutex<HashMap<u32, Weak<UserBudget>>>,
}

impl Budgets {
    /// The budget of `uid`'s sessions.
    pub(crate) fn of(&self, uid: u32) -> Arc<UserBudget> {
        let mut by_uid = self.by_uid.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(budget) = by_uid.get(&uid).and_then(Weak::upgrade) {
            return budget;
        }
        by_uid.retain(|_, b| b.strong_count() > 0);
        let budget = Arc::new(UserBudget::new(MAX_OPEN_PER_USER));
        by_uid.insert(uid, Arc::downgrade(&budget));
        budget
    }
}

/// A client's descriptor table.
pub(crate) struct Session<F: Filesystem> {
    /// The secret another connection of the same client presents to join this session.
    pub(crate) join_token: u64,
    /// The user that created the session: another connection of the same user may join it.
    pub(crate) owner_uid: u32,
    /// The process that created (or attached to) the session: it may join it whatever its ids
    /// are now, as a process keeps its descriptors when it changes them.
    pub(crate) owner_pid: u32,
    /// The numbers the owner's sessions hold in all.
    budget: Arc<UserBudget>,
    table: Mutex<Table<F>>,
    /// The process's POSIX lock owner and its parked lock waits.
    pub(crate) locks: SessionLocks<F>,
    /// The sockets of the session's channels, to see whether its process is gone.
    channels: Mutex<Vec<Weak<UnixStream>>>,
}

struct Table<F: Filesystem> {
    open: HashMap<u32, Arc<Description<F>>>,
    /// Where the search for a free number starts.
    next: u32,
}

impl<F: Filesystem> Session<F> {
    /// An empty session of the client `owner`, whose numbers count against `budget`.
    pub(crate) fn new(join_token: u64, owner: &Credentials, budget: Arc<UserBudget>) -> Self {
        Session {
            join_token,
            owner_uid: owner.uid,
            owner_pid: owner.pid,
            budget,
            table: Mutex::new(Table {
                open: HashMap::new(),
                next: 0,
            }),
            locks: SessionLocks::new(),
            channels: Mutex::new(Vec::new()),
        }
    }

    /// Counts `stream` among the session's channels.
    pub(crate) fn add_channel(&self, stream: &Arc<UnixStream>) {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        channels.retain(|c| c.strong_count() > 0);
        channels.push(Arc::downgrade(stream));
    }

    /// Ends what the session holds once its process is gone, as the kernel does when a
    /// process exits: every descriptor closes (a description's OFD and `flock` locks go
    /// with its last close) and the process's POSIX locks and parked waits go. The worker
    /// that owns the channels retires them later, finding nothing left to release.
    pub(crate) fn end(&self) {
        let open = std::mem::take(&mut self.table().open);
        self.budget.give(open.len());
        drop(open);
        self.locks.release_all();
    }

    fn table(&self) -> MutexGuard<'_, Table<F>> {
        self.table
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds a description under a fresh number (`EMFILE` when the table, or the owner's
    /// budget, is full).
    pub(crate) fn insert(&self, description: Arc<Description<F>>) -> Result<u32, Errno> {
        let mut table = self.table();
        if table.open.len() >= MAX_OPEN {
            return Err(Errno::TooManyOpenFiles);
        }
        self.budget.take(1)?;
        let mut fd = table.next;
        while table.open.contains_key(&fd) {
            fd = fd.wrapping_add(1);
        }
        table.next = fd.wrapping_add(1);
        table.open.insert(fd, description);
        Ok(fd)
    }

    /// The description numbered `fd` (`EBADF` if none).
    pub(crate) fn get(&self, fd: u32) -> Result<Arc<Description<F>>, Errno> {
        self.table().open.get(&fd).cloned().ok_or(Errno::BadHandle)
    }

    /// Removes number `fd`; the description closes when nothing else refers to it. The
    /// release happens after the table lock is dropped.
    pub(crate) fn remove(&self, fd: u32) -> Result<(), Errno> {
        let removed = self.table().open.remove(&fd);
        let removed = removed.ok_or(Errno::BadHandle)?;
        self.budget.give(1);
        // Any close of a descriptor of a file drops the process's POSIX locks on it.
        if let Some(table) = self.locks.used() {
            table.unlock_owner(removed.ino, self.locks.owner());
        }
        drop(removed);
        Ok(())
    }

    /// A second number for the description `fd` refers to.
    pub(crate) fn dup(&self, fd: u32) -> Result<u32, Errno> {
        let description = self.get(fd)?;
        self.insert(description)
    }

    /// Number of open descriptor numbers.
    pub(crate) fn len(&self) -> usize {
        self.table().open.len()
    }

    /// Replaces the whole table with `open` (a child attaching to what its parent shared);
    /// what it held before is released after the lock is let go. `EMFILE`, with nothing
    /// changed, when the owner's budget cannot hold the new table.
    pub(crate) fn replace_table(
        &self,
        open: HashMap<u32, Arc<Description<F>>>,
    ) -> Result<(), Errno> {
        let old = {
            let mut table = self.table();
            self.budget.take(open.len())?;
            self.budget.give(table.open.len());
            table.next = 0;
            std::mem::replace(&mut table.open, open)
        };
        drop(old);
        Ok(())
    }

    /// Whether a connection of `cred` may join: the same process, the same user, or root.
    pub(crate) fn may_join(&self, cred: &Credentials) -> bool {
        // A process the server cannot see (another pid namespace) has pid 0: no proof.
        (cred.pid != 0 && cred.pid == self.owner_pid)
            || cred.uid == self.owner_uid
            || cred.is_root()
    }

    /// A copy of the table sharing every description, as `fork` gives a child.
    fn fork_table(&self) -> HashMap<u32, Arc<Description<F>>> {
        self.table().open.clone()
    }
}

impl<F: Filesystem> Holder for Session<F> {
    fn end_if_hung_up(&self) -> bool {
        let channels: Vec<Arc<UnixStream>> = {
            let channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
            if channels.is_empty() {
                // Not set up yet: its process has only just connected.
                return false;
            }
            channels.iter().filter_map(Weak::upgrade).collect()
        };
        // A channel whose socket is gone has been retired: it hung up.
        if !channels
            .iter()
            .all(|c| btfuse_ring_client::socket::peer_hung_up(c))
        {
            return false;
        }
        self.end();
        true
    }

    fn lock_owner(&self) -> LockOwner {
        self.locks.owner()
    }
}

/// Tables a parent shared with `Fork`, waiting for the child to `Attach`.
///
/// What a client can make the server hold here is bounded: at most
/// [`MAX_PENDING_FORKS_PER_SESSION`] waiting forks per session and
/// [`MAX_PENDING_FORK_ENTRIES_PER_USER`] descriptor numbers in all of a user's waiting forks
/// (`EAGAIN` beyond); a fork not attached within [`FORK_TTL`], or [`ORPHAN_FORK_TTL`] after
/// the session that made it went, is released by [`ForkTable::sweep`], which the server runs on
/// a timer.
pub(crate) struct ForkTable<F: Filesystem> {
    pending: Mutex<HashMap<u64, PendingFork<F>>>,
    /// Set at shutdown, with `closing` notified, to end [`ForkTable::run_sweeper`].
    closed: Mutex<bool>,
    closing: Condvar,
}

struct PendingFork<F: Filesystem> {
    made: Instant,
    uid: u32,
    /// The session that made it, to tell when it is gone.
    parent: Weak<Session<F>>,
    open: HashMap<u32, Arc<Description<F>>>,
}

impl<F: Filesystem> PendingFork<F> {
    /// Whether it is past its time at `now`.
    fn expired(&self, now: Instant) -> bool {
        let age = now.saturating_duration_since(self.made);
        age > FORK_TTL || (age > ORPHAN_FORK_TTL && self.parent.strong_count() == 0)
    }
}

impl<F: Filesystem> Default for ForkTable<F> {
    fn default() -> Self {
        ForkTable {
            pending: Mutex::new(HashMap::new()),
            closed: Mutex::new(false),
            closing: Condvar::new(),
        }
    }
}

impl<F: Filesystem> ForkTable<F> {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, PendingFork<F>>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps a copy of `session`'s table under `token` for a child of the same user; `EAGAIN`
    /// when the session or its user has as many waiting forks as they may.
    pub(crate) fn prepare(
        &self,
        token: u64,
        session: &Arc<Session<F>>,
        cred: &Credentials,
    ) -> Result<(), Errno> {
        let open = session.fork_table();
        let parent = Arc::downgrade(session);
        let mut pending = self.lock();
        let (mut of_session, mut of_user) = (0, 0);
        for p in pending.values() {
            if p.parent.ptr_eq(&parent) {
                of_session += 1;
            }
            if p.uid == cred.uid {
                of_user += p.open.len();
            }
        }
        if of_session >= MAX_PENDING_FORKS_PER_SESSION
            || of_user.saturating_add(open.len()) > MAX_PENDING_FORK_ENTRIES_PER_USER
        {
            drop(pending);
            log::warn!(
                "uid {} (pid {}): fork refused, {of_session} forks of this session and {of_user} \
                 descriptors of this user's forks wait for children that have not attached",
                cred.uid,
                cred.pid
            );
            // Released outside the lock.
            drop(open);
            return Err(Errno::TryAgain);
        }
        pending.insert(
            token,
            PendingFork {
                made: Instant::now(),
                uid: cred.uid,
                parent,
                open,
            },
        );
        Ok(())
    }

    /// The table a child attaching with `token` continues with: `EACCES` for another user,
    /// `ENOENT` for an unknown, used or expired token.
    pub(crate) fn attach(
        &self,
        token: u64,
        cred: &Credentials,
    ) -> Result<HashMap<u32, Arc<Description<F>>>, Errno> {
        let mut pending = self.lock();
        match pending.get(&token) {
            None => return Err(Errno::NotFound),
            Some(p) if p.expired(Instant::now()) => {
                let stale = pending.remove(&token);
                drop(pending);
                drop(stale);
                return Err(Errno::NotFound);
            }
            Some(p) if p.uid != cred.uid && !cred.is_root() => return Err(Errno::PermissionDenied),
            Some(_) => {}
        }
        let p = pending.remove(&token).ok_or(Errno::NotFound)?;
        drop(pending);
        Ok(p.open)
    }

    /// Releases every waiting fork past its time; how many.
    pub(crate) fn sweep(&self) -> usize {
        let now = Instant::now();
        let expired: Vec<PendingFork<F>> = {
            let mut pending = self.lock();
            let tokens: Vec<u64> = pending
                .iter()
                .filter(|(_, p)| p.expired(now))
                .map(|(&t, _)| t)
                .collect();
            tokens.iter().filter_map(|t| pending.remove(t)).collect()
        };
        // Released outside the lock.
        expired.len()
    }

    /// Waiting forks now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    /// Sweeps every `every` until [`ForkTable::close`].
    pub(crate) fn run_sweeper(&self, every: Duration) {
        let mut closed = self.closed.lock().unwrap_or_else(|p| p.into_inner());
        while !*closed {
            closed = self
                .closing
                .wait_timeout(closed, every)
                .unwrap_or_else(|p| p.into_inner())
                .0;
            if !*closed {
                let released = self.sweep();
                if released > 0 {
                    log::debug!("released {released} forks no child attached to");
                }
            }
        }
    }

    /// Ends [`ForkTable::run_sweeper`] (at shutdown).
    pub(crate) fn close(&self) {
        *self.closed.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.closing.notify_all();
    }

    /// Drops every pending table (at shutdown).
    pub(crate) fn clear(&self) {
        let all = std::mem::take(&mut *self.lock());
        drop(all);
    }
}

#[cfg(test)]
mod tests {
    use btfuse_core::{Config, MemFs, MemPool, OpenFlags, ZeroClock};

    use super::*;

    type Fs = MemFs<MemPool>;

    fn user(uid: u32, pid: u32) -> Credentials {
        Credentials {
            pid,
            ..Credentials::user(uid, uid)
        }
    }

    /// A description of a new file `name`, open for reading.
    pub(super) fn description(fs: &Arc<Fs>, name: &str) -> Arc<Description<Fs>> {
        let root = Credentials::root();
        let (attr, fh) = fs
            .create(&root, Ino::ROOT, name.as_bytes(), 0o644, OpenFlags::READ)
            .unwrap();
        let grant = Grant {
            read: true,
            ..Grant::default()
        };
        let cursor = Cursor::at_start(fh);
        Arc::new(Description::new(
            Arc::clone(fs),
            attr.ino,
            attr.kind,
            grant,
            cursor,
        ))
    }

    /// A session of `cred` holding `n` numbers of one open description.
    fn session(fs: &Arc<Fs>, token: u64, cred: &Credentials, n: usize) -> Arc<Session<Fs>> {
        let session = Arc::new(Session::new(token, cred, budget()));
        let description = description(fs, &format!("f{token}"));
        for _ in 0..n {
            session.insert(Arc::clone(&description)).unwrap();
        }
        session
    }

    fn budget() -> Arc<UserBudget> {
        Arc::new(UserBudget::new(usize::MAX))
    }

    pub(super) fn fs() -> Arc<Fs> {
        Arc::new(MemFs::new(
            MemPool::new(1 << 20),
            Config::default(),
            ZeroClock,
        ))
    }

    #[test]
    fn a_session_has_a_bounded_number_of_waiting_forks() {
        let fs = fs();
        let forks = ForkTable::default();
        let cred = user(1000, 7);
        let parent = session(&fs, 1, &cred, 1);
        for token in 0..MAX_PENDING_FORKS_PER_SESSION as u64 {
            forks.prepare(100 + token, &parent, &cred).unwrap();
        }
        assert_eq!(forks.prepare(99, &parent, &cred), Err(Errno::TryAgain));
        // Another session of the same user is not held up by this one's count.
        let other = session(&fs, 2, &cred, 1);
        forks.prepare(98, &other, &cred).unwrap();
        // A child that attaches makes room.
        forks.attach(100, &user(1000, 8)).unwrap();
        forks.prepare(99, &parent, &cred).unwrap();
    }

    #[test]
    fn a_users_waiting_forks_hold_a_bounded_number_of_descriptors() {
        let fs = fs();
        let forks = ForkTable::default();
        let cred = user(1000, 7);
        let full = session(&fs, 1, &cred, MAX_OPEN);
        for token in 0..(MAX_PENDING_FORK_ENTRIES_PER_USER / MAX_OPEN) as u64 {
            forks.prepare(100 + token, &full, &cred).unwrap();
        }
        assert_eq!(forks.prepare(99, &full, &cred), Err(Errno::TryAgain));
        // The same from another session of the user; another user is not affected.
        let more = session(&fs, 2, &cred, 1);
        assert_eq!(forks.prepare(98, &more, &cred), Err(Errno::TryAgain));
        let stranger = user(1001, 9);
        let theirs = session(&fs, 3, &stranger, 1);
        forks.prepare(97, &theirs, &stranger).unwrap();
        assert_eq!(fs.usage().handles, 3);
    }

    #[test]
    fn forks_of_a_session_that_is_gone_are_released_by_the_sweeper() {
        let fs = fs();
        let forks = ForkTable::default();
        let cred = user(1000, 7);
        let parent = session(&fs, 1, &cred, 3);
        forks.prepare(10, &parent, &cred).unwrap();
        forks.prepare(11, &parent, &cred).unwrap();
        // The parent lives: nothing is due yet.
        assert_eq!(forks.sweep(), 0);
        drop(parent);
        // A child or an exec'd program may still attach within the grace.
        assert_eq!(forks.sweep(), 0);
        assert_eq!(forks.len(), 2);
        forks.attach(10, &user(1000, 8)).unwrap();
        // Once it is past, the sweeper releases the rest, and with them the descriptions.
        let later = Instant::now() + ORPHAN_FORK_TTL + Duration::from_millis(1);
        assert!(forks.lock().values().all(|p| p.expired(later)));
        let handles = fs.usage().handles;
        assert_eq!(handles, 1);
        let sweeper = std::thread::scope(|scope| {
            let running = scope.spawn(|| forks.run_sweeper(Duration::from_millis(5)));
            std::thread::sleep(ORPHAN_FORK_TTL + Duration::from_millis(200));
            let left = forks.len();
            forks.close();
            running.join().unwrap();
            left
        });
        assert_eq!(sweeper, 0);
    }

    #[test]
    fn the_same_process_may_join_after_changing_ids_and_a_stranger_may_not() {
        let root = Credentials {
            pid: 7,
            ..Credentials::root()
        };
        let session: Session<Fs> = Session::new(1, &root, budget());
        // The process dropped to 1000: still its session.
        assert!(session.may_join(&user(1000, 7)));
        assert!(!session.may_join(&user(1000, 8)));
        // No pid is no proof.
        let unseen: Session<Fs> = Session::new(2, &user(1000, 0), budget());
        assert!(!unseen.may_join(&user(1001, 0)));
        assert!(unseen.may_join(&user(1000, 5)));
    }
}

#[cfg(test)]
mod budget {
    use btfuse_core::{MemFs, MemPool};

    use super::tests::{description, fs};
    use super::*;

    type Fs = MemFs<MemPool>;

    #[test]
    fn a_users_sessions_share_one_bound_on_descriptor_numbers() {
        let fs = fs();
        let description = description(&fs, "f");
        let budgets = Budgets::default();
        let user = Credentials::user(1000, 1000);
        let budget = budgets.of(1000);
        let small = Arc::new(UserBudget::new(3));
        let (a, b): (Session<Fs>, Session<Fs>) = (
            Session::new(1, &user, Arc::clone(&small)),
            Session::new(2, &user, Arc::clone(&small)),
        );
        a.insert(Arc::clone(&description)).unwrap();
        let kept = a.insert(Arc::clone(&description)).unwrap();
        b.insert(Arc::clone(&description)).unwrap();
        assert_eq!(
            b.insert(Arc::clone(&description)),
            Err(Errno::TooManyOpenFiles)
        );
        assert_eq!(a.dup(kept), Err(Errno::TooManyOpenFiles));
        a.remove(kept).unwrap();
        b.dup(0).unwrap();
        // A table that does not fit is not taken; one that does replaces what was there.
        let mut bigger = HashMap::new();
        for fd in 0..3 {
            bigger.insert(fd, Arc::clone(&description));
        }
        assert_eq!(
            a.replace_table(bigger.clone()),
            Err(Errno::TooManyOpenFiles)
        );
        assert_eq!(small.used(), 3);
        bigger.remove(&2);
        drop(b);
        a.replace_table(bigger).unwrap();
        assert_eq!((a.len(), small.used()), (2, 2));
        drop(a);
        assert_eq!(small.used(), 0);
        // One budget per user while any of its sessions lives.
        assert!(Arc::ptr_eq(&budget, &budgets.of(1000)));
        assert!(!Arc::ptr_eq(&budget, &budgets.of(1001)));
        assert_eq!(budget.max, MAX_OPEN_PER_USER);
    }
}
