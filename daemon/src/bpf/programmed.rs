//! [`Programmed`]: an engine whose every call first runs the loaded programs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use btfuse_core::{
    AccessMask, Attr, ContentWatch, Credentials, DirEntry, FallocateMode, Fh, Filesystem, Ino,
    OpenFlags, RenameMode, Result, SeekWhence, SetAttr, StatFs, TimeSet, XattrMode,
};

use super::Hooks;
use super::context::{Context, Op};
use crate::metrics::Frontend;

/// An engine that runs `hooks`' programs before each call from `frontend`, and makes the call
/// only if they all let it go on. `forget` and `release` give back what the caller holds and
/// are never refused; `looked_up` and `watch_content` are the daemon's own questions.
///
/// With no hooks, every call goes straight to the engine after one test of a field.
pub struct Programmed<F> {
    inner: Arc<F>,
    hooks: Option<Arc<Hooks>>,
    frontend: Frontend,
}

impl<F> Programmed<F> {
    /// `inner` with `hooks` run on calls from `frontend`; `None` runs nothing.
    pub fn new(inner: Arc<F>, hooks: Option<Arc<Hooks>>, frontend: Frontend) -> Programmed<F> {
        Programmed {
            inner,
            hooks,
            frontend,
        }
    }

    /// The engine underneath.
    pub fn inner(&self) -> &Arc<F> {
        &self.inner
    }

    /// Runs the programs on the context `fill` makes of a fresh one for `op` by `cred`.
    #[inline]
    fn check(
        &self,
        op: Op,
        cred: &Credentials,
        fill: impl FnOnce(&mut Context, &Books),
    ) -> Result<()> {
        match &self.hooks {
            None => Ok(()),
            Some(hooks) => {
                let mut ctx = Context::new(op, self.frontend, cred);
                fill(&mut ctx, &hooks.books);
                hooks.check(&mut ctx).into_result()
            }
        }
    }

    /// Notes, when programs run, that `result`'s inode was reached as `name` in `parent`.
    #[inline]
    fn named<T>(&self, result: &Result<T>, ino: impl FnOnce(&T) -> Ino, parent: Ino, name: &[u8]) {
        if let (Some(hooks), Ok(value)) = (&self.hooks, result) {
            hooks.books.name(ino(value), parent, name);
        }
    }

    /// Notes, when programs run, that handle `fh` is open on `ino`.
    #[inline]
    fn opened(&self, fh: Option<Fh>, ino: Ino) {
        if let (Some(hooks), Some(fh)) = (&self.hooks, fh) {
            hooks.books.open(fh, ino);
        }
    }
}

/// Shards of each book: calls on different inodes seldom wait for one another.
const SHARDS: usize = 16;

/// Most names one shard keeps; a full shard is emptied (the names come back as the inodes are
/// looked up again), so that the books stay bounded whatever the clients do.
const NAMES_PER_SHARD: usize = 1 << 16;

/// What the daemon remembers so that a call on an inode or a handle can tell a program the
/// name: the name and directory by which each inode was last reached, the inode of each open
/// handle. Kept only while programs are loaded.
#[derive(Default)]
pub(crate) struct Books {
    names: [Mutex<HashMap<u64, Named>>; SHARDS],
    handles: [Mutex<HashMap<u64, Ino>>; SHARDS],
}

/// The directory and name an inode was last reached by.
type Named = (Ino, Box<[u8]>);

fn shard(n: u64) -> usize {
    (n.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 60) as usize % SHARDS
}

impl Books {
    fn name(&self, ino: Ino, parent: Ino, name: &[u8]) {
        // A walk through `.` or `..` reaches an inode that has a name of its own.
        if name == b"." || name == b".." {
            return;
        }
        let mut names = self.names[shard(ino.0)]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some((p, n)) = names.get(&ino.0)
            && *p == parent
            && **n == *name
        {
            return;
        }
        if names.len() >= NAMES_PER_SHARD {
            names.clear();
        }
        names.insert(ino.0, (parent, name.into()));
    }

    fn open(&self, fh: Fh, ino: Ino) {
        let mut handles = self.handles[shard(fh.0)]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        handles.insert(fh.0, ino);
    }

    fn release(&self, fh: Fh) {
        self.handles[shard(fh.0)]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&fh.0);
    }

    /// `ctx` with `ino` and the name it was last reached by.
    fn inode<'c>(&self, ctx: &'c mut Context, ino: Ino) -> &'c mut Context {
        let names = self.names[shard(ino.0)]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match names.get(&ino.0) {
            Some((parent, name)) => ctx.ino(ino).name(*parent, name),
            None => ctx.ino(ino),
        }
    }

    /// `ctx` with the inode of handle `fh` and its name.
    fn handle<'c>(&self, ctx: &'c mut Context, fh: Fh) -> &'c mut Context {
        let ino = self.handles[shard(fh.0)]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&fh.0)
            .copied();
        match ino {
            Some(ino) => self.inode(ctx, ino),
            None => ctx,
        }
    }
}

/// Linux's open flags for `flags` (`O_CREAT` is the caller's to add).
fn open_flags(flags: OpenFlags) -> u32 {
    let access = match (flags.read, flags.write) {
        (_, false) => libc::O_RDONLY,
        (false, true) => libc::O_WRONLY,
        (true, true) => libc::O_RDWR,
    };
    let bits = [
        (flags.append, libc::O_APPEND),
        (flags.truncate, libc::O_TRUNC),
        (flags.exclusive, libc::O_EXCL),
        (flags.directory, libc::O_DIRECTORY),
    ];
    bits.iter()
        .filter(|(on, _)| *on)
        .fold(access, |all, (_, bit)| all | bit) as u32
}

/// `BTFUSE_SET_*` bits of what `set` changes.
fn set_bits(set: &SetAttr) -> u32 {
    let bits = [
        (set.mode.is_some(), 1),
        (set.uid.is_some(), 2),
        (set.gid.is_some(), 4),
        (set.size.is_some(), 8),
        (set.atime != TimeSet::Omit, 16),
        (set.mtime != TimeSet::Omit, 32),
    ];
    bits.iter()
        .filter(|(on, _)| *on)
        .fold(0, |all, (_, bit)| all | bit)
}

impl<F: Filesystem> Filesystem for Programmed<F> {
    fn lookup(&self, cred: &Credentials, parent: Ino, name: &[u8]) -> Result<Attr> {
        self.check(Op::Lookup, cred, |c, _| {
            c.name(parent, name);
        })?;
        let result = self.inner.lookup(cred, parent, name);
        self.named(&result, |a| a.ino, parent, name);
        result
    }

    fn find(&self, cred: &Credentials, parent: Ino, name: &[u8]) -> Result<Attr> {
        self.check(Op::Lookup, cred, |c, _| {
            c.name(parent, name);
        })?;
        let result = self.inner.find(cred, parent, name);
        self.named(&result, |a| a.ino, parent, name);
        result
    }

    fn forget(&self, ino: Ino, nlookup: u64) {
        self.inner.forget(ino, nlookup);
    }

    fn looked_up(&self, ino: Ino) -> bool {
        self.inner.looked_up(ino)
    }

    fn getattr(&self, cred: &Credentials, ino: Ino) -> Result<Attr> {
        self.check(Op::Getattr, cred, |c, b| {
            b.inode(c, ino);
        })?;
        self.inner.getattr(cred, ino)
    }

    fn setattr(&self, cred: &Credentials, ino: Ino, set: &SetAttr, fh: Option<Fh>) -> Result<Attr> {
        self.check(Op::Setattr, cred, |c, b| {
            b.inode(c, ino)
                .flags(set_bits(set))
                .mode(set.mode.unwrap_or(0))
                .range(0, set.size.unwrap_or(0));
        })?;
        self.inner.setattr(cred, ino, set, fh)
    }

    fn mknod(
        &self,
        cred: &Credentials,
        parent: Ino,
        name: &[u8],
        kind: btfuse_core::FileType,
        perm: u32,
        rdev: u32,
    ) -> Result<Attr> {
        self.check(Op::Mknod, cred, |c, _| {
            c.name(parent, name).mode(kind.mode_bits() | perm);
        })?;
        let result = self.inner.mknod(cred, parent, name, kind, perm, rdev);
        self.named(&result, |a| a.ino, parent, name);
        result
    }

    fn mkdir(&self, cred: &Credentials, parent: Ino, name: &[u8], perm: u32) -> Result<Attr> {
        self.check(Op::Mkdir, cred, |c, _| {
            c.name(parent, name)
                .mode(btfuse_core::FileType::Directory.mode_bits() | perm);
        })?;
        let result = self.inner.mkdir(cred, parent, name, perm);
        self.named(&result, |a| a.ino, parent, name);
        result
    }

    fn create(
        &self,
        cred: &Credentials,
        parent: Ino,
        name: &[u8],
        perm: u32,
        flags: OpenFlags,
    ) -> Result<(Attr, Fh)> {
        self.check(Op::Create, cred, |c, _| {
            c.name(parent, name)
                .mode(btfuse_core::FileType::RegularFile.mode_bits() | perm)
                .flags(open_flags(flags) | libc::O_CREAT as u32);
        })?;
        let result = self.inner.create(cred, parent, name, perm, flags);
        self.named(&result, |(a, _)| a.ino, parent, name);
        if let Ok((attr, fh)) = &result {
            self.opened(Some(*fh), attr.ino);
        }
        result
    }

    fn unlink(&self, cred: &Credentials, parent: Ino, name: &[u8]) -> Result<()> {
        self.check(Op::Unlink, cred, |c, _| {
            c.name(parent, name);
        })?;
        self.inner.unlink(cred, parent, name)
    }

    fn rmdir(&self, cred: &Credentials, parent: Ino, name: &[u8]) -> Result<()> {
        self.check(Op::Rmdir, cred, |c, _| {
            c.name(parent, name);
        })?;
        self.inner.rmdir(cred, parent, name)
    }

    fn rename(
        &self,
        cred: &Credentials,
        parent: Ino,
        name: &[u8],
        new_parent: Ino,
        new_name: &[u8],
        mode: RenameMode,
    ) -> Result<()> {
        let flags = match mode {
            RenameMode::Replace => 0,
            RenameMode::NoReplace => libc::RENAME_NOREPLACE,
            RenameMode::Exchange => libc::RENAME_EXCHANGE,
        };
        self.check(Op::Rename, cred, |c, _| {
            c.name(parent, name)
                .new_name(new_parent, new_name)
                .flags(flags);
        })?;
        // The kernel keeps its entries across a rename and may open the moved inode without
        // a new lookup: the books learn its new name here.
        let root = Credentials::root();
        let moved = |dir, name| {
            self.hooks.as_ref()?;
            self.inner.find(&root, dir, name).ok().map(|a| a.ino)
        };
        let (source, target) = (moved(parent, name), moved(new_parent, new_name));
        let result = self
            .inner
            .rename(cred, parent, name, new_parent, new_name, mode);
        if let (Some(hooks), Ok(())) = (&self.hooks, &result) {
            if let Some(ino) = source {
                hooks.books.name(ino, new_parent, new_name);
            }
            if let (RenameMode::Exchange, Some(ino)) = (mode, target) {
                hooks.books.name(ino, parent, name);
            }
        }
        result
    }

    fn link(&self, cred: &Credentials, ino: Ino, new_parent: Ino, new_name: &[u8]) -> Result<Attr> {
        self.check(Op::Link, cred, |c, b| {
            b.inode(c, ino).new_name(new_parent, new_name);
        })?;
        let result = self.inner.link(cred, ino, new_parent, new_name);
        self.named(&result, |a| a.ino, new_parent, new_name);
        result
    }

    fn symlink(&self, cred: &Credentials, parent: Ino, name: &[u8], target: &[u8]) -> Result<Attr> {
        self.check(Op::Symlink, cred, |c, _| {
            c.name(parent, name)
                .new_name(Ino(0), target)
                .range(0, target.len() as u64);
        })?;
        let result = self.inner.symlink(cred, parent, name, target);
        self.named(&result, |a| a.ino, parent, name);
        result
    }

    fn readlink(&self, cred: &Credentials, ino: Ino) -> Result<Vec<u8>> {
        self.check(Op::Readlink, cred, |c, b| {
            b.inode(c, ino);
        })?;
        self.inner.readlink(cred, ino)
    }

    fn open(&self, cred: &Credentials, ino: Ino, flags: OpenFlags) -> Result<Fh> {
        self.check(Op::Open, cred, |c, b| {
            b.inode(c, ino).flags(open_flags(flags));
        })?;
        let result = self.inner.open(cred, ino, flags);
        self.opened(result.as_ref().ok().copied(), ino);
        result
    }

    fn release(&self, fh: Fh) -> Result<()> {
        if let Some(hooks) = &self.hooks {
            hooks.books.release(fh);
        }
        self.inner.release(fh)
    }

    fn read(&self, cred: &Credentials, fh: Fh, offset: u64, buf: &mut [u8]) -> Result<usize> {
        self.check(Op::Read, cred, |c, b| {
            b.handle(c, fh).range(offset, buf.len() as u64);
        })?;
        self.inner.read(cred, fh, offset, buf)
    }

    fn write(&self, cred: &Credentials, fh: Fh, offset: u64, data: &[u8]) -> Result<(usize, u64)> {
        self.check(Op::Write, cred, |c, b| {
            b.handle(c, fh).range(offset, data.len() as u64);
        })?;
        self.inner.write(cred, fh, offset, data)
    }

    fn fallocate(
        &self,
        cred: &Credentials,
        fh: Fh,
        mode: FallocateMode,
        offset: u64,
        len: u64,
    ) -> Result<()> {
        let flags = match mode {
            FallocateMode::Allocate => 0,
            FallocateMode::KeepSize => libc::FALLOC_FL_KEEP_SIZE,
            FallocateMode::PunchHole => libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
        };
        self.check(Op::Fallocate, cred, |c, b| {
            b.handle(c, fh).range(offset, len).flags(flags as u32);
        })?;
        self.inner.fallocate(cred, fh, mode, offset, len)
    }

    fn lseek(&self, cred: &Credentials, fh: Fh, offset: u64, whence: SeekWhence) -> Result<u64> {
        let flags = match whence {
            SeekWhence::Data => libc::SEEK_DATA,
            SeekWhence::Hole => libc::SEEK_HOLE,
        };
        self.check(Op::Lseek, cred, |c, b| {
            b.handle(c, fh).range(offset, 0).flags(flags as u32);
        })?;
        self.inner.lseek(cred, fh, offset, whence)
    }

    fn readdir(
        &self,
        cred: &Credentials,
        fh: Fh,
        cookie: u64,
        sink: &mut dyn FnMut(DirEntry<'_>) -> bool,
    ) -> Result<()> {
        self.check(Op::Readdir, cred, |c, b| {
            b.handle(c, fh).range(cookie, 0);
        })?;
        self.inner.readdir(cred, fh, cookie, sink)
    }

    fn statfs(&self, cred: &Credentials) -> Result<StatFs> {
        self.check(Op::Statfs, cred, |_, _| {})?;
        self.inner.statfs(cred)
    }

    fn getxattr(&self, cred: &Credentials, ino: Ino, name: &[u8], buf: &mut [u8]) -> Result<usize> {
        self.check(Op::Getxattr, cred, |c, _| {
            c.ino(ino).name(Ino(0), name).range(0, buf.len() as u64);
        })?;
        self.inner.getxattr(cred, ino, name, buf)
    }

    fn setxattr(
        &self,
        cred: &Credentials,
        ino: Ino,
        name: &[u8],
        value: &[u8],
        mode: XattrMode,
    ) -> Result<()> {
        let flags = match mode {
            XattrMode::Set => 0,
            XattrMode::Create => libc::XATTR_CREATE,
            XattrMode::Replace => libc::XATTR_REPLACE,
        };
        self.check(Op::Setxattr, cred, |c, _| {
            c.ino(ino)
                .name(Ino(0), name)
                .range(0, value.len() as u64)
                .flags(flags as u32);
        })?;
        self.inner.setxattr(cred, ino, name, value, mode)
    }

    fn listxattr(&self, cred: &Credentials, ino: Ino, buf: &mut [u8]) -> Result<usize> {
        self.check(Op::Listxattr, cred, |c, b| {
            b.inode(c, ino).range(0, buf.len() as u64);
        })?;
        self.inner.listxattr(cred, ino, buf)
    }

    fn removexattr(&self, cred: &Credentials, ino: Ino, name: &[u8]) -> Result<()> {
        self.check(Op::Removexattr, cred, |c, _| {
            c.ino(ino).name(Ino(0), name);
        })?;
        self.inner.removexattr(cred, ino, name)
    }

    fn access(&self, cred: &Credentials, ino: Ino, mask: AccessMask) -> Result<()> {
        let bits = [
            (mask.read, libc::R_OK),
            (mask.write, libc::W_OK),
            (mask.execute, libc::X_OK),
        ];
        let flags = bits
            .iter()
            .filter(|(on, _)| *on)
            .fold(0, |all, (_, bit)| all | bit);
        self.check(Op::Access, cred, |c, b| {
            b.inode(c, ino).flags(flags as u32);
        })?;
        self.inner.access(cred, ino, mask)
    }

    fn fsync(&self, cred: &Credentials, fh: Fh, datasync: bool) -> Result<()> {
        self.check(Op::Fsync, cred, |c, b| {
            b.handle(c, fh).flags(u32::from(datasync));
        })?;
        self.inner.fsync(cred, fh, datasync)
    }

    fn watch_content(&self, watch: Arc<dyn ContentWatch>) -> bool {
        self.inner.watch_content(watch)
    }

    /// Not while programs are loaded: each must see every lookup a walk makes, and may answer
    /// differently from one call to the next.
    fn calls_may_be_skipped(&self) -> bool {
        self.hooks.is_none() && self.inner.calls_may_be_skipped()
    }

    /// Not when programs may be loaded: each must be asked about every read.
    fn place_file(&self, ino: Ino, from: u64, most: u64) -> Result<Option<u64>> {
        if self.hooks.is_some() {
            return Err(btfuse_core::Errno::NotSupported);
        }
        self.inner.place_file(ino, from, most)
    }

    fn unplace_file(&self, ino: Ino) -> Result<()> {
        self.inner.unplace_file(ino)
    }

    // Lock calls are not engine operations a program is asked about: the table is passed on
    // so that both frontends keep sharing it behind the programs.
    fn locks(&self) -> Option<&btfuse_core::locks::LockTable> {
        self.inner.locks()
    }
}
