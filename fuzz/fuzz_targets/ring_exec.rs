//! Runs sequences of ring requests through the server's executor, for several client sessions
//! and callers, over `MemFs` and over the reference model, and fails when a request succeeds
//! that the caller's rights should have refused.
//!
//! Requests are built as typed values (decoding is `ring_decode`'s target), from a small world:
//! paths under `/a`, `/a/b` and `/d` with `..` and relative forms, symbolic links, modes such as
//! 0o000, 0o700, 0o711 and 0o4755, opens for reading, writing, both or neither. Four callers
//! take turns on four sessions: root; uid 1000 gid 1000; uid 1001 gid 1001 in supplementary
//! group 1000; uid 1002 gid 1002. A session used by several callers is a process that changed
//! its ids: its descriptions keep what they were granted.
//!
//! The oracle, after every step:
//!
//! - **Paths, against the model.** The same step runs through a second executor over
//!   [`Model`], which has seen the same history. Both must succeed or fail alike, with the same
//!   errno, and hand out the same descriptor numbers and inodes. A success where the model
//!   refuses with `EACCES` or `EPERM` is reported as a permission failure of its own.
//! - **Descriptors, against a shadow table.** What a description may do is the executor's own
//!   business and the same in both runs, so it is checked against an independent record: when
//!   `Open` returns a descriptor, the shadow notes whether the description is a directory and
//!   what it was granted, asking the model for read and write permission with the opener's
//!   credentials at that moment (a file the open created is granted what was asked, as Linux
//!   does). `Dup`, `Close`, `Fork` and `Attach` move records as they move descriptions. Then
//!   `Read` and `Pread` may succeed only on a description granted read, `Write`, `Pwrite`,
//!   `Fallocate` and `Truncate` of a descriptor only on one granted write, and `Getdents`
//!   only on a directory granted read. An open asking for neither reading nor writing is
//!   granted neither. Grants never change afterwards, whatever happens to the caller's ids or
//!   the file's mode.
//!
//! Input format, so that seeds can be written by hand: six bytes per step, at most
//! [`MAX_STEPS`] steps; a short tail is ignored.
//!
//! | byte | meaning |
//! |------|---------|
//! | 0 | bits 0-1 session, bits 2-3 caller (root, 1000, 1001, 1002) |
//! | 1 | operation, modulo the length of [`OPS`] |
//! | 2-5 | arguments `a`, `b`, `c`, `d`, as each operation reads them in [`decode_action`] |
//!
//! For `open`, `d` also says what to do with the new descriptor if the open succeeds: bit 0,
//! `Getdents` (a directory) or `Read` (anything else); bit 1, `Write`. Each runs as a step of
//! its own.
//!
//! `BTFUSE_RING_EXEC_TRACE=1` prints the steps of every input run and both runs' answers.
//!
//! A path byte: bits 0-3 pick from [`PATHS`]; bits 4-6, when not 0, name descriptor
//! `value - 1` as the directory a relative path starts from. A target byte: bit 7 names
//! descriptor `bits 0-2`; otherwise bits 0-3 a path, bits 4-5 the start directory as above,
//! and bit 6 asks not to follow a final symbolic link. An open-flags byte: bits 0-1 access
//! (read, write, both, neither), then create, exclusive, truncate, directory, nofollow, append.

#![no_main]

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use btfuse_core::ring::{OpenOptions, Request, Response, Target, Whence};
use btfuse_core::{
    AccessMask, Config, Credentials, Errno, FallocateMode, FileType, Filesystem, Ino, MemFs,
    MemPool, RenameMode, TimeSet, Timestamp, XattrMode,
};
use btfuse_ring_server::fuzzing::Executor;
use btfuse_testkit::clock::ManualClock;
use btfuse_testkit::model::Model;
use libfuzzer_sys::fuzz_target;

/// Steps taken from one input at most.
const MAX_STEPS: usize = 96;
/// Bytes one step is decoded from.
const STEP_LEN: usize = 6;
/// Client sessions, each with its own descriptor table.
const SESSIONS: usize = 4;
/// Blocks of 4 KiB in either filesystem: room for everything a run can write.
const BLOCKS: u64 = 256;

const PATHS: [&[u8]; 16] = [
    b"/",
    b"/a",
    b"/a/b",
    b"/d",
    b"/d/f",
    b"/a/b/f",
    b"/l",
    b"/l/f",
    b"/a/../d",
    b"/a/b/..",
    b"f",
    b"b/f",
    b"..",
    b"/d/",
    b"/s",
    b"/a/b/../../d/f",
];

const LINK_TARGETS: [&[u8]; 8] = [
    b"/d", b"a/b", b"../d", b"/a/b/f", b"f", b"/nope", b"l", b"/a",
];

const MODES: [u32; 16] = [
    0o000, 0o600, 0o700, 0o711, 0o4755, 0o755, 0o644, 0o1777, 0o2775, 0o640, 0o444, 0o222, 0o777,
    0o070, 0o007, 0o6711,
];

const IDS: [Option<u32>; 5] = [None, Some(0), Some(1000), Some(1001), Some(1002)];

const DATA: [&[u8]; 3] = [b"", b"hello", b"0123456789abcdef"];

const XATTR_NAMES: [&[u8]; 4] = [b"user.x", b"trusted.x", b"user.y", b"security.x"];

/// Operation names, in the order of the operation byte (for reports; the decoder matches on
/// the index).
const OPS: [&str; 31] = [
    "open",
    "mkdir",
    "rmdir",
    "unlink",
    "rename",
    "link",
    "symlink",
    "readlink",
    "truncate",
    "chmod",
    "chown",
    "utimens",
    "access",
    "stat",
    "read",
    "pread",
    "write",
    "pwrite",
    "fallocate",
    "getdents",
    "lseek",
    "dup",
    "close",
    "fork",
    "attach",
    "setflags",
    "getflags",
    "setxattr",
    "getxattr",
    "fsync",
    "stat-stamped",
];

/// The callers, as reports name them.
const CALLERS: [&str; 4] = [
    "root",
    "uid 1000 gid 1000",
    "uid 1001 gid 1001 groups [1000]",
    "uid 1002 gid 1002",
];

fn credentials(index: usize) -> Credentials {
    match index {
        0 => Credentials::root(),
        1 => Credentials::user(1000, 1000),
        2 => Credentials {
            groups: vec![1000],
            ..Credentials::user(1001, 1001)
        },
        _ => Credentials::user(1002, 1002),
    }
}

/// What one step does.
#[derive(Clone, Copy, Debug)]
enum Action {
    Call(Request<'static>),
    /// `Attach` to the `n`th `Fork` of the run (modulo their number, plus one token no fork
    /// gave): tokens are random and differ between the two runs.
    Attach(u8),
}

#[derive(Clone, Copy, Debug)]
struct Step {
    session: usize,
    caller: usize,
    action: Action,
    /// After an open that succeeds: use the new descriptor at once, each use a step of its
    /// own. A grant is then one bit away from being tried, where a separate step would need
    /// the session, the operation and the number to line up.
    then: Use,
}

#[derive(Clone, Copy, Debug, Default)]
struct Use {
    /// `Getdents` on a directory, `Read` on anything else.
    read: bool,
    /// `Write`.
    write: bool,
}

fn path_at(byte: u8) -> (Option<u32>, &'static [u8]) {
    let at = match (byte >> 4) & 7 {
        0 => None,
        n => Some(u32::from(n) - 1),
    };
    (at, PATHS[usize::from(byte & 15)])
}

fn target(byte: u8) -> Target<'static> {
    if byte & 0x80 != 0 {
        return Target::Fd(u32::from(byte & 7));
    }
    let at = match (byte >> 4) & 3 {
        0 => None,
        n => Some(u32::from(n) - 1),
    };
    Target::Path {
        at,
        path: PATHS[usize::from(byte & 15)],
        follow: byte & 0x40 == 0,
    }
}

fn open_options(byte: u8) -> OpenOptions {
    let bit = |n: u8| byte & (1 << n) != 0;
    // Access 3 is "neither": as a hostile client sends it, or, with bit 7, access mode 3
    // (`check_read_write`), or with bits 7 and 3, `O_PATH`.
    let neither = byte & 3 == 3;
    OpenOptions {
        read: matches!(byte & 3, 0 | 2),
        write: matches!(byte & 3, 1 | 2),
        create: bit(2),
        exclusive: bit(3),
        truncate: bit(4),
        directory: bit(5),
        nofollow: bit(6),
        append: bit(7) && !neither,
        nonblock: false,
        check_read_write: neither && bit(7) && !bit(3),
        path_only: neither && bit(7) && bit(3),
    }
}

fn mode(byte: u8) -> u32 {
    MODES[usize::from(byte & 15)]
}

fn fd(byte: u8) -> u32 {
    u32::from(byte & 7)
}

fn decode_action(op: u8, [a, b, c, d]: [u8; 4]) -> Action {
    let pick = |byte: u8, n: usize| usize::from(byte) % n;
    let request = match usize::from(op) % OPS.len() {
        0 => {
            let (at, path) = path_at(a);
            Request::Open {
                at,
                path,
                flags: open_options(b),
                mode: mode(c),
                prefetch: 0,
                known_ino: 0,
                known_version: 0,
            }
        }
        1 => {
            let (at, path) = path_at(a);
            Request::Mkdir {
                at,
                path,
                mode: mode(b),
            }
        }
        2 => {
            let (at, path) = path_at(a);
            Request::Rmdir { at, path }
        }
        3 => {
            let (at, path) = path_at(a);
            Request::Unlink { at, path }
        }
        4 => {
            let ((old_at, old_path), (new_at, new_path)) = (path_at(a), path_at(b));
            let mode = [
                RenameMode::Replace,
                RenameMode::NoReplace,
                RenameMode::Exchange,
            ][pick(c, 3)];
            Request::Rename {
                old_at,
                old_path,
                new_at,
                new_path,
                mode,
            }
        }
        5 => {
            let (new_at, new_path) = path_at(b);
            Request::Link {
                old: target(a),
                new_at,
                new_path,
            }
        }
        6 => {
            let (at, path) = path_at(b);
            Request::Symlink {
                target: LINK_TARGETS[pick(a, LINK_TARGETS.len())],
                at,
                path,
            }
        }
        7 => {
            let (at, path) = path_at(a);
            Request::Readlink { at, path, max: 64 }
        }
        8 => Request::Truncate {
            target: target(a),
            size: [0, 3, 4096, 1 << 20][pick(b, 4)],
        },
        9 => Request::Chmod {
            target: target(a),
            mode: mode(b),
        },
        10 => Request::Chown {
            target: target(a),
            uid: IDS[pick(b, IDS.len())],
            gid: IDS[pick(c, IDS.len())],
        },
        11 => {
            let then = TimeSet::At(Timestamp { secs: 7, nanos: 0 });
            let (atime, mtime) = [
                (TimeSet::Now, TimeSet::Now),
                (TimeSet::Omit, TimeSet::Now),
                (then, then),
                (TimeSet::Omit, TimeSet::Omit),
            ][pick(b, 4)];
            Request::Utimens {
                target: target(a),
                atime,
                mtime,
            }
        }
        12 => Request::Access {
            target: target(a),
            mask: AccessMask {
                read: b & 4 != 0,
                write: b & 2 != 0,
                execute: b & 1 != 0,
            },
            effective: false,
        },
        13 => Request::Stat { target: target(a) },
        14 => Request::Read { fd: fd(a), len: 16 },
        15 => Request::Pread {
            fd: fd(a),
            offset: u64::from(b),
            len: 16,
        },
        16 => Request::Write {
            fd: fd(a),
            data: DATA[pick(b, DATA.len())],
        },
        17 => Request::Pwrite {
            fd: fd(a),
            offset: u64::from(c),
            data: DATA[pick(b, DATA.len())],
        },
        18 => Request::Fallocate {
            fd: fd(a),
            mode: [
                FallocateMode::Allocate,
                FallocateMode::KeepSize,
                FallocateMode::PunchHole,
            ][pick(b, 3)],
            offset: u64::from(c),
            len: u64::from(d),
        },
        19 => Request::Getdents {
            fd: fd(a),
            max: 512,
        },
        20 => Request::Lseek {
            fd: fd(a),
            offset: i64::from(b as i8),
            whence: [
                Whence::Set,
                Whence::Cur,
                Whence::End,
                Whence::Data,
                Whence::Hole,
            ][pick(c, 5)],
        },
        21 => Request::Dup { fd: fd(a) },
        22 => Request::Close { fd: fd(a) },
        23 => Request::Fork,
        24 => return Action::Attach(a),
        25 => Request::SetFlags {
            fd: fd(a),
            append: b & 1 != 0,
            nonblock: b & 2 != 0,
        },
        26 => Request::GetFlags { fd: fd(a) },
        27 => Request::SetXattr {
            target: target(a),
            name: XATTR_NAMES[pick(b, XATTR_NAMES.len())],
            value: DATA[pick(c, DATA.len())],
            mode: [XattrMode::Set, XattrMode::Create, XattrMode::Replace][pick(d, 3)],
        },
        28 => Request::GetXattr {
            target: target(a),
            name: XATTR_NAMES[pick(b, XATTR_NAMES.len())],
            max: 64,
        },
        29 => Request::Fsync {
            fd: fd(a),
            datasync: b & 1 != 0,
        },
        _ => Request::StatStamped { target: target(a) },
    };
    Action::Call(request)
}

fn decode(data: &[u8]) -> Vec<Step> {
    data.chunks_exact(STEP_LEN)
        .take(MAX_STEPS)
        .map(|step| {
            let action = decode_action(step[1], [step[2], step[3], step[4], step[5]]);
            let then = match action {
                Action::Call(Request::Open { .. }) => Use {
                    read: step[5] & 1 != 0,
                    write: step[5] & 2 != 0,
                },
                _ => Use::default(),
            };
            Step {
                session: usize::from(step[0] & 3),
                caller: usize::from((step[0] >> 2) & 3),
                action,
                then,
            }
        })
        .collect()
}

/// `Debug` output with every list of printable byte values shown as a string (`[47, 97]`
/// becomes `"/a"`) and modes in octal.
fn readable(debug: &str) -> String {
    let mut octal = String::new();
    let mut rest = debug;
    while let Some(at) = rest.find("mode: ") {
        let (before, after) = rest.split_at(at + "mode: ".len());
        octal.push_str(before);
        let digits = after.len() - after.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        match after[..digits].parse::<u32>() {
            Ok(mode) => octal.push_str(&format!("{mode:#o}")),
            Err(_) => octal.push_str(&after[..digits]),
        }
        rest = &after[digits..];
    }
    octal.push_str(rest);
    let mut out = String::new();
    let mut rest = &octal[..];
    while let Some(open) = rest.find('[') {
        out.push_str(&rest[..open]);
        rest = &rest[open..];
        let close = rest.find(']').unwrap_or(rest.len() - 1);
        let bytes: Option<Vec<u8>> = rest[1..close]
            .split(", ")
            .map(|n| n.parse::<u8>().ok().filter(|b| (0x20..0x7f).contains(b)))
            .collect();
        match bytes {
            Some(bytes) if close > 1 => {
                out.push_str(&format!("{:?}", String::from_utf8_lossy(&bytes)));
                rest = &rest[close + 1..];
            }
            _ => {
                out.push('[');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// What a response said, kept after the executor's buffer is reused.
#[derive(Clone, Debug, PartialEq)]
enum Outcome {
    Err(Errno),
    Done,
    Opened { fd: u32, ino: Ino, kind: FileType },
    Fd(u32),
    Token(u64),
    Size(u64),
    Data(Vec<u8>),
    Entries(Vec<Vec<u8>>),
    Other(u8),
}

impl Outcome {
    fn of(response: &Response<'_>) -> Outcome {
        match *response {
            Response::Err(e) => Outcome::Err(e),
            Response::Ok => Outcome::Done,
            Response::Opened { fd, attr } => Outcome::Opened {
                fd,
                ino: attr.ino,
                kind: attr.kind,
            },
            Response::Fd(fd) => Outcome::Fd(fd),
            Response::Token(token) => Outcome::Token(token),
            Response::Size(n) | Response::Offset(n) => Outcome::Size(n),
            Response::Data(data) => Outcome::Data(data.to_vec()),
            Response::Dirents(list) => {
                Outcome::Entries(list.iter().map(|e| e.name.to_vec()).collect())
            }
            // A stamped answer is the `Stat` answer the model (which reports no changes) gives.
            Response::Stamped {
                outcome: Err(e), ..
            } => Outcome::Err(e),
            Response::Stamped {
                outcome: Ok(attr), ..
            } => Outcome::Other(Response::Attr(attr).kind()),
            ref other => Outcome::Other(other.kind()),
        }
    }

    fn errno(&self) -> Option<Errno> {
        match self {
            Outcome::Err(e) => Some(*e),
            _ => None,
        }
    }

    fn agreed(&self) -> Agreed {
        match *self {
            Outcome::Err(e) => Agreed::Failed(e),
            Outcome::Opened { fd, ino, .. } => Agreed::Succeeded(Some(fd), Some(ino)),
            Outcome::Fd(fd) => Agreed::Succeeded(Some(fd), None),
            Outcome::Token(_) => Agreed::Forked,
            _ => Agreed::Succeeded(None, None),
        }
    }
}

/// The part of an outcome both runs must agree on: failure and its errno, and the descriptor
/// numbers and inodes the shadow follows. Fork tokens are random; bytes are `fs_ops`'s
/// business.
#[derive(PartialEq)]
enum Agreed {
    Failed(Errno),
    Succeeded(Option<u32>, Option<Ino>),
    Forked,
}

/// What a description was granted when it opened.
#[derive(Clone, Copy, Debug)]
struct Grant {
    read: bool,
    write: bool,
    directory: bool,
    /// What the open asked for, and whether the opener had the right to read and to write
    /// the inode then (for the report: a description that may not read what its opener could
    /// not read either is the graver failure).
    asked: (bool, bool),
    rights: (bool, bool),
}

impl Grant {
    /// Why a description with this grant may not do what `verb` says, for the report.
    fn refusal(&self, fd: u32, verb: &str, write: bool) -> String {
        let (asked, right) = if write {
            (self.asked.1, self.rights.1)
        } else {
            (self.asked.0, self.rights.0)
        };
        let access = if write { "write" } else { "read" };
        let why = match (asked, right) {
            (false, false) => format!(
                "it was opened without {access}, by a caller with no right to {access} the inode"
            ),
            (false, true) => format!("it was opened without {access}"),
            (true, false) => format!("its opener had no right to {access} the inode"),
            (true, true) => "the shadow granted it (a bug of the target)".to_owned(),
        };
        format!("{verb} through descriptor {fd} ({self:?}), but {why}")
    }
}

type Table = HashMap<u32, Grant>;

/// The two runs side by side, and the shadow of their descriptor tables.
struct World {
    clock: Arc<ManualClock>,
    engine: Executor<MemFs<MemPool>>,
    model: Executor<Model>,
    /// The shadow descriptor table of each session.
    tables: Vec<Table>,
    /// Per `Fork` of the run: its token in each run, and the table it shared until a child
    /// attached.
    forks: Vec<(u64, u64, Option<Table>)>,
    /// The inode number the model hands out next (it numbers sequentially, never reusing).
    next_ino: u64,
    /// Steps taken, for the report.
    trace: Vec<(Step, Outcome, Outcome)>,
}

impl World {
    fn new() -> World {
        let clock = Arc::new(ManualClock::new());
        let config = Config::default();
        let memfs = MemFs::new(MemPool::new(BLOCKS * 4096), config.clone(), clock.clone());
        let model = Model::new(config, 4096, BLOCKS, clock.clone());
        World {
            clock,
            engine: Executor::new(Arc::new(memfs), SESSIONS),
            model: Executor::new(Arc::new(model), SESSIONS),
            tables: vec![Table::new(); SESSIONS],
            forks: Vec::new(),
            next_ino: 2,
            trace: Vec::new(),
        }
    }

    fn run(&mut self, step: Step) {
        self.clock.tick();
        let cred = credentials(step.caller);
        let created_ino = Ino(self.next_ino);
        let (engine_request, model_request, fork) = match step.action {
            Action::Call(request) => (request, request, None),
            Action::Attach(n) => {
                let n = usize::from(n) % (self.forks.len() + 1);
                let (a, b) = self
                    .forks
                    .get(n)
                    .map_or((0xdead, 0xbeef), |&(a, b, _)| (a, b));
                (
                    Request::Attach { token: a },
                    Request::Attach { token: b },
                    Some(n),
                )
            }
        };
        let got = Outcome::of(&self.engine.execute(step.session, &cred, &engine_request));
        let want = Outcome::of(&self.model.execute(step.session, &cred, &model_request));
        self.trace.push((step, got.clone(), want.clone()));
        while self
            .model
            .fs()
            .getattr(&Credentials::root(), Ino(self.next_ino))
            .is_ok()
        {
            self.next_ino += 1;
        }

        if got.errno().is_none()
            && let Some(e @ (Errno::PermissionDenied | Errno::NotPermitted)) = want.errno()
        {
            self.fail(&format!("MemFs granted what the model refuses with {e:?}"));
        }
        if got.agreed() != want.agreed() {
            self.fail("MemFs and the model answer differently");
        }
        self.check_descriptors(step, &engine_request, &got);
        self.follow_descriptors(step, &cred, &engine_request, &got, &want, created_ino, fork);

        if let Outcome::Opened { fd, kind, .. } = got {
            let after = |request| Step {
                action: Action::Call(request),
                then: Use::default(),
                ..step
            };
            if step.then.read {
                self.run(after(if kind == FileType::Directory {
                    Request::Getdents { fd, max: 512 }
                } else {
                    Request::Read { fd, len: 16 }
                }));
            }
            if step.then.write {
                self.run(after(Request::Write { fd, data: b"hello" }));
            }
        }
    }

    /// The shadow's verdict on a descriptor call that succeeded.
    fn check_descriptors(&self, step: Step, request: &Request<'_>, got: &Outcome) {
        if got.errno().is_some() {
            // Only the close and dup of a number the shadow knows must succeed.
            if let Request::Close { fd } | Request::Dup { fd } = *request
                && got.errno() == Some(Errno::BadHandle)
                && self.tables[step.session].contains_key(&fd)
            {
                self.fail(&format!("descriptor {fd} is open in the shadow but EBADF"));
            }
            return;
        }
        let table = &self.tables[step.session];
        let grant = |fd: u32| match table.get(&fd) {
            Some(grant) => *grant,
            None => self.fail(&format!(
                "descriptor {fd} succeeded but the shadow has none"
            )),
        };
        match *request {
            Request::Read { fd, .. } | Request::Pread { fd, .. } => {
                let grant = grant(fd);
                if !grant.read {
                    self.fail(&grant.refusal(fd, "read", false));
                }
            }
            Request::Write { fd, .. }
            | Request::Pwrite { fd, .. }
            | Request::Fallocate { fd, .. }
            | Request::Truncate {
                target: Target::Fd(fd),
                ..
            } => {
                let grant = grant(fd);
                if !grant.write {
                    self.fail(&grant.refusal(fd, "wrote", true));
                }
            }
            Request::Getdents { fd, .. } => {
                let grant = grant(fd);
                if !grant.directory {
                    self.fail(&format!("listed descriptor {fd} of a non-directory"));
                }
                if !grant.read {
                    self.fail(&grant.refusal(fd, "listed a directory", false));
                }
            }
            Request::Dup { fd } | Request::Close { fd } | Request::GetFlags { fd } => {
                grant(fd);
            }
            _ => {}
        }
    }

    /// Keeps the shadow tables in step with a call that succeeded.
    #[allow(clippy::too_many_arguments)]
    fn follow_descriptors(
        &mut self,
        step: Step,
        cred: &Credentials,
        request: &Request<'_>,
        got: &Outcome,
        want: &Outcome,
        created_ino: Ino,
        fork: Option<usize>,
    ) {
        let session = step.session;
        match (request, got) {
            (Request::Open { flags, .. }, &Outcome::Opened { fd, ino, kind }) => {
                let fs = self.model.fs();
                let rights = (
                    fs.access(cred, ino, AccessMask::READ).is_ok(),
                    fs.access(cred, ino, AccessMask::WRITE).is_ok(),
                );
                // A file the open created is opened without a check (Linux `do_open` with
                // `FMODE_CREATED`): a new 0o000 file is still written through.
                let created = ino == created_ino;
                let grant = Grant {
                    read: flags.read && (created || rights.0),
                    write: flags.write && (created || rights.1),
                    directory: kind == FileType::Directory,
                    asked: (flags.read, flags.write),
                    rights,
                };
                self.tables[session].insert(fd, grant);
            }
            (&Request::Dup { fd }, &Outcome::Fd(new)) => {
                let grant = self.tables[session][&fd];
                self.tables[session].insert(new, grant);
            }
            (&Request::Close { fd }, Outcome::Done) => {
                self.tables[session].remove(&fd);
            }
            (Request::Fork, &Outcome::Token(engine_token)) => {
                let &Outcome::Token(model_token) = want else {
                    unreachable!("both runs agree on success")
                };
                let table = self.tables[session].clone();
                self.forks.push((engine_token, model_token, Some(table)));
            }
            (Request::Attach { .. }, Outcome::Done) => {
                let n = fork.expect("an attach names a fork");
                match self.forks.get_mut(n).and_then(|f| f.2.take()) {
                    Some(table) => self.tables[session] = table,
                    None => self.fail("attached to a fork the shadow has no table for"),
                }
            }
            _ => {}
        }
    }

    /// Every step taken so far, with both runs' answers.
    fn report(&self) -> String {
        let mut report = String::new();
        for (i, (step, got, want)) in self.trace.iter().enumerate() {
            let _ = writeln!(
                report,
                "  {i:>2}: session {} {}: {}\n      MemFs {}\n      model {}",
                step.session,
                CALLERS[step.caller],
                readable(&format!("{:?}", step.action)),
                readable(&format!("{got:?}")),
                readable(&format!("{want:?}")),
            );
        }
        report
    }

    fn fail(&self, why: &str) -> ! {
        panic!("{why}\nsteps:\n{}", self.report());
    }
}

fuzz_target!(|data: &[u8]| {
    let mut world = World::new();
    for step in decode(data) {
        world.run(step);
    }
    // To read what an input does: run the target on it with this variable set.
    if std::env::var_os("BTFUSE_RING_EXEC_TRACE").is_some() {
        eprint!("{}", world.report());
    }
});
