//! The [`Filesystem`] trait: every operation the frontends translate their wire into.
//!
//! Operations are inode based, like FUSE's low-level protocol: a frontend that speaks paths
//! resolves them with [`crate::path`] first. Every call carries the caller's [`Credentials`];
//! the engine makes every permission decision itself, so both frontends enforce the same rules.
//!
//! # Lookup counts
//!
//! `lookup`, `mknod`, `mkdir`, `symlink`, `link` and `create` each add one to the returned
//! inode's lookup count, as the kernel does for an entry reply; `forget` takes them back. An
//! inode lives while it has a link, a lookup count or an open handle. Frontends that hold no
//! such reference (the ring) call `forget(ino, 1)` after those calls, or use
//! [`Filesystem::find`], which counts nothing.
//!
//! # Example: a read-only wrapper
//!
//! ```
//! use btfuse_core::*;
//!
//! /// Passes reads through and refuses every change.
//! struct ReadOnly<F>(F);
//!
//! impl<F: Filesystem> ReadOnly<F> {
//!     fn write(&self, _cred: &Credentials, _fh: Fh, _offset: u64, _data: &[u8])
//!         -> Result<usize> {
//!         Err(Errno::NotPermitted)
//!     }
//!     fn read(&self, cred: &Credentials, fh: Fh, offset: u64, buf: &mut [u8])
//!         -> Result<usize> {
//!         self.0.read(cred, fh, offset, buf)
//!     }
//! }
//!
//! let fs = ReadOnly(MemFs::new(MemPool::new(1 << 20), Config::default(), ZeroClock));
//! let root = Credentials::root();
//! let (_attr, fh) = fs.0.create(&root, Ino::ROOT, b"f", 0o644, OpenFlags::READ_WRITE).unwrap();
//! assert_eq!(fs.write(&root, fh, 0, b"x"), Err(Errno::NotPermitted));
//! assert_eq!(fs.read(&root, fh, 0, &mut [0; 4]), Ok(0));
//! ```

use alloc::sync::Arc;

use crate::error::Result;
use crate::types::*;

/// What a [`ContentWatch`] is told about.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Change {
    /// A regular file's content or size, or what a directory lists: a write, a truncation,
    /// `fallocate`, an `O_TRUNC` open; a name made, removed or renamed in a directory, its
    /// `..` moved by a rename, its removal. The inode's attributes (size, times, link count)
    /// may change with it.
    Content,
    /// Only what `stat` shows of the inode: its mode, owner, times (the access time a read
    /// moves included), link count, or the change time an extended attribute moves.
    Attributes,
}

/// Told about every change to a regular file's content or size, to what a directory lists,
/// and to any inode's attributes, however it is made, by any frontend: what a frontend that
/// lets its clients keep file content, listings and attributes needs in order to know when
/// what they keep is stale.
///
/// `changing` comes before the change can be seen and `changed` after it is complete, both
/// for every change, including one that fails part way; calls for one inode never overlap,
/// calls for different inodes may.
pub trait ContentWatch: Send + Sync {
    /// `ino`'s content or attributes, as `what` says, are about to change.
    fn changing(&self, ino: Ino, what: Change);
    /// The change announced by the last `changing(ino, what)` is complete.
    fn changed(&self, ino: Ino, what: Change);
}

/// An inode-based POSIX filesystem. All methods take `&self` and may run concurrently.
pub trait Filesystem: Send + Sync {
    /// Look `name` up in directory `parent` and add one to its lookup count.
    ///
    /// `.` and `..` resolve to the directory and its parent. Needs search permission on
    /// `parent`. Errors: `ENOENT`, `ENOTDIR`, `EACCES`, `ENAMETOOLONG`.
    ///
    /// `.` in an inode that is not a directory names that inode itself, with no permission
    /// check, as long as it exists: how the FUSE kernel module finds an inode it has forgotten
    /// when it decodes a file handle (`open_by_handle_at`). [`find`](Filesystem::find), which
    /// path walks use, answers `ENOTDIR` there.
    fn lookup(&self, cred: &Credentials, parent: Ino, name: &[u8]) -> Result<Attr>;

    /// Like [`lookup`](Filesystem::lookup) but counts nothing: for path walks.
    fn find(&self, cred: &Credentials, parent: Ino, name: &[u8]) -> Result<Attr>;

    /// Take back `nlookup` lookups of `ino`; an inode with no links, lookups or handles left
    /// is freed with its blocks. Unknown inodes are ignored (the kernel may race with us).
    fn forget(&self, ino: Ino, nlookup: u64);

    /// Whether the kernel may know `ino`: a lookup of it that [`forget`](Filesystem::forget)
    /// has not taken back (the root always counts). A frontend changing the filesystem behind
    /// a kernel cache (the ring beside a FUSE mount) need only tell the kernel about these.
    /// The default, `true`, is always safe.
    fn looked_up(&self, ino: Ino) -> bool {
        let _ = ino;
        true
    }

    /// The attributes of `ino`. Needs no permission (the walk to it was checked).
    fn getattr(&self, cred: &Credentials, ino: Ino) -> Result<Attr>;

    /// Change attributes; see [`SetAttr`]. `fh`, when given, is a handle on `ino` through which
    /// a size change needs no write permission (`ftruncate`).
    ///
    /// Rules (Linux): `chmod` by owner or root, dropping set-group-ID when a non-root caller is
    /// not in the file's group; `chown` by root, or by the owner to a group it belongs to;
    /// times by owner or root (`EPERM`), both set to "now" also by anyone with write
    /// permission (`EACCES`); a size change needs write permission, a regular file (`EISDIR`/`EINVAL`),
    /// and clears set-user-ID (and set-group-ID with group execute) unless the caller is root,
    /// as does `chown` for anyone. The change time moves whenever anything is set.
    fn setattr(&self, cred: &Credentials, ino: Ino, set: &SetAttr, fh: Option<Fh>) -> Result<Attr>;

    /// Create a regular file, FIFO, socket or device record. Device nodes need root (`EPERM`).
    /// Needs write and search permission on `parent`. `perm` is the mode after the umask.
    fn mknod(
        &self,
        cred: &Credentials,
        parent: Ino,
        name: &[u8],
        kind: FileType,
        perm: u32,
        rdev: u32,
    ) -> Result<Attr>;

    /// Create a directory. It inherits the parent's group and set-group-ID bit when the parent
    /// has set-group-ID.
    fn mkdir(&self, cred: &Credentials, parent: Ino, name: &[u8], perm: u32) -> Result<Attr>;

    /// Create and open a regular file. Without `flags.exclusive` an existing file is opened
    /// instead (with `open`'s checks); with it, an existing name is `EEXIST`.
    fn create(
        &self,
        cred: &Credentials,
        parent: Ino,
        name: &[u8],
        perm: u32,
        flags: OpenFlags,
    ) -> Result<(Attr, Fh)>;

    /// Remove a non-directory entry. Sticky parents: only root or the owner of the file or the
    /// directory (`EPERM`). Directories: `EISDIR`.
    fn unlink(&self, cred: &Credentials, parent: Ino, name: &[u8]) -> Result<()>;

    /// Remove an empty directory (`ENOTEMPTY`, `ENOTDIR`; `.` is `EINVAL`, `..` `ENOTEMPTY`).
    fn rmdir(&self, cred: &Credentials, parent: Ino, name: &[u8]) -> Result<()>;

    /// Move `name` in `parent` to `new_name` in `new_parent`. A target file may be replaced by a
    /// file, an empty directory by a directory; a directory cannot move under itself
    /// (`EINVAL`). Renaming an entry onto another name of the same inode does nothing.
    fn rename(
        &self,
        cred: &Credentials,
        parent: Ino,
        name: &[u8],
        new_parent: Ino,
        new_name: &[u8],
        mode: RenameMode,
    ) -> Result<()>;

    /// Add the name `new_name` in `new_parent` for `ino`. Directories: `EPERM`.
    fn link(&self, cred: &Credentials, ino: Ino, new_parent: Ino, new_name: &[u8]) -> Result<Attr>;

    /// Create a symbolic link to `target` (1 to `PATH_MAX - 1` bytes, no NUL).
    fn symlink(&self, cred: &Credentials, parent: Ino, name: &[u8], target: &[u8]) -> Result<Attr>;

    /// The target of a symbolic link (`EINVAL` for other inodes).
    fn readlink(&self, cred: &Credentials, ino: Ino) -> Result<alloc::vec::Vec<u8>>;

    /// Open `ino`, checking read and write permission for the requested access. A directory
    /// opens only for reading (`EISDIR`); a symlink never (`ELOOP`); sockets give `ENXIO` and
    /// other special files `EOPNOTSUPP` (a kernel frontend serves those itself).
    fn open(&self, cred: &Credentials, ino: Ino, flags: OpenFlags) -> Result<Fh>;

    /// Close a handle. An unlinked inode whose last reference this was is freed.
    fn release(&self, fh: Fh) -> Result<()>;

    /// Read up to `buf.len()` bytes at `offset`; fewer at the end of the file, 0 past it.
    /// Holes read as zeros. `EBADF` unless `fh` is open for reading.
    fn read(&self, cred: &Credentials, fh: Fh, offset: u64, buf: &mut [u8]) -> Result<usize>;

    /// Write `data` at `offset` (at the end of the file, atomically, for an append handle) and
    /// return the bytes written and the offset just past them. A full store writes what fits
    /// and reports it; if nothing fits, `ENOSPC`. Clears set-ID bits as `setattr` says.
    fn write(&self, cred: &Credentials, fh: Fh, offset: u64, data: &[u8]) -> Result<(usize, u64)>;

    /// Allocate or punch a range; `EBADF` unless `fh` is open for writing.
    fn fallocate(
        &self,
        cred: &Credentials,
        fh: Fh,
        mode: FallocateMode,
        offset: u64,
        len: u64,
    ) -> Result<()>;

    /// `SEEK_DATA`/`SEEK_HOLE` from `offset`; `ENXIO` at or past the end.
    fn lseek(&self, cred: &Credentials, fh: Fh, offset: u64, whence: SeekWhence) -> Result<u64>;

    /// List a directory opened with `open`, starting after `cookie` (0: from the start, so
    /// `.` has cookie 1 and `..` cookie 2). Calls `sink` per entry until it returns `false`.
    /// A cookie stays valid while entries are added and removed: no entry present for the
    /// whole listing is skipped or repeated. `sink` runs with the directory locked for reading,
    /// so it must not change the filesystem.
    fn readdir(
        &self,
        cred: &Credentials,
        fh: Fh,
        cookie: u64,
        sink: &mut dyn FnMut(DirEntry<'_>) -> bool,
    ) -> Result<()>;

    /// Filesystem statistics.
    fn statfs(&self, cred: &Credentials) -> Result<StatFs>;

    /// Copy the value of attribute `name` into `buf` and return its length; with an empty
    /// `buf`, return the length only. `ERANGE` when `buf` is too small, `ENODATA` if absent.
    fn getxattr(&self, cred: &Credentials, ino: Ino, name: &[u8], buf: &mut [u8]) -> Result<usize>;

    /// Set attribute `name`. Namespaces: `user.` (regular files and directories, write
    /// permission), `trusted.` and `security.` (root); others are `EOPNOTSUPP`.
    fn setxattr(
        &self,
        cred: &Credentials,
        ino: Ino,
        name: &[u8],
        value: &[u8],
        mode: XattrMode,
    ) -> Result<()>;

    /// The NUL-terminated names of the attributes the caller may see, copied like `getxattr`.
    fn listxattr(&self, cred: &Credentials, ino: Ino, buf: &mut [u8]) -> Result<usize>;

    /// Remove attribute `name` (`ENODATA` if absent).
    fn removexattr(&self, cred: &Credentials, ino: Ino, name: &[u8]) -> Result<()>;

    /// Check `mask` against the mode bits as `access(2)` does (root may read and write
    /// anything, and execute anything that has an execute bit or is a directory).
    fn access(&self, cred: &Credentials, ino: Ino, mask: AccessMask) -> Result<()>;

    /// Make a file's data durable. Memory is as durable as it gets, so this only checks `fh`.
    fn fsync(&self, cred: &Credentials, fh: Fh, datasync: bool) -> Result<()>;

    /// Has `watch` told about every content and attribute change from now on (see [`ContentWatch`]); returns
    /// whether it will be. The default, `false`, tells nothing: a filesystem that cannot report
    /// changes must not claim to. Wrappers pass the call on.
    fn watch_content(&self, watch: Arc<dyn ContentWatch>) -> bool {
        let _ = watch;
        false
    }

    /// Has the store place regular file `ino`'s blocks where
    /// [`BlockStore::allocate_for`](crate::block::BlockStore::allocate_for) puts them, and be
    /// told of every change to the file
    /// ([`BlockStore::file_changed`](crate::block::BlockStore::file_changed)): what lets a
    /// store show a file's data outside the engine. Every block allocated from now on is
    /// placed; of the blocks the file has, at most `most` at index `from` and above are moved
    /// by this call (each is a copy), and it answers `Some(index)` to call again with while
    /// some may be left, `None` once every block from `from` on is placed. Reads of data
    /// shown that way skip the filesystem, so the default, `EOPNOTSUPP`, is right for any
    /// filesystem or wrapper that must see every read; wrappers that need not pass it on.
    fn place_file(&self, ino: Ino, from: u64, most: u64) -> Result<Option<u64>> {
        let _ = (ino, from, most);
        Err(crate::Errno::NotSupported)
    }

    /// Undoes [`place_file`](Filesystem::place_file) for a file nothing has open: its blocks
    /// go back where [`BlockStore::allocate`](crate::block::BlockStore::allocate) puts them
    /// and the store is told ([`BlockStore::file_gone`](crate::block::BlockStore::file_gone)).
    /// `EBUSY` while a handle is open, `ENOENT` for an inode that is gone. The default:
    /// `EOPNOTSUPP`; wrappers pass the call on.
    fn unplace_file(&self, ino: Ino) -> Result<()> {
        let _ = ino;
        Err(crate::Errno::NotSupported)
    }

    /// Whether a frontend may answer a call again from what an earlier answer showed, without
    /// asking the filesystem, while its [`ContentWatch`] reports no change (a client that
    /// keeps the attributes a path walk found). `false` for a filesystem or wrapper that must
    /// see every call, such as one that runs hooks on each. No default: wrappers pass the
    /// call on or answer `false`, so that none allows it by forgetting to.
    fn calls_may_be_skipped(&self) -> bool;

    /// The file locks every frontend of this filesystem shares, if it keeps any (`None`:
    /// frontends answer lock calls with `EOPNOTSUPP`). Wrappers pass the call on; there is
    /// no default, so that a wrapper cannot drop the table by forgetting to.
    fn locks(&self) -> Option<&crate::locks::LockTable>;
}
