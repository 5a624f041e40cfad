//! Metering an engine: every call of the `Filesystem` trait recorded as an operation.

use std::sync::Arc;

use btfuse_core::{
    AccessMask, Attr, ContentWatch, Credentials, DirEntry, FallocateMode, Fh, FileType, Filesystem,
    Ino, OpenFlags, RenameMode, Result, SeekWhence, SetAttr, StatFs, XattrMode,
};

use super::{Frontend, Start, add_bytes, record, start};

/// An engine that records each call as an operation of `frontend`: how the FUSE frontend is
/// metered, since its adapter makes one engine call per kernel request.
pub struct Metered<F> {
    inner: Arc<F>,
    frontend: Frontend,
}

impl<F> Metered<F> {
    /// Meters calls to `inner` as operations of `frontend`.
    pub fn new(inner: Arc<F>, frontend: Frontend) -> Metered<F> {
        Metered { inner, frontend }
    }

    /// The engine underneath.
    pub fn inner(&self) -> &Arc<F> {
        &self.inner
    }

    #[inline]
    fn done<T>(&self, op: EngineOp, start: Option<Start>, result: &Result<T>) {
        record(
            self.frontend,
            op as usize,
            start,
            result.as_ref().err().copied(),
        );
    }
}

/// The engine's calls, in [`FUSE_OPERATIONS`](super::FUSE_OPERATIONS) order.
#[derive(Clone, Copy, Debug)]
#[allow(missing_docs)]
pub enum EngineOp {
    Lookup,
    Find,
    Forget,
    Getattr,
    Setattr,
    Mknod,
    Mkdir,
    Create,
    Unlink,
    Rmdir,
    Rename,
    Link,
    Symlink,
    Readlink,
    Open,
    Release,
    Read,
    Write,
    Fallocate,
    Lseek,
    Readdir,
    Statfs,
    Getxattr,
    Setxattr,
    Listxattr,
    Removexattr,
    Access,
    Fsync,
}

macro_rules! metered {
    ($self:ident, $op:ident, $call:expr) => {{
        let start = start();
        let result = $call;
        $self.done(EngineOp::$op, start, &result);
        result
    }};
}

impl<F: Filesystem> Filesystem for Metered<F> {
    fn lookup(&self, cred: &Credentials, parent: Ino, name: &[u8]) -> Result<Attr> {
        metered!(self, Lookup, self.inner.lookup(cred, parent, name))
    }

    fn find(&self, cred: &Credentials, parent: Ino, name: &[u8]) -> Result<Attr> {
        metered!(self, Find, self.inner.find(cred, parent, name))
    }

    fn forget(&self, ino: Ino, nlookup: u64) {
        let start = start();
        self.inner.forget(ino, nlookup);
        record(self.frontend, EngineOp::Forget as usize, start, None);
    }

    fn looked_up(&self, ino: Ino) -> bool {
        self.inner.looked_up(ino)
    }

    fn getattr(&self, cred: &Credentials, ino: Ino) -> Result<Attr> {
        metered!(self, Getattr, self.inner.getattr(cred, ino))
    }

    fn setattr(&self, cred: &Credentials, ino: Ino, set: &SetAttr, fh: Option<Fh>) -> Result<Attr> {
        metered!(self, Setattr, self.inner.setattr(cred, ino, set, fh))
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
        metered!(
            self,
            Mknod,
            self.inner.mknod(cred, parent, name, kind, perm, rdev)
        )
    }

    fn mkdir(&self, cred: &Credentials, parent: Ino, name: &[u8], perm: u32) -> Result<Attr> {
        metered!(self, Mkdir, self.inner.mkdir(cred, parent, name, perm))
    }

    fn create(
        &self,
        cred: &Credentials,
        parent: Ino,
        name: &[u8],
        perm: u32,
        flags: OpenFlags,
    ) -> Result<(Attr, Fh)> {
        metered!(
            self,
            Create,
            self.inner.create(cred, parent, name, perm, flags)
        )
    }

    fn unlink(&self, cred: &Credentials, parent: Ino, name: &[u8]) -> Result<()> {
        metered!(self, Unlink, self.inner.unlink(cred, parent, name))
    }

    fn rmdir(&self, cred: &Credentials, parent: Ino, name: &[u8]) -> Result<()> {
        metered!(self, Rmdir, self.inner.rmdir(cred, parent, name))
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
        metered!(
            self,
            Rename,
            self.inner
                .rename(cred, parent, name, new_parent, new_name, mode)
        )
    }

    fn link(&self, cred: &Credentials, ino: Ino, new_parent: Ino, new_name: &[u8]) -> Result<Attr> {
        metered!(self, Link, self.inner.link(cred, ino, new_parent, new_name))
    }

    fn symlink(&self, cred: &Credentials, parent: Ino, name: &[u8], target: &[u8]) -> Result<Attr> {
        metered!(
            self,
            Symlink,
            self.inner.symlink(cred, parent, name, target)
        )
    }

    fn readlink(&self, cred: &Credentials, ino: Ino) -> Result<Vec<u8>> {
        metered!(self, Readlink, self.inner.readlink(cred, ino))
    }

    fn open(&self, cred: &Credentials, ino: Ino, flags: OpenFlags) -> Result<Fh> {
        metered!(self, Open, self.inner.open(cred, ino, flags))
    }

    fn release(&self, fh: Fh) -> Result<()> {
        metered!(self, Release, self.inner.release(fh))
    }

    fn read(&self, cred: &Credentials, fh: Fh, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let result = metered!(self, Read, self.inner.read(cred, fh, offset, buf));
        if let Ok(n) = result {
            add_bytes(self.frontend, n as u64, 0);
        }
        result
    }

    fn write(&self, cred: &Credentials, fh: Fh, offset: u64, data: &[u8]) -> Result<(usize, u64)> {
        let result = metered!(self, Write, self.inner.write(cred, fh, offset, data));
        if let Ok((n, _)) = result {
            add_bytes(self.frontend, 0, n as u64);
        }
        result
    }

    fn fallocate(
        &self,
        cred: &Credentials,
        fh: Fh,
        mode: FallocateMode,
        offset: u64,
        len: u64,
    ) -> Result<()> {
        metered!(
            self,
            Fallocate,
            self.inner.fallocate(cred, fh, mode, offset, len)
        )
    }

    fn lseek(&self, cred: &Credentials, fh: Fh, offset: u64, whence: SeekWhence) -> Result<u64> {
        metered!(self, Lseek, self.inner.lseek(cred, fh, offset, whence))
    }

    fn readdir(
        &self,
        cred: &Credentials,
        fh: Fh,
        cookie: u64,
        sink: &mut dyn FnMut(DirEntry<'_>) -> bool,
    ) -> Result<()> {
        metered!(self, Readdir, self.inner.readdir(cred, fh, cookie, sink))
    }

    fn statfs(&self, cred: &Credentials) -> Result<StatFs> {
        metered!(self, Statfs, self.inner.statfs(cred))
    }

    fn getxattr(&self, cred: &Credentials, ino: Ino, name: &[u8], buf: &mut [u8]) -> Result<usize> {
        metered!(self, Getxattr, self.inner.getxattr(cred, ino, name, buf))
    }

    fn setxattr(
        &self,
        cred: &Credentials,
        ino: Ino,
        name: &[u8],
        value: &[u8],
        mode: XattrMode,
    ) -> Result<()> {
        metered!(
            self,
            Setxattr,
            self.inner.setxattr(cred, ino, name, value, mode)
        )
    }

    fn listxattr(&self, cred: &Credentials, ino: Ino, buf: &mut [u8]) -> Result<usize> {
        metered!(self, Listxattr, self.inner.listxattr(cred, ino, buf))
    }

    fn removexattr(&self, cred: &Credentials, ino: Ino, name: &[u8]) -> Result<()> {
        metered!(self, Removexattr, self.inner.removexattr(cred, ino, name))
    }

    fn access(&self, cred: &Credentials, ino: Ino, mask: AccessMask) -> Result<()> {
        metered!(self, Access, self.inner.access(cred, ino, mask))
    }

    fn fsync(&self, cred: &Credentials, fh: Fh, datasync: bool) -> Result<()> {
        metered!(self, Fsync, self.inner.fsync(cred, fh, datasync))
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

    // A call a client answers alone is not counted, as the kernel's cached answers are not.
    fn calls_may_be_skipped(&self) -> bool {
        self.inner.calls_may_be_skipped()
    }
}
