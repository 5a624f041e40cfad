//! Serving one request: the ring server's counterpart of the kernel's VFS layer.
//!
//! [`execute`] answers a decoded [`Request`] from the engine. Paths are resolved with
//! [`btfuse_core::path`], from the served root or, for the `*at` calls, from a directory
//! description, and path calls become the inode calls of [`Filesystem`] the way Linux's VFS
//! turns system calls into inode operations. The checks the VFS makes before a filesystem sees
//! a call (trailing slashes, `O_CREAT` through a symbolic link, `lseek` bounds, the area of a
//! read or write) are made here, in Linux's order; every other rule is the engine's
//! (`docs/semantics.md`). Descriptions and their offsets live in the [`Session`]; the engine
//! only ever sees handles.
//!
//! Every value in a request comes from an untrusted client: nothing here indexes, converts or
//! adds without a check, so no request can make the server panic.
//!
//! Where Linux leaves a choice, or where this server differs from it:
//!
//! - `ftruncate` on a description not open for writing, or not on a regular file, is `EINVAL`
//!   (Linux `do_ftruncate`); a size above `i64::MAX` (a negative `off_t`) is `EINVAL` before
//!   the descriptor is looked at, for `truncate` and `ftruncate` alike.
//! - `lseek` on a directory moves to any position ≥ 0 with `SEEK_SET` or `SEEK_CUR`: the
//!   position is the readdir cookie to continue after, 0 rewinds. Other whences are `EINVAL`
//!   (tmpfs's `offset_dir_llseek`).
//! - `F_SETFL` that toggles `O_APPEND` on a writable description opens a new engine handle,
//!   whose append mode is fixed at open, and releases the old one. The new handle is opened
//!   without checking the caller's rights again: a description keeps the access it was granted
//!   when it opened, as on Linux, even if the mode bits changed since.
//! - `F_GETFL` reports the access mode, `O_APPEND` and `O_NONBLOCK`; Linux also keeps
//!   `O_DIRECTORY` and `O_NOFOLLOW` there.
//! - `Hello` accepts exactly [`ring::VERSION`]; any other version is `EINVAL`.
//! - `chown(f, -1, -1)` by a caller who is neither root nor the owner is `EPERM` when it would
//!   clear a set-ID bit, as on Linux, checked here: the engine lets a caller who may write the
//!   file through (see `docs/semantics.md`), because FUSE sends the kernel's request to drop
//!   the bits before a write in the same form.
//! - A symbolic link met by `O_CREAT` in the last component counts towards [`MAX_SYMLINKS`]
//!   on its own: the links inside each path walked are counted by that walk.
//! - Reads, `pread`s and `pwrite`s on one description run one at a time, because `F_SETFL`
//!   may swap the engine handle under them; different descriptions run in parallel.
//! - A path is walked as if the served root were mounted where the server cannot know (each
//!   client sees it at its own prefix, `Mount::Elsewhere`): a walk that leaves the tree (an
//!   absolute symbolic link, `..` above the root) acts on nothing and answers `Outside` with
//!   the rest of the walk, which the client goes on with in its own namespace. Links that
//!   `O_CREAT` follows in the last component count towards that answer's links too.
//! - A description handed to the kernel (`Handoff`, see [`handoff`](super::handoff)) reads,
//!   writes, seeks and reports and changes its status flags through its kernel file, with no
//!   lock held: the kernel's FUSE requests are served by the mount's own threads. `ftruncate`,
//!   `fstat`, `fsync` and `fallocate` use no offset and stay with the engine, whose changes
//!   the kernel is told of.
//!
//! [`MAX_SYMLINKS`]: btfuse_core::path::MAX_SYMLINKS

use std::borrow::Cow;
use std::cell::Cell;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use btfuse_core::path::{self, Escape, Follow, MAX_SYMLINKS, Mount, Parent, Resolved};
use btfuse_core::ring::{
    self, DirentBuilder, OpenOptions, Request, Response, Stamp, StampsBuilder, Target, Whence,
};
use btfuse_core::{
    Attr, Credentials, Errno, FallocateMode, FileType, Filesystem, Ino, OpenFlags, PATH_MAX,
    RenameMode, Result, SeekWhence, SetAttr, TimeSet, XattrMode,
};
use btfuse_ring_client::contents::is_settled;

use super::handoff::{Courier, KernelAccess, kernel_errno};
use super::session::{Cursor, Description, ForkTable, Grant, MAX_OPEN, Route, Session};
use crate::contents::ContentTable;
use crate::mapped::FileShower;

/// `Ok` for a regular file; `EISDIR` for a directory, `EINVAL` for anything else: what
/// `Handoff` and `MapFile` answer for a description that is not of one.
fn regular_file(kind: FileType) -> Result<()> {
    match kind {
        FileType::RegularFile => Ok(()),
        FileType::Directory => Err(Errno::IsADirectory),
        _ => Err(Errno::InvalidArgument),
    }
}

/// Largest file offset or size a request may name: `i64::MAX`, as Linux's `loff_t` allows.
const MAX_OFFSET: u64 = i64::MAX as u64;

/// What serving a request may use beyond the engine and the session.
#[derive(Clone, Copy)]
pub(crate) struct Extras<'a> {
    /// Sends descriptors for `Handoff` and `MapFile` (`None`: both are `EOPNOTSUPP`).
    pub(crate) courier: Option<&'a Courier<'a>>,
    /// The content table, when the engine reports its changes to it: opens may then send
    /// content (`None`: they never do).
    pub(crate) contents: Option<&'a ContentTable>,
    /// Shows files for `MapFile` (`None`: `EOPNOTSUPP`).
    pub(crate) shower: Option<&'a dyn FileShower>,
}

/// Private buffers a response may borrow: they are grown as needed, and what they held before
/// is never part of a response.
#[derive(Default)]
pub(crate) struct Scratch {
    /// Bytes read for the client.
    data: Vec<u8>,
    /// The rest of a walk that left the tree (apart from `data`, so that the answer can be
    /// made once the request has failed).
    outside: Vec<u8>,
}

/// Serves one request for a client. `session` may be replaced (`Attach`).
pub(crate) fn execute<'s, F: Filesystem>(
    fs: &Arc<F>,
    forks: &ForkTable<F>,
    session: &mut Arc<Session<F>>,
    cred: &Credentials,
    request: &Request<'_>,
    scratch: &'s mut Scratch,
    extras: Extras<'_>,
) -> Response<'s> {
    let Scratch { data, outside } = scratch;
    let mut exec = Exec {
        fs,
        forks,
        session,
        cred,
        courier: extras.courier,
        contents: extras.contents,
        shower: extras.shower,
        left: Cell::new(None),
    };
    match exec.serve(request, data) {
        Ok(response) => response,
        Err(e) => match exec.left.take() {
            None => Response::Err(e),
            Some(left) => {
                *outside = left.escape.path;
                Response::Outside {
                    second: left.second,
                    links: left.escape.links,
                    path: outside,
                }
            }
        },
    }
}

/// A walk that left the tree, and which of the request's paths it walked.
struct Left {
    second: bool,
    escape: Escape,
}

/// One request's view of the server: the engine, the client's session and who is asking.
struct Exec<'a, F: Filesystem> {
    fs: &'a Arc<F>,
    forks: &'a ForkTable<F>,
    session: &'a mut Arc<Session<F>>,
    cred: &'a Credentials,
    courier: Option<&'a Courier<'a>>,
    /// The content table when the engine reports its changes: opens may send content.
    contents: Option<&'a ContentTable>,
    shower: Option<&'a dyn FileShower>,
    /// Set when a walk left the tree: the request then fails, and is answered `Outside`.
    left: Cell<Option<Left>>,
}

/// How a walk treats a symbolic link in the last component, as a request's `follow` says.
fn follow_if(follow: bool) -> Follow {
    if follow {
        Follow::Follow
    } else {
        Follow::NoFollow
    }
}

/// Gathers the stamps of a `StatStamped` answer: each slot's attribute version, read the first
/// time the walk meets an inode of that slot.
struct Stamper<'t> {
    table: &'t ContentTable,
    stamps: StampsBuilder,
    /// Whether every version read was settled and fitted.
    whole: bool,
}

impl Stamper<'_> {
    fn stamp(&mut self, ino: Ino) {
        let slot = self.table.slot(ino);
        if !self.whole || self.stamps.has(slot) {
            return;
        }
        let version = self.table.attributes(ino);
        self.whole = is_settled(version) && self.stamps.push(Stamp { slot, version });
    }
}

/// An inode a request acts on, and its type.
#[derive(Clone, Copy, Debug)]
struct Node {
    ino: Ino,
    kind: FileType,
}

impl From<Attr> for Node {
    fn from(attr: Attr) -> Node {
        Node {
            ino: attr.ino,
            kind: attr.kind,
        }
    }
}

impl<F: Filesystem> Exec<'_, F> {
    /// Dispatches `request` to the method that serves it.
    fn serve<'s>(
        &mut self,
        request: &Request<'_>,
        scratch: &'s mut Vec<u8>,
    ) -> Result<Response<'s>> {
        match *request {
            Request::Hello { version } => hello(version),
            Request::Attach { token } => self.attach(token),
            Request::Fork => self.fork(),
            Request::Stat { target } => self.target_attr(&target).map(Response::Attr),
            Request::StatStamped { target } => self.stat_stamped(&target, scratch),
            Request::StatDir { target } => self.stat_dir(&target, scratch),
            // `Credentials` holds one set of ids, real and effective alike: `AT_EACCESS` asks
            // the same question.
            Request::Access {
                target,
                mask,
                effective: _,
            } => {
                let node = self.node_raw(&target)?;
                self.fs.access(self.cred, node.ino, mask)?;
                Ok(Response::Ok)
            }
            Request::Open {
                at,
                path,
                flags,
                mode,
                prefetch,
                known_ino,
                known_version,
            } => {
                let known = (Ino(known_ino), known_version);
                self.open(at, path, flags, mode, (prefetch, known), scratch)
            }
            Request::Mkdir { at, path, mode } => self.mkdir(at, path, mode),
            Request::Rmdir { at, path } => self.rmdir(at, path),
            Request::Unlink { at, path } => self.unlink(at, path),
            Request::Rename {
                old_at,
                old_path,
                new_at,
                new_path,
                mode,
            } => self.rename((old_at, old_path), (new_at, new_path), mode),
            Request::Link {
                old,
                new_at,
                new_path,
            } => self.link(&old, new_at, new_path),
            Request::Symlink { target, at, path } => self.symlink(target, at, path),
            Request::Readlink { at, path, max } => self.readlink(at, path, max, scratch),
            Request::Truncate { target, size } => self.truncate(&target, size),
            Request::Chmod { target, mode } => self.chmod(&target, mode),
            Request::Chown { target, uid, gid } => {
                if uid.is_none() && gid.is_none() {
                    self.check_keeps_set_id(&target)?;
                }
                // `chown` clears set-ID bits and moves ctime even when both ids are -1
                // (Linux `chown_common`), which only `kill_setid` can say.
                let set = SetAttr {
                    uid,
                    gid,
                    kill_setid: true,
                    ..SetAttr::default()
                };
                self.setattr(&target, &set)
            }
            Request::Utimens {
                target,
                atime,
                mtime,
            } => {
                // Linux `utimensat`: with nothing to change, not even the path is looked at.
                if atime == TimeSet::Omit && mtime == TimeSet::Omit {
                    return Ok(Response::Ok);
                }
                let set = SetAttr {
                    atime,
                    mtime,
                    ..SetAttr::default()
                };
                self.setattr(&target, &set)
            }
            Request::Statfs { target } => {
                self.node_raw(&target)?;
                self.fs.statfs(self.cred).map(Response::StatFs)
            }
            Request::GetXattr { target, name, max } => {
                let node = self.node(&target)?;
                sized(max, scratch, |buf| {
                    self.fs.getxattr(self.cred, node.ino, name, buf)
                })
            }
            Request::SetXattr {
                target,
                name,
                value,
                mode,
            } => self.setxattr(&target, name, value, mode),
            Request::ListXattr { target, max } => {
                let node = self.node(&target)?;
                sized(max, scratch, |buf| {
                    self.fs.listxattr(self.cred, node.ino, buf)
                })
            }
            Request::RemoveXattr { target, name } => {
                let node = self.node(&target)?;
                self.fs.removexattr(self.cred, node.ino, name)?;
                Ok(Response::Ok)
            }
            Request::Read { fd, len } => self.read(fd, None, len, scratch),
            Request::Pread { fd, offset, len } => self.read(fd, Some(offset), len, scratch),
            Request::Write { fd, data } => self.write(fd, None, data),
            Request::Pwrite { fd, offset, data } => self.write(fd, Some(offset), data),
            Request::Lseek { fd, offset, whence } => self.lseek(fd, offset, whence),
            Request::Fsync { fd, datasync } => {
                let description = self.file(fd)?;
                let cursor = description.cursor();
                self.fs.fsync(self.cred, cursor.fh, datasync)?;
                Ok(Response::Ok)
            }
            Request::Fallocate {
                fd,
                mode,
                offset,
                len,
            } => self.fallocate(fd, mode, offset, len),
            Request::Dup { fd } => self.session.dup(fd).map(Response::Fd),
            Request::Close { fd } => self.session.remove(fd).map(|()| Response::Ok),
            Request::Getdents { fd, max } => self.getdents(fd, max, scratch),
            Request::GetFlags { fd } => {
                let description = self.session.get(fd)?;
                let (append, nonblock) = match description.route() {
                    Route::Engine(cursor) => (cursor.append, cursor.nonblock),
                    Route::Kernel(file) => {
                        let flags = crate::sys::status_flags(file.as_raw_fd())
                            .map_err(|e| kernel_errno(&e))?;
                        (flags & libc::O_APPEND != 0, flags & libc::O_NONBLOCK != 0)
                    }
                };
                let grant = description.grant;
                Ok(Response::Flags(OpenOptions {
                    read: grant.read,
                    write: grant.write,
                    append,
                    nonblock,
                    check_read_write: grant.check_read_write,
                    path_only: grant.path_only,
                    ..OpenOptions::default()
                }))
            }
            Request::SetFlags {
                fd,
                append,
                nonblock,
            } => self.set_flags(fd, append, nonblock),
            Request::Handoff { fd } => self.handoff(fd),
            Request::MapFile { fd } => self.map_file(fd),
            Request::CopyRange {
                fd_in,
                off_in,
                fd_out,
                off_out,
                len,
            } => self.copy_range((fd_in, off_in), (fd_out, off_out), len, scratch),
            Request::GetLock {
                fd,
                ofd,
                write,
                start,
                end,
            } => self.get_lock(fd, ofd, write, start, end),
            Request::SetLock {
                fd,
                scope,
                kind,
                start,
                end,
                wait,
            } => self.set_lock(fd, scope, kind, start, end, wait),
            Request::LockWait { token, cancel } => self.lock_wait(token, cancel),
        }
    }

    /// `MapFile`: the file a description reads, shown in a memory file whose read-only
    /// descriptor goes over the channel's socket (see [`crate::mapped`]).
    fn map_file(&self, fd: u32) -> Result<Response<'static>> {
        let (Some(courier), Some(shower)) = (self.courier, self.shower) else {
            return Err(Errno::NotSupported);
        };
        let description = self.session.get(fd)?;
        regular_file(description.kind)?;
        // A mapping reads the file: only what the open granted.
        if !description.grant.read {
            return Err(Errno::BadHandle);
        }
        let file = shower.show(description.ino, &**self.fs)?;
        courier.deliver(fd, &file)?;
        Ok(Response::Ok)
    }

    /// `Handoff`: the description's kernel file (opened now if it has none) goes to the
    /// client, and the description becomes its proxy.
    fn handoff(&self, fd: u32) -> Result<Response<'static>> {
        let opener = self.courier.and_then(|c| c.opener);
        let (Some(courier), Some(opener)) = (self.courier, opener) else {
            return Err(Errno::NotSupported);
        };
        let description = self.session.get(fd)?;
        regular_file(description.kind)?;
        let file = description.kernel_file(|cursor| {
            // Never more than the description was granted: one that grants neither reading
            // nor writing (`O_PATH`, access mode 3) becomes an `O_PATH` kernel file.
            let access = KernelAccess {
                read: description.grant.read,
                write: description.grant.write,
                append: cursor.append,
                nonblock: cursor.nonblock,
            };
            let opened = opener.open(description.ino, access);
            let file = std::fs::File::from(opened.map_err(|e| {
                log::debug!("handing off inode {:?}: {e}", description.ino);
                kernel_errno(&e)
            })?);
            // An `O_PATH` kernel file has no offset to move.
            if access.read || access.write {
                let offset = i64::try_from(cursor.offset).map_err(|_| Errno::Overflow)?;
                crate::sys::lseek(file.as_raw_fd(), offset, libc::SEEK_SET)
                    .map_err(|e| kernel_errno(&e))?;
            }
            Ok(file)
        })?;
        courier.deliver(fd, file)?;
        Ok(Response::Ok)
    }

    // Sessions.

    /// `Fork`: keeps a copy of this session's table for a child to attach to.
    fn fork(&self) -> Result<Response<'static>> {
        let token = crate::sys::random_u64().map_err(|e| {
            log::warn!("no randomness for a fork token: {e}");
            Errno::Io
        })?;
        self.forks.prepare(token, self.session, self.cred)?;
        Ok(Response::Token(token))
    }

    /// `Attach`: this channel continues with the table a parent shared under `token`.
    fn attach(&mut self, token: u64) -> Result<Response<'static>> {
        // The session stays the one the server knows by its join token, so that the child's
        // other channels (its threads, or a channel renewed after an id change) find it.
        let open = self.forks.attach(token, self.cred)?;
        self.session.replace_table(open)?;
        // A program attaching after `exec` is the process whose old program's channels the
        // kernel closed at the exec: its old session ends now, with what it held (the
        // descriptions the exec closed, their locks), as the kernel's closing did, rather
        // than when its worker gets to the hang-up.
        crate::locks::end_hung_up(self.cred.pid);
        Ok(Response::Ok)
    }

    // Resolution.

    /// The directory a path starts from: `at`'s inode for a relative path, else the root. An
    /// absolute path ignores `at`, even one that is not open (Linux `path_init`).
    fn start(&self, at: Option<u32>, path: &[u8]) -> Result<Ino> {
        match at {
            Some(fd) if path.first() != Some(&b'/') => Ok(self.session.get(fd)?.ino),
            _ => Ok(Ino::ROOT),
        }
    }

    /// The inode `path` names, following a symbolic link in the last component if `follow`.
    fn resolve(&self, at: Option<u32>, path: &[u8], follow: bool) -> Result<Attr> {
        let start = self.start(at, path)?;
        self.inside(path::resolve_at(
            &**self.fs,
            self.cred,
            Mount::Elsewhere,
            start,
            path,
            follow_if(follow),
        ))
    }

    /// The directory holding `path`'s last component, and that component.
    fn parent(&self, at: Option<u32>, path: &[u8]) -> Result<Parent> {
        let start = self.start(at, path)?;
        self.inside(path::resolve_parent_at(
            &**self.fs,
            self.cred,
            Mount::Elsewhere,
            start,
            path,
        ))
    }

    /// The inside of a walk. A walk that left the tree fails the request, which does nothing
    /// more, and is kept for the answer (`Outside`).
    fn inside<T>(&self, resolved: Result<Resolved<T>>) -> Result<T> {
        match resolved? {
            Resolved::Inside(value) => Ok(value),
            Resolved::Outside(escape) => Err(self.leave(escape)),
        }
    }

    /// Keeps `escape` for the answer; the error the request fails with meanwhile.
    fn leave(&self, escape: Escape) -> Errno {
        if escape.links > MAX_SYMLINKS {
            return Errno::TooManySymlinks;
        }
        self.left.set(Some(Left {
            second: false,
            escape,
        }));
        Errno::NotFound
    }

    /// `resolved` as the walk of the request's second path (`Rename`'s and `Link`'s new name).
    fn second<T>(&self, resolved: Result<T>) -> Result<T> {
        if resolved.is_err()
            && let Some(left) = self.left.take()
        {
            self.left.set(Some(Left {
                second: true,
                ..left
            }));
        }
        resolved
    }

    /// The description numbered `fd` for a call Linux serves with `fdget`: any but an
    /// `O_PATH` one (`EBADF`).
    fn file(&self, fd: u32) -> Result<Arc<Description<F>>> {
        let description = self.session.get(fd)?;
        if description.grant.path_only {
            return Err(Errno::BadHandle);
        }
        Ok(description)
    }

    /// The inode a target names, for a call that needs more than an `O_PATH` description.
    fn node(&self, target: &Target<'_>) -> Result<Node> {
        match *target {
            Target::Fd(fd) => {
                let description = self.file(fd)?;
                Ok(Node {
                    ino: description.ino,
                    kind: description.kind,
                })
            }
            Target::Path { .. } => self.node_raw(target),
        }
    }

    /// The inode a target names, an `O_PATH` description included (`fstatfs`, `faccessat`
    /// with `AT_EMPTY_PATH`).
    fn node_raw(&self, target: &Target<'_>) -> Result<Node> {
        match *target {
            Target::Fd(fd) => {
                let description = self.session.get(fd)?;
                Ok(Node {
                    ino: description.ino,
                    kind: description.kind,
                })
            }
            Target::Path { at, path, follow } => self.resolve(at, path, follow).map(Node::from),
        }
    }

    /// The attributes of the inode a target names.
    fn target_attr(&self, target: &Target<'_>) -> Result<Attr> {
        match *target {
            Target::Fd(fd) => {
                let ino = self.session.get(fd)?.ino;
                self.fs.getattr(self.cred, ino)
            }
            Target::Path { at, path, follow } => self.resolve(at, path, follow),
        }
    }

    /// Walks `path` from `at` (or the root), stamping every directory the walk looks in
    /// before it reads anything there: the stamps, and where the walk ended.
    fn stamped_walk<'t>(
        &self,
        table: &'t ContentTable,
        at: Option<u32>,
        path: &[u8],
        follow: Follow,
    ) -> Result<(Stamper<'t>, Result<Resolved<Attr>>)> {
        let start = self.start(at, path)?;
        let mut stamper = Stamper {
            table,
            stamps: StampsBuilder::default(),
            whole: true,
        };
        let found = path::resolve_observed(
            &**self.fs,
            self.cred,
            Mount::Elsewhere,
            start,
            path,
            follow,
            |dir| stamper.stamp(dir),
        );
        Ok((stamper, found))
    }

    /// `StatStamped`: a path's attributes, or the error its walk met, with the stamps of
    /// everything the answer depends on (`Response::Stamped`); answered as `Stat` when the
    /// server cannot vouch for it: no content table, an engine that must see every call, a
    /// walk that left, more directories than an answer carries, a change under way, an error
    /// that is not the walk's. A walk from a description depends on which directory the
    /// description is, too: that is the client's to know (a number names one description
    /// until the client closes it).
    ///
    /// Each slot's attribute version is read before the walk reads anything of its inodes
    /// (the observer is told each directory before a name is looked up in it), and the
    /// attributes answered are read after the reached inode's version; so while every slot
    /// still shows its version, no change to anything the answer was made from has begun
    /// since, and a new walk would answer the same.
    fn stat_stamped<'s>(
        &self,
        target: &Target<'_>,
        scratch: &'s mut Vec<u8>,
    ) -> Result<Response<'s>> {
        let stamping = match (*target, self.contents) {
            (Target::Path { at, path, follow }, Some(table)) if self.fs.calls_may_be_skipped() => {
                Some((at, path, follow, table))
            }
            _ => None,
        };
        let Some((at, path, follow, table)) = stamping else {
            return self.target_attr(target).map(Response::Attr);
        };
        let (mut stamper, found) = self.stamped_walk(table, at, path, follow_if(follow))?;
        let outcome = match found {
            Ok(Resolved::Outside(escape)) => return Err(self.leave(escape)),
            Ok(Resolved::Inside(attr)) => {
                stamper.stamp(attr.ino);
                self.fs.getattr(self.cred, attr.ino)
            }
            Err(e) => Err(e),
        };
        let vouched = matches!(
            outcome,
            Ok(_)
                | Err(Errno::NotFound
                    | Errno::NotADirectory
                    | Errno::PermissionDenied
                    | Errno::NameTooLong
                    | Errno::TooManySymlinks)
        );
        let stamps = stamper.stamps.stamps().filter(|_| stamper.whole && vouched);
        let Some(stamps) = stamps else {
            return outcome.map(Response::Attr);
        };
        scratch.clear();
        scratch.extend_from_slice(stamps.as_bytes());
        match ring::Stamps::new(scratch) {
            Ok(stamps) => Ok(Response::Stamped { outcome, stamps }),
            Err(_) => outcome.map(Response::Attr),
        }
    }

    /// `StatDir`: every name of a directory with its attributes and stamp, and the stamps of
    /// the walk to it and of the directory itself (`Response::StampedDir`): while those hold,
    /// a `StatStamped` of the directory's path with any name after it would answer what the
    /// entry says, or `ENOENT` for a name not listed. `EOPNOTSUPP` where `StatStamped` would
    /// not stamp; `EACCES` unless the caller may both list and search the directory; `E2BIG`
    /// past [`ring::MAX_ENTRIES`] entries; `EAGAIN` for a change under way.
    ///
    /// The walk is stamped as `StatStamped`'s. The directory's content version is read before
    /// it is listed and again after, with its attribute version in between: listing may move
    /// its access time (an attribute change), but a change to what it lists moves the content
    /// version, and is refused. Each entry's version is read before its attributes.
    fn stat_dir<'s>(&self, target: &Target<'_>, scratch: &'s mut Vec<u8>) -> Result<Response<'s>> {
        let (at, path, table) = match (*target, self.contents) {
            (Target::Path { at, path, .. }, Some(table)) if self.fs.calls_may_be_skipped() => {
                (at, path, table)
            }
            _ => return Err(Errno::NotSupported),
        };
        let (mut stamper, found) = self.stamped_walk(table, at, path, Follow::Follow)?;
        let dir = match found {
            Ok(Resolved::Inside(attr)) => attr,
            Ok(Resolved::Outside(escape)) => return Err(self.leave(escape)),
            Err(e) => return Err(e),
        };
        if dir.kind != FileType::Directory {
            return Err(Errno::NotADirectory);
        }
        let listed_at = table.version(dir.ino);
        if !is_settled(listed_at) {
            return Err(Errno::TryAgain);
        }
        // Listed with the caller's rights, as its own `opendir` would be.
        let read = OpenFlags {
            directory: true,
            ..OpenFlags::READ
        };
        let fh = self.fs.open(self.cred, dir.ino, read)?;
        let mut names: Vec<(Vec<u8>, Ino)> = Vec::new();
        let listed = self.fs.readdir(self.cred, fh, 0, &mut |e| {
            if e.name != b"." && e.name != b".." {
                names.push((e.name.to_vec(), e.ino));
            }
            names.len() <= ring::MAX_ENTRIES
        });
        if let Err(e) = self.fs.release(fh) {
            log::warn!("releasing a listing handle {fh:?}: {e}");
        }
        listed?;
        if names.len() > ring::MAX_ENTRIES {
            return Err(Errno::ArgumentListTooLong);
        }
        // The directory's own stamp, read after listing (which may move its access time).
        stamper.stamp(dir.ino);
        if table.version(dir.ino) != listed_at {
            return Err(Errno::TryAgain);
        }
        let Some(stamps) = stamper.stamps.stamps().filter(|_| stamper.whole) else {
            return Err(Errno::TryAgain);
        };
        scratch.clear();
        scratch.extend_from_slice(stamps.as_bytes());
        let split = scratch.len();
        for (name, ino) in &names {
            let stamp = Stamp {
                slot: table.slot(*ino),
                version: table.attributes(*ino),
            };
            // Searching is checked here, for each name, as a walk would.
            let attr = self.fs.find(self.cred, dir.ino, name)?;
            let entry = ring::StampedEntry { name, attr, stamp };
            ring::push_stamped(scratch, &entry).map_err(|_| Errno::InvalidArgument)?;
            if scratch.len() - split > ring::MAX_IO {
                return Err(Errno::ArgumentListTooLong);
            }
        }
        let (stamps, entries) = scratch.split_at(split);
        match (
            ring::Stamps::new(stamps),
            ring::StampedEntries::new(entries),
        ) {
            (Ok(stamps), Ok(entries)) => Ok(Response::StampedDir { stamps, entries }),
            _ => Err(Errno::InvalidArgument),
        }
    }

    /// Linux `filename_create`'s rule for a name written with a slash after it, for the calls
    /// that create anything but a directory: `EEXIST` if it exists, else `ENOENT`.
    fn check_new_name(&self, parent: &Parent) -> Result<()> {
        if !parent.trailing_slash || is_dots(&parent.name) {
            return Ok(());
        }
        let existing = self.fs.find(self.cred, parent.dir.ino, &parent.name);
        Err(existing.map_or_else(|e| e, |_| Errno::Exists))
    }

    // Path calls.

    /// `open`, `openat`: a new description over a new engine handle.
    fn open<'s>(
        &self,
        at: Option<u32>,
        path: &[u8],
        options: OpenOptions,
        mode: u32,
        (prefetch, known): (u32, (Ino, u64)),
        scratch: &'s mut Vec<u8>,
    ) -> Result<Response<'s>> {
        // The descriptor comes first, as Linux's `get_unused_fd_flags` does: a client that
        // could not get one has no file created for it.
        if self.session.len() >= MAX_OPEN {
            return Err(Errno::TooManyOpenFiles);
        }
        if options.path_only {
            return self.open_path(at, path, options);
        }
        // Linux 6.4 and later refuse the ambiguous `O_CREAT | O_DIRECTORY`.
        if options.create && options.directory {
            return Err(Errno::InvalidArgument);
        }
        // Access mode 3 is checked as `O_RDWR`; the handle is then one that grants nothing.
        let checked = OpenOptions {
            read: options.read || options.check_read_write,
            write: options.write || options.check_read_write,
            ..options
        };
        let (attr, mut fh) = if options.create {
            self.open_create(at, path, checked, mode)?
        } else {
            let attr = self.resolve(at, path, !options.nofollow)?;
            // Linux `do_open` judges `O_DIRECTORY` before `may_open` refuses a symbolic link.
            if options.directory && attr.kind != FileType::Directory {
                return Err(Errno::NotADirectory);
            }
            let fh = self.fs.open(self.cred, attr.ino, checked.engine_flags())?;
            (attr, fh)
        };
        let grant = Grant {
            read: options.read,
            write: options.write,
            check_read_write: options.check_read_write,
            path_only: false,
        };
        if grant.check_read_write && !(grant.read || grant.write) {
            fh = self.bare_handle(attr.ino, fh)?;
        }
        let cursor = Cursor {
            offset: 0,
            append: options.append,
            nonblock: options.nonblock,
            fh,
        };
        let description = Arc::new(Description::new(
            Arc::clone(self.fs),
            attr.ino,
            attr.kind,
            grant,
            cursor,
        ));
        // Content goes only to an open that reads, writes nothing and truncates nothing, of a
        // regular file, from an engine that reports its changes.
        let contents = self
            .contents
            .filter(|_| prefetch > 0 && options.read && !options.write && !options.truncate)
            .filter(|_| attr.kind == FileType::RegularFile);
        // `O_TRUNC` may have changed the attributes since the walk saw them (an answer with
        // content carries none).
        let attr = match contents {
            Some(_) => attr,
            None => self.fs.getattr(self.cred, attr.ino)?,
        };
        let fd = self.session.insert(description)?;
        if let Some(contents) = contents
            && let Some((version, len)) = first_bytes(
                &**self.fs,
                self.cred,
                contents,
                (attr.ino, fh),
                (prefetch, known),
                scratch,
            )
        {
            return Ok(Response::Prefetched {
                fd,
                ino: attr.ino,
                slot: contents.slot(attr.ino),
                version,
                data: &scratch[..len],
            });
        }
        // A directory opened for reading by a client that keeps listings: where its listing's
        // changes are counted.
        if let Some(contents) = self.contents
            && prefetch > 0
            && options.read
            && attr.kind == FileType::Directory
        {
            return Ok(Response::OpenedDir {
                fd,
                attr,
                slot: contents.slot(attr.ino),
            });
        }
        Ok(Response::Opened { fd, attr })
    }

    /// `open` with `O_PATH`: the walk's checks only, a description that grants nothing.
    fn open_path(
        &self,
        at: Option<u32>,
        path: &[u8],
        options: OpenOptions,
    ) -> Result<Response<'static>> {
        let attr = self.resolve(at, path, !options.nofollow)?;
        if options.directory && attr.kind != FileType::Directory {
            return Err(Errno::NotADirectory);
        }
        // An empty request: the engine checks no permission for it.
        let flags = OpenFlags {
            directory: options.directory,
            ..OpenFlags::default()
        };
        let fh = self.fs.open(self.cred, attr.ino, flags)?;
        let cursor = Cursor::at_start(fh);
        let grant = Grant {
            path_only: true,
            ..Grant::default()
        };
        let description = Arc::new(Description::new(
            Arc::clone(self.fs),
            attr.ino,
            attr.kind,
            grant,
            cursor,
        ));
        let fd = self.session.insert(description)?;
        Ok(Response::Opened { fd, attr })
    }

    /// Swaps `checked`, the handle whose open checked a request's permissions, for one of the
    /// same inode that grants neither reading nor writing.
    fn bare_handle(&self, ino: Ino, checked: btfuse_core::Fh) -> Result<btfuse_core::Fh> {
        let bare = self.fs.open(self.cred, ino, OpenFlags::default());
        if let Err(e) = self.fs.release(checked) {
            log::warn!("releasing checking handle {checked:?}: {e}");
        }
        bare
    }

    /// `open` with `O_CREAT`: creates the last component unless it exists, following a
    /// symbolic link there unless `O_EXCL` or `O_NOFOLLOW` (Linux `open_last_lookups`), so a
    /// dangling link creates its target.
    fn open_create(
        &self,
        at: Option<u32>,
        path: &[u8],
        options: OpenOptions,
        mode: u32,
    ) -> Result<(Attr, btfuse_core::Fh)> {
        let mut start = self.start(at, path)?;
        let mut path = Cow::Borrowed(path);
        for followed in 0..=MAX_SYMLINKS {
            let walk =
                path::resolve_parent_at(&**self.fs, self.cred, Mount::Elsewhere, start, &path);
            let parent = match walk? {
                Resolved::Inside(parent) => parent,
                Resolved::Outside(escape) => {
                    let links = escape.links + followed;
                    return Err(self.leave(Escape { links, ..escape }));
                }
            };
            // `.` and `..` go to the engine, which answers `EEXIST` or `EISDIR` as Linux.
            if !is_dots(&parent.name) {
                if parent.trailing_slash {
                    return Err(Errno::IsADirectory);
                }
                match self.fs.find(self.cred, parent.dir.ino, &parent.name) {
                    Ok(link) if link.kind == FileType::Symlink => {
                        if options.exclusive {
                            return Err(Errno::Exists);
                        }
                        if options.nofollow {
                            return Err(Errno::TooManySymlinks);
                        }
                        let content = self.fs.readlink(self.cred, link.ino)?;
                        if content.first() == Some(&b'/') {
                            let links = followed + 1;
                            return Err(self.leave(Escape {
                                path: content,
                                links,
                            }));
                        }
                        path = Cow::Owned(content);
                        start = parent.dir.ino;
                        continue;
                    }
                    Ok(_) | Err(Errno::NotFound) => {}
                    Err(e) => return Err(e),
                }
            }
            let flags = options.engine_flags();
            let (attr, fh) =
                self.fs
                    .create(self.cred, parent.dir.ino, &parent.name, mode, flags)?;
            // The handle keeps the inode; the lookup `create` counted is not needed.
            self.fs.forget(attr.ino, 1);
            return Ok((attr, fh));
        }
        Err(Errno::TooManySymlinks)
    }

    /// `mkdir`, `mkdirat`. A trailing slash is allowed: it names a directory.
    fn mkdir(&self, at: Option<u32>, path: &[u8], mode: u32) -> Result<Response<'static>> {
        let parent = self.parent(at, path)?;
        let attr = self
            .fs
            .mkdir(self.cred, parent.dir.ino, &parent.name, mode)?;
        self.fs.forget(attr.ino, 1);
        Ok(Response::Ok)
    }

    /// `rmdir`, `unlinkat(AT_REMOVEDIR)`.
    fn rmdir(&self, at: Option<u32>, path: &[u8]) -> Result<Response<'static>> {
        // Linux `do_rmdir`: a path of slashes only is the root of the walk, busy for anyone,
        // before any directory is searched.
        if !path.is_empty() && path.iter().all(|&b| b == b'/') {
            return Err(Errno::Busy);
        }
        let parent = self.parent(at, path)?;
        self.fs.rmdir(self.cred, parent.dir.ino, &parent.name)?;
        Ok(Response::Ok)
    }

    /// `unlink`, `unlinkat`.
    fn unlink(&self, at: Option<u32>, path: &[u8]) -> Result<Response<'static>> {
        let parent = self.parent(at, path)?;
        if parent.trailing_slash && !is_dots(&parent.name) {
            // Linux `do_unlinkat`: a name with a slash after it is a directory or nothing.
            let victim = self.fs.find(self.cred, parent.dir.ino, &parent.name)?;
            return Err(if victim.kind == FileType::Directory {
                Errno::IsADirectory
            } else {
                Errno::NotADirectory
            });
        }
        self.fs.unlink(self.cred, parent.dir.ino, &parent.name)?;
        Ok(Response::Ok)
    }

    /// `rename`, `renameat`, `renameat2`.
    fn rename(
        &self,
        (old_at, old_path): (Option<u32>, &[u8]),
        (new_at, new_path): (Option<u32>, &[u8]),
        mode: RenameMode,
    ) -> Result<Response<'static>> {
        let from = self.parent(old_at, old_path)?;
        let to = self.second(self.parent(new_at, new_path))?;
        let slashes = from.trailing_slash || to.trailing_slash;
        // `.` and `..` are the engine's `EBUSY`, which Linux checks before slashes.
        if slashes && !is_dots(&from.name) && !is_dots(&to.name) {
            self.check_rename_slashes(&from, &to, mode)?;
        }
        self.fs.rename(
            self.cred,
            from.dir.ino,
            &from.name,
            to.dir.ino,
            &to.name,
            mode,
        )?;
        Ok(Response::Ok)
    }

    /// Linux `do_renameat2`'s checks on names written with a slash after them: only a
    /// directory may be named so, and they come after the lookups of both names.
    fn check_rename_slashes(&self, from: &Parent, to: &Parent, mode: RenameMode) -> Result<()> {
        let source = self.fs.find(self.cred, from.dir.ino, &from.name)?;
        let target = match self.fs.find(self.cred, to.dir.ino, &to.name) {
            Ok(attr) => Some(attr),
            Err(Errno::NotFound) => None,
            Err(e) => return Err(e),
        };
        if mode == RenameMode::NoReplace && target.is_some() {
            return Err(Errno::Exists);
        }
        if mode == RenameMode::Exchange {
            let target = target.ok_or(Errno::NotFound)?;
            if target.kind != FileType::Directory && to.trailing_slash {
                return Err(Errno::NotADirectory);
            }
        }
        if source.kind != FileType::Directory
            && (from.trailing_slash || (mode != RenameMode::Exchange && to.trailing_slash))
        {
            return Err(Errno::NotADirectory);
        }
        Ok(())
    }

    /// `link`, `linkat` (the old name with or without `AT_SYMLINK_FOLLOW`, or a description
    /// for `AT_EMPTY_PATH`).
    fn link(
        &self,
        old: &Target<'_>,
        new_at: Option<u32>,
        new_path: &[u8],
    ) -> Result<Response<'static>> {
        let source = self.node(old)?;
        let parent = self.second(self.parent(new_at, new_path))?;
        self.check_new_name(&parent)?;
        let attr = self
            .fs
            .link(self.cred, source.ino, parent.dir.ino, &parent.name)?;
        self.fs.forget(attr.ino, 1);
        Ok(Response::Ok)
    }

    /// `symlink`, `symlinkat`.
    fn symlink(&self, target: &[u8], at: Option<u32>, path: &[u8]) -> Result<Response<'static>> {
        // Linux copies the content in (`getname`) before it walks the new name.
        if target.len() >= PATH_MAX {
            return Err(Errno::NameTooLong);
        }
        let parent = self.parent(at, path)?;
        self.check_new_name(&parent)?;
        let attr = self
            .fs
            .symlink(self.cred, parent.dir.ino, &parent.name, target)?;
        self.fs.forget(attr.ino, 1);
        Ok(Response::Ok)
    }

    /// `readlink`, `readlinkat`: the content, cut to `max` bytes without a NUL.
    fn readlink<'s>(
        &self,
        at: Option<u32>,
        path: &[u8],
        max: u32,
        scratch: &'s mut Vec<u8>,
    ) -> Result<Response<'s>> {
        // Linux `do_readlinkat` refuses an empty buffer before it looks at the path.
        if max == 0 {
            return Err(Errno::InvalidArgument);
        }
        let link = self.resolve(at, path, false)?;
        let content = self.fs.readlink(self.cred, link.ino)?;
        let len = content.len().min(max as usize).min(ring::MAX_IO);
        scratch.clear();
        scratch.extend_from_slice(content.get(..len).unwrap_or_default());
        Ok(Response::Data(scratch))
    }

    /// `truncate`, `ftruncate`.
    fn truncate(&self, target: &Target<'_>, size: u64) -> Result<Response<'static>> {
        if size > MAX_OFFSET {
            return Err(Errno::InvalidArgument);
        }
        let set = SetAttr {
            size: Some(size),
            ..SetAttr::default()
        };
        match *target {
            Target::Fd(fd) => {
                let description = self.file(fd)?;
                if description.kind != FileType::RegularFile || !description.grant.write {
                    return Err(Errno::InvalidArgument);
                }
                // The writable handle stands for the permission (Linux checks none).
                let cursor = description.cursor();
                self.fs
                    .setattr(self.cred, description.ino, &set, Some(cursor.fh))?;
            }
            Target::Path { at, path, follow } => {
                let attr = self.resolve(at, path, follow)?;
                self.fs.setattr(self.cred, attr.ino, &set, None)?;
            }
        }
        Ok(Response::Ok)
    }

    /// `chmod`, `fchmod`, `fchmodat`.
    fn chmod(&self, target: &Target<'_>, mode: u32) -> Result<Response<'static>> {
        let node = self.node(target)?;
        // Linux 6.6 `notify_change`: the mode of a symbolic link cannot change.
        if node.kind == FileType::Symlink {
            return Err(Errno::NotSupported);
        }
        let set = SetAttr {
            mode: Some(mode),
            ..SetAttr::default()
        };
        self.fs.setattr(self.cred, node.ino, &set, None)?;
        Ok(Response::Ok)
    }

    /// `chown(f, -1, -1)`: Linux turns the set-ID bits it would clear into a mode change,
    /// which only the owner (or root) may make (`EPERM`). The engine cannot tell this request
    /// from the kernel's own request to drop the bits before a write, which FUSE sends with
    /// the same fields, so it lets a caller who may write the file ask; the ring can tell, and
    /// refuses as Linux does.
    fn check_keeps_set_id(&self, target: &Target<'_>) -> Result<()> {
        let node = self.node(target)?;
        let attr = self.fs.getattr(self.cred, node.ino)?;
        if self.cred.is_root() || self.cred.uid == attr.uid || attr.kind == FileType::Directory {
            return Ok(());
        }
        if self.cred.setid_bits_chown_clears(attr.perm, attr.gid) != 0 {
            return Err(Errno::NotPermitted);
        }
        Ok(())
    }

    /// An attribute change with no size: owner, group or times.
    fn setattr(&self, target: &Target<'_>, set: &SetAttr) -> Result<Response<'static>> {
        let node = self.node(target)?;
        self.fs.setattr(self.cred, node.ino, set, None)?;
        Ok(Response::Ok)
    }

    /// `setxattr` and friends.
    fn setxattr(
        &self,
        target: &Target<'_>,
        name: &[u8],
        value: &[u8],
        mode: XattrMode,
    ) -> Result<Response<'static>> {
        let node = self.node(target)?;
        self.fs.setxattr(self.cred, node.ino, name, value, mode)?;
        Ok(Response::Ok)
    }

    // Descriptor calls.

    /// `read` at the description's offset, which moves past what was read (`offset` `None`),
    /// or `pread` at `offset`.
    fn read<'s>(
        &self,
        fd: u32,
        offset: Option<u64>,
        len: u32,
        scratch: &'s mut Vec<u8>,
    ) -> Result<Response<'s>> {
        let description = self.session.get(fd)?;
        if !description.grant.read {
            return Err(Errno::BadHandle);
        }
        let mut cursor = match description.route() {
            Route::Engine(cursor) => cursor,
            Route::Kernel(file) => {
                let buf = fill(scratch, len as usize);
                let n = match offset {
                    None => (&*file).read(buf),
                    Some(at) => file.read_at(buf, at),
                };
                return data(buf, n.map_err(|e| kernel_errno(&e))?);
            }
        };
        let at = offset.unwrap_or(cursor.offset);
        let len = len as usize;
        check_area(at, len)?;
        let buf = fill(scratch, len);
        let n = self.fs.read(self.cred, cursor.fh, at, buf)?;
        if offset.is_none() {
            cursor.offset = at.saturating_add(n as u64);
        }
        data(buf, n)
    }

    /// `write` at the description's offset (`offset` `None`), or `pwrite` at `offset`; either
    /// at the end of the file for an `O_APPEND` description, as Linux does.
    fn write(&self, fd: u32, offset: Option<u64>, data: &[u8]) -> Result<Response<'static>> {
        let description = self.session.get(fd)?;
        if !description.grant.write {
            return Err(Errno::BadHandle);
        }
        let mut cursor = match description.route() {
            Route::Engine(cursor) => cursor,
            Route::Kernel(file) => {
                let n = match offset {
                    None => (&*file).write(data),
                    Some(at) => file.write_at(data, at),
                };
                return n
                    .map(|n| Response::Size(n as u64))
                    .map_err(|e| kernel_errno(&e));
            }
        };
        let at = offset.unwrap_or(cursor.offset);
        check_area(at, data.len())?;
        let (n, end) = self.fs.write(self.cred, cursor.fh, at, data)?;
        // An empty write leaves the offset alone, even with `O_APPEND` (Linux
        // `generic_write_checks` stops before it moves the position to the end).
        if offset.is_none() && n > 0 {
            cursor.offset = end;
        }
        Ok(Response::Size(n as u64))
    }

    /// `copy_file_range` between two engine files: read and written through the engine a
    /// block of `MAX_IO` at a time, with Linux's checks (`vfs_copy_file_range`): both regular
    /// files (`EISDIR` for a directory, else `EINVAL`), read and write access and no
    /// `O_APPEND` on the output (`EBADF`), ranges within `loff_t` (`EINVAL`) and not
    /// overlapping within one file (`EINVAL`). A description handed to the kernel is
    /// `EOPNOTSUPP` (the client then copies with reads and writes). Each description's offset
    /// is read and moved under its own lock, never both at once: two copies in opposite
    /// directions cannot wait for each other.
    fn copy_range(
        &self,
        (fd_in, off_in): (u32, Option<u64>),
        (fd_out, off_out): (u32, Option<u64>),
        len: u64,
        scratch: &mut Vec<u8>,
    ) -> Result<Response<'static>> {
        let input = self.file(fd_in)?;
        let output = self.file(fd_out)?;
        if !input.grant.read || !output.grant.write {
            return Err(Errno::BadHandle);
        }
        match (input.kind, output.kind) {
            (FileType::Directory, _) | (_, FileType::Directory) => {
                return Err(Errno::IsADirectory);
            }
            (FileType::RegularFile, FileType::RegularFile) => {}
            _ => return Err(Errno::InvalidArgument),
        }
        // (offset to use, handle) of a description, its lock released at once.
        let position = |description: &Description<F>, given: Option<u64>| match description.route()
        {
            Route::Engine(cursor) => Ok((given.unwrap_or(cursor.offset), cursor.fh, cursor.append)),
            Route::Kernel(_) => Err(Errno::NotSupported),
        };
        let (from, fh_in, _) = position(&input, off_in)?;
        let (to, fh_out, append) = position(&output, off_out)?;
        if append {
            return Err(Errno::BadHandle);
        }
        let len = len.min(MAX_OFFSET);
        let within = |at: u64| at.checked_add(len).is_some_and(|end| end <= MAX_OFFSET);
        if !within(from) || !within(to) {
            return Err(Errno::InvalidArgument);
        }
        // Linux `generic_copy_file_checks`: the count stops at the input's end before the
        // overlap is judged.
        let size_in = self.fs.getattr(self.cred, input.ino)?.size;
        let len = len.min(size_in.saturating_sub(from));
        if input.ino == output.ino && from < to + len && to < from + len {
            return Err(Errno::InvalidArgument);
        }
        let mut done = 0u64;
        while done < len {
            let chunk = usize::try_from(len - done).unwrap_or(usize::MAX);
            let buf = fill(scratch, chunk);
            let n = self.fs.read(self.cred, fh_in, from + done, buf)?;
            if n == 0 {
                break;
            }
            let written = match self.fs.write(self.cred, fh_out, to + done, &buf[..n]) {
                Ok((written, _)) => written,
                // What was copied stands, as a short copy (Linux returns the count).
                Err(_) if done > 0 => break,
                Err(e) => return Err(e),
            };
            done += written as u64;
            if written < n {
                break;
            }
        }
        if done > 0 {
            if off_in.is_none() {
                input.cursor().offset = from + done;
            }
            if off_out.is_none() {
                output.cursor().offset = to + done;
            }
        }
        Ok(Response::Size(done))
    }

    /// `lseek`; on a directory, `telldir`, `seekdir` and `rewinddir`.
    fn lseek(&self, fd: u32, offset: i64, whence: Whence) -> Result<Response<'static>> {
        let description = self.file(fd)?;
        let mut cursor = match description.route() {
            Route::Engine(cursor) => cursor,
            Route::Kernel(file) => {
                let whence = match whence {
                    Whence::Set => libc::SEEK_SET,
                    Whence::Cur => libc::SEEK_CUR,
                    Whence::End => libc::SEEK_END,
                    Whence::Data => libc::SEEK_DATA,
                    Whence::Hole => libc::SEEK_HOLE,
                };
                return crate::sys::lseek(file.as_raw_fd(), offset, whence)
                    .map(Response::Offset)
                    .map_err(|e| kernel_errno(&e));
            }
        };
        let position = match (description.kind, whence) {
            (_, Whence::Set) => seek_to(0, offset)?,
            (_, Whence::Cur) => seek_to(cursor.offset, offset)?,
            (FileType::Directory, Whence::End | Whence::Data | Whence::Hole) => {
                return Err(Errno::InvalidArgument);
            }
            (_, Whence::End) => {
                let size = self.fs.getattr(self.cred, description.ino)?.size;
                seek_to(size, offset)?
            }
            (_, Whence::Data | Whence::Hole) => {
                // tmpfs: a negative start is past nothing, so there is no data or hole there.
                let from = u64::try_from(offset).map_err(|_| Errno::NoSuchDeviceOrAddress)?;
                let how = if whence == Whence::Data {
                    SeekWhence::Data
                } else {
                    SeekWhence::Hole
                };
                self.fs.lseek(self.cred, cursor.fh, from, how)?
            }
        };
        cursor.offset = position;
        Ok(Response::Offset(position))
    }

    /// `fallocate`.
    fn fallocate(
        &self,
        fd: u32,
        mode: FallocateMode,
        offset: u64,
        len: u64,
    ) -> Result<Response<'static>> {
        let description = self.file(fd)?;
        // Linux `vfs_fallocate` checks the range before the description's access.
        if offset > MAX_OFFSET || len == 0 || len > MAX_OFFSET {
            return Err(Errno::InvalidArgument);
        }
        if !description.grant.write {
            return Err(Errno::BadHandle);
        }
        let cursor = description.cursor();
        self.fs.fallocate(self.cred, cursor.fh, mode, offset, len)?;
        Ok(Response::Ok)
    }

    /// `getdents64`: the entries after the description's cookie that fit in `max` bytes; the
    /// cookie moves past them.
    fn getdents<'s>(&self, fd: u32, max: u32, scratch: &'s mut Vec<u8>) -> Result<Response<'s>> {
        let description = self.session.get(fd)?;
        // Listing is reading: only a description whose open checked read permission may
        // (Linux `iterate_dir` wants `FMODE_READ`; an `O_PATH` one is not even a file).
        if !description.grant.read {
            return Err(Errno::BadHandle);
        }
        if description.kind != FileType::Directory {
            return Err(Errno::NotADirectory);
        }
        let mut cursor = description.cursor();
        // Linux `iterate_dir`: a directory removed since it was opened lists nothing.
        if self.fs.getattr(self.cred, description.ino)?.nlink == 0 {
            return Err(Errno::NotFound);
        }
        let mut builder = DirentBuilder::new(fill(scratch, max as usize));
        let mut last = None;
        let mut full = false;
        self.fs
            .readdir(self.cred, cursor.fh, cursor.offset, &mut |entry| {
                match builder.push(&entry) {
                    Ok(true) => {
                        last = Some(entry.cookie);
                        true
                    }
                    Ok(false) => {
                        full = true;
                        false
                    }
                    Err(e) => {
                        // The engine's names are valid entry names; one that is not is
                        // skipped rather than allowed to stop the listing forever.
                        log::warn!("skipping directory entry {:?}: {e}", entry.name);
                        last = Some(entry.cookie);
                        true
                    }
                }
            })?;
        if full && builder.is_empty() {
            return Err(Errno::InvalidArgument);
        }
        if let Some(cookie) = last {
            cursor.offset = cookie;
        }
        Ok(Response::Dirents(builder.finish()))
    }

    /// `fcntl(F_SETFL)`.
    fn set_flags(&self, fd: u32, append: bool, nonblock: bool) -> Result<Response<'static>> {
        let description = self.file(fd)?;
        let mut cursor = description.cursor();
        // Append mode only matters to writes, and the engine fixes it when a handle opens.
        if append != cursor.append && description.grant.write {
            let flags = OpenFlags {
                read: description.grant.read,
                write: description.grant.write,
                append,
                ..OpenFlags::default()
            };
            // The description's access was granted when it opened; Linux does not check it
            // again, so neither may the reopen: it asks with the engine's full rights.
            let fh = self.fs.open(&Credentials::root(), description.ino, flags)?;
            let old = std::mem::replace(&mut cursor.fh, fh);
            if let Err(e) = self.fs.release(old) {
                log::warn!("releasing handle {old:?} replaced by F_SETFL: {e}");
            }
        }
        cursor.append = append;
        cursor.nonblock = nonblock;
        drop(cursor);
        if let Route::Kernel(file) = description.route() {
            let fd = file.as_raw_fd();
            let old = crate::sys::status_flags(fd).map_err(|e| kernel_errno(&e))?;
            let mut flags = old & !(libc::O_APPEND | libc::O_NONBLOCK);
            if append {
                flags |= libc::O_APPEND;
            }
            if nonblock {
                flags |= libc::O_NONBLOCK;
            }
            crate::sys::set_status_flags(fd, flags).map_err(|e| kernel_errno(&e))?;
        }
        Ok(Response::Ok)
    }
}

/// `Hello`: the client must speak this server's wire version.
fn hello(version: u8) -> Result<Response<'static>> {
    if version == ring::VERSION {
        Ok(Response::Ok)
    } else {
        Err(Errno::InvalidArgument)
    }
}

/// Whether `name` is `.` or `..`.
fn is_dots(name: &[u8]) -> bool {
    name == b"." || name == b".."
}

/// Linux `rw_verify_area`: a read or write of `len` bytes at `offset` must end at or before
/// `i64::MAX` (`EINVAL`).
fn check_area(offset: u64, len: usize) -> Result<()> {
    let end = u64::try_from(len)
        .ok()
        .and_then(|len| offset.checked_add(len));
    match end {
        Some(end) if end <= MAX_OFFSET => Ok(()),
        _ => Err(Errno::InvalidArgument),
    }
}

/// `base + delta` as a file position: `EINVAL` below 0 or past `i64::MAX` (Linux
/// `vfs_setpos`).
fn seek_to(base: u64, delta: i64) -> Result<u64> {
    base.checked_add_signed(delta)
        .filter(|&position| position <= MAX_OFFSET)
        .ok_or(Errno::InvalidArgument)
}

/// Reads up to `max` bytes of `ino` from offset 0 through handle `fh` into `scratch`, with
/// the content version that vouches for them: `None` when a change was under way or came
/// during the read (the client then reads as usual), or the read failed. When the client
/// already holds `ino`'s bytes at the current version (`known`), none are sent (length 0);
/// one byte is read all the same, so that the access counts. The read counts as one (access
/// time), as the client's first `read` will be served by what it holds.
fn first_bytes<F: Filesystem>(
    fs: &F,
    cred: &Credentials,
    contents: &ContentTable,
    (ino, fh): (Ino, btfuse_core::Fh),
    (max, known): (u32, (Ino, u64)),
    scratch: &mut Vec<u8>,
) -> Option<(u64, usize)> {
    let before = contents.version(ino);
    if !is_settled(before) {
        return None;
    }
    let current = known == (ino, before);
    let buf = fill(scratch, if current { 1 } else { max as usize });
    let len = fs.read(cred, fh, 0, buf).ok()?;
    let len = if current { 0 } else { len };
    (contents.version(ino) == before).then_some((before, len))
}

/// The first `len` bytes (at most `MAX_IO`) of `scratch`, which grows if it is shorter. What
/// it held is not cleared: callers answer with only the bytes the engine wrote over it.
fn fill(scratch: &mut Vec<u8>, len: usize) -> &mut [u8] {
    let len = len.min(ring::MAX_IO);
    if scratch.len() < len {
        scratch.resize(len, 0);
    }
    let (buf, _) = scratch.split_at_mut(len);
    buf
}

/// `Data` with the first `n` bytes of `buf`; `EIO` if the engine claimed more than it had.
fn data(buf: &[u8], n: usize) -> Result<Response<'_>> {
    buf.get(..n).map(Response::Data).ok_or(Errno::Io)
}

/// Serves an xattr query with a size probe: `max` 0 asks only for the size (`Size`); otherwise
/// `get` fills a buffer of `max` bytes (`ERANGE` if it is too small) and the bytes are `Data`.
fn sized<'s>(
    max: u32,
    scratch: &'s mut Vec<u8>,
    get: impl FnOnce(&mut [u8]) -> Result<usize>,
) -> Result<Response<'s>> {
    if max == 0 {
        return get(&mut []).map(|n| Response::Size(n as u64));
    }
    let buf = fill(scratch, max as usize);
    let n = get(buf)?;
    data(buf, n)
}

mod locks;
#[cfg(test)]
mod tests;
