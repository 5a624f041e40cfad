//! One [`Op`] applied to one side: its targets resolved on that side, its answer turned into
//! an [`Outcome`] the two sides can be compared by.

use btfuse_core::{
    Attr, Credentials, DirEntry, Errno, Fh, FileType, Filesystem, Ino, StatFs, Timestamp,
};
use std::fmt;

use super::{Bytes, HandleSlot, Op, Target};

/// A handle number no filesystem hands out in a test: stands for "never opened".
pub(super) const BOGUS_FH: Fh = Fh(u64::MAX);

/// Which of the two filesystems.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Side {
    A,
    B,
}

/// One handle opened by the same step on both sides.
pub(super) struct OpenPair {
    pub(super) a: Fh,
    pub(super) b: Fh,
    pub(super) ino: Ino,
}

impl OpenPair {
    fn get(&self, side: Side) -> Fh {
        match side {
            Side::A => self.a,
            Side::B => self.b,
        }
    }
}

/// One entry as `readdir` gave it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub(super) struct Listed {
    pub(super) ino: u64,
    pub(super) cookie: u64,
    pub(super) kind: FileType,
    pub(super) name: Bytes,
}

/// What one call returned, in a form the two sides can be compared by.
#[derive(Clone, PartialEq, Eq, Debug)]
pub(super) enum Outcome {
    Done,
    Attr(AttrView),
    /// A handle was opened on this inode (`open`), or created with these attributes.
    Opened(Ino),
    Created(AttrView),
    /// `read`, `getxattr`, `listxattr`: the count and the bytes of the buffer it covers.
    Count(usize, Bytes),
    Written(usize, u64),
    Offset(u64),
    Target(Bytes),
    Entries(Vec<Listed>),
    StatFs(StatFs),
    /// `SEEK_DATA`/`SEEK_HOLE` pairs from the start of a file, and the error that ended them.
    Segments(Vec<(u64, u64)>, Option<Errno>),
    Failed(Errno),
    /// The operation's target path did not resolve.
    Unresolved(Errno),
}

/// [`Attr`] with a compact `Debug`: permissions in octal, times as `secs.nanos`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) struct AttrView(pub(super) Attr);

impl fmt::Debug for AttrView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let a = &self.0;
        let time = |t: Timestamp| format!("{}.{:09}", t.secs, t.nanos);
        write!(
            f,
            "{{ino {} {:?} 0o{:o} nlink {} uid {} gid {} rdev {:#x} size {} blocks {} blksize {} \
             atime {} mtime {} ctime {}}}",
            a.ino.0,
            a.kind,
            a.perm,
            a.nlink,
            a.uid,
            a.gid,
            a.rdev,
            a.size,
            a.blocks,
            a.blksize,
            time(a.atime),
            time(a.mtime),
            time(a.ctime),
        )
    }
}

pub(super) fn attr_outcome(attr: Attr) -> Outcome {
    Outcome::Attr(AttrView(attr))
}

pub(super) fn settle(result: btfuse_core::Result<Outcome>) -> Outcome {
    result.unwrap_or_else(Outcome::Failed)
}

/// Walks `target` from the root with `find` as root.
pub(super) fn resolve(fs: &dyn Filesystem, target: &Target) -> btfuse_core::Result<Ino> {
    match target {
        Target::Ino(ino) => Ok(Ino(*ino)),
        Target::Path(names) => {
            let root = Credentials::root();
            let mut ino = Ino::ROOT;
            for name in names {
                ino = fs.find(&root, ino, &name.0)?.ino;
            }
            Ok(ino)
        }
    }
}

pub(super) fn slot_index(handles: &[OpenPair], slot: HandleSlot) -> Option<usize> {
    if handles.is_empty() || slot.0 >= HandleSlot::BOGUS {
        return None;
    }
    Some(usize::from(slot.0) % handles.len())
}

pub(super) fn collect_entries(
    fs: &dyn Filesystem,
    cred: &Credentials,
    fh: Fh,
    cookie: u64,
    limit: Option<usize>,
) -> btfuse_core::Result<Vec<Listed>> {
    let mut listed = Vec::new();
    fs.readdir(cred, fh, cookie, &mut |entry: DirEntry<'_>| {
        listed.push(Listed {
            ino: entry.ino.0,
            cookie: entry.cookie,
            kind: entry.kind,
            name: Bytes::of(entry.name),
        });
        limit.is_none_or(|limit| listed.len() < limit)
    })?;
    Ok(listed)
}

/// Applies `op` to one side; returns what happened and the handle it opened, if any.
pub(super) fn apply(
    fs: &dyn Filesystem,
    side: Side,
    handles: &[OpenPair],
    op: &Op,
) -> (Outcome, Option<Fh>) {
    let fh =
        |slot: HandleSlot| slot_index(handles, slot).map_or(BOGUS_FH, |i| handles[i].get(side));
    macro_rules! resolved {
        ($target:expr) => {
            match resolve(fs, $target) {
                Ok(ino) => ino,
                Err(e) => return (Outcome::Unresolved(e), None),
            }
        };
    }
    let outcome = match op {
        Op::Lookup { user, parent, name } => {
            let parent = resolved!(parent);
            settle(
                fs.lookup(&user.credentials(), parent, &name.0)
                    .map(attr_outcome),
            )
        }
        Op::Forget { target, nlookup } => {
            fs.forget(resolved!(target), *nlookup);
            Outcome::Done
        }
        Op::Getattr { user, target } => settle(
            fs.getattr(&user.credentials(), resolved!(target))
                .map(attr_outcome),
        ),
        Op::Setattr {
            user,
            target,
            change,
            handle,
        } => {
            let ino = resolved!(target);
            let fh = handle
                .and_then(|slot| slot_index(handles, slot))
                .filter(|&i| handles[i].ino == ino)
                .map(|i| handles[i].get(side));
            let set = change.to_set_attr();
            settle(
                fs.setattr(&user.credentials(), ino, &set, fh)
                    .map(attr_outcome),
            )
        }
        Op::Mknod {
            user,
            parent,
            name,
            kind,
            mode,
            rdev,
        } => {
            let parent = resolved!(parent);
            let result = fs.mknod(&user.credentials(), parent, &name.0, *kind, mode.0, *rdev);
            settle(result.map(attr_outcome))
        }
        Op::Mkdir {
            user,
            parent,
            name,
            mode,
        } => {
            let parent = resolved!(parent);
            settle(
                fs.mkdir(&user.credentials(), parent, &name.0, mode.0)
                    .map(attr_outcome),
            )
        }
        Op::Create {
            user,
            parent,
            name,
            mode,
            flags,
        } => {
            let parent = resolved!(parent);
            match fs.create(&user.credentials(), parent, &name.0, mode.0, flags.0) {
                Ok((attr, fh)) => return (Outcome::Created(AttrView(attr)), Some(fh)),
                Err(e) => Outcome::Failed(e),
            }
        }
        Op::Unlink { user, parent, name } => {
            let parent = resolved!(parent);
            settle(
                fs.unlink(&user.credentials(), parent, &name.0)
                    .map(|()| Outcome::Done),
            )
        }
        Op::Rmdir { user, parent, name } => {
            let parent = resolved!(parent);
            settle(
                fs.rmdir(&user.credentials(), parent, &name.0)
                    .map(|()| Outcome::Done),
            )
        }
        Op::Rename {
            user,
            parent,
            name,
            new_parent,
            new_name,
            mode,
        } => {
            let (parent, new_parent) = (resolved!(parent), resolved!(new_parent));
            let cred = user.credentials();
            let result = fs.rename(&cred, parent, &name.0, new_parent, &new_name.0, *mode);
            settle(result.map(|()| Outcome::Done))
        }
        Op::Link {
            user,
            target,
            new_parent,
            new_name,
        } => {
            let (ino, new_parent) = (resolved!(target), resolved!(new_parent));
            let result = fs.link(&user.credentials(), ino, new_parent, &new_name.0);
            settle(result.map(attr_outcome))
        }
        Op::Symlink {
            user,
            parent,
            name,
            link,
        } => {
            let parent = resolved!(parent);
            settle(
                fs.symlink(&user.credentials(), parent, &name.0, &link.0)
                    .map(attr_outcome),
            )
        }
        Op::Readlink { user, target } => {
            let ino = resolved!(target);
            settle(
                fs.readlink(&user.credentials(), ino)
                    .map(|t| Outcome::Target(Bytes(t))),
            )
        }
        Op::Open {
            user,
            target,
            flags,
        } => {
            let ino = resolved!(target);
            match fs.open(&user.credentials(), ino, flags.0) {
                Ok(fh) => return (Outcome::Opened(ino), Some(fh)),
                Err(e) => Outcome::Failed(e),
            }
        }
        Op::Release { handle } => settle(fs.release(fh(*handle)).map(|()| Outcome::Done)),
        Op::Read {
            user,
            handle,
            offset,
            len,
        } => {
            let mut buf = vec![0; *len];
            settle(
                fs.read(&user.credentials(), fh(*handle), *offset, &mut buf)
                    .map(|n| Outcome::Count(n, Bytes::of(&buf[..n.min(buf.len())]))),
            )
        }
        Op::Write {
            user,
            handle,
            offset,
            data,
        } => {
            let result = fs.write(&user.credentials(), fh(*handle), *offset, &data.bytes());
            settle(result.map(|(n, end)| Outcome::Written(n, end)))
        }
        Op::Fallocate {
            user,
            handle,
            mode,
            offset,
            len,
        } => {
            let result = fs.fallocate(&user.credentials(), fh(*handle), *mode, *offset, *len);
            settle(result.map(|()| Outcome::Done))
        }
        Op::Lseek {
            user,
            handle,
            offset,
            whence,
        } => {
            let result = fs.lseek(&user.credentials(), fh(*handle), *offset, *whence);
            settle(result.map(Outcome::Offset))
        }
        Op::Readdir {
            user,
            handle,
            cookie,
            limit,
        } => {
            let result = collect_entries(fs, &user.credentials(), fh(*handle), *cookie, *limit);
            settle(result.map(Outcome::Entries))
        }
        Op::Statfs { user } => settle(fs.statfs(&user.credentials()).map(Outcome::StatFs)),
        Op::Getxattr {
            user,
            target,
            name,
            buf_len,
        } => {
            let ino = resolved!(target);
            let mut buf = vec![0; *buf_len];
            settle(
                fs.getxattr(&user.credentials(), ino, &name.0, &mut buf)
                    .map(|n| Outcome::Count(n, Bytes::of(&buf[..n.min(buf.len())]))),
            )
        }
        Op::Setxattr {
            user,
            target,
            name,
            value,
            mode,
        } => {
            let ino = resolved!(target);
            let result = fs.setxattr(&user.credentials(), ino, &name.0, &value.bytes(), *mode);
            settle(result.map(|()| Outcome::Done))
        }
        Op::Listxattr {
            user,
            target,
            buf_len,
        } => {
            let ino = resolved!(target);
            let mut buf = vec![0; *buf_len];
            settle(
                fs.listxattr(&user.credentials(), ino, &mut buf)
                    .map(|n| Outcome::Count(n, Bytes::of(&buf[..n.min(buf.len())]))),
            )
        }
        Op::Removexattr { user, target, name } => {
            let ino = resolved!(target);
            settle(
                fs.removexattr(&user.credentials(), ino, &name.0)
                    .map(|()| Outcome::Done),
            )
        }
        Op::Access { user, target, mask } => {
            let ino = resolved!(target);
            settle(
                fs.access(&user.credentials(), ino, mask.0)
                    .map(|()| Outcome::Done),
            )
        }
        Op::Fsync {
            user,
            handle,
            datasync,
        } => {
            let result = fs.fsync(&user.credentials(), fh(*handle), *datasync);
            settle(result.map(|()| Outcome::Done))
        }
        Op::Sleep { .. } => Outcome::Done,
    };
    (outcome, None)
}
