//! The wire format of the shared-memory ring: the records a client and the server exchange.
//!
//! A client sends a [`Request`] tagged with an id of its choosing; the server answers with a
//! [`Response`] carrying the same tag. This module only turns them into bytes and back; the
//! transport (slots, indices, wake-ups) and the meaning of descriptions and sessions belong to
//! the ring frontend.
//!
//! Both directions cross a trust boundary: [`decode_request`] and [`decode_response`] take
//! untrusted bytes, never panic, never read out of bounds and never allocate. What they return
//! borrows its names, paths and data from the input, so the server copies a record out of
//! shared memory before decoding it (no double fetch). The encoders refuse anything the
//! decoders would reject, and the encoding is canonical: an accepted record is the one
//! encoding of what it decodes to, so re-encoding it gives back the same bytes.
//!
//! # Record
//!
//! A record is exactly the slice given to the decoder: a 16-byte header, then the payload.
//! All integers are little-endian.
//!
//! | offset | size | field                                                               |
//! |--------|------|---------------------------------------------------------------------|
//! | 0      | 1    | version: [`VERSION`]                                                |
//! | 1      | 1    | opcode (request) or kind (response); the two ranges do not overlap  |
//! | 2      | 2    | flags: reserved, must be 0                                          |
//! | 4      | 4    | length of the whole record, header included, at most [`MAX_RECORD`] |
//! | 8      | 8    | tag: chosen by the client, echoed by the response                   |
//!
//! **Version policy.** Any change to the format (a new opcode, kind or flag bit as much as a
//! changed layout) takes a new version, and a decoder accepts only the versions it knows, so
//! two peers either agree on every byte or fail at the header. Version 2 added `Handoff`,
//! version 3 `Open`'s `prefetch` and the `Prefetched` response, version 4 the `Outside`
//! response, the open flags `check_read_write` (access mode 3) and `path_only` (`O_PATH`) and
//! `Prefetched`'s content table slot, version 5 the lock requests (`GetLock`, `SetLock`,
//! `LockWait`) and the `Lock` response, version 6 the `OpenedDir` response, version 7
//! `StatStamped` and the `Stamped` response, version 8 `StatDir` and the `StampedDir`
//! response, version 9 `MapFile`; older versions are no longer spoken.
//!
//! # Field types
//!
//! | type        | bytes    | encoding and what the decoder checks                           |
//! |-------------|----------|----------------------------------------------------------------|
//! | `u8`..`i64` | 1..8     | little-endian                                                  |
//! | `bool`      | 1        | 0 or 1                                                         |
//! | `opt32`     | 5        | `bool` present, `u32` value (0 when absent)                    |
//! | `opt64`     | 9        | `bool` present, `u64` value (0 when absent)                    |
//! | `perm`      | 4        | `u32` with no bit outside `0o7777`                             |
//! | `path`      | 2 + n    | `u16` n, 1 ≤ n ≤ `PATH_MAX`, no NUL                            |
//! | `xname`     | 2 + n    | `u16` n, 1 ≤ n ≤ `XATTR_NAME_MAX`, no NUL                      |
//! | `xvalue`    | 4 + n    | `u32` n ≤ `XATTR_SIZE_MAX`, any bytes                          |
//! | `data`      | 4 + n    | `u32` n ≤ [`MAX_IO`], any bytes                                |
//! | `max(m)`    | 4        | `u32` ≤ m                                                      |
//! | `target`    | 5, 9 + n | `u8` 0, `u32` fd; or `u8` 1, `bool` follow, `opt32` at, `path` |
//! | `time`      | 12       | `i64` seconds, `u32` nanoseconds < 10⁹                         |
//! | `timeset`   | 13       | `u8` 0 omit, 1 now, 2 set; then `time`, zero unless set        |
//! | `kind`      | 1        | `d_type`: 1 fifo, 2 chr, 4 dir, 6 blk, 8 reg, 10 lnk, 12 sock  |
//! | `access`    | 1        | bits: 4 read, 2 write, 1 execute (`R_OK`, `W_OK`, `X_OK`)      |
//! | `oflags`    | 4        | bits, below ([`OpenOptions`])                                  |
//! | `rename`    | 1        | 0 replace, 1 noreplace, 2 exchange                             |
//! | `xmode`     | 1        | 0 set, 1 create, 2 replace                                     |
//! | `falloc`    | 1        | 0 allocate, 1 keep size, 2 punch hole                          |
//! | `whence`    | 1        | 0 set, 1 cur, 2 end, 3 data, 4 hole (`SEEK_*`)                 |
//! | `errno`     | 4        | `i32` Linux errno number, one of [`Errno::code`]'s             |
//! | `attr`      | 85       | below                                                          |
//! | `statfs`    | 48       | below                                                          |
//! | `dirents`   | 4 + n    | `u32` n ≤ `MAX_IO`, then n bytes of entries, below             |
//! | `stamps`    | 1 + 12n  | `u8` n, 1 ≤ n ≤ [`MAX_STAMPS`], then n × (`u32` slot, `u64` version) |
//!
//! - `oflags` bits: 0x1 read, 0x2 write, 0x4 append, 0x8 truncate, 0x10 create, 0x20 exclusive,
//!   0x40 directory, 0x80 nofollow, 0x100 nonblock, 0x200 check_read_write (access mode 3),
//!   0x400 path_only (`O_PATH`).
//! - `attr`: `u64` ino, `kind`, `perm`, `u32` nlink, uid, gid, rdev, `u64` size, blocks, `u32`
//!   blksize, `time` atime, mtime, ctime.
//! - `statfs`: `u32` block size, `u64` blocks, blocks free, blocks available, files, files
//!   free, `u32` name max.
//! - directory entry ([`DirentList`]): `u64` ino, `u64` cookie (where a listing resumes after
//!   this entry), `kind`, `u16` n and a name of 1 ≤ n ≤ `NAME_MAX` bytes without NUL or `/`.
//!
//! An unknown code of an enumerated type, an unknown flag bit, or a nonzero value where an
//! absent one belongs is rejected.
//!
//! # Requests
//!
//! Payload fields in order; `at` is the directory description a path starts from (absent: the
//! served root). Each [`Request`] variant's doc names the calls it serves and its reply.
//!
//! | opcode | request       | payload                                                          |
//! |--------|---------------|------------------------------------------------------------------|
//! | 0x01   | `Hello`       | `u8` version                                                     |
//! | 0x02   | `Attach`      | `u64` token                                                      |
//! | 0x03   | `Fork`        | (none)                                                           |
//! | 0x10   | `Stat`        | `target`                                                         |
//! | 0x11   | `Access`      | `target`, `access` mask, `bool` effective                        |
//! | 0x12   | `Open`        | `opt32` at, `path`, `oflags`, `perm` mode, `max(MAX_IO)` prefetch, `u64` known ino, `u64` known version |
//! | 0x13   | `Mkdir`       | `opt32` at, `path`, `perm` mode                                  |
//! | 0x14   | `Rmdir`       | `opt32` at, `path`                                               |
//! | 0x15   | `Unlink`      | `opt32` at, `path`                                               |
//! | 0x16   | `Rename`      | `opt32` old at, `path` old, `opt32` new at, `path` new, `rename` |
//! | 0x17   | `Link`        | `target` old, `opt32` new at, `path` new                         |
//! | 0x18   | `Symlink`     | `path` content, `opt32` at, `path`                               |
//! | 0x19   | `Readlink`    | `opt32` at, `path`, `max(PATH_MAX)`                              |
//! | 0x1a   | `Truncate`    | `target`, `u64` size                                             |
//! | 0x1b   | `Chmod`       | `target`, `perm` mode                                            |
//! | 0x1c   | `Chown`       | `target`, `opt32` uid, `opt32` gid                               |
//! | 0x1d   | `Utimens`     | `target`, `timeset` atime, `timeset` mtime                       |
//! | 0x1e   | `Statfs`      | `target`                                                         |
//! | 0x1f   | `GetXattr`    | `target`, `xname`, `max(XATTR_SIZE_MAX)`                         |
//! | 0x20   | `SetXattr`    | `target`, `xname`, `xvalue`, `xmode`                             |
//! | 0x21   | `ListXattr`   | `target`, `max(XATTR_SIZE_MAX)`                                  |
//! | 0x22   | `RemoveXattr` | `target`, `xname`                                                |
//! | 0x23   | `StatStamped` | `target`                                                         |
//! | 0x24   | `StatDir`     | `target`                                                         |
//! | 0x30   | `Read`        | `u32` fd, `max(MAX_IO)` len                                      |
//! | 0x31   | `Pread`       | `u32` fd, `u64` offset, `max(MAX_IO)` len                        |
//! | 0x32   | `Write`       | `u32` fd, `data`                                                 |
//! | 0x33   | `Pwrite`      | `u32` fd, `u64` offset, `data`                                   |
//! | 0x34   | `Lseek`       | `u32` fd, `i64` offset, `whence`                                 |
//! | 0x35   | `Fsync`       | `u32` fd, `bool` datasync                                        |
//! | 0x36   | `Fallocate`   | `u32` fd, `falloc`, `u64` offset, `u64` len                      |
//! | 0x37   | `Dup`         | `u32` fd                                                         |
//! | 0x38   | `Close`       | `u32` fd                                                         |
//! | 0x39   | `Getdents`    | `u32` fd, `max(MAX_IO)` bytes                                    |
//! | 0x3a   | `GetFlags`    | `u32` fd                                                         |
//! | 0x3b   | `SetFlags`    | `u32` fd, `bool` append, `bool` nonblock                         |
//! | 0x3c   | `Handoff`     | `u32` fd                                                         |
//! | 0x3d   | `CopyRange`   | `u32` fd in, `opt64` offset in, `u32` fd out, `opt64` offset out, `u64` len |
//! | 0x3e   | `MapFile`     | `u32` fd                                                         |
//! | 0x48   | `GetLock`     | `u32` fd, `bool` ofd, `bool` write, `u64` start, `u64` end        |
//! | 0x49   | `SetLock`     | `u32` fd, `u8` scope, `u8` kind, `u64` start, `u64` end, `bool` wait |
//! | 0x4a   | `LockWait`    | `u64` token, `bool` cancel                                       |
//!
//! Directory positions need no requests of their own: `Lseek` on a directory description
//! reads (`Cur`, 0) and sets (`Set`) the readdir cookie, which covers `rewinddir`, `telldir`
//! and `seekdir`.
//!
//! # Responses
//!
//! | kind | response  | payload                    |
//! |------|-----------|----------------------------|
//! | 0x80 | `Ok`      | (none)                     |
//! | 0x81 | `Err`     | `errno`                    |
//! | 0x82 | `Attr`    | `attr`                     |
//! | 0x83 | `Opened`  | `u32` fd, `attr`           |
//! | 0x84 | `Data`    | `data`                     |
//! | 0x85 | `Size`    | `u64`                      |
//! | 0x86 | `Offset`  | `u64`                      |
//! | 0x87 | `Fd`      | `u32`                      |
//! | 0x88 | `Flags`   | `oflags`                   |
//! | 0x89 | `StatFs`  | `statfs`                   |
//! | 0x8a | `Dirents` | `dirents` ([`DirentList`]) |
//! | 0x8b | `Token`   | `u64`                      |
//! | 0x8c | `Prefetched` | `u32` fd, `u64` ino, `u32` slot, `u64` version, `data` |
//! | 0x8d | `Outside` | `bool` second, `max(MAX_SYMLINKS)` links, `path` |
//! | 0x8e | `Lock`    | `bool` write, `u64` start, `u64` end, `u32` pid, `bool` description |
//! | 0x8f | `OpenedDir` | `u32` fd, `attr`, `u32` slot |
//! | 0x90 | `Stamped` | `bool` ok, then `attr` if ok else `errno`; `stamps` |
//! | 0x91 | `StampedDir` | `stamps`, `u32` n ≤ `MAX_IO` then n bytes of at most [`MAX_ENTRIES`] entries: `u16` name length and name (as a directory entry's, not `.` or `..`), `attr`, `u32` slot, `u64` version |
//!
//! **Walks that leave the tree.** The server walks a request's paths as if the served root
//! were mounted at a place it does not know (each client sees it at its own prefix):
//! `path::Mount::Elsewhere`. When a walk leaves (an absolute symbolic link, or `..` above the
//! root), the server acts on nothing and answers `Outside` with the rest of the walk; the
//! client joins a relative rest to its own prefix and makes the call itself, in its own
//! namespace and with its own identity, counting the links toward `MAX_SYMLINKS` across the
//! hops. The server never acts outside the tree, and learns nothing it must trust.
//!
//! # Errors on the wire
//!
//! An [`Errno`] travels as its Linux number ([`Errno::code`], decoded by
//! [`Errno::from_code`]): EPERM 1, ENOENT 2, EINTR 4, EIO 5, ENXIO 6, E2BIG 7, EBADF 9,
//! EAGAIN 11, EACCES 13, EBUSY 16, EEXIST 17, ENOTDIR 20, EISDIR 21, EINVAL 22, EMFILE 24,
//! EFBIG 27, ENOSPC 28, EMLINK 31, ERANGE 34, EDEADLK 35, ENAMETOOLONG 36, ENOTEMPTY 39,
//! ELOOP 40, ENODATA 61, EOVERFLOW 75, EOPNOTSUPP 95. Any other number is a malformed record.
//!
//! [`Errno`]: crate::Errno
//! [`Errno::code`]: crate::Errno::code
//! [`Errno::from_code`]: crate::Errno::from_code

mod codec;
mod request;
mod response;

use core::fmt;

use codec::{Codec, Counter, Reader, Sink, Writer};
pub use request::{OpenOptions, Request, Target, Whence};
pub use response::{
    DirentBuilder, DirentIter, DirentList, MAX_ENTRIES, MAX_STAMPS, Response, Stamp,
    StampedEntries, StampedEntry, Stamps, StampsBuilder, push_stamped,
};

/// The wire version this module speaks.
pub const VERSION: u8 = 9;
/// Length of the record header.
pub const HEADER_LEN: usize = 16;

/// Bytes before a mapped file's data in the memory file `MapFile` sends: one page.
pub const MAPPED_HEADER: usize = 4096;
/// Where in that first page the file's size is: a `u64` in the host's byte order, changed
/// only after the bytes it covers are in place and the memory file is at least that long;
/// [`MAPPED_GONE`] once the mapping shows the file no more.
pub const MAPPED_SIZE_AT: usize = 0;
/// The size a mapping shows once it no longer shows the file (the server could not keep the
/// memory file long enough): read through the server.
pub const MAPPED_GONE: u64 = u64::MAX;
/// Where in that first page the count of the file's changes is: a `u64` in the host's byte
/// order, moved after each change to its content or size.
pub const MAPPED_CHANGES_AT: usize = 8;
/// Most bytes of a file a `MapFile` mapping shows, from its start: 8 GiB. Bytes past that are
/// read through the server.
pub const MAPPED_SPAN: u64 = 1 << 33;
/// Most bytes one `Read`, `Write`, `Getdents` or `Data` carries: 1 MiB.
pub const MAX_IO: usize = 1 << 20;
/// Longest record: the header and a `Pwrite` of `MAX_IO` bytes (fd, offset, length, data).
pub const MAX_RECORD: usize = HEADER_LEN + 4 + 8 + 4 + MAX_IO;

/// The header fields a transport needs before it has the whole record.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Header {
    /// Request opcode or response kind (not checked by [`peek_header`]).
    pub opcode: u8,
    /// Length of the whole record, between [`HEADER_LEN`] and [`MAX_RECORD`].
    pub len: u32,
    /// The request id.
    pub tag: u64,
}

/// Why bytes are not a valid record.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum DecodeError {
    /// The record ends before its header or inside a field.
    Truncated,
    /// The header names a version this module does not speak.
    BadVersion(u8),
    /// The opcode (or response kind) is unknown.
    UnknownOpcode(u8),
    /// Reserved header flags are set.
    ReservedFlags(u16),
    /// The header's length is shorter than the header or longer than [`MAX_RECORD`].
    BadLength(u32),
    /// The header's length is not the length of the record given.
    LengthMismatch {
        /// The length in the header.
        declared: u32,
        /// The length of the bytes given.
        actual: usize,
    },
    /// Bytes remain after the last field.
    TrailingBytes,
    /// A path or name is empty.
    EmptyString,
    /// A path or name holds a NUL byte.
    NulByte,
    /// A directory entry name holds a `/`.
    SlashInName,
    /// A string, byte run or size is over its bound.
    TooLong,
    /// An enumerated field, boolean, timestamp or errno holds a value with no meaning.
    BadValue,
    /// A flag set or permission field holds unknown bits.
    BadBits,
    /// An absent optional field, or an unused timestamp, is not zero.
    NonCanonical,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            DecodeError::Truncated => f.write_str("record ends inside a field"),
            DecodeError::BadVersion(v) => write!(f, "unknown wire version {v}"),
            DecodeError::UnknownOpcode(op) => write!(f, "unknown opcode {op:#04x}"),
            DecodeError::ReservedFlags(bits) => write!(f, "reserved header flags {bits:#06x}"),
            DecodeError::BadLength(len) => write!(f, "record length {len} out of range"),
            DecodeError::LengthMismatch { declared, actual } => {
                write!(f, "header says {declared} bytes, record has {actual}")
            }
            DecodeError::TrailingBytes => f.write_str("bytes after the last field"),
            DecodeError::EmptyString => f.write_str("empty path or name"),
            DecodeError::NulByte => f.write_str("NUL byte in a path or name"),
            DecodeError::SlashInName => f.write_str("'/' in a directory entry name"),
            DecodeError::TooLong => f.write_str("field over its bound"),
            DecodeError::BadValue => f.write_str("field value with no meaning"),
            DecodeError::BadBits => f.write_str("unknown bits in a flag field"),
            DecodeError::NonCanonical => f.write_str("nonzero value in an unused field"),
        }
    }
}

impl core::error::Error for DecodeError {}

/// Why a message could not be encoded.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum EncodeError {
    /// The output buffer is shorter than the record.
    BufferTooSmall {
        /// The record's length.
        needed: usize,
    },
    /// A field is out of its bounds: the decoder would reject the record for this reason.
    Invalid(DecodeError),
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::BufferTooSmall { needed } => {
                write!(
                    f,
                    "output buffer too small: the record needs {needed} bytes"
                )
            }
            EncodeError::Invalid(why) => write!(f, "invalid message: {why}"),
        }
    }
}

impl core::error::Error for EncodeError {}

/// Reads the header at the start of `bytes`, which may be longer than the record (a transport
/// learns the length before it copies). Checks the version, the reserved flags and that the
/// length is within bounds; not the opcode, nor that `bytes` holds the whole record.
pub fn peek_header(bytes: &[u8]) -> Result<Header, DecodeError> {
    let mut reader = Reader::new(bytes);
    let version = u8::get(&mut reader)?;
    let opcode = u8::get(&mut reader)?;
    let flags = u16::get(&mut reader)?;
    let len = u32::get(&mut reader)?;
    let tag = u64::get(&mut reader)?;
    if version != VERSION {
        Err(DecodeError::BadVersion(version))
    } else if flags != 0 {
        Err(DecodeError::ReservedFlags(flags))
    } else if !(HEADER_LEN..=MAX_RECORD).contains(&(len as usize)) {
        Err(DecodeError::BadLength(len))
    } else {
        Ok(Header { opcode, len, tag })
    }
}

/// Decodes one whole record with `get` reading its payload.
fn decode<'a, T>(
    bytes: &'a [u8],
    get: impl FnOnce(u8, &mut Reader<'a>) -> Result<T, DecodeError>,
) -> Result<(u64, T), DecodeError> {
    let header = peek_header(bytes)?;
    if header.len as usize != bytes.len() {
        return Err(DecodeError::LengthMismatch {
            declared: header.len,
            actual: bytes.len(),
        });
    }
    let mut reader = Reader::new(bytes.get(HEADER_LEN..).unwrap_or_default());
    let value = get(header.opcode, &mut reader)?;
    reader.finish()?;
    Ok((header.tag, value))
}

/// Encodes one record whose payload `put` writes: a counting pass sizes and validates it, then
/// a writing pass fills `out`.
/// A message's payload, written to any sink (generic, so each pass compiles to straight-line
/// stores rather than a virtual call per field).
trait Payload {
    fn put<S: Sink + ?Sized>(&self, sink: &mut S) -> Result<(), DecodeError>;
}

impl Payload for Request<'_> {
    fn put<S: Sink + ?Sized>(&self, sink: &mut S) -> Result<(), DecodeError> {
        request::put_request(self, sink)
    }
}

impl Payload for Response<'_> {
    fn put<S: Sink + ?Sized>(&self, sink: &mut S) -> Result<(), DecodeError> {
        response::put_response(self, sink)
    }
}

fn encode(
    tag: u64,
    opcode: u8,
    out: &mut [u8],
    message: &impl Payload,
) -> Result<usize, EncodeError> {
    let mut counter = Counter(HEADER_LEN);
    message.put(&mut counter).map_err(EncodeError::Invalid)?;
    let len = counter.0;
    let declared = u32::try_from(len)
        .ok()
        .filter(|_| len <= MAX_RECORD)
        .ok_or(EncodeError::Invalid(DecodeError::TooLong))?;
    let record = out
        .get_mut(..len)
        .ok_or(EncodeError::BufferTooSmall { needed: len })?;
    let mut writer = Writer::new(record);
    writer.put(&[VERSION, opcode]);
    writer.put(&0u16.to_le_bytes());
    writer.put(&declared.to_le_bytes());
    writer.put(&tag.to_le_bytes());
    message.put(&mut writer).map_err(EncodeError::Invalid)?;
    if writer.filled() {
        Ok(len)
    } else {
        // Both passes run the same code over the same message, so they cannot disagree.
        Err(EncodeError::BufferTooSmall { needed: len })
    }
}

/// Length of the payload `put` writes, without validating it further than `put` does.
fn payload_len(message: &impl Payload) -> usize {
    let mut counter = Counter(HEADER_LEN);
    // An invalid message still has a length; the encoder reports what is wrong with it.
    let _ = message.put(&mut counter);
    counter.0
}

/// Encodes `request` with `tag` at the start of `out`; returns the record's length.
pub fn encode_request(
    tag: u64,
    request: &Request<'_>,
    out: &mut [u8],
) -> Result<usize, EncodeError> {
    encode(tag, request.opcode(), out, request)
}

/// Decodes a request record that is exactly `bytes`; returns its tag and the request, which
/// borrows from `bytes`.
pub fn decode_request(bytes: &[u8]) -> Result<(u64, Request<'_>), DecodeError> {
    decode(bytes, request::get_request)
}

/// The encoded length of `request`, header included (meaningful when it is valid).
pub fn request_len(request: &Request<'_>) -> usize {
    payload_len(request)
}

/// Encodes `response` with `tag` at the start of `out`; returns the record's length.
pub fn encode_response(
    tag: u64,
    response: &Response<'_>,
    out: &mut [u8],
) -> Result<usize, EncodeError> {
    encode(tag, response.kind(), out, response)
}

/// Decodes a response record that is exactly `bytes`; returns its tag and the response, which
/// borrows from `bytes`.
pub fn decode_response(bytes: &[u8]) -> Result<(u64, Response<'_>), DecodeError> {
    decode(bytes, response::get_response)
}

/// The encoded length of `response`, header included (meaningful when it is valid).
pub fn response_len(response: &Response<'_>) -> usize {
    payload_len(response)
}
