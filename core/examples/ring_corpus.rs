//! Writes the seed corpus of the `ring_decode` fuzz target: one valid record per request opcode
//! and response kind, as files named `request-<op>` and `response-<kind>`. The output is the
//! same on every run.
//!
//! Run it with `cargo run -p btfuse-core --example ring_corpus -- fuzz/corpus/ring_decode`.

use std::path::PathBuf;

use btfuse_core::ring::{
    DirentBuilder, OpenOptions, Request, Response, Stamp, StampedEntries, StampedEntry,
    StampsBuilder, Target, Whence, encode_request, encode_response, push_stamped,
};
use btfuse_core::{
    AccessMask, Attr, DirEntry, Errno, FallocateMode, FileType, Ino, RenameMode, StatFs, TimeSet,
    Timestamp, XattrMode,
};

fn requests() -> Vec<(&'static str, Request<'static>)> {
    let path = Target::Path {
        at: Some(3),
        path: b"dir/file",
        follow: true,
    };
    let open = OpenOptions {
        read: true,
        write: true,
        create: true,
        exclusive: true,
        ..OpenOptions::default()
    };
    let time = Timestamp::new(1_700_000_000, 123_456_789).expect("nanoseconds below a second");
    vec![
        ("hello", Request::Hello { version: 1 }),
        ("attach", Request::Attach { token: 0x1234_5678 }),
        ("fork", Request::Fork),
        ("stat", Request::Stat { target: path }),
        (
            "stat-dir",
            Request::StatDir {
                target: Target::Path {
                    at: Some(3),
                    path: b".",
                    follow: true,
                },
            },
        ),
        (
            "stat-stamped",
            Request::StatStamped {
                target: Target::Path {
                    at: None,
                    path: b"/a/b",
                    follow: false,
                },
            },
        ),
        (
            "access",
            Request::Access {
                target: Target::Fd(4),
                mask: AccessMask::WRITE_EXECUTE,
                effective: true,
            },
        ),
        (
            "open",
            Request::Open {
                at: None,
                path: b"/a/b",
                flags: open,
                mode: 0o644,
                prefetch: 4096,
                known_ino: 12,
                known_version: 3 << 20,
            },
        ),
        (
            "mkdir",
            Request::Mkdir {
                at: Some(7),
                path: b"sub",
                mode: 0o755,
            },
        ),
        (
            "rmdir",
            Request::Rmdir {
                at: None,
                path: b"sub",
            },
        ),
        (
            "unlink",
            Request::Unlink {
                at: None,
                path: b"a/b",
            },
        ),
        (
            "rename",
            Request::Rename {
                old_at: None,
                old_path: b"old",
                new_at: Some(2),
                new_path: b"new",
                mode: RenameMode::NoReplace,
            },
        ),
        (
            "link",
            Request::Link {
                old: path,
                new_at: None,
                new_path: b"hard",
            },
        ),
        (
            "symlink",
            Request::Symlink {
                target: b"../target",
                at: None,
                path: b"soft",
            },
        ),
        (
            "readlink",
            Request::Readlink {
                at: None,
                path: b"soft",
                max: 4096,
            },
        ),
        (
            "truncate",
            Request::Truncate {
                target: Target::Fd(5),
                size: 1 << 20,
            },
        ),
        (
            "chmod",
            Request::Chmod {
                target: path,
                mode: 0o4750,
            },
        ),
        (
            "chown",
            Request::Chown {
                target: path,
                uid: Some(1000),
                gid: None,
            },
        ),
        (
            "utimens",
            Request::Utimens {
                target: path,
                atime: TimeSet::Now,
                mtime: TimeSet::At(time),
            },
        ),
        (
            "statfs",
            Request::Statfs {
                target: Target::Fd(0),
            },
        ),
        (
            "getxattr",
            Request::GetXattr {
                target: path,
                name: b"user.comment",
                max: 256,
            },
        ),
        (
            "setxattr",
            Request::SetXattr {
                target: path,
                name: b"user.comment",
                value: b"hello",
                mode: XattrMode::Create,
            },
        ),
        (
            "listxattr",
            Request::ListXattr {
                target: Target::Fd(6),
                max: 0,
            },
        ),
        (
            "removexattr",
            Request::RemoveXattr {
                target: path,
                name: b"user.comment",
            },
        ),
        ("read", Request::Read { fd: 5, len: 4096 }),
        (
            "pread",
            Request::Pread {
                fd: 5,
                offset: 8192,
                len: 512,
            },
        ),
        (
            "write",
            Request::Write {
                fd: 5,
                data: b"some bytes\n",
            },
        ),
        (
            "pwrite",
            Request::Pwrite {
                fd: 5,
                offset: 3,
                data: b"\0\x01\x02",
            },
        ),
        (
            "lseek",
            Request::Lseek {
                fd: 5,
                offset: -10,
                whence: Whence::End,
            },
        ),
        (
            "fsync",
            Request::Fsync {
                fd: 5,
                datasync: true,
            },
        ),
        (
            "fallocate",
            Request::Fallocate {
                fd: 5,
                mode: FallocateMode::PunchHole,
                offset: 4096,
                len: 8192,
            },
        ),
        ("dup", Request::Dup { fd: 5 }),
        ("close", Request::Close { fd: 5 }),
        ("getdents", Request::Getdents { fd: 7, max: 32768 }),
        ("getflags", Request::GetFlags { fd: 5 }),
        (
            "setflags",
            Request::SetFlags {
                fd: 5,
                append: true,
                nonblock: false,
            },
        ),
        ("handoff", Request::Handoff { fd: 1 }),
        ("map_file", Request::MapFile { fd: 1 }),
        (
            "copy_range",
            Request::CopyRange {
                fd_in: 1,
                off_in: Some(4096),
                fd_out: 2,
                off_out: None,
                len: 1 << 20,
            },
        ),
        (
            "getlock",
            Request::GetLock {
                fd: 5,
                ofd: false,
                write: true,
                start: 0,
                end: i64::MAX as u64,
            },
        ),
        (
            "setlock",
            Request::SetLock {
                fd: 5,
                scope: 0,
                kind: 1,
                start: 10,
                end: 19,
                wait: true,
            },
        ),
        (
            "lockwait",
            Request::LockWait {
                token: 3,
                cancel: false,
            },
        ),
    ]
}

fn main() -> std::io::Result<()> {
    let dir = PathBuf::from(
        std::env::args_os()
            .nth(1)
            .expect("usage: ring_corpus OUTPUT_DIR"),
    );
    std::fs::create_dir_all(&dir)?;
    let mut out = vec![0; 1 << 16];

    for (tag, (name, request)) in (1..).zip(requests()) {
        let len = encode_request(tag, &request, &mut out).expect("a valid request");
        std::fs::write(dir.join(format!("request-{name}")), &out[..len])?;
    }

    let time = Timestamp::new(1_700_000_000, 5).expect("nanoseconds below a second");
    let attr = Attr {
        ino: Ino(42),
        kind: FileType::RegularFile,
        perm: 0o644,
        nlink: 1,
        uid: 1000,
        gid: 100,
        rdev: 0,
        size: 12345,
        blocks: 32,
        blksize: 4096,
        atime: time,
        mtime: time,
        ctime: time,
    };
    let mut entries = [0; 256];
    let mut builder = DirentBuilder::new(&mut entries);
    for (cookie, (ino, kind, name)) in (1..).zip([
        (1, FileType::Directory, &b"."[..]),
        (1, FileType::Directory, b".."),
        (42, FileType::RegularFile, b"file"),
        (43, FileType::Symlink, b"link"),
    ]) {
        let entry = DirEntry {
            ino: Ino(ino),
            cookie,
            kind,
            name,
        };
        assert!(
            builder.push(&entry).expect("a valid name"),
            "room for the entry"
        );
    }
    let mut stamps = StampsBuilder::default();
    for (slot, version) in [(7, 3 << 20), (4095, 0), (12, 1 << 40)] {
        assert!(stamps.push(Stamp { slot, version }), "room for three");
    }
    let stamps = stamps.stamps().expect("three stamps");
    let mut entries = Vec::new();
    for (name, slot) in [(&b"one"[..], 7), (b"two", 12)] {
        let entry = StampedEntry {
            name,
            attr,
            stamp: Stamp {
                slot,
                version: 5 << 20,
            },
        };
        push_stamped(&mut entries, &entry).expect("a valid entry");
    }
    let entries = StampedEntries::new(&entries).expect("two entries");
    let responses = [
        ("ok", Response::Ok),
        (
            "stamped",
            Response::Stamped {
                outcome: Ok(attr),
                stamps,
            },
        ),
        ("stamped-dir", Response::StampedDir { stamps, entries }),
        (
            "stamped-err",
            Response::Stamped {
                outcome: Err(Errno::PermissionDenied),
                stamps,
            },
        ),
        ("err", Response::Err(Errno::NotFound)),
        ("attr", Response::Attr(attr)),
        ("opened", Response::Opened { fd: 5, attr }),
        (
            "opened-dir",
            Response::OpenedDir {
                fd: 6,
                attr,
                slot: 9,
            },
        ),
        (
            "prefetched",
            Response::Prefetched {
                fd: 5,
                ino: Ino(12),
                slot: 3,
                version: 7 << 20,
                data: b"first bytes",
            },
        ),
        ("data", Response::Data(b"file contents\n")),
        ("size", Response::Size(14)),
        ("offset", Response::Offset(1 << 40)),
        ("fd", Response::Fd(9)),
        (
            "flags",
            Response::Flags(OpenOptions {
                write: true,
                append: true,
                ..OpenOptions::default()
            }),
        ),
        (
            "statfs",
            Response::StatFs(StatFs {
                block_size: 4096,
                blocks: 1 << 20,
                blocks_free: 1 << 19,
                blocks_available: 1 << 19,
                files: 1 << 16,
                files_free: 1 << 15,
                name_max: 255,
            }),
        ),
        ("dirents", Response::Dirents(builder.finish())),
        ("token", Response::Token(0x1234_5678)),
        (
            "outside",
            Response::Outside {
                second: false,
                links: 2,
                path: b"../outside/rest",
            },
        ),
        (
            "lock",
            Response::Lock {
                write: true,
                start: 0,
                end: 99,
                pid: 4242,
                description: false,
            },
        ),
    ];
    for (tag, (name, response)) in (1..).zip(responses) {
        let len = encode_response(tag, &response, &mut out).expect("a valid response");
        std::fs::write(dir.join(format!("response-{name}")), &out[..len])?;
    }
    Ok(())
}
