//! Responses: what the server answers, and the directory listing they may carry.

use super::codec::{Blob, Codec, Max, Reader, Sink, Str, Writer, check_str};
use super::{DecodeError, EncodeError, MAX_IO, OpenOptions};
use crate::path::MAX_SYMLINKS;
use crate::{Attr, DirEntry, Errno, FileType, Ino, NAME_MAX, PATH_MAX, StatFs};

/// A response; its header carries the tag of the request it answers.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Response<'a> {
    /// Success with nothing to report.
    Ok,
    /// Failure.
    Err(Errno),
    /// An inode's attributes (`Stat`).
    Attr(Attr),
    /// A new description and the attributes of what it opened (`Open`).
    Opened {
        /// The description's id, for the descriptor requests.
        fd: u32,
        /// The opened inode.
        attr: Attr,
    },
    /// A new description of a regular file and its first bytes (`Open` with `prefetch`). No
    /// attributes: the answer is kept small enough that, without bytes, it crosses between
    /// cores in one cache line.
    Prefetched {
        /// The description's id, for the descriptor requests.
        fd: u32,
        /// The opened inode, a regular file.
        ino: Ino,
        /// Where the server's content table counts the inode's changes. The table's slots are
        /// placed by a keyed hash the server alone knows, so a client learns which slot is a
        /// file's only from an open of it for reading that was allowed.
        slot: u32,
        /// The inode's content version when `data` was read: while the server's content
        /// table shows the same version for the inode, `data` is still its content.
        version: u64,
        /// Content from offset 0, as a `Pread` of `prefetch` bytes gave it: shorter than
        /// asked only at the end of the file. Empty, with `version` equal to the request's
        /// `known_version`, when the bytes the client named are still current.
        data: &'a [u8],
    },
    /// A new description of a directory opened for reading, with where the server's content
    /// table counts the changes to its listing (`Open` with `prefetch`, of a directory): a
    /// client that keeps a listing of it may use that while the slot shows the version it was
    /// read at. The slot is told only to an open that was allowed, as for `Prefetched`.
    OpenedDir {
        /// The description's id, for the descriptor requests.
        fd: u32,
        /// The opened directory's attributes.
        attr: Attr,
        /// Where the content table counts the changes to what the directory lists.
        slot: u32,
    },
    /// Bytes, at most `MAX_IO` (`Read`, `Pread`, `Readlink`, `GetXattr`, `ListXattr`).
    Data(&'a [u8]),
    /// A byte count (`Write`, `Pwrite`; `GetXattr` and `ListXattr` with `max` 0).
    Size(u64),
    /// A file offset (`Lseek`).
    Offset(u64),
    /// A new id for a description (`Dup`).
    Fd(u32),
    /// A description's flags (`GetFlags`).
    Flags(OpenOptions),
    /// Filesystem statistics (`Statfs`).
    StatFs(StatFs),
    /// Directory entries (`Getdents`).
    Dirents(DirentList<'a>),
    /// A token for [`Request::Attach`](super::Request::Attach) (`Fork`), or for
    /// [`Request::LockWait`](super::Request::LockWait) (`SetLock`, `LockWait`).
    Token(u64),
    /// A lock that stands in the way (`GetLock`).
    Lock {
        /// A write lock rather than a read lock.
        write: bool,
        /// Its first byte.
        start: u64,
        /// Its last byte (`i64::MAX`: to the end of the file).
        end: u64,
        /// The process that took it.
        pid: u32,
        /// Owned by an open file description (an OFD lock, whose `l_pid` reads -1).
        description: bool,
    },
    /// A path's attributes, or the error its walk ended with, and what the answer depends on
    /// (`StatStamped`): while the server's content table shows every stamp's version in its
    /// slot, the same request with the same identity gets the same answer.
    Stamped {
        /// The attributes, or the error.
        outcome: Result<Attr, Errno>,
        /// The slots of the directories the walk looked in and of the inode it reached, each
        /// with the attribute version it showed before the walk read anything there. Slots
        /// are told as for `Prefetched`: only about inodes the caller's walk reached.
        stamps: Stamps<'a>,
    },
    /// Every name of a directory with its attributes and stamp (`StatDir`).
    StampedDir {
        /// The slots of the directories the walk looked in and of the directory itself, each
        /// with the attribute version it showed before anything there was read: while they
        /// hold, the directory lists exactly `entries`.
        stamps: Stamps<'a>,
        /// The names, each with its attributes and its own stamp.
        entries: StampedEntries<'a>,
    },
    /// The walk of one of the request's paths left the served tree (an absolute symbolic
    /// link, or `..` above the root): the server did nothing, and the call goes on with
    /// `path` in the client's own namespace, as the client itself. Any request naming a path
    /// may get it.
    Outside {
        /// Which path left: `false` the request's first, `true` its second (the new name of
        /// `Rename` and `Link`).
        second: bool,
        /// Symbolic links followed before leaving, the one that led out included (at most
        /// `MAX_SYMLINKS`): the rest of the walk counts from here.
        links: u32,
        /// The path to go on with: absolute in the client's namespace, or relative to where
        /// the client sees the served root (then it starts with `..`). At most `PATH_MAX`
        /// bytes, no NUL.
        path: &'a [u8],
    },
}

mod kind {
    pub(super) const OK: u8 = 0x80;
    pub(super) const ERR: u8 = 0x81;
    pub(super) const ATTR: u8 = 0x82;
    pub(super) const OPENED: u8 = 0x83;
    pub(super) const DATA: u8 = 0x84;
    pub(super) const SIZE: u8 = 0x85;
    pub(super) const OFFSET: u8 = 0x86;
    pub(super) const FD: u8 = 0x87;
    pub(super) const FLAGS: u8 = 0x88;
    pub(super) const STATFS: u8 = 0x89;
    pub(super) const DIRENTS: u8 = 0x8a;
    pub(super) const TOKEN: u8 = 0x8b;
    pub(super) const PREFETCHED: u8 = 0x8c;
    pub(super) const OUTSIDE: u8 = 0x8d;
    pub(super) const LOCK: u8 = 0x8e;
    pub(super) const OPENED_DIR: u8 = 0x8f;
    pub(super) const STAMPED: u8 = 0x90;
    pub(super) const STAMPED_DIR: u8 = 0x91;
}

impl Response<'_> {
    /// The kind byte of this response's header (the opcode field of a response).
    pub const fn kind(&self) -> u8 {
        match self {
            Response::Ok => kind::OK,
            Response::Err(_) => kind::ERR,
            Response::Attr(_) => kind::ATTR,
            Response::Opened { .. } => kind::OPENED,
            Response::Data(_) => kind::DATA,
            Response::Size(_) => kind::SIZE,
            Response::Offset(_) => kind::OFFSET,
            Response::Fd(_) => kind::FD,
            Response::Flags(_) => kind::FLAGS,
            Response::StatFs(_) => kind::STATFS,
            Response::Dirents(_) => kind::DIRENTS,
            Response::Token(_) => kind::TOKEN,
            Response::Prefetched { .. } => kind::PREFETCHED,
            Response::Outside { .. } => kind::OUTSIDE,
            Response::Lock { .. } => kind::LOCK,
            Response::OpenedDir { .. } => kind::OPENED_DIR,
            Response::Stamped { .. } => kind::STAMPED,
            Response::StampedDir { .. } => kind::STAMPED_DIR,
        }
    }
}

type Data = Blob<MAX_IO>;
type Path = Str<PATH_MAX>;
type Links = Max<MAX_SYMLINKS>;

pub(super) fn put_response<S: Sink + ?Sized>(
    response: &Response<'_>,
    sink: &mut S,
) -> Result<(), DecodeError> {
    match response {
        Response::Ok => Ok(()),
        Response::Err(errno) => Errno::put(errno, sink),
        Response::Attr(attr) => Attr::put(attr, sink),
        Response::Opened { fd, attr } => {
            u32::put(fd, sink)?;
            Attr::put(attr, sink)
        }
        Response::Data(data) => Data::put(data, sink),
        Response::Size(n) | Response::Offset(n) | Response::Token(n) => u64::put(n, sink),
        Response::Fd(fd) => u32::put(fd, sink),
        Response::Flags(flags) => OpenOptions::put(flags, sink),
        Response::StatFs(statfs) => StatFs::put(statfs, sink),
        Response::Dirents(list) => DirentList::put(list, sink),
        Response::Prefetched {
            fd,
            ino,
            slot,
            version,
            data,
        } => {
            u32::put(fd, sink)?;
            u64::put(&ino.0, sink)?;
            u32::put(slot, sink)?;
            u64::put(version, sink)?;
            Data::put(data, sink)
        }
        Response::Outside {
            second,
            links,
            path,
        } => {
            bool::put(second, sink)?;
            Links::put(links, sink)?;
            Path::put(path, sink)
        }
        Response::Lock {
            write,
            start,
            end,
            pid,
            description,
        } => {
            bool::put(write, sink)?;
            u64::put(start, sink)?;
            u64::put(end, sink)?;
            u32::put(pid, sink)?;
            bool::put(description, sink)
        }
        Response::OpenedDir { fd, attr, slot } => {
            u32::put(fd, sink)?;
            Attr::put(attr, sink)?;
            u32::put(slot, sink)
        }
        Response::Stamped { outcome, stamps } => {
            bool::put(&outcome.is_ok(), sink)?;
            match outcome {
                Ok(attr) => Attr::put(attr, sink)?,
                Err(errno) => Errno::put(errno, sink)?,
            }
            Stamps::put(stamps, sink)
        }
        Response::StampedDir { stamps, entries } => {
            Stamps::put(stamps, sink)?;
            StampedEntries::put(entries, sink)
        }
    }
}

pub(super) fn get_response<'a>(
    kind: u8,
    reader: &mut Reader<'a>,
) -> Result<Response<'a>, DecodeError> {
    Ok(match kind {
        kind::OK => Response::Ok,
        kind::ERR => Response::Err(Errno::get(reader)?),
        kind::ATTR => Response::Attr(Attr::get(reader)?),
        kind::OPENED => Response::Opened {
            fd: u32::get(reader)?,
            attr: Attr::get(reader)?,
        },
        kind::DATA => Response::Data(Data::get(reader)?),
        kind::SIZE => Response::Size(u64::get(reader)?),
        kind::OFFSET => Response::Offset(u64::get(reader)?),
        kind::FD => Response::Fd(u32::get(reader)?),
        kind::FLAGS => Response::Flags(OpenOptions::get(reader)?),
        kind::STATFS => Response::StatFs(StatFs::get(reader)?),
        kind::DIRENTS => Response::Dirents(DirentList::get(reader)?),
        kind::TOKEN => Response::Token(u64::get(reader)?),
        kind::PREFETCHED => Response::Prefetched {
            fd: u32::get(reader)?,
            ino: Ino(u64::get(reader)?),
            slot: u32::get(reader)?,
            version: u64::get(reader)?,
            data: Data::get(reader)?,
        },
        kind::OUTSIDE => Response::Outside {
            second: bool::get(reader)?,
            links: Links::get(reader)?,
            path: Path::get(reader)?,
        },
        kind::LOCK => Response::Lock {
            write: bool::get(reader)?,
            start: u64::get(reader)?,
            end: u64::get(reader)?,
            pid: u32::get(reader)?,
            description: bool::get(reader)?,
        },
        kind::OPENED_DIR => Response::OpenedDir {
            fd: u32::get(reader)?,
            attr: Attr::get(reader)?,
            slot: u32::get(reader)?,
        },
        kind::STAMPED => Response::Stamped {
            outcome: if bool::get(reader)? {
                Ok(Attr::get(reader)?)
            } else {
                Err(Errno::get(reader)?)
            },
            stamps: Stamps::get(reader)?,
        },
        kind::STAMPED_DIR => Response::StampedDir {
            stamps: Stamps::get(reader)?,
            entries: StampedEntries::get(reader)?,
        },
        _ => return Err(DecodeError::UnknownOpcode(kind)),
    })
}

/// A run of encoded directory entries, borrowed from a record or a [`DirentBuilder`].
///
/// Invariant: `bytes` is at most `MAX_IO` long and is a sequence of valid entries (checked by
/// [`DirentList::new`] or guaranteed by the builder), so iterating cannot fail.
///
/// Each entry: `ino: u64`, `cookie: u64` (where a listing resumes after this entry), `kind: u8`
/// (a `d_type` value), `name: u16` length and 1 to `NAME_MAX` bytes without NUL or `/`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct DirentList<'a> {
    bytes: &'a [u8],
}

impl<'a> DirentList<'a> {
    /// No entries: the end of a directory.
    pub const EMPTY: DirentList<'static> = DirentList { bytes: &[] };

    /// Checks that `bytes` holds whole, valid entries and at most `MAX_IO` bytes.
    pub fn new(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_IO {
            return Err(DecodeError::TooLong);
        }
        let mut reader = Reader::new(bytes);
        while !reader.is_empty() {
            get_entry(&mut reader)?;
        }
        Ok(DirentList { bytes })
    }

    /// The encoded length of one entry whose name is `name_len` bytes long.
    pub const fn entry_len(name_len: usize) -> usize {
        8 + 8 + 1 + 2 + name_len
    }

    /// The encoded entries.
    pub const fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Whether there are no entries.
    pub const fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The first of the encoded entries `bytes` (a list's [`as_bytes`](DirentList::as_bytes),
    /// or what this returned after an entry) and the bytes after it: for a reader that keeps
    /// a list's bytes and hands its entries out one at a time. `None` when `bytes` is empty or
    /// does not start with a valid entry.
    pub fn split_first(bytes: &'a [u8]) -> Option<(DirEntry<'a>, &'a [u8])> {
        let mut reader = Reader::new(bytes);
        let entry = get_entry(&mut reader).ok()?;
        Some((entry, reader.rest()))
    }

    /// The entries, in order.
    pub fn iter(&self) -> DirentIter<'a> {
        DirentIter {
            reader: Reader::new(self.bytes),
        }
    }
}

impl<'a> IntoIterator for DirentList<'a> {
    type Item = DirEntry<'a>;
    type IntoIter = DirentIter<'a>;
    fn into_iter(self) -> DirentIter<'a> {
        self.iter()
    }
}

/// The entries of a [`DirentList`].
pub struct DirentIter<'a> {
    reader: Reader<'a>,
}

impl<'a> Iterator for DirentIter<'a> {
    type Item = DirEntry<'a>;
    fn next(&mut self) -> Option<DirEntry<'a>> {
        // The list was validated when it was made, so an error here cannot happen; it would
        // end the iteration rather than panic.
        get_entry(&mut self.reader).ok()
    }
}

fn check_entry_name(name: &[u8]) -> Result<(), DecodeError> {
    check_str(name, NAME_MAX)?;
    if name.contains(&b'/') {
        Err(DecodeError::SlashInName)
    } else {
        Ok(())
    }
}

fn put_entry<S: Sink + ?Sized>(entry: &DirEntry<'_>, sink: &mut S) -> Result<(), DecodeError> {
    check_entry_name(entry.name)?;
    u64::put(&entry.ino.0, sink)?;
    u64::put(&entry.cookie, sink)?;
    FileType::put(&entry.kind, sink)?;
    Str::<NAME_MAX>::put(&entry.name, sink)
}

fn get_entry<'a>(reader: &mut Reader<'a>) -> Result<DirEntry<'a>, DecodeError> {
    let entry = DirEntry {
        ino: Ino(u64::get(reader)?),
        cookie: u64::get(reader)?,
        kind: FileType::get(reader)?,
        name: Str::<NAME_MAX>::get(reader)?,
    };
    check_entry_name(entry.name).map(|()| entry)
}

/// A `u32` byte length, then the entries.
impl<'a> Codec<'a> for DirentList<'a> {
    type Value = DirentList<'a>;
    fn put<S: Sink + ?Sized>(value: &DirentList<'a>, sink: &mut S) -> Result<(), DecodeError> {
        Data::put(&value.bytes, sink)
    }
    fn get(reader: &mut Reader<'a>) -> Result<DirentList<'a>, DecodeError> {
        DirentList::new(Data::get(reader)?)
    }
}

/// Fills a buffer with directory entries until the next one does not fit, then hands them
/// over as a [`DirentList`] (for [`Response::Dirents`]).
pub struct DirentBuilder<'b> {
    buf: &'b mut [u8],
    len: usize,
}

impl<'b> DirentBuilder<'b> {
    /// A builder writing into `buf`; it uses at most `MAX_IO` bytes of it.
    pub fn new(buf: &'b mut [u8]) -> Self {
        let cap = buf.len().min(MAX_IO);
        let (buf, _) = buf.split_at_mut(cap);
        DirentBuilder { buf, len: 0 }
    }

    /// Appends `entry` if it fits: `Ok(true)` if it was added, `Ok(false)` if the buffer is
    /// too full (nothing was written), an error if the entry's name is not a valid entry name
    /// (empty, longer than `NAME_MAX`, or holding NUL or `/`).
    pub fn push(&mut self, entry: &DirEntry<'_>) -> Result<bool, EncodeError> {
        check_entry_name(entry.name).map_err(EncodeError::Invalid)?;
        let end = self
            .len
            .saturating_add(DirentList::entry_len(entry.name.len()));
        let Some(slot) = self.buf.get_mut(self.len..end) else {
            return Ok(false);
        };
        let mut writer = Writer::new(slot);
        put_entry(entry, &mut writer).map_err(EncodeError::Invalid)?;
        debug_assert!(writer.filled());
        self.len = end;
        Ok(true)
    }

    /// Bytes used so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no entry has been added.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The entries added.
    pub fn finish(self) -> DirentList<'b> {
        let buf: &'b [u8] = self.buf;
        DirentList {
            bytes: buf.get(..self.len).unwrap_or_default(),
        }
    }
}

/// Most stamps one answer carries.
pub const MAX_STAMPS: usize = 32;
/// Bytes of one encoded stamp: `u32` slot, `u64` version.
const STAMP_LEN: usize = 12;

/// One slot of the content table and the version it showed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Stamp {
    /// The slot.
    pub slot: u32,
    /// Its attribute version.
    pub version: u64,
}

/// The stamps of a [`Response::Stamped`], borrowed from a record or a [`StampsBuilder`].
///
/// Invariant: 1 to [`MAX_STAMPS`] whole stamps, so iterating cannot fail.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Stamps<'a> {
    bytes: &'a [u8],
}

impl<'a> Stamps<'a> {
    /// Checks that `bytes` holds 1 to [`MAX_STAMPS`] whole stamps.
    pub fn new(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        if bytes.is_empty() || !bytes.len().is_multiple_of(STAMP_LEN) {
            return Err(DecodeError::BadValue);
        }
        if bytes.len() > MAX_STAMPS * STAMP_LEN {
            return Err(DecodeError::TooLong);
        }
        Ok(Stamps { bytes })
    }

    /// The encoded stamps.
    pub const fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// How many stamps.
    pub const fn len(&self) -> usize {
        self.bytes.len() / STAMP_LEN
    }

    /// Never: there is at least one.
    pub const fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The stamps, in the order the server wrote them.
    pub fn iter(&self) -> impl Iterator<Item = Stamp> + 'a {
        self.bytes.chunks_exact(STAMP_LEN).map(|c| {
            let (slot, version) = c.split_at(4);
            Stamp {
                slot: u32::from_le_bytes(slot.try_into().unwrap_or_default()),
                version: u64::from_le_bytes(version.try_into().unwrap_or_default()),
            }
        })
    }
}

/// A `u8` count of 1 to [`MAX_STAMPS`], then the stamps.
impl<'a> Codec<'a> for Stamps<'a> {
    type Value = Stamps<'a>;
    fn put<S: Sink + ?Sized>(value: &Stamps<'a>, sink: &mut S) -> Result<(), DecodeError> {
        let checked = Stamps::new(value.bytes)?;
        u8::put(&(checked.len() as u8), sink)?;
        sink.put(checked.bytes);
        Ok(())
    }
    fn get(reader: &mut Reader<'a>) -> Result<Stamps<'a>, DecodeError> {
        let n = usize::from(u8::get(reader)?);
        if n > MAX_STAMPS {
            return Err(DecodeError::TooLong);
        }
        Stamps::new(reader.take(n * STAMP_LEN)?)
    }
}

/// Gathers the stamps of an answer, each slot once.
pub struct StampsBuilder {
    buf: [u8; MAX_STAMPS * STAMP_LEN],
    len: usize,
}

impl Default for StampsBuilder {
    fn default() -> Self {
        StampsBuilder {
            buf: [0; MAX_STAMPS * STAMP_LEN],
            len: 0,
        }
    }
}

impl StampsBuilder {
    /// Whether `slot` is stamped already.
    pub fn has(&self, slot: u32) -> bool {
        self.stamps()
            .is_some_and(|s| s.iter().any(|s| s.slot == slot))
    }

    /// Adds `stamp`; `false` when [`MAX_STAMPS`] are there already (nothing added).
    pub fn push(&mut self, stamp: Stamp) -> bool {
        let Some(dst) = self.buf.get_mut(self.len..self.len + STAMP_LEN) else {
            return false;
        };
        dst[..4].copy_from_slice(&stamp.slot.to_le_bytes());
        dst[4..].copy_from_slice(&stamp.version.to_le_bytes());
        self.len += STAMP_LEN;
        true
    }

    /// The stamps added; `None` before the first.
    pub fn stamps(&self) -> Option<Stamps<'_>> {
        Stamps::new(&self.buf[..self.len]).ok()
    }
}

/// Most entries one [`Response::StampedDir`] carries.
pub const MAX_ENTRIES: usize = 1024;

/// One name of a [`Response::StampedDir`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct StampedEntry<'a> {
    /// The name: 1 to `NAME_MAX` bytes, no NUL or `/`, not `.` or `..`.
    pub name: &'a [u8],
    /// Its attributes.
    pub attr: Attr,
    /// Its inode's slot and attribute version, read before the attributes were.
    pub stamp: Stamp,
}

/// The entries of a [`Response::StampedDir`], borrowed from a record or a builder.
///
/// Invariant: at most [`MAX_ENTRIES`] valid entries in at most `MAX_IO` bytes, so iterating
/// cannot fail. Each: `name` (`u16` length and bytes), `attr`, `u32` slot, `u64` version.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct StampedEntries<'a> {
    bytes: &'a [u8],
}

fn check_stamped_name(name: &[u8]) -> Result<(), DecodeError> {
    check_entry_name(name)?;
    if name == b"." || name == b".." {
        return Err(DecodeError::BadValue);
    }
    Ok(())
}

fn put_stamped<S: Sink + ?Sized>(e: &StampedEntry<'_>, sink: &mut S) -> Result<(), DecodeError> {
    check_stamped_name(e.name)?;
    Str::<NAME_MAX>::put(&e.name, sink)?;
    Attr::put(&e.attr, sink)?;
    u32::put(&e.stamp.slot, sink)?;
    u64::put(&e.stamp.version, sink)
}

fn get_stamped<'a>(reader: &mut Reader<'a>) -> Result<StampedEntry<'a>, DecodeError> {
    let name = Str::<NAME_MAX>::get(reader)?;
    check_stamped_name(name)?;
    Ok(StampedEntry {
        name,
        attr: Attr::get(reader)?,
        stamp: Stamp {
            slot: u32::get(reader)?,
            version: u64::get(reader)?,
        },
    })
}

impl<'a> StampedEntries<'a> {
    /// Checks that `bytes` holds at most [`MAX_ENTRIES`] whole, valid entries and at most
    /// `MAX_IO` bytes.
    pub fn new(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_IO {
            return Err(DecodeError::TooLong);
        }
        let mut reader = Reader::new(bytes);
        let mut n = 0;
        while !reader.is_empty() {
            get_stamped(&mut reader)?;
            n += 1;
            if n > MAX_ENTRIES {
                return Err(DecodeError::TooLong);
            }
        }
        Ok(StampedEntries { bytes })
    }

    /// The encoded entries.
    pub const fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The entries, in the order the server wrote them.
    pub fn iter(&self) -> impl Iterator<Item = StampedEntry<'a>> + 'a {
        let mut reader = Reader::new(self.bytes);
        // Validated when made: an error cannot happen, and would end the iteration.
        core::iter::from_fn(move || get_stamped(&mut reader).ok())
    }
}

/// A `u32` byte length, then the entries.
impl<'a> Codec<'a> for StampedEntries<'a> {
    type Value = StampedEntries<'a>;
    fn put<S: Sink + ?Sized>(value: &StampedEntries<'a>, sink: &mut S) -> Result<(), DecodeError> {
        Data::put(&value.bytes, sink)
    }
    fn get(reader: &mut Reader<'a>) -> Result<StampedEntries<'a>, DecodeError> {
        StampedEntries::new(Data::get(reader)?)
    }
}

/// Appends stamped entries to a byte buffer (a server's scratch), for [`StampedEntries::new`].
pub fn push_stamped(
    buf: &mut alloc::vec::Vec<u8>,
    entry: &StampedEntry<'_>,
) -> Result<(), EncodeError> {
    let mut counter = super::codec::Counter(0);
    put_stamped(entry, &mut counter).map_err(EncodeError::Invalid)?;
    let start = buf.len();
    buf.resize(start + counter.0, 0);
    let mut writer = Writer::new(&mut buf[start..]);
    put_stamped(entry, &mut writer).map_err(EncodeError::Invalid)?;
    debug_assert!(writer.filled());
    Ok(())
}
