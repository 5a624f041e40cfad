//! The pieces every record is built from: a bounds-checked [`Reader`], two sinks (one that
//! counts, one that writes) and [`Codec`], the encoding and decoding of one field type.
//!
//! Each codec checks on the way out exactly what it checks on the way in, so the encoder
//! refuses what the decoder would reject, and every accepted byte string is the one encoding of
//! its value (absent options and unused timestamps must be zero).

use super::{DecodeError, Whence};
use crate::{
    AccessMask, Attr, Errno, FallocateMode, FileType, Ino, PERM_MASK, RenameMode, StatFs, TimeSet,
    Timestamp, XattrMode,
};

/// Where encoded bytes go.
pub(super) trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

/// A sink that only counts: the first pass of encoding, which sizes and validates a record.
pub(super) struct Counter(pub(super) usize);

impl Sink for Counter {
    fn put(&mut self, bytes: &[u8]) {
        self.0 = self.0.saturating_add(bytes.len());
    }
}

/// A sink over a buffer that the counting pass sized; bytes that do not fit set `overflow`.
pub(super) struct Writer<'b> {
    buf: &'b mut [u8],
    pos: usize,
    overflow: bool,
}

impl<'b> Writer<'b> {
    pub(super) fn new(buf: &'b mut [u8]) -> Self {
        Writer {
            buf,
            pos: 0,
            overflow: false,
        }
    }

    /// Whether every byte fitted and the buffer is exactly full.
    pub(super) fn filled(&self) -> bool {
        !self.overflow && self.pos == self.buf.len()
    }
}

impl Sink for Writer<'_> {
    fn put(&mut self, bytes: &[u8]) {
        let dst = self
            .pos
            .checked_add(bytes.len())
            .and_then(|end| self.buf.get_mut(self.pos..end));
        match dst {
            Some(dst) => {
                dst.copy_from_slice(bytes);
                self.pos += bytes.len();
            }
            None => self.overflow = true,
        }
    }
}

/// A cursor over untrusted bytes: every read is checked, none can panic.
pub(super) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Self {
        Reader { rest: bytes }
    }

    pub(super) fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let (head, rest) = self
            .rest
            .split_at_checked(n)
            .ok_or(DecodeError::Truncated)?;
        self.rest = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        self.take(N)?.try_into().map_err(|_| DecodeError::Truncated)
    }

    pub(super) fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// The bytes not read yet.
    pub(super) fn rest(&self) -> &'a [u8] {
        self.rest
    }

    /// Succeeds when every byte has been read.
    pub(super) fn finish(&self) -> Result<(), DecodeError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes)
        }
    }
}

/// How one field type is encoded. `Value` is the Rust type of the field; the implementing type
/// is either that type itself or a marker naming a bound (see [`Str`], [`Blob`], [`Max`]).
pub(super) trait Codec<'a> {
    type Value;
    fn put<S: Sink + ?Sized>(value: &Self::Value, sink: &mut S) -> Result<(), DecodeError>;
    fn get(reader: &mut Reader<'a>) -> Result<Self::Value, DecodeError>;
}

macro_rules! int_codec {
    ($($int:ty),*) => {$(
        impl<'a> Codec<'a> for $int {
            type Value = $int;
            fn put<S: Sink + ?Sized>(value: &$int, sink: &mut S) -> Result<(), DecodeError> {
                sink.put(&value.to_le_bytes());
                Ok(())
            }
            fn get(reader: &mut Reader<'a>) -> Result<$int, DecodeError> {
                Ok(<$int>::from_le_bytes(reader.array()?))
            }
        }
    )*};
}
int_codec!(u8, u16, u32, u64, i32, i64);

/// An enumeration encoded as one byte per variant.
macro_rules! enum_codec {
    ($ty:ident { $($variant:ident = $code:literal),* $(,)? }) => {
        impl<'a> Codec<'a> for $ty {
            type Value = $ty;
            fn put<S: Sink + ?Sized>(value: &$ty, sink: &mut S) -> Result<(), DecodeError> {
                sink.put(&[match value { $($ty::$variant => $code),* }]);
                Ok(())
            }
            fn get(reader: &mut Reader<'a>) -> Result<$ty, DecodeError> {
                match u8::get(reader)? {
                    $($code => Ok($ty::$variant),)*
                    _ => Err(DecodeError::BadValue),
                }
            }
        }
    };
}

/// A struct of booleans encoded as a bit set; unknown bits are rejected.
macro_rules! flags_codec {
    ($ty:ident: $bits:ty { $($field:ident = $bit:expr),* $(,)? }) => {
        impl<'a> Codec<'a> for $ty {
            type Value = $ty;
            fn put<S: Sink + ?Sized>(value: &$ty, sink: &mut S) -> Result<(), DecodeError> {
                let mut bits: $bits = 0;
                $(if value.$field { bits |= $bit; })*
                <$bits>::put(&bits, sink)
            }
            fn get(reader: &mut Reader<'a>) -> Result<$ty, DecodeError> {
                let bits = <$bits>::get(reader)?;
                if bits & !(0 $(| $bit)*) != 0 {
                    return Err(DecodeError::BadBits);
                }
                Ok($ty { $($field: bits & $bit != 0),* })
            }
        }
    };
}
pub(super) use flags_codec;

impl<'a> Codec<'a> for bool {
    type Value = bool;
    fn put<S: Sink + ?Sized>(value: &bool, sink: &mut S) -> Result<(), DecodeError> {
        sink.put(&[u8::from(*value)]);
        Ok(())
    }
    fn get(reader: &mut Reader<'a>) -> Result<bool, DecodeError> {
        match u8::get(reader)? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::BadValue),
        }
    }
}

/// Present flag and value; an absent value must be zero.
impl<'a> Codec<'a> for Option<u32> {
    type Value = Option<u32>;
    fn put<S: Sink + ?Sized>(value: &Option<u32>, sink: &mut S) -> Result<(), DecodeError> {
        bool::put(&value.is_some(), sink)?;
        u32::put(&value.unwrap_or(0), sink)
    }
    fn get(reader: &mut Reader<'a>) -> Result<Option<u32>, DecodeError> {
        match (bool::get(reader)?, u32::get(reader)?) {
            (true, value) => Ok(Some(value)),
            (false, 0) => Ok(None),
            (false, _) => Err(DecodeError::NonCanonical),
        }
    }
}

/// Present flag and value; an absent value must be zero.
impl<'a> Codec<'a> for Option<u64> {
    type Value = Option<u64>;
    fn put<S: Sink + ?Sized>(value: &Option<u64>, sink: &mut S) -> Result<(), DecodeError> {
        bool::put(&value.is_some(), sink)?;
        u64::put(&value.unwrap_or(0), sink)
    }
    fn get(reader: &mut Reader<'a>) -> Result<Option<u64>, DecodeError> {
        match (bool::get(reader)?, u64::get(reader)?) {
            (true, value) => Ok(Some(value)),
            (false, 0) => Ok(None),
            (false, _) => Err(DecodeError::NonCanonical),
        }
    }
}

/// A `u32` of at most `MAX`.
pub(super) struct Max<const MAX: u32>;

impl<'a, const MAX: u32> Codec<'a> for Max<MAX> {
    type Value = u32;
    fn put<S: Sink + ?Sized>(value: &u32, sink: &mut S) -> Result<(), DecodeError> {
        check_max(*value, MAX)?;
        u32::put(value, sink)
    }
    fn get(reader: &mut Reader<'a>) -> Result<u32, DecodeError> {
        let value = u32::get(reader)?;
        check_max(value, MAX).map(|()| value)
    }
}

fn check_max(value: u32, max: u32) -> Result<(), DecodeError> {
    if value > max {
        Err(DecodeError::TooLong)
    } else {
        Ok(())
    }
}

/// Permission bits: a `u32` with nothing outside `0o7777`.
pub(super) struct Perm;

impl<'a> Codec<'a> for Perm {
    type Value = u32;
    fn put<S: Sink + ?Sized>(value: &u32, sink: &mut S) -> Result<(), DecodeError> {
        check_perm(*value)?;
        u32::put(value, sink)
    }
    fn get(reader: &mut Reader<'a>) -> Result<u32, DecodeError> {
        let value = u32::get(reader)?;
        check_perm(value).map(|()| value)
    }
}

fn check_perm(perm: u32) -> Result<(), DecodeError> {
    if perm & !PERM_MASK != 0 {
        Err(DecodeError::BadBits)
    } else {
        Ok(())
    }
}

/// A string of 1 to `MAX` bytes with no NUL, after a `u16` length.
pub(super) struct Str<const MAX: usize>;

impl<'a, const MAX: usize> Codec<'a> for Str<MAX> {
    type Value = &'a [u8];
    fn put<S: Sink + ?Sized>(value: &&'a [u8], sink: &mut S) -> Result<(), DecodeError> {
        check_str(value, MAX)?;
        let len = u16::try_from(value.len()).map_err(|_| DecodeError::TooLong)?;
        u16::put(&len, sink)?;
        sink.put(value);
        Ok(())
    }
    fn get(reader: &mut Reader<'a>) -> Result<&'a [u8], DecodeError> {
        let len = usize::from(u16::get(reader)?);
        if len > MAX {
            return Err(DecodeError::TooLong);
        }
        let value = reader.take(len)?;
        check_str(value, MAX).map(|()| value)
    }
}

pub(super) fn check_str(value: &[u8], max: usize) -> Result<(), DecodeError> {
    if value.is_empty() {
        Err(DecodeError::EmptyString)
    } else if value.len() > max {
        Err(DecodeError::TooLong)
    } else if value.contains(&0) {
        Err(DecodeError::NulByte)
    } else {
        Ok(())
    }
}

/// Arbitrary bytes, at most `MAX`, after a `u32` length.
pub(super) struct Blob<const MAX: usize>;

impl<'a, const MAX: usize> Codec<'a> for Blob<MAX> {
    type Value = &'a [u8];
    fn put<S: Sink + ?Sized>(value: &&'a [u8], sink: &mut S) -> Result<(), DecodeError> {
        let len = u32::try_from(value.len())
            .ok()
            .filter(|&len| len as usize <= MAX)
            .ok_or(DecodeError::TooLong)?;
        u32::put(&len, sink)?;
        sink.put(value);
        Ok(())
    }
    fn get(reader: &mut Reader<'a>) -> Result<&'a [u8], DecodeError> {
        let len = usize::try_from(u32::get(reader)?).map_err(|_| DecodeError::TooLong)?;
        if len > MAX {
            return Err(DecodeError::TooLong);
        }
        reader.take(len)
    }
}

impl<'a> Codec<'a> for Timestamp {
    type Value = Timestamp;
    fn put<S: Sink + ?Sized>(value: &Timestamp, sink: &mut S) -> Result<(), DecodeError> {
        Timestamp::new(value.secs, value.nanos).ok_or(DecodeError::BadValue)?;
        i64::put(&value.secs, sink)?;
        u32::put(&value.nanos, sink)
    }
    fn get(reader: &mut Reader<'a>) -> Result<Timestamp, DecodeError> {
        let secs = i64::get(reader)?;
        Timestamp::new(secs, u32::get(reader)?).ok_or(DecodeError::BadValue)
    }
}

/// Kind byte (0 omit, 1 now, 2 at), then a timestamp that is zero unless the kind is 2.
impl<'a> Codec<'a> for TimeSet {
    type Value = TimeSet;
    fn put<S: Sink + ?Sized>(value: &TimeSet, sink: &mut S) -> Result<(), DecodeError> {
        let (kind, time) = match *value {
            TimeSet::Omit => (0, Timestamp::EPOCH),
            TimeSet::Now => (1, Timestamp::EPOCH),
            TimeSet::At(time) => (2, time),
        };
        u8::put(&kind, sink)?;
        Timestamp::put(&time, sink)
    }
    fn get(reader: &mut Reader<'a>) -> Result<TimeSet, DecodeError> {
        let kind = u8::get(reader)?;
        let time = Timestamp::get(reader)?;
        match (kind, time) {
            (0, Timestamp::EPOCH) => Ok(TimeSet::Omit),
            (1, Timestamp::EPOCH) => Ok(TimeSet::Now),
            (0 | 1, _) => Err(DecodeError::NonCanonical),
            (2, time) => Ok(TimeSet::At(time)),
            _ => Err(DecodeError::BadValue),
        }
    }
}

// The `d_type` values of `dirent.h`, so a client can copy them into `struct dirent`.
enum_codec!(FileType {
    NamedPipe = 1,
    CharDevice = 2,
    Directory = 4,
    BlockDevice = 6,
    RegularFile = 8,
    Symlink = 10,
    Socket = 12,
});
enum_codec!(RenameMode {
    Replace = 0,
    NoReplace = 1,
    Exchange = 2,
});
enum_codec!(XattrMode {
    Set = 0,
    Create = 1,
    Replace = 2,
});
enum_codec!(FallocateMode {
    Allocate = 0,
    KeepSize = 1,
    PunchHole = 2,
});
// The `SEEK_*` values of Linux.
enum_codec!(Whence {
    Set = 0,
    Cur = 1,
    End = 2,
    Data = 3,
    Hole = 4,
});
// The bits of `R_OK`, `W_OK` and `X_OK`.
flags_codec!(AccessMask: u8 {
    execute = 1,
    write = 2,
    read = 4,
});

/// The Linux errno number as an `i32`; a number no variant has is rejected.
impl<'a> Codec<'a> for Errno {
    type Value = Errno;
    fn put<S: Sink + ?Sized>(value: &Errno, sink: &mut S) -> Result<(), DecodeError> {
        i32::put(&value.code(), sink)
    }
    fn get(reader: &mut Reader<'a>) -> Result<Errno, DecodeError> {
        Errno::from_code(i32::get(reader)?).ok_or(DecodeError::BadValue)
    }
}

impl<'a> Codec<'a> for Attr {
    type Value = Attr;
    fn put<S: Sink + ?Sized>(value: &Attr, sink: &mut S) -> Result<(), DecodeError> {
        u64::put(&value.ino.0, sink)?;
        FileType::put(&value.kind, sink)?;
        Perm::put(&value.perm, sink)?;
        for field in [value.nlink, value.uid, value.gid, value.rdev] {
            u32::put(&field, sink)?;
        }
        u64::put(&value.size, sink)?;
        u64::put(&value.blocks, sink)?;
        u32::put(&value.blksize, sink)?;
        for time in [value.atime, value.mtime, value.ctime] {
            Timestamp::put(&time, sink)?;
        }
        Ok(())
    }
    fn get(reader: &mut Reader<'a>) -> Result<Attr, DecodeError> {
        Ok(Attr {
            ino: Ino(u64::get(reader)?),
            kind: FileType::get(reader)?,
            perm: Perm::get(reader)?,
            nlink: u32::get(reader)?,
            uid: u32::get(reader)?,
            gid: u32::get(reader)?,
            rdev: u32::get(reader)?,
            size: u64::get(reader)?,
            blocks: u64::get(reader)?,
            blksize: u32::get(reader)?,
            atime: Timestamp::get(reader)?,
            mtime: Timestamp::get(reader)?,
            ctime: Timestamp::get(reader)?,
        })
    }
}

impl<'a> Codec<'a> for StatFs {
    type Value = StatFs;
    fn put<S: Sink + ?Sized>(value: &StatFs, sink: &mut S) -> Result<(), DecodeError> {
        u32::put(&value.block_size, sink)?;
        for count in [
            value.blocks,
            value.blocks_free,
            value.blocks_available,
            value.files,
            value.files_free,
        ] {
            u64::put(&count, sink)?;
        }
        u32::put(&value.name_max, sink)
    }
    fn get(reader: &mut Reader<'a>) -> Result<StatFs, DecodeError> {
        Ok(StatFs {
            block_size: u32::get(reader)?,
            blocks: u64::get(reader)?,
            blocks_free: u64::get(reader)?,
            blocks_available: u64::get(reader)?,
            files: u64::get(reader)?,
            files_free: u64::get(reader)?,
            name_max: u32::get(reader)?,
        })
    }
}
