//! Keeping the kernel's caches true when the ring changes the filesystem.
//!
//! The FUSE mount lets the kernel cache names, attributes and file pages (see the README's
//! cache settings); only this daemon changes the filesystem, so through FUSE alone they stay
//! right. The ring changes the same engine behind the kernel's back, so the engine the ring
//! server uses is wrapped in [`Coherent`]: after every call that changes something, it tells
//! the kernel what to forget (fuser's `Notifier`, the `FUSE_NOTIFY_INVAL_*` and
//! `FUSE_NOTIFY_DELETE` messages). Reads tell nothing; the notifications run on ring threads,
//! never on a thread serving a FUSE request (which the kernel may be waiting on).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use btfuse_core::{
    AccessMask, Attr, ContentWatch, Credentials, DirEntry, FallocateMode, Fh, FileType, Filesystem,
    Ino, OpenFlags, RenameMode, Result, SeekWhence, SetAttr, StatFs, XattrMode,
};
use fuser::{INodeNo, Notifier};

/// Whole-file range for `inval_inode`: from 0, length 0 meaning "to the end".
const WHOLE: (i64, i64) = (0, 0);
/// Attributes only: a negative offset leaves the page cache alone.
const ATTRIBUTES: (i64, i64) = (-1, 0);

/// An engine whose changes are reported to the kernel.
pub(crate) struct Coherent<F> {
    inner: Arc<F>,
    notifier: Notifier,
    /// The inode behind each handle the ring opened for writing, for writes (which name only
    /// a handle). Read-only handles change nothing and are not kept.
    handles: Mutex<HashMap<Fh, Ino>>,
    /// How many handles `handles` holds, read without its lock: a release with none kept
    /// (all reads, the common case) takes no lock.
    kept: AtomicUsize,
}

impl<F: Filesystem> Coherent<F> {
    pub(crate) fn new(inner: Arc<F>, notifier: Notifier) -> Coherent<F> {
        Coherent {
            inner,
            notifier,
            handles: Mutex::new(HashMap::new()),
            kept: AtomicUsize::new(0),
        }
    }

    fn inode(&self, ino: Ino, (offset, len): (i64, i64)) {
        // An inode the kernel holds no lookup of has nothing cached there: the system call
        // would only come back with ENOENT. (Checked after the change: a lookup the kernel
        // makes later sees the changed inode.)
        if !self.inner.looked_up(ino) {
            return;
        }
        // ENOENT (the kernel does not know the inode) is already filtered by fuser; anything
        // else means the mount is going away.
        if let Err(e) = self.notifier.inval_inode(INodeNo(ino.0), offset, len) {
            log::debug!("invalidating inode {}: {e}", ino.0);
        }
    }

    fn entry(&self, parent: Ino, name: &[u8]) {
        // No name can be cached under a directory the kernel does not know.
        if !self.inner.looked_up(parent) {
            return;
        }
        if let Err(e) = self
            .notifier
            .inval_entry(INodeNo(parent.0), OsStr::from_bytes(name))
        {
            log::debug!(
                "invalidating entry {}/{:?}: {e}",
                parent.0,
                OsStr::from_bytes(name)
            );
        }
    }

    fn removed(&self, parent: Ino, child: Option<Ino>, name: &[u8]) {
        if !self.inner.looked_up(parent) {
            // No name cached under `parent`; the inode may still be known by another name.
            if let Some(child) = child {
                self.inode(child, ATTRIBUTES);
            }
            return;
        }
        let name = OsStr::from_bytes(name);
        let result = match child {
            Some(child) => self
                .notifier
                .delete(INodeNo(parent.0), INodeNo(child.0), name)
                .and_then(|()| self.notifier.inval_inode(INodeNo(child.0), -1, 0)),
            None => self.notifier.inval_entry(INodeNo(parent.0), name),
        };
        if let Err(e) = result {
            log::debug!("invalidating removed {}/{name:?}: {e}", parent.0);
        }
    }

    fn handle_ino(&self, fh: Fh) -> Option<Ino> {
        self.handles
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&fh)
            .copied()
    }

    fn remember(&self, fh: Fh, ino: Ino) {
        let mut handles = self.handles.lock().unwrap_or_else(|p| p.into_inner());
        if handles.insert(fh, ino).is_none() {
            self.kept.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl<F: Filesystem> Filesystem for Coherent<F> {
    fn lookup(&self, cred: &Credentials, parent: Ino, name: &[u8]) -> Result<Attr> {
        self.inner.lookup(cred, parent, name)
    }

    fn find(&self, cred: &Credentials, parent: Ino, name: &[u8]) -> Result<Attr> {
        self.inner.find(cred, parent, name)
    }

    fn forget(&self, ino: Ino, nlookup: u64) {
        self.inner.forget(ino, nlookup);
    }

    fn getattr(&self, cred: &Credentials, ino: Ino) -> Result<Attr> {
        self.inner.getattr(cred, ino)
    }

    fn setattr(&self, cred: &Credentials, ino: Ino, set: &SetAttr, fh: Option<Fh>) -> Result<Attr> {
        let attr = self.inner.setattr(cred, ino, set, fh)?;
        self.inode(
            ino,
            if set.size.is_some() {
                WHOLE
            } else {
                ATTRIBUTES
            },
        );
        Ok(attr)
    }

    fn mknod(
        &self,
        cred: &Credentials,
        parent: Ino,
        name: &[u8],
        kind: FileType,
        perm: u32,
        rdev: u32,
    ) -> Result<Attr> {
        let attr = self.inner.mknod(cred, parent, name, kind, perm, rdev)?;
        self.entry(parent, name);
        Ok(attr)
    }

    fn mkdir(&self, cred: &Credentials, parent: Ino, name: &[u8], perm: u32) -> Result<Attr> {
        let attr = self.inner.mkdir(cred, parent, name, perm)?;
        self.entry(parent, name);
        Ok(attr)
    }

    fn create(
        &self,
        cred: &Credentials,
        parent: Ino,
        name: &[u8],
        perm: u32,
        flags: OpenFlags,
    ) -> Result<(Attr, Fh)> {
        let (attr, fh) = self.inner.create(cred, parent, name, perm, flags)?;
        if flags.write {
            self.remember(fh, attr.ino);
        }
        self.entry(parent, name);
        Ok((attr, fh))
    }

    fn unlink(&self, cred: &Credentials, parent: Ino, name: &[u8]) -> Result<()> {
        let child = self.inner.find(cred, parent, name).ok().map(|a| a.ino);
        self.inner.unlink(cred, parent, name)?;
        self.removed(parent, child, name);
        Ok(())
    }

    fn rmdir(&self, cred: &Credentials, parent: Ino, name: &[u8]) -> Result<()> {
        let child = self.inner.find(cred, parent, name).ok().map(|a| a.ino);
        self.inner.rmdir(cred, parent, name)?;
        self.removed(parent, child, name);
        Ok(())
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
        let moved = self.inner.find(cred, parent, name).ok().map(|a| a.ino);
        let replaced = self
            .inner
            .find(cred, new_parent, new_name)
            .ok()
            .map(|a| a.ino);
        self.inner
            .rename(cred, parent, name, new_parent, new_name, mode)?;
        self.entry(parent, name);
        self.entry(new_parent, new_name);
        // ctime of what moved; nlink of what was replaced (or, for an exchange, its ctime).
        for ino in [moved, replaced].into_iter().flatten() {
            self.inode(ino, ATTRIBUTES);
        }
        Ok(())
    }

    fn link(&self, cred: &Credentials, ino: Ino, new_parent: Ino, new_name: &[u8]) -> Result<Attr> {
        let attr = self.inner.link(cred, ino, new_parent, new_name)?;
        self.entry(new_parent, new_name);
        self.inode(ino, ATTRIBUTES);
        Ok(attr)
    }

    fn symlink(&self, cred: &Credentials, parent: Ino, name: &[u8], target: &[u8]) -> Result<Attr> {
        let attr = self.inner.symlink(cred, parent, name, target)?;
        self.entry(parent, name);
        Ok(attr)
    }

    fn readlink(&self, cred: &Credentials, ino: Ino) -> Result<Vec<u8>> {
        self.inner.readlink(cred, ino)
    }

    fn open(&self, cred: &Credentials, ino: Ino, flags: OpenFlags) -> Result<Fh> {
        let fh = self.inner.open(cred, ino, flags)?;
        if flags.write {
            self.remember(fh, ino);
        }
        if flags.truncate {
            self.inode(ino, WHOLE);
        }
        Ok(fh)
    }

    fn release(&self, fh: Fh) -> Result<()> {
        // Handles are remembered before they are given out, and released once, by the same
        // session: a count of zero seen here means this one was never kept.
        if self.kept.load(Ordering::Relaxed) > 0 {
            let mut handles = self.handles.lock().unwrap_or_else(|p| p.into_inner());
            if handles.remove(&fh).is_some() {
                self.kept.fetch_sub(1, Ordering::Relaxed);
            }
        }
        self.inner.release(fh)
    }

    fn read(&self, cred: &Credentials, fh: Fh, offset: u64, buf: &mut [u8]) -> Result<usize> {
        self.inner.read(cred, fh, offset, buf)
    }

    fn write(&self, cred: &Credentials, fh: Fh, offset: u64, data: &[u8]) -> Result<(usize, u64)> {
        let (n, end) = self.inner.write(cred, fh, offset, data)?;
        if let Some(ino) = self.handle_ino(fh) {
            // `end - n` is where the data went (the end of the file for an append handle).
            let start = end.saturating_sub(n as u64);
            self.inode(ino, (start as i64, n as i64));
        }
        Ok((n, end))
    }

    fn fallocate(
        &self,
        cred: &Credentials,
        fh: Fh,
        mode: FallocateMode,
        offset: u64,
        len: u64,
    ) -> Result<()> {
        self.inner.fallocate(cred, fh, mode, offset, len)?;
        if let Some(ino) = self.handle_ino(fh) {
            self.inode(ino, (offset as i64, len.min(i64::MAX as u64) as i64));
        }
        Ok(())
    }

    fn lseek(&self, cred: &Credentials, fh: Fh, offset: u64, whence: SeekWhence) -> Result<u64> {
        self.inner.lseek(cred, fh, offset, whence)
    }

    fn readdir(
        &self,
        cred: &Credentials,
        fh: Fh,
        cookie: u64,
        sink: &mut dyn FnMut(DirEntry<'_>) -> bool,
    ) -> Result<()> {
        self.inner.readdir(cred, fh, cookie, sink)
    }

    fn statfs(&self, cred: &Credentials) -> Result<StatFs> {
        self.inner.statfs(cred)
    }

    fn getxattr(&self, cred: &Credentials, ino: Ino, name: &[u8], buf: &mut [u8]) -> Result<usize> {
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
        self.inner.setxattr(cred, ino, name, value, mode)?;
        self.inode(ino, ATTRIBUTES);
        Ok(())
    }

    fn listxattr(&self, cred: &Credentials, ino: Ino, buf: &mut [u8]) -> Result<usize> {
        self.inner.listxattr(cred, ino, buf)
    }

    fn removexattr(&self, cred: &Credentials, ino: Ino, name: &[u8]) -> Result<()> {
        self.inner.removexattr(cred, ino, name)?;
        self.inode(ino, ATTRIBUTES);
        Ok(())
    }

    fn access(&self, cred: &Credentials, ino: Ino, mask: AccessMask) -> Result<()> {
        self.inner.access(cred, ino, mask)
    }

    fn fsync(&self, cred: &Credentials, fh: Fh, datasync: bool) -> Result<()> {
        self.inner.fsync(cred, fh, datasync)
    }
    fn locks(&self) -> Option<&btfuse_core::locks::LockTable> {
        self.inner.locks()
    }

    fn watch_content(&self, watch: std::sync::Arc<dyn ContentWatch>) -> bool {
        self.inner.watch_content(watch)
    }

    fn place_file(&self, ino: Ino, from: u64, most: u64) -> Result<Option<u64>> {
        self.inner.place_file(ino, from, most)
    }

    fn unplace_file(&self, ino: Ino) -> Result<()> {
        self.inner.unplace_file(ino)
    }

    fn calls_may_be_skipped(&self) -> bool {
        self.inner.calls_may_be_skipped()
    }
}
