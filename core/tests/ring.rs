//! Guards the ring wire format (`btfuse_core::ring`): every valid request and response comes
//! back from encode and decode unchanged, at the length `request_len`/`response_len` predict;
//! every truncation of a record is rejected; a flipped bit is rejected or yields another valid
//! record that encodes to exactly those bytes; each rejection reason is reached by handcrafted
//! bytes laid out as the module documents; and the fuzz seed corpus still decodes.
//! `BTFUSE_PROPTEST_CASES` sets the number of cases (default 256).

use std::collections::BTreeSet;

use btfuse_core::path::MAX_SYMLINKS;
use btfuse_core::ring::{
    DecodeError, DirentBuilder, DirentList, EncodeError, HEADER_LEN, MAX_IO, MAX_RECORD,
    MAX_STAMPS, OpenOptions, Request, Response, Stamp, StampedEntries, StampedEntry, Stamps,
    Target, VERSION, Whence, decode_request, decode_response, encode_request, encode_response,
    peek_header, push_stamped, request_len, response_len,
};
use btfuse_core::{
    AccessMask, Attr, DirEntry, Errno, FallocateMode, FileType, Ino, NAME_MAX, PATH_MAX,
    RenameMode, StatFs, TimeSet, Timestamp, XATTR_NAME_MAX, XATTR_SIZE_MAX, XattrMode,
};
use proptest::collection::vec;
use proptest::prelude::*;

const ERRNOS: [Errno; Errno::ALL.len()] = Errno::ALL;

const FILE_TYPES: [FileType; 7] = [
    FileType::RegularFile,
    FileType::Directory,
    FileType::Symlink,
    FileType::NamedPipe,
    FileType::Socket,
    FileType::CharDevice,
    FileType::BlockDevice,
];

// ---- Strategies: owned parts, from which a borrowed message is built. ----

/// 1 to `max` bytes without NUL: mostly short, sometimes exactly at the bound.
fn string(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![8 => vec(1u8.., 1..=16), 1 => vec(1u8.., max..=max)]
}

fn timestamp() -> impl Strategy<Value = Timestamp> {
    (any::<i64>(), 0u32..1_000_000_000).prop_map(|(secs, nanos)| Timestamp { secs, nanos })
}

fn time_set() -> impl Strategy<Value = TimeSet> {
    prop_oneof![
        Just(TimeSet::Omit),
        Just(TimeSet::Now),
        timestamp().prop_map(TimeSet::At)
    ]
}

fn file_type() -> impl Strategy<Value = FileType> {
    prop::sample::select(&FILE_TYPES[..])
}

fn attr() -> impl Strategy<Value = Attr> {
    (
        (any::<u64>(), file_type(), 0u32..=0o7777, any::<[u32; 4]>()),
        (any::<[u64; 2]>(), any::<u32>()),
        [timestamp(), timestamp(), timestamp()],
    )
        .prop_map(
            |((ino, kind, perm, [nlink, uid, gid, rdev]), ([size, blocks], blksize), t)| Attr {
                ino: Ino(ino),
                kind,
                perm,
                nlink,
                uid,
                gid,
                rdev,
                size,
                blocks,
                blksize,
                atime: t[0],
                mtime: t[1],
                ctime: t[2],
            },
        )
}

fn open_options() -> impl Strategy<Value = OpenOptions> {
    any::<[bool; 11]>().prop_map(|b| OpenOptions {
        read: b[0],
        write: b[1],
        append: b[2],
        truncate: b[3],
        create: b[4],
        exclusive: b[5],
        directory: b[6],
        nofollow: b[7],
        nonblock: b[8],
        check_read_write: b[9],
        path_only: b[10],
    })
}

/// The number of request variants; `RequestParts::request` builds variant `op` for each
/// `op` below it.
const REQUEST_VARIANTS: usize = 42;

#[derive(Clone, Debug)]
struct RequestParts {
    op: usize,
    paths: [Vec<u8>; 2],
    name: Vec<u8>,
    bytes: Vec<u8>,
    fd: u32,
    target_fd: bool,
    ats: [Option<u32>; 2],
    ids: [Option<u32>; 2],
    num: [u64; 2],
    choice: u32,
    perm: u32,
    flags: [bool; 2],
    times: [TimeSet; 2],
    open: OpenOptions,
    access: [bool; 3],
}

fn request_parts() -> impl Strategy<Value = RequestParts> {
    (
        (0..REQUEST_VARIANTS, [string(PATH_MAX), string(PATH_MAX)]),
        (string(XATTR_NAME_MAX), vec(any::<u8>(), 0..64)),
        (any::<u32>(), any::<bool>(), any::<[Option<u32>; 2]>()),
        (any::<[Option<u32>; 2]>(), any::<[u64; 2]>(), any::<u32>()),
        (0u32..=0o7777, any::<[bool; 2]>(), [time_set(), time_set()]),
        (open_options(), any::<[bool; 3]>()),
    )
        .prop_map(|(a, b, c, d, e, f)| RequestParts {
            op: a.0,
            paths: a.1,
            name: b.0,
            bytes: b.1,
            fd: c.0,
            target_fd: c.1,
            ats: c.2,
            ids: d.0,
            num: d.1,
            choice: d.2,
            perm: e.0,
            flags: e.1,
            times: e.2,
            open: f.0,
            access: f.1,
        })
}

fn bounded(value: u32, max: usize) -> u32 {
    value % (max as u32 + 1)
}

impl RequestParts {
    fn target(&self) -> Target<'_> {
        if self.target_fd {
            Target::Fd(self.fd)
        } else {
            Target::Path {
                at: self.ats[0],
                path: &self.paths[0],
                follow: self.flags[1],
            }
        }
    }

    fn request(&self) -> Request<'_> {
        let (fd, target, at, path) = (self.fd, self.target(), self.ats[0], &self.paths[0][..]);
        let (name, bytes, num, choice) = (&self.name[..], &self.bytes[..], self.num, self.choice);
        let flag = self.flags[0];
        match self.op {
            0 => Request::Hello {
                version: choice as u8,
            },
            1 => Request::Attach { token: num[0] },
            2 => Request::Fork,
            3 => Request::Stat { target },
            4 => Request::Access {
                target,
                mask: AccessMask {
                    read: self.access[0],
                    write: self.access[1],
                    execute: self.access[2],
                },
                effective: flag,
            },
            5 => Request::Open {
                at,
                path,
                flags: self.open,
                mode: self.perm,
                prefetch: bounded(choice, MAX_IO),
                known_ino: num[0],
                known_version: num[1],
            },
            6 => Request::Mkdir {
                at,
                path,
                mode: self.perm,
            },
            7 => Request::Rmdir { at, path },
            8 => Request::Unlink { at, path },
            9 => Request::Rename {
                old_at: at,
                old_path: path,
                new_at: self.ats[1],
                new_path: &self.paths[1],
                mode: [
                    RenameMode::Replace,
                    RenameMode::NoReplace,
                    RenameMode::Exchange,
                ][choice as usize % 3],
            },
            10 => Request::Link {
                old: target,
                new_at: self.ats[1],
                new_path: &self.paths[1],
            },
            11 => Request::Symlink {
                target: &self.paths[1],
                at,
                path,
            },
            12 => Request::Readlink {
                at,
                path,
                max: bounded(choice, PATH_MAX),
            },
            13 => Request::Truncate {
                target,
                size: num[0],
            },
            14 => Request::Chmod {
                target,
                mode: self.perm,
            },
            15 => Request::Chown {
                target,
                uid: self.ids[0],
                gid: self.ids[1],
            },
            16 => Request::Utimens {
                target,
                atime: self.times[0],
                mtime: self.times[1],
            },
            17 => Request::Statfs { target },
            18 => Request::GetXattr {
                target,
                name,
                max: bounded(choice, XATTR_SIZE_MAX),
            },
            19 => Request::SetXattr {
                target,
                name,
                value: bytes,
                mode: [XattrMode::Set, XattrMode::Create, XattrMode::Replace][choice as usize % 3],
            },
            20 => Request::ListXattr {
                target,
                max: bounded(choice, XATTR_SIZE_MAX),
            },
            21 => Request::RemoveXattr { target, name },
            22 => Request::Read {
                fd,
                len: bounded(choice, MAX_IO),
            },
            23 => Request::Pread {
                fd,
                offset: num[0],
                len: bounded(choice, MAX_IO),
            },
            24 => Request::Write { fd, data: bytes },
            25 => Request::Pwrite {
                fd,
                offset: num[0],
                data: bytes,
            },
            26 => Request::Lseek {
                fd,
                offset: num[0] as i64,
                whence: [
                    Whence::Set,
                    Whence::Cur,
                    Whence::End,
                    Whence::Data,
                    Whence::Hole,
                ][choice as usize % 5],
            },
            27 => Request::Fsync { fd, datasync: flag },
            28 => Request::Fallocate {
                fd,
                mode: [
                    FallocateMode::Allocate,
                    FallocateMode::KeepSize,
                    FallocateMode::PunchHole,
                ][choice as usize % 3],
                offset: num[0],
                len: num[1],
            },
            29 => Request::Dup { fd },
            30 => Request::Close { fd },
            31 => Request::Getdents {
                fd,
                max: bounded(choice, MAX_IO),
            },
            32 => Request::GetFlags { fd },
            33 => Request::SetFlags {
                fd,
                append: flag,
                nonblock: self.flags[1],
            },
            34 => Request::Handoff { fd },
            35 => Request::CopyRange {
                fd_in: fd,
                off_in: flag.then_some(num[0]),
                fd_out: choice,
                off_out: self.flags[1].then_some(num[1]),
                len: num[0] ^ num[1],
            },
            36 => Request::GetLock {
                fd,
                ofd: flag,
                write: self.flags[1],
                start: num[0],
                end: num[1],
            },
            37 => Request::SetLock {
                fd,
                scope: choice as u8,
                kind: (choice >> 8) as u8,
                start: num[0],
                end: num[1],
                wait: flag,
            },
            38 => Request::LockWait {
                token: num[0],
                cancel: flag,
            },
            39 => Request::StatStamped { target },
            40 => Request::StatDir { target },
            41 => Request::MapFile { fd },
            _ => unreachable!("op is below REQUEST_VARIANTS"),
        }
    }
}

/// The index `RequestParts::request` builds each variant under. Exhaustive, so a new variant
/// fails to compile here until the strategy covers it.
fn request_index(request: &Request<'_>) -> usize {
    match request {
        Request::Hello { .. } => 0,
        Request::Attach { .. } => 1,
        Request::Fork => 2,
        Request::Stat { .. } => 3,
        Request::Access { .. } => 4,
        Request::Open { .. } => 5,
        Request::Mkdir { .. } => 6,
        Request::Rmdir { .. } => 7,
        Request::Unlink { .. } => 8,
        Request::Rename { .. } => 9,
        Request::Link { .. } => 10,
        Request::Symlink { .. } => 11,
        Request::Readlink { .. } => 12,
        Request::Truncate { .. } => 13,
        Request::Chmod { .. } => 14,
        Request::Chown { .. } => 15,
        Request::Utimens { .. } => 16,
        Request::Statfs { .. } => 17,
        Request::GetXattr { .. } => 18,
        Request::SetXattr { .. } => 19,
        Request::ListXattr { .. } => 20,
        Request::RemoveXattr { .. } => 21,
        Request::Read { .. } => 22,
        Request::Pread { .. } => 23,
        Request::Write { .. } => 24,
        Request::Pwrite { .. } => 25,
        Request::Lseek { .. } => 26,
        Request::Fsync { .. } => 27,
        Request::Fallocate { .. } => 28,
        Request::Dup { .. } => 29,
        Request::Close { .. } => 30,
        Request::Getdents { .. } => 31,
        Request::GetFlags { .. } => 32,
        Request::SetFlags { .. } => 33,
        Request::Handoff { .. } => 34,
        Request::CopyRange { .. } => 35,
        Request::GetLock { .. } => 36,
        Request::SetLock { .. } => 37,
        Request::LockWait { .. } => 38,
        Request::StatStamped { .. } => 39,
        Request::StatDir { .. } => 40,
        Request::MapFile { .. } => 41,
    }
}

const RESPONSE_VARIANTS: usize = 18;

#[derive(Clone, Debug)]
struct ResponseParts {
    op: usize,
    errno: Errno,
    attr: Attr,
    fd: u32,
    num: u64,
    bytes: Vec<u8>,
    flags: OpenOptions,
    statfs: StatFs,
    dirents: Vec<u8>,
    path: Vec<u8>,
    second: bool,
    links: u32,
    stamps: Vec<u8>,
    entries: Vec<u8>,
}

fn entry_name() -> impl Strategy<Value = Vec<u8>> {
    string(NAME_MAX).prop_map(|name| {
        name.into_iter()
            .map(|b| if b == b'/' { b'_' } else { b })
            .collect()
    })
}

/// Encoded entries, built by `DirentBuilder` into a buffer that fits them all.
fn dirents() -> impl Strategy<Value = Vec<u8>> {
    vec((any::<[u64; 2]>(), file_type(), entry_name()), 0..6).prop_map(|entries| {
        let mut buf = vec![0; MAX_IO];
        let mut builder = DirentBuilder::new(&mut buf);
        for ([ino, cookie], kind, name) in &entries {
            let entry = DirEntry {
                ino: Ino(*ino),
                cookie: *cookie,
                kind: *kind,
                name,
            };
            assert_eq!(builder.push(&entry), Ok(true));
        }
        builder.finish().as_bytes().to_vec()
    })
}

/// Encoded stamped entries, pushed one by one.
fn stamped_entries() -> impl Strategy<Value = Vec<u8>> {
    vec((entry_name(), attr(), any::<(u32, u64)>()), 0..6).prop_map(|entries| {
        let mut buf = Vec::new();
        for (name, attr, (slot, version)) in &entries {
            let name: &[u8] = if name == b"." || name == b".." {
                b"x"
            } else {
                name
            };
            let entry = StampedEntry {
                name,
                attr: *attr,
                stamp: Stamp {
                    slot: *slot,
                    version: *version,
                },
            };
            push_stamped(&mut buf, &entry).unwrap();
        }
        buf
    })
}

fn statfs() -> impl Strategy<Value = StatFs> {
    (any::<u32>(), any::<[u64; 5]>(), any::<u32>()).prop_map(|(block_size, n, name_max)| StatFs {
        block_size,
        blocks: n[0],
        blocks_free: n[1],
        blocks_available: n[2],
        files: n[3],
        files_free: n[4],
        name_max,
    })
}

fn response_parts() -> impl Strategy<Value = ResponseParts> {
    (
        (
            0..RESPONSE_VARIANTS,
            prop::sample::select(&ERRNOS[..]),
            attr(),
        ),
        (any::<u32>(), any::<u64>(), vec(any::<u8>(), 0..64)),
        (open_options(), statfs(), dirents()),
        (
            string(PATH_MAX),
            any::<bool>(),
            0..=MAX_SYMLINKS,
            vec(any::<[u8; 12]>(), 1..=MAX_STAMPS),
            stamped_entries(),
        ),
    )
        .prop_map(|(a, b, c, d)| ResponseParts {
            op: a.0,
            errno: a.1,
            attr: a.2,
            fd: b.0,
            num: b.1,
            bytes: b.2,
            flags: c.0,
            statfs: c.1,
            dirents: c.2,
            path: d.0,
            second: d.1,
            links: d.2,
            stamps: d.3.concat(),
            entries: d.4,
        })
}

impl ResponseParts {
    fn response(&self) -> Response<'_> {
        match self.op {
            0 => Response::Ok,
            1 => Response::Err(self.errno),
            2 => Response::Attr(self.attr),
            3 => Response::Opened {
                fd: self.fd,
                attr: self.attr,
            },
            4 => Response::Data(&self.bytes),
            5 => Response::Size(self.num),
            6 => Response::Offset(self.num),
            7 => Response::Fd(self.fd),
            8 => Response::Flags(self.flags),
            9 => Response::StatFs(self.statfs),
            10 => Response::Dirents(DirentList::new(&self.dirents).expect("built valid")),
            11 => Response::Token(self.num),
            12 => Response::Prefetched {
                fd: self.fd,
                ino: self.attr.ino,
                slot: self.fd,
                version: self.num,
                data: &self.bytes,
            },
            13 => Response::Outside {
                second: self.second,
                links: self.links,
                path: &self.path,
            },
            14 => Response::Lock {
                write: self.second,
                start: self.num,
                end: self.attr.size,
                pid: self.fd,
                description: !self.second,
            },
            15 => Response::OpenedDir {
                fd: self.fd,
                attr: self.attr,
                slot: self.num as u32,
            },
            16 => Response::Stamped {
                outcome: if self.second {
                    Ok(self.attr)
                } else {
                    Err(self.errno)
                },
                stamps: Stamps::new(&self.stamps).expect("whole stamps"),
            },
            17 => Response::StampedDir {
                stamps: Stamps::new(&self.stamps).expect("whole stamps"),
                entries: StampedEntries::new(&self.entries).expect("built valid"),
            },
            _ => unreachable!("op is below RESPONSE_VARIANTS"),
        }
    }
}

/// Exhaustive, like `request_index`.
fn response_index(response: &Response<'_>) -> usize {
    match response {
        Response::Ok => 0,
        Response::Err(_) => 1,
        Response::Attr(_) => 2,
        Response::Opened { .. } => 3,
        Response::OpenedDir { .. } => 15,
        Response::Data(_) => 4,
        Response::Size(_) => 5,
        Response::Offset(_) => 6,
        Response::Fd(_) => 7,
        Response::Flags(_) => 8,
        Response::StatFs(_) => 9,
        Response::Dirents(_) => 10,
        Response::Token(_) => 11,
        Response::Prefetched { .. } => 12,
        Response::Outside { .. } => 13,
        Response::Lock { .. } => 14,
        Response::Stamped { .. } => 16,
        Response::StampedDir { .. } => 17,
    }
}

// ---- Properties over bytes. ----

/// Decodes `bytes` as a request and encodes the result again.
fn reencode_request(bytes: &[u8]) -> Result<Vec<u8>, DecodeError> {
    let (tag, request) = decode_request(bytes)?;
    let mut out = vec![0; request_len(&request)];
    assert_eq!(encode_request(tag, &request, &mut out), Ok(out.len()));
    Ok(out)
}

/// Decodes `bytes` as a response and encodes the result again.
fn reencode_response(bytes: &[u8]) -> Result<Vec<u8>, DecodeError> {
    let (tag, response) = decode_response(bytes)?;
    let mut out = vec![0; response_len(&response)];
    assert_eq!(encode_response(tag, &response, &mut out), Ok(out.len()));
    Ok(out)
}

fn with_len(mut record: Vec<u8>, len: usize) -> Vec<u8> {
    record[4..8].copy_from_slice(&(len as u32).to_le_bytes());
    record
}

/// Checks on a valid `record`: truncations and extensions are rejected, and a flipped bit is
/// rejected or re-encodes to exactly the flipped bytes.
fn check_mutations(record: &[u8], reencode: fn(&[u8]) -> Result<Vec<u8>, DecodeError>) {
    let len = record.len();
    assert_eq!(reencode(record).as_deref(), Ok(record));
    for cut in 0..len {
        let prefix = &record[..cut];
        assert!(reencode(prefix).is_err(), "prefix of {cut} bytes accepted");
        if cut >= HEADER_LEN {
            // Even when the header agrees, the payload runs out inside a field.
            let patched = with_len(prefix.to_vec(), cut);
            assert_eq!(reencode(&patched), Err(DecodeError::Truncated), "cut {cut}");
        }
    }
    let mut longer = with_len(record.to_vec(), len + 1);
    longer.push(0);
    assert_eq!(reencode(&longer), Err(DecodeError::TrailingBytes));
    longer.truncate(len);
    assert!(matches!(
        reencode(&longer),
        Err(DecodeError::LengthMismatch { .. })
    ));

    // Every bit of short records; the two ends of long ones, whose middles are runs of string
    // or data bytes.
    let positions = (0..len).filter(|&i| len <= 1024 || i < 512 || i >= len - 512);
    let mut flipped = record.to_vec();
    for i in positions {
        for bit in 0..8 {
            flipped[i] ^= 1 << bit;
            if let Ok(again) = reencode(&flipped) {
                assert_eq!(
                    again, flipped,
                    "byte {i} bit {bit}: accepted but not canonical"
                );
            }
            flipped[i] ^= 1 << bit;
        }
    }
}

fn cases() -> u32 {
    std::env::var("BTFUSE_PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(256)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn requests_round_trip(tag in any::<u64>(), parts in request_parts()) {
        let request = parts.request();
        prop_assert_eq!(request_index(&request), parts.op);
        let len = request_len(&request);
        prop_assert!((HEADER_LEN..=MAX_RECORD).contains(&len));
        let mut out = vec![0xa5; len + 7];
        prop_assert_eq!(
            encode_request(tag, &request, &mut out[..len - 1]),
            Err(EncodeError::BufferTooSmall { needed: len })
        );
        prop_assert_eq!(encode_request(tag, &request, &mut out), Ok(len));
        let record = &out[..len];
        prop_assert_eq!(decode_request(record), Ok((tag, request)));
        let header = peek_header(&out).unwrap();
        let expected = (request.opcode(), len, tag);
        prop_assert_eq!((header.opcode, header.len as usize, header.tag), expected);
        check_mutations(record, reencode_request);
    }

    #[test]
    fn responses_round_trip(tag in any::<u64>(), parts in response_parts()) {
        let response = parts.response();
        prop_assert_eq!(response_index(&response), parts.op);
        let len = response_len(&response);
        prop_assert!((HEADER_LEN..=MAX_RECORD).contains(&len));
        let mut out = vec![0x5a; len + 7];
        prop_assert_eq!(
            encode_response(tag, &response, &mut out[..len - 1]),
            Err(EncodeError::BufferTooSmall { needed: len })
        );
        prop_assert_eq!(encode_response(tag, &response, &mut out), Ok(len));
        let record = &out[..len];
        prop_assert_eq!(decode_response(record), Ok((tag, response)));
        check_mutations(record, reencode_response);
    }

    #[test]
    fn dirents_iterate_what_was_pushed(
        entries in vec((any::<[u64; 2]>(), file_type(), entry_name()), 0..40),
        cap in 0usize..2048,
    ) {
        let mut buf = vec![0; cap];
        let mut builder = DirentBuilder::new(&mut buf);
        let mut pushed = Vec::new();
        for ([ino, cookie], kind, name) in &entries {
            let entry = DirEntry { ino: Ino(*ino), cookie: *cookie, kind: *kind, name };
            let room = cap - builder.len();
            let fits = builder.push(&entry).unwrap();
            prop_assert_eq!(fits, DirentList::entry_len(name.len()) <= room);
            if fits {
                pushed.push(entry);
            }
        }
        let list = builder.finish();
        prop_assert_eq!(list.iter().collect::<Vec<_>>(), pushed.clone());
        prop_assert_eq!(DirentList::new(list.as_bytes()), Ok(list));
        // Taken one at a time from the bytes, the same entries, then nothing.
        let mut rest = list.as_bytes();
        let mut split = Vec::new();
        while let Some((entry, after)) = DirentList::split_first(rest) {
            prop_assert!(after.len() < rest.len());
            split.push(entry);
            rest = after;
        }
        prop_assert!(rest.is_empty());
        prop_assert_eq!(split, pushed);
    }
}

// ---- Handcrafted records, laid out as the module documentation says. ----

fn record(opcode: u8, tag: u64, payload: &[u8]) -> Vec<u8> {
    let mut bytes = vec![VERSION, opcode, 0, 0];
    bytes.extend_from_slice(&((HEADER_LEN + payload.len()) as u32).to_le_bytes());
    bytes.extend_from_slice(&tag.to_le_bytes());
    bytes.extend_from_slice(payload);
    bytes
}

/// Decodes a request record around `payload`, keeping only the verdict.
fn request_check(opcode: u8, payload: &[u8]) -> Result<(), DecodeError> {
    decode_request(&record(opcode, 1, payload)).map(|_| ())
}

/// Decodes a response record around `payload`, keeping only the verdict.
fn response_check(kind: u8, payload: &[u8]) -> Result<(), DecodeError> {
    decode_response(&record(kind, 1, payload)).map(|_| ())
}

/// Concatenates little-endian fields.
macro_rules! payload {
    ($($field:expr),* $(,)?) => {{
        let mut bytes: Vec<u8> = Vec::new();
        $(bytes.extend_from_slice(&$field);)*
        bytes
    }};
}

/// A `target` naming `path` from the served root, following links.
fn path_target(path: &[u8]) -> Vec<u8> {
    payload![
        [1u8, 1],
        [0u8],
        0u32.to_le_bytes(),
        (path.len() as u16).to_le_bytes(),
        path
    ]
}

const STAT: u8 = 0x10;
const OPEN: u8 = 0x12;
const RENAME: u8 = 0x16;
const UTIMENS: u8 = 0x1d;
const SETXATTR: u8 = 0x20;
const READ: u8 = 0x30;
const WRITE: u8 = 0x32;
const LSEEK: u8 = 0x34;
const FSYNC: u8 = 0x35;
const ACCESS: u8 = 0x11;

#[test]
fn documented_layouts_decode() {
    let handoff = record(0x3c, 9, &3u32.to_le_bytes());
    assert_eq!(
        decode_request(&handoff),
        Ok((9, Request::Handoff { fd: 3 }))
    );
    let mut out = vec![0; handoff.len()];
    assert_eq!(
        encode_request(9, &Request::Handoff { fd: 3 }, &mut out),
        Ok(handoff.len())
    );
    assert_eq!(out, handoff);
    assert_eq!(request_check(0x3c, &[3, 0, 0]), Err(DecodeError::Truncated));
    assert_eq!(
        request_check(0x3c, &[3, 0, 0, 0, 0]),
        Err(DecodeError::TrailingBytes)
    );
    let fstat = record(STAT, 7, &[0, 5, 0, 0, 0]);
    assert_eq!(
        decode_request(&fstat),
        Ok((
            7,
            Request::Stat {
                target: Target::Fd(5)
            }
        ))
    );
    let open = record(
        OPEN,
        u64::MAX,
        &payload![
            [1u8],
            3u32.to_le_bytes(),
            2u16.to_le_bytes(),
            *b"ab",
            0x13u32.to_le_bytes(),
            0o644u32.to_le_bytes(),
            4096u32.to_le_bytes(),
            9u64.to_le_bytes(),
            (1u64 << 20).to_le_bytes()
        ],
    );
    let flags = OpenOptions {
        read: true,
        write: true,
        create: true,
        ..OpenOptions::default()
    };
    let expected = Request::Open {
        at: Some(3),
        path: b"ab",
        flags,
        mode: 0o644,
        prefetch: 4096,
        known_ino: 9,
        known_version: 1 << 20,
    };
    assert_eq!(decode_request(&open), Ok((u64::MAX, expected)));
    let mut out = vec![0; open.len()];
    assert_eq!(
        encode_request(u64::MAX, &expected, &mut out),
        Ok(open.len())
    );
    assert_eq!(out, open);

    let err = record(0x81, 9, &2i32.to_le_bytes());
    assert_eq!(
        decode_response(&err),
        Ok((9, Response::Err(Errno::NotFound)))
    );
    let dirents = record(
        0x8a,
        1,
        &payload![
            20u32.to_le_bytes(),
            1u64.to_le_bytes(),
            1u64.to_le_bytes(),
            [4u8],
            1u16.to_le_bytes(),
            *b"."
        ],
    );
    let (_, Response::Dirents(list)) = decode_response(&dirents).unwrap() else {
        panic!("not a listing");
    };
    let dot = DirEntry {
        ino: Ino::ROOT,
        cookie: 1,
        kind: FileType::Directory,
        name: b".",
    };
    assert_eq!(list.iter().collect::<Vec<_>>(), [dot]);

    let outside = record(
        0x8d,
        4,
        &payload![[1u8], 3u32.to_le_bytes(), 4u16.to_le_bytes(), *b"../x"],
    );
    let expected = Response::Outside {
        second: true,
        links: 3,
        path: b"../x",
    };
    assert_eq!(decode_response(&outside), Ok((4, expected)));
    let mut out = vec![0; outside.len()];
    assert_eq!(encode_response(4, &expected, &mut out), Ok(outside.len()));
    assert_eq!(out, outside);
}

#[test]
fn header_errors() {
    let good = record(STAT, 1, &[0, 5, 0, 0, 0]);
    let patched = |at: usize, value: u8| {
        let mut bytes = good.clone();
        bytes[at] = value;
        bytes
    };
    assert_eq!(
        decode_request(&patched(0, 1)),
        Err(DecodeError::BadVersion(1))
    );
    assert_eq!(
        decode_request(&patched(0, 2)),
        Err(DecodeError::BadVersion(2))
    );
    assert_eq!(
        decode_request(&patched(0, 3)),
        Err(DecodeError::BadVersion(3))
    );
    assert_eq!(
        decode_request(&patched(0, 4)),
        Err(DecodeError::BadVersion(4))
    );
    assert_eq!(
        decode_request(&patched(0, 5)),
        Err(DecodeError::BadVersion(5))
    );
    assert_eq!(
        decode_request(&patched(0, 7)),
        Err(DecodeError::BadVersion(7))
    );
    assert_eq!(
        decode_request(&patched(0, 8)),
        Err(DecodeError::BadVersion(8))
    );
    assert_eq!(
        decode_request(&patched(0, 10)),
        Err(DecodeError::BadVersion(10))
    );
    assert_eq!(
        decode_request(&patched(0, 0)),
        Err(DecodeError::BadVersion(0))
    );
    assert_eq!(
        decode_request(&patched(2, 1)),
        Err(DecodeError::ReservedFlags(1))
    );
    assert_eq!(
        decode_request(&patched(3, 0x80)),
        Err(DecodeError::ReservedFlags(0x8000))
    );
    for opcode in [0x00, 0x04, 0x0f, 0x25, 0x2f, 0x3f, 0x47, 0x4b, 0x80, 0xff] {
        assert_eq!(
            decode_request(&patched(1, opcode)),
            Err(DecodeError::UnknownOpcode(opcode)),
        );
    }
    for kind in [0x00, 0x10, 0x7f, 0x92, 0xff] {
        assert_eq!(
            decode_response(&record(kind, 1, &[])),
            Err(DecodeError::UnknownOpcode(kind))
        );
    }
    assert_eq!(
        decode_request(&good[..HEADER_LEN - 1]),
        Err(DecodeError::Truncated)
    );
    assert_eq!(decode_request(&[]), Err(DecodeError::Truncated));
    // The length lies: longer or shorter than the slice, or out of range.
    let lying = with_len(good.clone(), good.len() + 1);
    assert_eq!(
        decode_request(&lying),
        Err(DecodeError::LengthMismatch {
            declared: good.len() as u32 + 1,
            actual: good.len()
        })
    );
    let lying = with_len(good.clone(), good.len() - 1);
    assert!(matches!(
        decode_request(&lying),
        Err(DecodeError::LengthMismatch { .. })
    ));
    let lying = with_len(good.clone(), HEADER_LEN - 1);
    assert_eq!(decode_request(&lying), Err(DecodeError::BadLength(15)));
    let huge = with_len(good.clone(), MAX_RECORD + 1);
    assert_eq!(
        peek_header(&huge),
        Err(DecodeError::BadLength(MAX_RECORD as u32 + 1))
    );
    assert_eq!(
        peek_header(&with_len(good.clone(), MAX_RECORD)).map(|h| h.len),
        Ok(MAX_RECORD as u32)
    );
    // Bytes after the last field.
    assert_eq!(
        decode_request(&record(STAT, 1, &[0, 5, 0, 0, 0, 0])),
        Err(DecodeError::TrailingBytes)
    );
    assert_eq!(
        decode_response(&record(0x80, 1, &[0])),
        Err(DecodeError::TrailingBytes)
    );
}

#[test]
fn string_errors() {
    let stat = |target: Vec<u8>| request_check(STAT, &target);
    assert!(stat(path_target(b"a/b")).is_ok());
    assert!(stat(path_target(&[b'x'; PATH_MAX])).is_ok());
    assert_eq!(stat(path_target(b"")), Err(DecodeError::EmptyString));
    assert_eq!(stat(path_target(b"a\0b")), Err(DecodeError::NulByte));
    assert_eq!(
        stat(path_target(&[b'x'; PATH_MAX + 1])),
        Err(DecodeError::TooLong)
    );
    // The path's length says 10; 3 bytes follow.
    let mut lying = path_target(b"abc");
    lying[7] = 10;
    assert_eq!(stat(lying), Err(DecodeError::Truncated));

    let setxattr = |name: &[u8], value: &[u8]| {
        let body = payload![
            [0u8],
            1u32.to_le_bytes(),
            (name.len() as u16).to_le_bytes(),
            name,
            (value.len() as u32).to_le_bytes(),
            value,
            [0u8]
        ];
        request_check(SETXATTR, &body)
    };
    assert!(setxattr(b"user.a", b"").is_ok());
    assert!(setxattr(&[b'n'; XATTR_NAME_MAX], &vec![0; XATTR_SIZE_MAX]).is_ok());
    assert_eq!(
        setxattr(&[b'n'; XATTR_NAME_MAX + 1], b""),
        Err(DecodeError::TooLong)
    );
    assert_eq!(setxattr(b"", b""), Err(DecodeError::EmptyString));
    assert_eq!(setxattr(b"user.\0", b""), Err(DecodeError::NulByte));
    assert_eq!(
        setxattr(b"user.a", &vec![0; XATTR_SIZE_MAX + 1]),
        Err(DecodeError::TooLong)
    );

    // A data length over MAX_IO is refused before the bytes are looked for.
    let write = payload![1u32.to_le_bytes(), (MAX_IO as u32 + 1).to_le_bytes()];
    assert_eq!(
        decode_request(&record(WRITE, 1, &write)),
        Err(DecodeError::TooLong)
    );
    let write = payload![1u32.to_le_bytes(), u32::MAX.to_le_bytes()];
    assert_eq!(
        decode_request(&record(WRITE, 1, &write)),
        Err(DecodeError::TooLong)
    );
    let read = |len: u32| request_check(READ, &payload![[0; 4], len.to_le_bytes()]);
    assert!(read(MAX_IO as u32).is_ok());
    assert_eq!(read(MAX_IO as u32 + 1), Err(DecodeError::TooLong));
    let data = payload![(MAX_IO as u32 + 1).to_le_bytes(), vec![0; MAX_IO + 1]];
    assert_eq!(
        decode_response(&record(0x84, 1, &data)),
        Err(DecodeError::TooLong)
    );
}

#[test]
fn value_errors() {
    let request = |opcode: u8, body: Vec<u8>| request_check(opcode, &body);
    // Target kinds are 0 and 1.
    assert_eq!(
        request(STAT, vec![2, 5, 0, 0, 0]),
        Err(DecodeError::BadValue)
    );
    // Booleans are 0 and 1: `follow`, then `effective` of access.
    let mut target = path_target(b"a");
    target[1] = 2;
    assert_eq!(request(STAT, target), Err(DecodeError::BadValue));
    assert_eq!(
        request(ACCESS, payload![[0u8], [0; 4], [4u8], [2u8]]),
        Err(DecodeError::BadValue)
    );
    let fsync = record(FSYNC, 1, &payload![[0; 4], [1u8]]);
    let expected = Request::Fsync {
        fd: 0,
        datasync: true,
    };
    assert_eq!(decode_request(&fsync), Ok((1, expected)));
    // Access bits are R, W and X only.
    assert_eq!(
        request(ACCESS, payload![[0u8], [0; 4], [8u8], [0u8]]),
        Err(DecodeError::BadBits)
    );
    // Rename modes are 0 to 2.
    let rename = |mode: u8| {
        request(
            RENAME,
            payload![
                [0u8],
                [0; 4],
                [1, 0],
                *b"a",
                [0u8],
                [0; 4],
                [1, 0],
                *b"b",
                [mode]
            ],
        )
    };
    assert!(rename(2).is_ok());
    assert_eq!(rename(3), Err(DecodeError::BadValue));
    // Whence values are 0 to 4.
    let lseek = |whence: u8| request(LSEEK, payload![[0; 4], [0; 8], [whence]]);
    assert!(lseek(4).is_ok());
    assert_eq!(lseek(5), Err(DecodeError::BadValue));
    // Open flags have nine bits; modes have twelve.
    let open = |flags: u32, mode: u32| {
        request(
            OPEN,
            payload![
                [0u8],
                [0; 4],
                [1, 0],
                *b"f",
                flags.to_le_bytes(),
                mode.to_le_bytes(),
                [0; 4],
                [0; 16]
            ],
        )
    };
    assert!(open(0x7ff, 0o7777).is_ok());
    assert_eq!(open(0x800, 0), Err(DecodeError::BadBits));
    assert_eq!(open(1 << 31, 0), Err(DecodeError::BadBits));
    assert_eq!(open(1, 0o10000), Err(DecodeError::BadBits));
    // An absent `at` must be zero.
    let stat_at = |present: u8, at: u32| {
        request(
            STAT,
            payload![[1u8, 0, present], at.to_le_bytes(), [1, 0], *b"a"],
        )
    };
    assert!(stat_at(1, 9).is_ok());
    assert!(stat_at(0, 0).is_ok());
    assert_eq!(stat_at(0, 9), Err(DecodeError::NonCanonical));
    assert_eq!(stat_at(2, 9), Err(DecodeError::BadValue));
    // Time sets: omit and now carry a zero time; nanoseconds stay below a second.
    let utimens = |kind: u8, secs: i64, nanos: u32| {
        let time = payload![[kind], secs.to_le_bytes(), nanos.to_le_bytes()];
        request(UTIMENS, payload![[0u8], [0; 4], time, [0u8], [0; 12]])
    };
    assert!(utimens(2, -1, 999_999_999).is_ok());
    assert!(utimens(1, 0, 0).is_ok());
    assert_eq!(utimens(0, 1, 0), Err(DecodeError::NonCanonical));
    assert_eq!(utimens(1, 0, 1), Err(DecodeError::NonCanonical));
    assert_eq!(utimens(3, 0, 0), Err(DecodeError::BadValue));
    assert_eq!(utimens(2, 0, 1_000_000_000), Err(DecodeError::BadValue));
    // Xattr modes are 0 to 2.
    let body = payload![[0u8], [0; 4], [1, 0], *b"n", [0; 4], [3u8]];
    assert_eq!(request(SETXATTR, body), Err(DecodeError::BadValue));
}

#[test]
fn response_value_errors() {
    let response = |kind: u8, body: Vec<u8>| response_check(kind, &body);
    for code in [0i32, 3, 8, 100, -2, i32::MAX] {
        assert_eq!(
            response(0x81, code.to_le_bytes().to_vec()),
            Err(DecodeError::BadValue)
        );
    }
    let attr_body = |kind: u8, perm: u32, nanos: u32| {
        let time = payload![0i64.to_le_bytes(), nanos.to_le_bytes()];
        payload![
            [0; 8],
            [kind],
            perm.to_le_bytes(),
            [0; 16],
            [0; 16],
            [0; 4],
            time,
            time,
            time
        ]
    };
    let attr = |kind, perm, nanos| response(0x82, attr_body(kind, perm, nanos));
    assert!(attr(8, 0o7777, 999_999_999).is_ok());
    for kind in [0, 3, 5, 7, 9, 11, 13, 14, 255] {
        assert_eq!(attr(kind, 0, 0), Err(DecodeError::BadValue));
    }
    assert_eq!(attr(8, 0o170000, 0), Err(DecodeError::BadBits));
    assert_eq!(attr(8, 0, 1_000_000_000), Err(DecodeError::BadValue));
    let mut short = attr_body(8, 0, 0);
    assert_eq!(short.len(), 85);
    assert!(response(0x83, payload![[0; 4], short]).is_ok());
    short.pop();
    assert_eq!(response(0x82, short), Err(DecodeError::Truncated));

    // Stamped: an error, then 0, 1, 32 and 33 stamps; an `ok` byte that is not a bool.
    let stamped = |ok: u8, n: u8, stamps: usize| {
        let outcome = if ok == 1 {
            attr_body(8, 0, 0)
        } else {
            2i32.to_le_bytes().to_vec()
        };
        response(0x90, payload![[ok], outcome, [n], vec![0u8; 12 * stamps]])
    };
    assert!(stamped(0, 1, 1).is_ok());
    assert!(stamped(1, 32, 32).is_ok());
    assert_eq!(stamped(0, 0, 0), Err(DecodeError::BadValue), "no stamp");
    assert_eq!(stamped(0, 33, 33), Err(DecodeError::TooLong));
    assert_eq!(stamped(0, 2, 1), Err(DecodeError::Truncated));
    assert_eq!(stamped(2, 1, 1), Err(DecodeError::BadValue));

    // StampedDir: one stamp, then entries; `.` and `..` are not entries, and 1,025 are too
    // many.
    let stamped_entry = |name: &[u8]| {
        payload![
            (name.len() as u16).to_le_bytes(),
            name,
            attr_body(8, 0, 0),
            [0; 12]
        ]
    };
    let listing = |names: &[&[u8]]| {
        let entries: Vec<u8> = names.iter().flat_map(|n| stamped_entry(n)).collect();
        let body = payload![[1], [0; 12], (entries.len() as u32).to_le_bytes(), entries];
        response(0x91, body)
    };
    assert!(listing(&[b"a", b"b"]).is_ok());
    assert!(listing(&[]).is_ok(), "an empty directory");
    assert_eq!(listing(&[b"."]), Err(DecodeError::BadValue));
    assert_eq!(listing(&[b"a", b".."]), Err(DecodeError::BadValue));
    assert_eq!(listing(&[b"a/b"]), Err(DecodeError::SlashInName));
    let many: Vec<&[u8]> = vec![b"x"; 1025];
    assert_eq!(listing(&many), Err(DecodeError::TooLong));
    assert!(listing(&many[..1024]).is_ok());

    let entry =
        |kind: u8, name: &[u8]| payload![[0; 16], [kind], (name.len() as u16).to_le_bytes(), name];
    let listing = |entries: Vec<u8>| {
        let body = payload![(entries.len() as u32).to_le_bytes(), entries];
        response(0x8a, body)
    };
    assert!(listing(payload![entry(4, b"."), entry(4, b"..")]).is_ok());
    assert!(listing(entry(8, &[b'n'; NAME_MAX])).is_ok());
    assert_eq!(
        listing(entry(8, &[b'n'; NAME_MAX + 1])),
        Err(DecodeError::TooLong)
    );
    assert_eq!(listing(entry(8, b"a/b")), Err(DecodeError::SlashInName));
    assert_eq!(listing(entry(8, b"a\0")), Err(DecodeError::NulByte));
    assert_eq!(listing(entry(8, b"")), Err(DecodeError::EmptyString));
    assert_eq!(listing(entry(3, b"a")), Err(DecodeError::BadValue));
    // An entry cut short inside the listing's own length.
    let mut cut = entry(8, b"abc");
    cut.pop();
    assert_eq!(listing(cut.clone()), Err(DecodeError::Truncated));
    assert_eq!(DirentList::new(&cut), Err(DecodeError::Truncated));
    assert_eq!(DirentList::new(&[]), Ok(DirentList::EMPTY));
    // An escape's link count is bounded, its `second` a boolean, its path a path.
    let outside = |second: u8, links: u32, path: &[u8]| {
        let body = payload![
            [second],
            links.to_le_bytes(),
            (path.len() as u16).to_le_bytes(),
            path
        ];
        response(0x8d, body)
    };
    assert!(outside(0, MAX_SYMLINKS, b"/etc/hostname").is_ok());
    assert_eq!(
        outside(0, MAX_SYMLINKS + 1, b"/x"),
        Err(DecodeError::TooLong)
    );
    assert_eq!(outside(2, 0, b"/x"), Err(DecodeError::BadValue));
    assert_eq!(outside(0, 0, b""), Err(DecodeError::EmptyString));
    assert_eq!(outside(0, 0, b"/a\0b"), Err(DecodeError::NulByte));
    assert!(outside(1, 0, &[b'p'; PATH_MAX]).is_ok());
    assert_eq!(
        outside(1, 0, &[b'p'; PATH_MAX + 1]),
        Err(DecodeError::TooLong)
    );
    // Open flags in a `Flags` response.
    assert_eq!(
        response(0x88, 0x800u32.to_le_bytes().to_vec()),
        Err(DecodeError::BadBits)
    );
}

#[test]
fn encoder_refuses_what_decoder_rejects() {
    let refuse = |request: Request<'_>, why: DecodeError| {
        let mut out = vec![0; MAX_RECORD + 64];
        assert_eq!(
            encode_request(1, &request, &mut out),
            Err(EncodeError::Invalid(why)),
            "{request:?}"
        );
    };
    let path = |path| Target::Path {
        at: None,
        path,
        follow: true,
    };
    refuse(
        Request::Stat { target: path(b"") },
        DecodeError::EmptyString,
    );
    refuse(
        Request::Stat {
            target: path(b"a\0"),
        },
        DecodeError::NulByte,
    );
    let long = vec![b'x'; PATH_MAX + 1];
    refuse(
        Request::Stat {
            target: path(&long),
        },
        DecodeError::TooLong,
    );
    refuse(
        Request::Symlink {
            target: &long,
            at: None,
            path: b"l",
        },
        DecodeError::TooLong,
    );
    refuse(
        Request::Mkdir {
            at: None,
            path: b"d",
            mode: 0o40755,
        },
        DecodeError::BadBits,
    );
    refuse(
        Request::RemoveXattr {
            target: Target::Fd(0),
            name: &[b'n'; XATTR_NAME_MAX + 1],
        },
        DecodeError::TooLong,
    );
    refuse(
        Request::Read {
            fd: 0,
            len: MAX_IO as u32 + 1,
        },
        DecodeError::TooLong,
    );
    refuse(
        Request::Readlink {
            at: None,
            path: b"l",
            max: PATH_MAX as u32 + 1,
        },
        DecodeError::TooLong,
    );
    refuse(
        Request::Write {
            fd: 0,
            data: &vec![0; MAX_IO + 1],
        },
        DecodeError::TooLong,
    );
    refuse(
        Request::Utimens {
            target: Target::Fd(0),
            atime: TimeSet::At(Timestamp {
                secs: 0,
                nanos: 1_000_000_000,
            }),
            mtime: TimeSet::Omit,
        },
        DecodeError::BadValue,
    );
    let mut out = vec![0; 1024];
    let bad_entry = DirEntry {
        ino: Ino(2),
        cookie: 3,
        kind: FileType::RegularFile,
        name: b"a/b",
    };
    let mut builder = DirentBuilder::new(&mut out);
    assert_eq!(
        builder.push(&bad_entry),
        Err(EncodeError::Invalid(DecodeError::SlashInName))
    );
    assert!(builder.is_empty());
}

#[test]
fn largest_records_fit_max_record() {
    let data = vec![0xee; MAX_IO];
    let pwrite = Request::Pwrite {
        fd: u32::MAX,
        offset: u64::MAX,
        data: &data,
    };
    assert_eq!(request_len(&pwrite), MAX_RECORD);
    let mut out = vec![0; MAX_RECORD];
    assert_eq!(encode_request(1, &pwrite, &mut out), Ok(MAX_RECORD));
    assert_eq!(decode_request(&out), Ok((1, pwrite)));

    let path = vec![b'p'; PATH_MAX];
    let value = vec![0; XATTR_SIZE_MAX];
    let target = Target::Path {
        at: Some(u32::MAX),
        path: &path,
        follow: false,
    };
    let others = [
        Request::SetXattr {
            target,
            name: &[b'n'; XATTR_NAME_MAX],
            value: &value,
            mode: XattrMode::Create,
        },
        Request::Rename {
            old_at: Some(1),
            old_path: &path,
            new_at: Some(2),
            new_path: &path,
            mode: RenameMode::Exchange,
        },
        Request::Write { fd: 0, data: &data },
    ];
    for request in others {
        assert!(request_len(&request) <= MAX_RECORD);
        assert_eq!(
            encode_request(1, &request, &mut out),
            Ok(request_len(&request))
        );
    }
    let mut entries = vec![0; MAX_IO + 100];
    let mut builder = DirentBuilder::new(&mut entries);
    let name = [b'n'; NAME_MAX];
    let entry = DirEntry {
        ino: Ino(5),
        cookie: 9,
        kind: FileType::Symlink,
        name: &name,
    };
    while builder.push(&entry).unwrap() {}
    assert!(builder.len() <= MAX_IO && builder.len() + DirentList::entry_len(NAME_MAX) > MAX_IO);
    for response in [Response::Data(&data), Response::Dirents(builder.finish())] {
        let len = response_len(&response);
        assert!(len <= MAX_RECORD);
        assert_eq!(encode_response(1, &response, &mut out), Ok(len));
        assert_eq!(decode_response(&out[..len]), Ok((1, response)));
    }
}

#[test]
fn opcodes_are_distinct_and_match_the_table() {
    let parts = RequestParts {
        op: 0,
        paths: [b"a".to_vec(), b"b".to_vec()],
        name: b"user.x".to_vec(),
        bytes: Vec::new(),
        fd: 0,
        target_fd: true,
        ats: [None; 2],
        ids: [None; 2],
        num: [0; 2],
        choice: 0,
        perm: 0,
        flags: [false; 2],
        times: [TimeSet::Omit; 2],
        open: OpenOptions::default(),
        access: [false; 3],
    };
    let opcodes: Vec<u8> = (0..REQUEST_VARIANTS)
        .map(|op| {
            RequestParts {
                op,
                ..parts.clone()
            }
            .request()
            .opcode()
        })
        .collect();
    let expected: Vec<u8> = [
        0x01..=0x03,
        0x10..=0x22,
        0x30..=0x3d,
        0x48..=0x4a,
        0x23..=0x24,
        0x3e..=0x3e,
    ]
    .into_iter()
    .flatten()
    .collect();
    assert_eq!(opcodes, expected);
    let kinds = [
        Response::Ok,
        Response::Err(Errno::Io),
        Response::Size(0),
        Response::Token(0),
    ]
    .map(|r| r.kind());
    assert_eq!(kinds, [0x80, 0x81, 0x85, 0x8b]);
}

#[test]
fn errno_codes_round_trip() {
    let mut codes = BTreeSet::new();
    for errno in ERRNOS {
        assert_eq!(Errno::from_code(errno.code()), Some(errno));
        assert!(codes.insert(errno.code()), "{errno} shares its code");
    }
    let named = [
        ("EPERM", 1),
        ("ENOENT", 2),
        ("EIO", 5),
        ("ENXIO", 6),
        ("E2BIG", 7),
        ("EBADF", 9),
        ("EACCES", 13),
        ("EBUSY", 16),
        ("EEXIST", 17),
        ("ENOTDIR", 20),
        ("EISDIR", 21),
        ("EINVAL", 22),
        ("EFBIG", 27),
        ("ENOSPC", 28),
        ("EMFILE", 24),
        ("EMLINK", 31),
        ("ERANGE", 34),
        ("ENAMETOOLONG", 36),
        ("ENOTEMPTY", 39),
        ("ELOOP", 40),
        ("ENODATA", 61),
        ("EOVERFLOW", 75),
        ("EOPNOTSUPP", 95),
    ];
    for (name, code) in named {
        assert_eq!(Errno::from_code(code).map(Errno::name), Some(name));
    }
    let known = (-1000..1000).filter_map(Errno::from_code).count();
    assert_eq!(known, ERRNOS.len());
}

#[test]
fn errors_explain_themselves() {
    let shown = DecodeError::LengthMismatch {
        declared: 20,
        actual: 16,
    }
    .to_string();
    assert_eq!(shown, "header says 20 bytes, record has 16");
    let shown = EncodeError::Invalid(DecodeError::NulByte).to_string();
    assert_eq!(shown, "invalid message: NUL byte in a path or name");
}

/// The committed seed corpus of the `ring_decode` fuzz target holds one valid record per
/// request opcode and response kind (`cargo run -p btfuse-core --example ring_corpus`
/// regenerates it).
#[test]
fn fuzz_seed_corpus_decodes() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/corpus/ring_decode");
    let (mut opcodes, mut kinds) = (BTreeSet::new(), BTreeSet::new());
    for file in std::fs::read_dir(dir).expect("the seed corpus exists") {
        let path = file.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        let bytes = std::fs::read(&path).unwrap();
        if name.starts_with("request-") {
            let (_, request) = decode_request(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
            opcodes.insert(request.opcode());
        } else if name.starts_with("response-") {
            let (_, response) = decode_response(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
            kinds.insert(response.kind());
        }
    }
    assert_eq!(opcodes.len(), REQUEST_VARIANTS);
    assert_eq!(kinds.len(), RESPONSE_VARIANTS);
}
