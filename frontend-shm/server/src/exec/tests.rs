//! The executor against the engine, request by request: Linux's order of checks, the grants
//! of descriptions, offsets shared by `dup` and `fork`, walks that leave the tree, and hostile
//! values answered rather than obeyed.

use std::sync::atomic::{AtomicI64, Ordering};

use btfuse_core::ring::DirentList;
use btfuse_core::{AccessMask, Clock, Config, ContentWatch, MemFs, MemPool, StatFs, Timestamp};

use super::super::session::UserBudget;
use super::*;

type Fs = MemFs<MemPool>;

const KIB4: usize = 4096;

/// A clock one second further on at every reading, so that every change has a time of its
/// own.
struct Ticking(AtomicI64);

impl Clock for Ticking {
    fn now(&self) -> Timestamp {
        Timestamp {
            secs: self.0.fetch_add(1, Ordering::SeqCst),
            nanos: 0,
        }
    }
}

/// One client connection: a session over a filesystem shared with other clients.
struct Client {
    fs: Arc<Fs>,
    forks: Arc<ForkTable<Fs>>,
    session: Arc<Session<Fs>>,
    cred: Credentials,
    scratch: Scratch,
    contents: Arc<ContentTable>,
}

impl Client {
    /// Root on a fresh filesystem of 1 MiB (256 blocks of 4 KiB).
    fn root() -> Client {
        let clock = Ticking(AtomicI64::new(1_000));
        let fs = MemFs::new(MemPool::new(1 << 20), Config::default(), clock);
        let contents = Arc::new(ContentTable::new().unwrap());
        assert!(fs.watch_content(contents.clone()));
        Client {
            fs: Arc::new(fs),
            forks: Arc::new(ForkTable::default()),
            session: Arc::new(Session::new(
                1,
                &Credentials::root(),
                Arc::new(UserBudget::new(usize::MAX)),
            )),
            cred: Credentials::root(),
            scratch: Scratch::default(),
            contents,
        }
    }

    /// Another connection to the same filesystem, by `uid`:`gid`, with a new session.
    fn other(&self, uid: u32, gid: u32) -> Client {
        Client {
            fs: self.fs.clone(),
            forks: self.forks.clone(),
            session: Arc::new(Session::new(
                u64::from(uid) + 100,
                &Credentials::user(uid, gid),
                Arc::new(UserBudget::new(usize::MAX)),
            )),
            cred: Credentials::user(uid, gid),
            scratch: Scratch::default(),
            contents: self.contents.clone(),
        }
    }

    fn run(&mut self, request: Request<'_>) -> Response<'_> {
        execute(
            &self.fs,
            &self.forks,
            &mut self.session,
            &self.cred,
            &request,
            &mut self.scratch,
            Extras {
                courier: None,
                contents: Some(&self.contents),
                shower: None,
            },
        )
    }

    fn unit(&mut self, request: Request<'_>) -> Result<()> {
        match self.run(request) {
            Response::Ok => Ok(()),
            Response::Err(e) => Err(e),
            other => panic!("expected Ok, got {other:?}"),
        }
    }

    fn number(&mut self, request: Request<'_>) -> Result<u64> {
        match self.run(request) {
            Response::Size(n) | Response::Offset(n) | Response::Token(n) => Ok(n),
            Response::Fd(fd) => Ok(u64::from(fd)),
            Response::Err(e) => Err(e),
            other => panic!("expected a number, got {other:?}"),
        }
    }

    fn bytes(&mut self, request: Request<'_>) -> Result<Vec<u8>> {
        match self.run(request) {
            Response::Data(data) => Ok(data.to_vec()),
            Response::Err(e) => Err(e),
            other => panic!("expected Data, got {other:?}"),
        }
    }

    fn entries(&mut self, fd: u32, max: u32) -> Result<Vec<(Vec<u8>, u64, Ino)>> {
        match self.run(Request::Getdents { fd, max }) {
            Response::Dirents(list) => Ok(list
                .iter()
                .map(|e| (e.name.to_vec(), e.cookie, e.ino))
                .collect()),
            Response::Err(e) => Err(e),
            other => panic!("expected Dirents, got {other:?}"),
        }
    }

    fn open_at(
        &mut self,
        at: Option<u32>,
        path: &[u8],
        flags: OpenOptions,
        mode: u32,
    ) -> Result<(u32, Attr)> {
        match self.run(Request::Open {
            at,
            path,
            flags,
            mode,
            prefetch: 0,
            known_ino: 0,
            known_version: 0,
        }) {
            Response::Opened { fd, attr } => Ok((fd, attr)),
            Response::Err(e) => Err(e),
            other => panic!("expected Opened, got {other:?}"),
        }
    }

    fn open(&mut self, path: &[u8], flags: OpenOptions, mode: u32) -> Result<(u32, Attr)> {
        self.open_at(None, path, flags, mode)
    }

    fn fd(&mut self, path: &[u8], flags: OpenOptions) -> u32 {
        self.open(path, flags, 0o644).unwrap().0
    }

    fn stat(&mut self, target: Target<'_>) -> Result<Attr> {
        match self.run(Request::Stat { target }) {
            Response::Attr(attr) => Ok(attr),
            Response::Err(e) => Err(e),
            other => panic!("expected Attr, got {other:?}"),
        }
    }

    fn seek(&mut self, fd: u32, offset: i64, whence: Whence) -> Result<u64> {
        self.number(Request::Lseek { fd, offset, whence })
    }

    fn tell(&mut self, fd: u32) -> u64 {
        self.seek(fd, 0, Whence::Cur).unwrap()
    }

    fn write(&mut self, fd: u32, data: &[u8]) -> Result<u64> {
        self.number(Request::Write { fd, data })
    }

    fn pwrite(&mut self, fd: u32, offset: u64, data: &[u8]) -> Result<u64> {
        self.number(Request::Pwrite { fd, offset, data })
    }

    fn read(&mut self, fd: u32, len: u32) -> Result<Vec<u8>> {
        self.bytes(Request::Read { fd, len })
    }

    fn pread(&mut self, fd: u32, offset: u64, len: u32) -> Result<Vec<u8>> {
        self.bytes(Request::Pread { fd, offset, len })
    }

    fn close(&mut self, fd: u32) -> Result<()> {
        self.unit(Request::Close { fd })
    }

    /// Creates or replaces `path` with `data`.
    fn put(&mut self, path: &[u8], data: &[u8]) {
        let flags = OpenOptions {
            truncate: true,
            ..creat()
        };
        let fd = self.fd(path, flags);
        assert_eq!(self.write(fd, data), Ok(data.len() as u64));
        self.close(fd).unwrap();
    }

    /// The whole content of `path`.
    fn get(&mut self, path: &[u8]) -> Vec<u8> {
        let fd = self.fd(path, ro());
        let data = self.pread(fd, 0, ring::MAX_IO as u32).unwrap();
        self.close(fd).unwrap();
        data
    }

    fn mkdir(&mut self, path: &[u8], mode: u32) -> Result<()> {
        self.unit(Request::Mkdir {
            at: None,
            path,
            mode,
        })
    }

    fn symlink(&mut self, target: &[u8], path: &[u8]) -> Result<()> {
        self.unit(Request::Symlink {
            target,
            at: None,
            path,
        })
    }

    fn unlink(&mut self, path: &[u8]) -> Result<()> {
        self.unit(Request::Unlink { at: None, path })
    }

    fn rmdir(&mut self, path: &[u8]) -> Result<()> {
        self.unit(Request::Rmdir { at: None, path })
    }

    fn rename(&mut self, old_path: &[u8], new_path: &[u8], mode: RenameMode) -> Result<()> {
        self.unit(Request::Rename {
            old_at: None,
            old_path,
            new_at: None,
            new_path,
            mode,
        })
    }

    fn chmod(&mut self, target: Target<'_>, mode: u32) -> Result<()> {
        self.unit(Request::Chmod { target, mode })
    }

    fn chown(&mut self, target: Target<'_>, uid: Option<u32>, gid: Option<u32>) -> Result<()> {
        self.unit(Request::Chown { target, uid, gid })
    }

    fn statfs(&mut self) -> StatFs {
        match self.run(Request::Statfs { target: at(b"/") }) {
            Response::StatFs(statfs) => statfs,
            other => panic!("expected StatFs, got {other:?}"),
        }
    }
}

fn ro() -> OpenOptions {
    OpenOptions {
        read: true,
        ..OpenOptions::default()
    }
}

fn wo() -> OpenOptions {
    OpenOptions {
        write: true,
        ..OpenOptions::default()
    }
}

fn rw() -> OpenOptions {
    OpenOptions {
        read: true,
        write: true,
        ..OpenOptions::default()
    }
}

fn creat() -> OpenOptions {
    OpenOptions {
        create: true,
        ..rw()
    }
}

fn excl() -> OpenOptions {
    OpenOptions {
        exclusive: true,
        ..creat()
    }
}

fn dir() -> OpenOptions {
    OpenOptions {
        directory: true,
        ..ro()
    }
}

/// A path that follows a final symbolic link (`stat`).
fn at(path: &[u8]) -> Target<'_> {
    Target::Path {
        at: None,
        path,
        follow: true,
    }
}

/// A path that does not (`lstat`).
fn lat(path: &[u8]) -> Target<'_> {
    Target::Path {
        at: None,
        path,
        follow: false,
    }
}

fn names(entries: &[(Vec<u8>, u64, Ino)]) -> Vec<&[u8]> {
    entries.iter().map(|(name, _, _)| &name[..]).collect()
}

use Errno::*;

#[test]
fn hello_accepts_only_this_version() {
    let mut c = Client::root();
    assert_eq!(
        c.run(Request::Hello {
            version: ring::VERSION
        }),
        Response::Ok
    );
    let newer = ring::VERSION.wrapping_add(1);
    assert_eq!(
        c.run(Request::Hello { version: newer }),
        Response::Err(InvalidArgument)
    );
    assert_eq!(
        c.run(Request::Hello { version: 0 }),
        Response::Err(InvalidArgument)
    );
}

#[test]
fn open_creates_and_reopens() {
    let mut c = Client::root();
    let (fd, attr) = c.open(b"/f", excl(), 0o640).unwrap();
    assert_eq!(
        (attr.kind, attr.perm, attr.size, attr.nlink, attr.uid),
        (FileType::RegularFile, 0o640, 0, 1, 0)
    );
    assert_eq!(fd, 0);
    assert_eq!(c.open(b"/f", excl(), 0o600), Err(Exists));
    let (again, same) = c.open(b"f", creat(), 0o600).unwrap();
    assert_eq!((again, same.ino, same.perm), (1, attr.ino, 0o640));
    c.mkdir(b"/d", 0o755).unwrap();
    assert_eq!(c.open(b"/d", creat(), 0o600), Err(IsADirectory));
    assert_eq!(c.open(b"/d", excl(), 0o600), Err(Exists));
    assert_eq!(c.open(b"/", creat(), 0o600), Err(IsADirectory));
    assert_eq!(c.open(b"/d/..", excl(), 0o600), Err(Exists));
    // A name to create written with a slash after it (Linux `open_last_lookups`).
    assert_eq!(c.open(b"/new/", creat(), 0o600), Err(IsADirectory));
    assert_eq!(c.open(b"/f/", creat(), 0o600), Err(IsADirectory));
    assert_eq!(c.stat(at(b"/new")), Err(NotFound));
    assert_eq!(c.open(b"/missing/x", creat(), 0o600), Err(NotFound));
    assert_eq!(c.open(b"/f/x", creat(), 0o600), Err(NotADirectory));
    assert_eq!(c.open(b"/nope", rw(), 0), Err(NotFound));
    let both = OpenOptions {
        directory: true,
        ..creat()
    };
    assert_eq!(c.open(b"/g", both, 0o600), Err(InvalidArgument));
    assert_eq!(c.stat(at(b"/g")), Err(NotFound));
}

#[test]
fn o_creat_follows_a_final_symlink_unless_excl_or_nofollow() {
    let mut c = Client::root();
    c.symlink(b"target", b"/dangling").unwrap();
    c.mkdir(b"/d", 0o755).unwrap();
    c.symlink(b"../made", b"/d/up").unwrap();
    // O_EXCL: the link itself exists, dangling or not.
    assert_eq!(c.open(b"/dangling", excl(), 0o600), Err(Exists));
    let nofollow = OpenOptions {
        nofollow: true,
        ..creat()
    };
    assert_eq!(c.open(b"/dangling", nofollow, 0o600), Err(TooManySymlinks));
    assert_eq!(c.stat(at(b"/target")), Err(NotFound));
    // Without them a dangling link creates its target, relative to the link's directory.
    let (_, made) = c.open(b"/dangling", creat(), 0o600).unwrap();
    assert_eq!(c.stat(at(b"/target")).unwrap().ino, made.ino);
    assert_eq!(c.stat(lat(b"/dangling")).unwrap().kind, FileType::Symlink);
    let (_, up) = c.open(b"/d/up", creat(), 0o600).unwrap();
    assert_eq!(c.stat(at(b"/made")).unwrap().ino, up.ino);
    let (_, again) = c.open(b"/d/up", creat(), 0o600).unwrap();
    assert_eq!(again.ino, up.ino);
    // A link to a name with a slash after it asks for a directory.
    c.symlink(b"slashed/", b"/toslash").unwrap();
    assert_eq!(c.open(b"/toslash", creat(), 0o600), Err(IsADirectory));
    // At most 40 links: l0 -> l1 -> ... -> l40 -> end.
    for i in 0..=40 {
        let target = if i == 40 {
            b"end".to_vec()
        } else {
            format!("l{}", i + 1).into_bytes()
        };
        c.symlink(&target, format!("/l{i}").as_bytes()).unwrap();
    }
    assert_eq!(c.open(b"/l0", creat(), 0o600), Err(TooManySymlinks));
    assert_eq!(c.stat(at(b"/end")), Err(NotFound));
    assert!(c.open(b"/l1", creat(), 0o600).is_ok());
    assert_eq!(c.stat(at(b"/end")).unwrap().kind, FileType::RegularFile);
    c.symlink(b"loop", b"/loop").unwrap();
    assert_eq!(c.open(b"/loop", creat(), 0o600), Err(TooManySymlinks));
}

/// Which path of a request left the tree, the links followed and the rest of the walk.
fn left(response: Response<'_>) -> (bool, u32, Vec<u8>) {
    match response {
        Response::Outside {
            second,
            links,
            path,
        } => (second, links, path.to_vec()),
        other => panic!("expected Outside, got {other:?}"),
    }
}

#[test]
fn walks_that_leave_the_tree_answer_outside_and_change_nothing() {
    let mut c = Client::root();
    c.mkdir(b"/d", 0o755).unwrap();
    c.put(b"/d/f", b"x");
    c.symlink(b"/etc/hostname", b"/host").unwrap();
    c.symlink(b"host", b"/via").unwrap();
    c.symlink(b"/tmp", b"/tmp").unwrap();
    c.symlink(b"../../outside", b"/d/up").unwrap();
    let stat = |c: &mut Client, target| left(c.run(Request::Stat { target }));
    // An absolute link leaves with its target and what is left to walk.
    assert_eq!(
        stat(&mut c, at(b"/host")),
        (false, 1, b"/etc/hostname".to_vec())
    );
    assert_eq!(
        stat(&mut c, at(b"/via")),
        (false, 2, b"/etc/hostname".to_vec())
    );
    assert_eq!(
        stat(&mut c, at(b"/tmp/x//y")),
        (false, 1, b"/tmp/x//y".to_vec())
    );
    assert_eq!(c.stat(lat(b"/host")).unwrap().kind, FileType::Symlink);
    // `..` above the root leaves relative to where the client sees the root.
    assert_eq!(stat(&mut c, at(b"/..")), (false, 0, b"..".to_vec()));
    assert_eq!(
        stat(&mut c, at(b"/d/../../o")),
        (false, 0, b"../o".to_vec())
    );
    assert_eq!(
        stat(&mut c, at(b"/d/up/z")),
        (false, 1, b"../outside/z".to_vec())
    );
    let d = c.fd(b"/d", dir());
    let from_d = Target::Path {
        at: Some(d),
        path: b"../../o",
        follow: true,
    };
    assert_eq!(stat(&mut c, from_d), (false, 0, b"../o".to_vec()));
    // Calls that would change something change nothing.
    let before = c.statfs();
    let mkdir = Request::Mkdir {
        at: None,
        path: b"/tmp/new",
        mode: 0o755,
    };
    assert_eq!(left(c.run(mkdir)), (false, 1, b"/tmp/new".to_vec()));
    let rename = Request::Rename {
        old_at: None,
        old_path: b"/d/f",
        new_at: None,
        new_path: b"/tmp/g",
        mode: RenameMode::Replace,
    };
    assert_eq!(left(c.run(rename)), (true, 1, b"/tmp/g".to_vec()));
    let rename = Request::Rename {
        old_at: None,
        old_path: b"/../g",
        new_at: None,
        new_path: b"/d/g",
        mode: RenameMode::Replace,
    };
    assert_eq!(left(c.run(rename)), (false, 0, b"../g".to_vec()));
    let link = Request::Link {
        old: at(b"/d/f"),
        new_at: None,
        new_path: b"/tmp/h",
    };
    assert_eq!(left(c.run(link)), (true, 1, b"/tmp/h".to_vec()));
    let chmod = Request::Chmod {
        target: at(b"/host"),
        mode: 0o600,
    };
    assert_eq!(left(c.run(chmod)), (false, 1, b"/etc/hostname".to_vec()));
    assert_eq!(c.get(b"/d/f"), b"x");
    assert_eq!(c.statfs(), before);
    // `O_CREAT` through a dangling link to an absolute name creates nothing here.
    c.symlink(b"/tmp/made", b"/dangling").unwrap();
    c.symlink(b"dangling", b"/twice").unwrap();
    let before = c.statfs();
    let open = |c: &mut Client, path, flags| {
        left(c.run(Request::Open {
            at: None,
            path,
            flags,
            mode: 0o600,
            prefetch: 0,
            known_ino: 0,
            known_version: 0,
        }))
    };
    assert_eq!(
        open(&mut c, b"/dangling", creat()),
        (false, 1, b"/tmp/made".to_vec())
    );
    assert_eq!(
        open(&mut c, b"/twice", creat()),
        (false, 2, b"/tmp/made".to_vec())
    );
    assert_eq!(
        open(&mut c, b"/host", ro()),
        (false, 1, b"/etc/hostname".to_vec())
    );
    assert_eq!(c.open(b"/dangling", excl(), 0o600), Err(Exists));
    assert_eq!(c.statfs(), before);
    // Links count across the walk and what `O_CREAT` follows: 40 may be followed in all.
    for i in 0..40 {
        let target = if i == 39 {
            b"/tmp/end".to_vec()
        } else {
            format!("k{}", i + 1).into_bytes()
        };
        c.symlink(&target, format!("/k{i}").as_bytes()).unwrap();
    }
    assert_eq!(stat(&mut c, at(b"/k0")), (false, 40, b"/tmp/end".to_vec()));
    assert_eq!(
        open(&mut c, b"/k0", creat()),
        (false, 40, b"/tmp/end".to_vec())
    );
    c.symlink(b"k0", b"/k").unwrap();
    assert_eq!(c.stat(at(b"/k")), Err(TooManySymlinks));
    assert_eq!(c.open(b"/k", creat(), 0o600), Err(TooManySymlinks));
    c.symlink(b"k0/x", b"/kd").unwrap();
    assert_eq!(c.open(b"/kd", creat(), 0o600), Err(TooManySymlinks));
}

#[test]
fn open_checks_come_in_linux_order() {
    let mut c = Client::root();
    c.put(b"/f", b"x");
    c.mkdir(b"/d", 0o755).unwrap();
    c.symlink(b"d", b"/ld").unwrap();
    c.symlink(b"f", b"/lf").unwrap();
    let f = c.stat(at(b"/f")).unwrap();
    assert_eq!(c.open(b"/f", dir(), 0), Err(NotADirectory));
    // O_DIRECTORY is judged before a final link is refused.
    let nofollow_dir = OpenOptions {
        nofollow: true,
        ..dir()
    };
    assert_eq!(c.open(b"/ld", nofollow_dir, 0), Err(NotADirectory));
    let nofollow = OpenOptions {
        nofollow: true,
        ..ro()
    };
    assert_eq!(c.open(b"/lf", nofollow, 0), Err(TooManySymlinks));
    assert_eq!(c.open(b"/lf", ro(), 0).unwrap().1.ino, f.ino);
    // A trailing slash follows the link even with O_NOFOLLOW.
    let (_, d) = c.open(b"/ld/", nofollow, 0).unwrap();
    assert_eq!(d.kind, FileType::Directory);
    assert_eq!(c.open(b"/d", wo(), 0), Err(IsADirectory));
    let trunc = OpenOptions {
        truncate: true,
        ..ro()
    };
    assert_eq!(c.open(b"/d", trunc, 0), Err(IsADirectory));
    assert_eq!(c.open(b"/d", dir(), 0).unwrap().1.kind, FileType::Directory);
    assert_eq!(c.open(b"/f/", ro(), 0), Err(NotADirectory));
    // A FIFO's data is the kernel's: the engine refuses to open one.
    let home = c.fs.find(&c.cred, Ino::ROOT, b"d").unwrap().ino;
    let fifo =
        c.fs.mknod(&c.cred, home, b"fifo", FileType::NamedPipe, 0o644, 0);
    c.fs.forget(fifo.unwrap().ino, 1);
    assert_eq!(c.open(b"/d/fifo", ro(), 0), Err(NotSupported));
}

fn mode3() -> OpenOptions {
    OpenOptions {
        check_read_write: true,
        ..OpenOptions::default()
    }
}

fn o_path() -> OpenOptions {
    OpenOptions {
        path_only: true,
        ..OpenOptions::default()
    }
}

#[test]
fn access_mode_3_is_checked_for_read_and_write_and_grants_neither() {
    let mut root = Client::root();
    root.put(b"/secret", b"root only");
    root.chmod(at(b"/secret"), 0o600).unwrap();
    root.put(b"/readable", b"everyone reads");
    root.chmod(at(b"/readable"), 0o644).unwrap();
    root.put(b"/shared", b"everyone writes");
    root.chmod(at(b"/shared"), 0o666).unwrap();
    root.mkdir(b"/d", 0o777).unwrap();
    let mut user = root.other(1000, 1000);
    // Linux `ACC_MODE(3)` is read and write: a file the user may only read is refused.
    assert_eq!(user.open(b"/secret", mode3(), 0), Err(PermissionDenied));
    assert_eq!(user.open(b"/readable", mode3(), 0), Err(PermissionDenied));
    // A directory cannot be opened for writing.
    assert_eq!(user.open(b"/d", mode3(), 0), Err(IsADirectory));
    assert_eq!(root.open(b"/d", mode3(), 0), Err(IsADirectory));
    // Where both are allowed the open succeeds, and the description reads and writes
    // nothing, lists nothing and cannot be handed to the kernel as a readable file.
    let (fd, _) = user.open(b"/shared", mode3(), 0).unwrap();
    assert_eq!(user.read(fd, 64), Err(BadHandle));
    assert_eq!(user.pread(fd, 0, 64), Err(BadHandle));
    assert_eq!(user.write(fd, b"x"), Err(BadHandle));
    assert_eq!(user.pwrite(fd, 0, b"x"), Err(BadHandle));
    let grow = Request::Fallocate {
        fd,
        mode: FallocateMode::Allocate,
        offset: 0,
        len: 10,
    };
    assert_eq!(user.unit(grow), Err(BadHandle));
    match user.run(Request::GetFlags { fd }) {
        Response::Flags(f) => assert!(f.check_read_write && !f.read && !f.write),
        other => panic!("{other:?}"),
    }
    assert_eq!(root.get(b"/shared"), b"everyone writes");
    // Root may, and still gets a description that grants neither.
    let (fd, _) = root.open(b"/secret", mode3(), 0).unwrap();
    assert_eq!(root.read(fd, 64), Err(BadHandle));
    // The engine holds no readable or writable handle for it.
    assert_eq!(root.fs.usage().handles, 2);
}

#[test]
fn o_path_checks_only_the_walk_and_grants_nothing() {
    let mut root = Client::root();
    root.put(b"/secret", b"root only");
    root.chmod(at(b"/secret"), 0o600).unwrap();
    root.mkdir(b"/private", 0o700).unwrap();
    root.put(b"/private/inner", b"x");
    root.mkdir(b"/passage", 0o711).unwrap();
    root.put(b"/passage/known", b"y");
    let mut user = root.other(1000, 1000);
    // The walk's search permission still counts.
    assert_eq!(
        user.open(b"/private/inner", o_path(), 0),
        Err(PermissionDenied)
    );
    let (file, attr) = user.open(b"/secret", o_path(), 0).unwrap();
    assert_eq!(attr.perm, 0o600);
    assert_eq!(user.read(file, 64), Err(BadHandle));
    assert_eq!(user.pread(file, 0, 64), Err(BadHandle));
    assert_eq!(user.write(file, b"x"), Err(BadHandle));
    assert_eq!(user.seek(file, 0, Whence::Set), Err(BadHandle));
    // `fstat` works on it; `fchmod`, `fchown`, `ftruncate` and xattrs do not.
    assert_eq!(user.stat(Target::Fd(file)).unwrap().ino, attr.ino);
    assert_eq!(user.chmod(Target::Fd(file), 0o777), Err(BadHandle));
    assert_eq!(user.chown(Target::Fd(file), None, None), Err(BadHandle));
    let truncate = Request::Truncate {
        target: Target::Fd(file),
        size: 0,
    };
    assert_eq!(user.unit(truncate), Err(BadHandle));
    let (dir, _) = user
        .open(
            b"/private",
            OpenOptions {
                directory: true,
                ..o_path()
            },
            0,
        )
        .unwrap();
    // Neither a 0700 nor a 0711 directory can be listed through one.
    assert_eq!(user.entries(dir, 4096), Err(BadHandle));
    let (passage, _) = user.open(b"/passage", o_path(), 0).unwrap();
    assert_eq!(user.entries(passage, 4096), Err(BadHandle));
    // As a starting directory it is as good as the walk: search permission decides.
    assert_eq!(
        user.open_at(Some(dir), b"inner", ro(), 0).map(|_| ()),
        Err(PermissionDenied)
    );
    let (known, _) = user.open_at(Some(passage), b"known", o_path(), 0).unwrap();
    assert_eq!(user.read(known, 1), Err(BadHandle));
    match user.run(Request::GetFlags { fd: file }) {
        Response::Flags(f) => assert!(f.path_only && !f.read && !f.write),
        other => panic!("{other:?}"),
    }
    // O_PATH ignores O_CREAT and O_TRUNC, as Linux does.
    let mut create = OpenOptions {
        create: true,
        truncate: true,
        ..o_path()
    };
    assert_eq!(user.open(b"/new", create, 0o644).map(|_| ()), Err(NotFound));
    create.directory = true;
    assert_eq!(
        user.open(b"/secret", create, 0).map(|_| ()),
        Err(NotADirectory)
    );
    assert_eq!(root.get(b"/secret"), b"root only");
}

#[test]
fn a_directory_is_listed_only_through_a_description_that_was_checked_for_reading() {
    let mut root = Client::root();
    for (dir, mode) in [(&b"/p700"[..], 0o700), (b"/p711", 0o711), (b"/p755", 0o755)] {
        root.mkdir(dir, mode).unwrap();
        let mut file = dir.to_vec();
        file.extend_from_slice(b"/hidden");
        root.put(&file, b"z");
    }
    let mut user = root.other(1000, 1000);
    assert_eq!(
        user.open(b"/p700", dir(), 0).map(|_| ()),
        Err(PermissionDenied)
    );
    assert_eq!(
        user.open(b"/p711", dir(), 0).map(|_| ()),
        Err(PermissionDenied)
    );
    for path in [&b"/p700"[..], b"/p711"] {
        let no_access = OpenOptions {
            directory: true,
            ..mode3()
        };
        assert_eq!(user.open(path, no_access, 0).map(|_| ()), Err(IsADirectory));
        // A hostile client that asks for nothing at all gets nothing to list either.
        let nothing = OpenOptions {
            directory: true,
            ..OpenOptions::default()
        };
        let (fd, _) = user.open(path, nothing, 0).unwrap();
        assert_eq!(user.entries(fd, 4096), Err(BadHandle));
    }
    let (fd, _) = user.open(b"/p755", dir(), 0).unwrap();
    let listed = user.entries(fd, 4096).unwrap();
    assert_eq!(names(&listed), [&b"."[..], b"..", b"hidden"]);
}

#[test]
fn chown_minus_one_by_a_non_owner_keeps_set_id_bits_even_on_a_writable_file() {
    let mut root = Client::root();
    root.put(b"/suid", b"x");
    root.chmod(at(b"/suid"), 0o4757).unwrap();
    root.put(b"/sgid", b"x");
    root.chmod(at(b"/sgid"), 0o2757).unwrap();
    root.put(b"/plain", b"x");
    root.chmod(at(b"/plain"), 0o757).unwrap();
    let mut user = root.other(1000, 1000);
    // The user may write these files, yet chown(-1, -1) is not its to make (Linux).
    assert_eq!(user.chown(at(b"/suid"), None, None), Err(NotPermitted));
    // Set-group-ID without group execute, for a caller outside the group, falls too.
    assert_eq!(user.chown(at(b"/sgid"), None, None), Err(NotPermitted));
    assert_eq!(root.stat(at(b"/suid")).unwrap().perm, 0o4757);
    assert_eq!(root.stat(at(b"/sgid")).unwrap().perm, 0o2757);
    // With nothing to clear it only moves ctime.
    let before = root.stat(at(b"/plain")).unwrap();
    assert_eq!(user.chown(at(b"/plain"), None, None), Ok(()));
    let after = root.stat(at(b"/plain")).unwrap();
    assert_eq!(after.perm, 0o757);
    assert!(after.ctime > before.ctime);
    // The owner, and root, clear them.
    assert_eq!(root.chown(at(b"/suid"), None, None), Ok(()));
    assert_eq!(root.stat(at(b"/suid")).unwrap().perm, 0o757);
}

#[test]
fn o_trunc_truncates_with_write_permission_only() {
    let mut root = Client::root();
    root.put(b"/f", b"hello");
    // Linux truncates even when the file is opened read-only.
    let trunc_ro = OpenOptions {
        truncate: true,
        ..ro()
    };
    let (_, attr) = root.open(b"/f", trunc_ro, 0).unwrap();
    assert_eq!(attr.size, 0);
    root.put(b"/g", b"data");
    let mut alice = root.other(1000, 1000);
    assert_eq!(alice.open(b"/g", trunc_ro, 0), Err(PermissionDenied));
    assert_eq!(root.stat(at(b"/g")).unwrap().size, 4);
    assert!(alice.open(b"/g", ro(), 0).is_ok());
    // The owner may: O_CREAT on an existing file truncates too.
    root.mkdir(b"/home", 0o755).unwrap();
    root.chown(at(b"/home"), Some(1000), Some(1000)).unwrap();
    alice.put(b"/home/h", b"content");
    let trunc_creat = OpenOptions {
        truncate: true,
        ..creat()
    };
    let (_, attr) = alice.open(b"/home/h", trunc_creat, 0o600).unwrap();
    assert_eq!(attr.size, 0);
    // A file created read-only still opens for writing: nothing is checked on creation.
    let (fd, attr) = alice.open(b"/home/ro", excl(), 0o444).unwrap();
    assert_eq!(attr.perm, 0o444);
    assert_eq!(alice.write(fd, b"ok"), Ok(2));
    assert_eq!(alice.open(b"/home/ro", wo(), 0), Err(PermissionDenied));
}

#[test]
fn read_and_write_move_the_offset_and_pread_pwrite_do_not() {
    let mut c = Client::root();
    let fd = c.fd(b"/f", creat());
    assert_eq!(c.write(fd, b"hello world"), Ok(11));
    assert_eq!(c.tell(fd), 11);
    assert_eq!(c.read(fd, 10), Ok(Vec::new()));
    assert_eq!(c.seek(fd, 0, Whence::Set), Ok(0));
    assert_eq!(c.read(fd, 5).unwrap(), b"hello");
    assert_eq!(c.tell(fd), 5);
    assert_eq!(c.read(fd, 100).unwrap(), b" world");
    assert_eq!(c.tell(fd), 11);
    assert_eq!(c.pread(fd, 6, 5).unwrap(), b"world");
    assert_eq!(c.pread(fd, 100, 5), Ok(Vec::new()));
    assert_eq!(c.pwrite(fd, 0, b"J"), Ok(1));
    assert_eq!(c.tell(fd), 11);
    assert_eq!(c.get(b"/f"), b"Jello world");
    // A write past the end leaves a hole that reads as zeros.
    assert_eq!(c.seek(fd, 13, Whence::Set), Ok(13));
    assert_eq!(c.write(fd, b"!"), Ok(1));
    assert_eq!(c.pread(fd, 10, 10).unwrap(), b"d\0\0!");
    // An empty write changes nothing.
    assert_eq!(c.write(fd, b""), Ok(0));
    assert_eq!(c.tell(fd), 14);
    // The largest read fits the scratch buffer, and the next one reuses it.
    assert_eq!(c.read(fd, ring::MAX_IO as u32), Ok(Vec::new()));
    assert_eq!(c.pread(fd, 0, ring::MAX_IO as u32).unwrap().len(), 14);
}

#[test]
fn a_directory_opened_for_reading_is_told_where_its_listing_changes_are_counted() {
    let mut c = Client::root();
    c.mkdir(b"/d", 0o755).unwrap();
    let ino = c.stat(at(b"/d")).unwrap().ino;
    let fd = match open_prefetching(&mut c, b"/d", ro()) {
        Response::OpenedDir { fd, attr, slot } => {
            assert_eq!((attr.ino, attr.kind), (ino, FileType::Directory));
            assert_eq!(slot, c.contents.slot(ino));
            fd
        }
        other => panic!("expected OpenedDir, got {other:?}"),
    };
    // The description lists as any other.
    match c.run(Request::Getdents { fd, max: 4096 }) {
        Response::Dirents(list) => assert_eq!(list.iter().count(), 2, "`.` and `..`"),
        other => panic!("expected Dirents, got {other:?}"),
    }
    // A name made in it moves the version; so does one removed.
    let before = c.contents.version(ino);
    c.mkdir(b"/d/e", 0o755).unwrap();
    let made = c.contents.version(ino);
    assert_ne!(made, before);
    assert_eq!(
        c.run(Request::Rmdir {
            at: None,
            path: b"/d/e"
        }),
        Response::Ok
    );
    assert_ne!(c.contents.version(ino), made);
    // Without `prefetch` the answer is the plain one.
    let plain = c.run(Request::Open {
        at: None,
        path: b"/d",
        flags: ro(),
        mode: 0,
        prefetch: 0,
        known_ino: 0,
        known_version: 0,
    });
    assert!(matches!(plain, Response::Opened { .. }), "{plain:?}");
}

/// `StatStamped` of `target`: the outcome, and the stamps as `(slot, version)` pairs (`None`
/// for an answer given as `Stat` gives it).
fn stat_stamped(c: &mut Client, target: Target<'_>) -> (Result<Attr>, Option<Vec<(u32, u64)>>) {
    match c.run(Request::StatStamped { target }) {
        Response::Stamped { outcome, stamps } => (
            outcome,
            Some(stamps.iter().map(|s| (s.slot, s.version)).collect()),
        ),
        Response::Attr(attr) => (Ok(attr), None),
        Response::Err(e) => (Err(e), None),
        other => panic!("expected Stamped, got {other:?}"),
    }
}

/// The stamps a walk through `inos` (in order) is expected to carry: each slot once, with its
/// attribute version now.
fn expected_stamps(c: &Client, inos: &[Ino]) -> Vec<(u32, u64)> {
    let mut stamps: Vec<(u32, u64)> = Vec::new();
    for &ino in inos {
        let slot = c.contents.slot(ino);
        if stamps.iter().all(|&(s, _)| s != slot) {
            stamps.push((slot, c.contents.attributes(ino)));
        }
    }
    stamps
}

/// Whether every stamp still shows its version, as a client would check.
fn current(c: &Client, stamps: &[(u32, u64)]) -> bool {
    let view = btfuse_ring_client::contents::ContentView::map(c.contents.fd()).unwrap();
    stamps.iter().all(|&(slot, v)| view.attributes(slot) == v)
}

#[test]
fn a_stat_of_a_path_is_stamped_with_every_inode_it_depends_on() {
    let mut c = Client::root();
    c.mkdir(b"/d", 0o755).unwrap();
    c.mkdir(b"/d/e", 0o755).unwrap();
    c.put(b"/d/e/f", b"data");
    c.symlink(b"d/e", b"/l").unwrap();
    let ino = |c: &mut Client, path| c.stat(at(path)).unwrap().ino;
    let (r, d, e, f) = (
        Ino::ROOT,
        ino(&mut c, b"/d"),
        ino(&mut c, b"/d/e"),
        ino(&mut c, b"/d/e/f"),
    );
    let plain = c.stat(at(b"/d/e/f"));
    assert_eq!(
        stat_stamped(&mut c, at(b"/d/e/f")),
        (plain, Some(expected_stamps(&c, &[r, d, e, f])))
    );
    assert_eq!(
        stat_stamped(&mut c, at(b"/l/f")),
        (plain, Some(expected_stamps(&c, &[r, d, e, f]))),
        "through a link: its directory, then its target's walk"
    );
    let link = c.stat(lat(b"/l"));
    assert_eq!(
        stat_stamped(&mut c, lat(b"/l")),
        (link, Some(expected_stamps(&c, &[r, link.unwrap().ino]))),
        "the link itself"
    );
    assert_eq!(
        stat_stamped(&mut c, at(b"/d/none/f")),
        (Err(NotFound), Some(expected_stamps(&c, &[r, d]))),
        "a missing name: the directories up to it"
    );

    // Each change to what an answer was made from moves one of its stamps.
    type Change = fn(&mut Client);
    let changes: [(&[u8], Change, &str); 8] = [
        (
            b"/d/e/f",
            |c| c.chmod(at(b"/d/e/f"), 0o600).unwrap(),
            "the file's mode",
        ),
        (
            b"/d/e/f",
            |c| c.chmod(at(b"/d"), 0o711).unwrap(),
            "a directory's mode",
        ),
        (
            b"/d/e/f",
            |c| c.chown(at(b"/d/e"), Some(7), None).unwrap(),
            "a directory's owner",
        ),
        (
            b"/d/e/f",
            |c| c.put(b"/d/e/f", b"new"),
            "the file's content",
        ),
        (
            b"/d/e/f",
            |c| c.rename(b"/d/e/f", b"/d/e/g", RenameMode::Replace).unwrap(),
            "its name",
        ),
        (
            b"/d/e/g",
            |c| c.rename(b"/d/e", b"/d/x", RenameMode::Replace).unwrap(),
            "a directory's name",
        ),
        (
            b"/d/none",
            |c| c.put(b"/d/none", b""),
            "the missing name made",
        ),
        (b"/l", |c| c.unlink(b"/l").unwrap(), "the link removed"),
    ];
    for (path, change, what) in changes {
        let (_, stamps) = stat_stamped(&mut c, lat(path));
        let stamps = stamps.unwrap();
        assert!(current(&c, &stamps), "{what}: fresh");
        change(&mut c);
        assert!(
            !current(&c, &stamps),
            "{what}: still current after the change"
        );
    }
    // A change elsewhere leaves an answer alone, unless it shares a slot.
    c.mkdir(b"/o", 0o755).unwrap();
    let o = ino(&mut c, b"/o");
    let (_, stamps) = stat_stamped(&mut c, at(b"/d"));
    let stamps = stamps.unwrap();
    c.chmod(at(b"/o"), 0o700).unwrap();
    let shared = stamps.iter().any(|&(slot, _)| slot == c.contents.slot(o));
    assert_eq!(
        current(&c, &stamps),
        !shared,
        "a change to another directory"
    );
}

#[test]
fn a_stat_is_stamped_only_where_the_server_can_vouch_for_it() {
    let mut c = Client::root();
    c.mkdir(b"/d", 0o755).unwrap();
    c.put(b"/d/f", b"data");
    c.symlink(b"/elsewhere", b"/out").unwrap();
    let d = c.stat(at(b"/d")).unwrap().ino;
    let plain = c.stat(at(b"/d/f"));
    // From a description: the start directory (checked as the walk's start) and on.
    let dir_fd = c.fd(b"/d", dir());
    let from_fd = Target::Path {
        at: Some(dir_fd),
        path: b"f",
        follow: true,
    };
    assert_eq!(
        stat_stamped(&mut c, from_fd),
        (plain, Some(expected_stamps(&c, &[d, plain.unwrap().ino])))
    );
    let no_fd = Target::Path {
        at: Some(dir_fd + 100),
        path: b"f",
        follow: true,
    };
    assert_eq!(stat_stamped(&mut c, no_fd), (Err(BadHandle), None));
    // A descriptor target is answered as `Stat`.
    assert_eq!(
        stat_stamped(&mut c, Target::Fd(dir_fd)),
        (c.stat(at(b"/d")), None)
    );
    // A walk that leaves is answered `Outside`, as `Stat` would be.
    assert!(matches!(
        c.run(Request::StatStamped {
            target: at(b"/out")
        }),
        Response::Outside { .. }
    ));
    // A change under way in a directory walked.
    c.contents.changing(d, btfuse_core::Change::Attributes);
    assert_eq!(stat_stamped(&mut c, at(b"/d/f")), (plain, None));
    c.contents.changed(d, btfuse_core::Change::Attributes);
    assert!(stat_stamped(&mut c, at(b"/d/f")).1.is_some());
    // A file named with a slash after it: the walk's error, which depends on the name in
    // its directory (an inode's type never changes).
    assert_eq!(
        stat_stamped(&mut c, at(b"/d/f/")),
        (
            Err(NotADirectory),
            Some(expected_stamps(&c, &[Ino::ROOT, d]))
        )
    );
    // Another user is refused where root was let through, stamped too.
    c.chmod(at(b"/d"), 0o700).unwrap();
    let mut other = c.other(1000, 1000);
    assert_eq!(
        stat_stamped(&mut other, at(b"/d/f")),
        (
            Err(PermissionDenied),
            Some(expected_stamps(&c, &[Ino::ROOT, d]))
        )
    );
}

/// `StatDir` of `path`: the stamps, and each entry as `(name, attr, (slot, version))`, sorted.
type Listed = (Vec<(u32, u64)>, Vec<(Vec<u8>, Attr, (u32, u64))>);

fn stat_dir(c: &mut Client, target: Target<'_>) -> Result<Listed> {
    match c.run(Request::StatDir { target }) {
        Response::StampedDir { stamps, entries } => {
            let stamps = stamps.iter().map(|s| (s.slot, s.version)).collect();
            let mut entries: Vec<_> = entries
                .iter()
                .map(|e| (e.name.to_vec(), e.attr, (e.stamp.slot, e.stamp.version)))
                .collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Ok((stamps, entries))
        }
        Response::Err(e) => Err(e),
        other => panic!("expected StampedDir, got {other:?}"),
    }
}

#[test]
fn a_directory_is_listed_with_every_names_stamped_attributes() {
    let mut c = Client::root();
    c.mkdir(b"/d", 0o755).unwrap();
    c.put(b"/d/a", b"1");
    c.put(b"/d/b", b"22");
    c.symlink(b"a", b"/d/l").unwrap();
    c.mkdir(b"/d/s", 0o700).unwrap();
    let d = c.stat(at(b"/d")).unwrap().ino;
    // Listing moves the directory's access time once: list it first, so that the stamps
    // expected below are read after that.
    stat_dir(&mut c, at(b"/d")).unwrap();
    let (stamps, entries) = stat_dir(&mut c, at(b"/d")).unwrap();
    assert_eq!(stamps, expected_stamps(&c, &[Ino::ROOT, d]));
    let names: Vec<&[u8]> = entries.iter().map(|e| &e.0[..]).collect();
    assert_eq!(names, [&b"a"[..], b"b", b"l", b"s"], "no `.` or `..`");
    for (name, attr, stamp) in &entries {
        let path = [&b"/d/"[..], name].concat();
        assert_eq!(Ok(*attr), c.stat(lat(&path)), "{path:?}: as lstat says");
        assert_eq!(*stamp, expected_stamps(&c, &[attr.ino])[0]);
    }
    // From a description, through a link to the directory.
    c.symlink(b"d", b"/to-d").unwrap();
    let (_, through_link) = stat_dir(&mut c, at(b"/to-d")).unwrap();
    assert_eq!(through_link, entries);
    let fd = c.fd(b"/d", dir());
    let from_fd = Target::Path {
        at: Some(fd),
        path: b".",
        follow: true,
    };
    let (stamps, again) = stat_dir(&mut c, from_fd).unwrap();
    assert_eq!((stamps, again), (expected_stamps(&c, &[d]), entries));
    // Refusals.
    assert_eq!(stat_dir(&mut c, at(b"/d/a")), Err(NotADirectory));
    assert_eq!(stat_dir(&mut c, at(b"/none")), Err(NotFound));
    assert_eq!(stat_dir(&mut c, Target::Fd(fd)), Err(NotSupported));
    c.symlink(b"/elsewhere", b"/out").unwrap();
    assert!(matches!(
        c.run(Request::StatDir {
            target: at(b"/out")
        }),
        Response::Outside { .. }
    ));
    c.contents.changing(d, btfuse_core::Change::Content);
    assert_eq!(
        stat_dir(&mut c, at(b"/d")),
        Err(TryAgain),
        "a change under way"
    );
    c.contents.changed(d, btfuse_core::Change::Content);
    let mut other = c.other(1000, 1000);
    assert_eq!(
        stat_dir(&mut other, at(b"/d/s")),
        Err(PermissionDenied),
        "a directory another may not list"
    );
    c.chmod(at(b"/d"), 0o711).unwrap();
    let mut other = c.other(1000, 1000);
    assert_eq!(stat_dir(&mut other, at(b"/d")), Err(PermissionDenied));
    c.chmod(at(b"/d"), 0o744).unwrap();
    let mut other = c.other(1000, 1000);
    assert_eq!(
        stat_dir(&mut other, at(b"/d")),
        Err(PermissionDenied),
        "listed but not searched"
    );
    // A change to what it lists moves the directory's stamp.
    let (stamps, _) = stat_dir(&mut c, at(b"/d")).unwrap();
    c.put(b"/d/new", b"");
    assert!(!current(&c, &stamps));
}

/// `Open` with `prefetch`: the answer, and what it leaves behind.
fn open_prefetching<'c>(c: &'c mut Client, path: &[u8], flags: OpenOptions) -> Response<'c> {
    open_knowing(c, path, flags, (0, 0))
}

/// `Open` with `prefetch`, naming content the client holds.
fn open_knowing<'c>(
    c: &'c mut Client,
    path: &[u8],
    flags: OpenOptions,
    (known_ino, known_version): (u64, u64),
) -> Response<'c> {
    c.run(Request::Open {
        at: None,
        path,
        flags,
        mode: 0o644,
        prefetch: 8,
        known_ino,
        known_version,
    })
}

#[test]
fn a_read_only_open_sends_the_first_bytes_and_their_version() {
    let mut c = Client::root();
    let fd = c.fd(b"/f", creat());
    assert_eq!(c.write(fd, b"hello world"), Ok(11));
    let ino = c.stat(Target::Fd(fd)).unwrap().ino;
    let (reader, version) = match open_prefetching(&mut c, b"/f", ro()) {
        Response::Prefetched {
            fd,
            ino: opened,
            slot,
            version,
            data,
        } => {
            assert_eq!((data, opened), (&b"hello wo"[..], ino));
            // The slot the server's key puts the inode in, known from the answer only.
            assert_eq!(slot, c.contents.slot(ino));
            (fd, version)
        }
        other => panic!("expected Prefetched, got {other:?}"),
    };
    assert_eq!(version, c.contents.version(ino));
    // The offset stays at 0: the client's first read is served by the bytes it holds.
    assert_eq!(c.tell(reader), 0);
    // A change moves the version; the next open sends the new bytes.
    assert_eq!(c.pwrite(fd, 0, b"J"), Ok(1));
    assert_ne!(c.contents.version(ino), version);
    match open_prefetching(&mut c, b"/f", ro()) {
        Response::Prefetched { data, .. } => assert_eq!(data, b"Jello wo"),
        other => panic!("expected Prefetched, got {other:?}"),
    }
    // Content the client holds is not sent again while it is current, and is otherwise.
    let now = c.contents.version(ino);
    match open_knowing(&mut c, b"/f", ro(), (ino.0, now)) {
        Response::Prefetched { version, data, .. } => {
            assert_eq!((version, data), (now, &[][..]))
        }
        other => panic!("expected Prefetched, got {other:?}"),
    }
    for stale in [(ino.0, version), (ino.0 + 1, now)] {
        match open_knowing(&mut c, b"/f", ro(), stale) {
            Response::Prefetched { data, .. } => assert_eq!(data, b"Jello wo"),
            other => panic!("expected Prefetched, got {other:?}"),
        }
    }
    // A file shorter than asked for comes whole: the client knows where it ends.
    assert_eq!(
        c.run(Request::Truncate {
            target: Target::Fd(fd),
            size: 3
        }),
        Response::Ok
    );
    match open_prefetching(&mut c, b"/f", ro()) {
        Response::Prefetched { data, .. } => assert_eq!(data, b"Jel"),
        other => panic!("expected Prefetched, got {other:?}"),
    }
    // Writers and truncations get no content (directories: see below).
    for (path, flags) in [(&b"/f"[..], rw()), (b"/f", wo())] {
        assert!(
            matches!(
                open_prefetching(&mut c, path, flags),
                Response::Opened { .. }
            ),
            "{flags:?}"
        );
    }
    let truncating = OpenOptions {
        truncate: true,
        ..ro()
    };
    assert!(matches!(
        open_prefetching(&mut c, b"/f", truncating),
        Response::Opened { .. }
    ));
    // A change under way (as another thread's write would be) vouches for nothing.
    c.contents.changing(ino, btfuse_core::Change::Content);
    assert!(matches!(
        open_prefetching(&mut c, b"/f", ro()),
        Response::Opened { .. }
    ));
    c.contents.changed(ino, btfuse_core::Change::Content);
}

#[test]
fn descriptor_access_errors() {
    let mut c = Client::root();
    c.put(b"/f", b"data");
    c.mkdir(b"/d", 0o755).unwrap();
    let w = c.fd(b"/f", wo());
    let r = c.fd(b"/f", ro());
    let d = c.fd(b"/d", dir());
    assert_eq!(c.read(w, 1), Err(BadHandle));
    assert_eq!(c.pread(w, 0, 1), Err(BadHandle));
    assert_eq!(c.write(r, b"x"), Err(BadHandle));
    assert_eq!(c.pwrite(r, 0, b""), Err(BadHandle));
    assert_eq!(c.read(d, 1), Err(IsADirectory));
    assert_eq!(c.pread(d, 0, 0), Err(IsADirectory));
    assert_eq!(c.write(d, b"x"), Err(BadHandle));
    // Linux `rw_verify_area`: the area must end by i64::MAX, and access is checked first.
    assert_eq!(c.pread(r, MAX_OFFSET + 1, 0), Err(InvalidArgument));
    assert_eq!(c.pread(r, MAX_OFFSET, 1), Err(InvalidArgument));
    assert_eq!(c.pread(r, MAX_OFFSET, 0), Ok(Vec::new()));
    assert_eq!(c.pwrite(w, u64::MAX - 1, b"ab"), Err(InvalidArgument));
    assert_eq!(c.pread(w, u64::MAX, 1), Err(BadHandle));
    for fd in [99, u32::MAX] {
        assert_eq!(c.read(fd, 1), Err(BadHandle));
        assert_eq!(c.write(fd, b"x"), Err(BadHandle));
        assert_eq!(c.close(fd), Err(BadHandle));
        assert_eq!(c.seek(fd, 0, Whence::Cur), Err(BadHandle));
        assert_eq!(
            c.unit(Request::Fsync {
                fd,
                datasync: false
            }),
            Err(BadHandle)
        );
        assert_eq!(c.number(Request::Dup { fd }), Err(BadHandle));
        assert_eq!(c.entries(fd, 100), Err(BadHandle));
        assert_eq!(c.run(Request::GetFlags { fd }), Response::Err(BadHandle));
        let set = Request::SetFlags {
            fd,
            append: true,
            nonblock: false,
        };
        assert_eq!(c.unit(set), Err(BadHandle));
    }
    c.close(r).unwrap();
    assert_eq!(c.read(r, 1), Err(BadHandle));
    assert_eq!(c.close(r), Err(BadHandle));
    assert_eq!(
        c.unit(Request::Fsync {
            fd: w,
            datasync: true
        }),
        Ok(())
    );
    assert_eq!(
        c.unit(Request::Fsync {
            fd: d,
            datasync: false
        }),
        Ok(())
    );
}

#[test]
fn append_descriptions_write_at_the_end_even_with_pwrite() {
    let mut c = Client::root();
    let append = OpenOptions {
        append: true,
        ..OpenOptions {
            create: true,
            ..wo()
        }
    };
    let fd = c.fd(b"/f", append);
    let flags = |c: &mut Client| match c.run(Request::GetFlags { fd }) {
        Response::Flags(flags) => flags,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        flags(&mut c),
        OpenOptions {
            write: true,
            append: true,
            ..OpenOptions::default()
        }
    );
    assert_eq!(c.write(fd, b"abc"), Ok(3));
    assert_eq!(c.tell(fd), 3);
    // pwrite on an O_APPEND description appends (Linux), and the offset stays.
    assert_eq!(c.pwrite(fd, 0, b"XY"), Ok(2));
    assert_eq!(c.get(b"/f"), b"abcXY");
    assert_eq!(c.tell(fd), 3);
    assert_eq!(c.seek(fd, 0, Whence::Set), Ok(0));
    assert_eq!(c.write(fd, b"12"), Ok(2));
    assert_eq!(c.tell(fd), 7);
    // An empty append leaves the offset where it was.
    assert_eq!(c.seek(fd, 1, Whence::Set), Ok(1));
    assert_eq!(c.write(fd, b""), Ok(0));
    assert_eq!(c.tell(fd), 1);
    // F_SETFL turns append off: writes land at the offset again.
    let handles = c.fs.usage().handles;
    let set = |append, nonblock| Request::SetFlags {
        fd,
        append,
        nonblock,
    };
    assert_eq!(c.unit(set(false, true)), Ok(()));
    assert_eq!(c.fs.usage().handles, handles);
    assert_eq!(
        flags(&mut c),
        OpenOptions {
            write: true,
            nonblock: true,
            ..OpenOptions::default()
        }
    );
    assert_eq!(c.pwrite(fd, 0, b"Z"), Ok(1));
    assert_eq!(c.write(fd, b"!"), Ok(1));
    assert_eq!(c.tell(fd), 2);
    assert_eq!(c.get(b"/f"), b"Z!cXY12");
    assert_eq!(c.unit(set(true, false)), Ok(()));
    assert_eq!(c.write(fd, b"E"), Ok(1));
    assert_eq!(c.tell(fd), 8);
    assert_eq!(c.get(b"/f"), b"Z!cXY12E");
    assert_eq!(c.fs.usage().handles, handles);
    // The reopen keeps the access granted at open, whatever the mode bits say now.
    c.mkdir(b"/home", 0o755).unwrap();
    c.chown(at(b"/home"), Some(1000), Some(1000)).unwrap();
    let mut alice = c.other(1000, 1000);
    let (afd, _) = alice.open(b"/home/a", excl(), 0o600).unwrap();
    alice.chmod(at(b"/home/a"), 0).unwrap();
    let set = Request::SetFlags {
        fd: afd,
        append: true,
        nonblock: false,
    };
    assert_eq!(alice.unit(set), Ok(()));
    assert_eq!(alice.write(afd, b"still"), Ok(5));
    assert_eq!(alice.pread(afd, 0, 10).unwrap(), b"still");
    // A read-only description just records the flag.
    let r = c.fd(b"/f", ro());
    let set = Request::SetFlags {
        fd: r,
        append: true,
        nonblock: false,
    };
    assert_eq!(c.unit(set), Ok(()));
    assert!(matches!(c.run(Request::GetFlags { fd: r }), Response::Flags(f) if f.append));
}

#[test]
fn lseek_follows_linux() {
    let mut c = Client::root();
    let fd = c.fd(b"/f", creat());
    // Data in blocks 0 and 3; the file ends one byte into block 3.
    assert_eq!(c.pwrite(fd, 0, b"a"), Ok(1));
    assert_eq!(c.pwrite(fd, 3 * KIB4 as u64, b"b"), Ok(1));
    let size = 3 * KIB4 as u64 + 1;
    assert_eq!(c.seek(fd, 0, Whence::Data), Ok(0));
    assert_eq!(c.seek(fd, 1, Whence::Data), Ok(1));
    assert_eq!(c.seek(fd, 5000, Whence::Data), Ok(3 * KIB4 as u64));
    assert_eq!(c.tell(fd), 3 * KIB4 as u64);
    assert_eq!(c.seek(fd, 0, Whence::Hole), Ok(KIB4 as u64));
    assert_eq!(c.seek(fd, 3 * KIB4 as i64, Whence::Hole), Ok(size));
    assert_eq!(
        c.seek(fd, size as i64, Whence::Data),
        Err(NoSuchDeviceOrAddress)
    );
    assert_eq!(
        c.seek(fd, size as i64, Whence::Hole),
        Err(NoSuchDeviceOrAddress)
    );
    assert_eq!(c.seek(fd, -1, Whence::Data), Err(NoSuchDeviceOrAddress));
    assert_eq!(
        c.seek(fd, i64::MIN, Whence::Hole),
        Err(NoSuchDeviceOrAddress)
    );
    // A failed seek leaves the offset where the last one put it.
    assert_eq!(c.tell(fd), size);
    assert_eq!(c.seek(fd, -1, Whence::Set), Err(InvalidArgument));
    assert_eq!(c.seek(fd, 0, Whence::Set), Ok(0));
    assert_eq!(c.seek(fd, -1, Whence::Cur), Err(InvalidArgument));
    assert_eq!(c.seek(fd, 0, Whence::End), Ok(size));
    assert_eq!(c.seek(fd, -1, Whence::End), Ok(size - 1));
    assert_eq!(c.seek(fd, 10, Whence::End), Ok(size + 10));
    assert_eq!(
        c.seek(fd, -(size as i64) - 1, Whence::End),
        Err(InvalidArgument)
    );
    assert_eq!(c.seek(fd, i64::MAX, Whence::End), Err(InvalidArgument));
    assert_eq!(c.seek(fd, i64::MAX, Whence::Set), Ok(MAX_OFFSET));
    assert_eq!(c.seek(fd, 1, Whence::Cur), Err(InvalidArgument));
    assert_eq!(c.seek(fd, i64::MIN, Whence::Cur), Err(InvalidArgument));
    assert_eq!(c.tell(fd), MAX_OFFSET);
    // At the largest offset only an empty read or write fits.
    assert_eq!(c.read(fd, 1), Err(InvalidArgument));
    assert_eq!(c.read(fd, 0), Ok(Vec::new()));
    assert_eq!(c.write(fd, b"x"), Err(InvalidArgument));
    // Directories: SEEK_SET and SEEK_CUR move the readdir cookie, nothing else works.
    c.mkdir(b"/d", 0o755).unwrap();
    let d = c.fd(b"/d", dir());
    for whence in [Whence::End, Whence::Data, Whence::Hole] {
        assert_eq!(c.seek(d, 0, whence), Err(InvalidArgument));
    }
    assert_eq!(c.seek(d, -1, Whence::Set), Err(InvalidArgument));
    assert_eq!(c.entries(d, 4096).unwrap().len(), 2);
    assert_eq!(c.tell(d), 2);
    assert_eq!(c.seek(d, -1, Whence::Cur), Ok(1));
    assert_eq!(names(&c.entries(d, 4096).unwrap()), [&b".."[..]]);
    assert_eq!(c.seek(d, 0, Whence::Set), Ok(0));
    assert_eq!(c.entries(d, 4096).unwrap().len(), 2);
}

#[test]
fn getdents_pages_through_a_directory() {
    let mut c = Client::root();
    c.mkdir(b"/d", 0o755).unwrap();
    for name in ["a", "bb", "ccc"] {
        c.put(format!("/d/{name}").as_bytes(), b"");
    }
    let d_ino = c.stat(at(b"/d")).unwrap().ino;
    let a_ino = c.stat(at(b"/d/a")).unwrap().ino;
    let d = c.fd(b"/d", dir());
    let all = c.entries(d, 4096).unwrap();
    assert_eq!(names(&all), [&b"."[..], b"..", b"a", b"bb", b"ccc"]);
    let cookies: Vec<u64> = all.iter().map(|e| e.1).collect();
    assert_eq!(cookies, [1, 2, 3, 4, 5]);
    assert_eq!((all[0].2, all[1].2, all[2].2), (d_ino, Ino::ROOT, a_ino));
    assert_eq!(c.entries(d, 4096), Ok(Vec::new()));
    assert_eq!(c.tell(d), 5);
    // Pages as small as one entry; smaller is EINVAL and moves nothing.
    let one = DirentList::entry_len(1) as u32;
    assert_eq!(c.seek(d, 0, Whence::Set), Ok(0));
    assert_eq!(c.entries(d, one - 1), Err(InvalidArgument));
    assert_eq!(c.entries(d, 0), Err(InvalidArgument));
    assert_eq!(names(&c.entries(d, one).unwrap()), [&b"."[..]]);
    let two = (DirentList::entry_len(2) + DirentList::entry_len(1)) as u32;
    assert_eq!(names(&c.entries(d, two).unwrap()), [&b".."[..], b"a"]);
    // telldir and seekdir.
    let mark = c.tell(d);
    assert_eq!(mark, 3);
    assert_eq!(names(&c.entries(d, 4096).unwrap()), [&b"bb"[..], b"ccc"]);
    assert_eq!(c.seek(d, mark as i64, Whence::Set), Ok(mark));
    assert_eq!(names(&c.entries(d, 4096).unwrap()), [&b"bb"[..], b"ccc"]);
    // At the end, even an empty buffer is an empty answer, not an error.
    assert_eq!(c.entries(d, 0), Ok(Vec::new()));
    // Errors.
    let f = c.fd(b"/d/a", ro());
    assert_eq!(c.entries(f, 4096), Err(NotADirectory));
    c.mkdir(b"/gone", 0o755).unwrap();
    let gone = c.fd(b"/gone", dir());
    c.rmdir(b"/gone").unwrap();
    assert_eq!(c.entries(gone, 4096), Err(NotFound));
    assert_eq!(c.close(gone), Ok(()));
}

#[test]
fn getdents_lists_each_entry_once_across_concurrent_changes() {
    let mut c = Client::root();
    c.mkdir(b"/d", 0o755).unwrap();
    for i in 0..40 {
        c.put(format!("/d/n{i:02}").as_bytes(), b"");
    }
    let d = c.fd(b"/d", dir());
    let mut other = c.other(0, 0);
    let page = (3 * DirentList::entry_len(3)) as u32;
    let mut listed: Vec<Vec<u8>> = Vec::new();
    let mut removed = Vec::new();
    for round in 0.. {
        let entries = c.entries(d, page).unwrap();
        if entries.is_empty() {
            break;
        }
        listed.extend(entries.into_iter().map(|e| e.0));
        // Another client adds a name and removes one from the end at every page.
        other.put(format!("/d/x{round:02}").as_bytes(), b"");
        let victim = format!("n{:02}", 39 - round);
        other.unlink(format!("/d/{victim}").as_bytes()).unwrap();
        removed.push(victim.into_bytes());
    }
    let mut sorted = listed.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), listed.len(), "an entry was listed twice");
    for i in 0..40 {
        let name = format!("n{i:02}").into_bytes();
        if !removed.contains(&name) {
            assert!(listed.contains(&name), "{name:?} was skipped");
        }
    }
    // Entries made after the listing began are not chased (tmpfs alike).
    assert!(!listed.iter().any(|name| name.starts_with(b"x")));
}

#[test]
fn dup_shares_one_description() {
    let mut c = Client::root();
    let fd = c.fd(b"/f", creat());
    let dup = c.number(Request::Dup { fd }).unwrap() as u32;
    assert_ne!(dup, fd);
    assert_eq!(c.write(fd, b"abc"), Ok(3));
    assert_eq!(c.tell(dup), 3);
    assert_eq!(c.write(dup, b"def"), Ok(3));
    assert_eq!(c.tell(fd), 6);
    let set = Request::SetFlags {
        fd: dup,
        append: false,
        nonblock: true,
    };
    assert_eq!(c.unit(set), Ok(()));
    assert!(matches!(c.run(Request::GetFlags { fd }), Response::Flags(f) if f.nonblock));
    c.close(fd).unwrap();
    assert_eq!(c.pread(dup, 0, 10).unwrap(), b"abcdef");
    c.close(dup).unwrap();
    assert_eq!(c.fs.usage().handles, 0);
}

#[test]
fn fork_shares_descriptions_with_the_child_that_attaches() {
    let mut parent = Client::root();
    let fd = parent.fd(b"/f", creat());
    assert_eq!(parent.write(fd, b"abc"), Ok(3));
    let token = parent.number(Request::Fork).unwrap();
    let mut child = parent.other(0, 0);
    assert_eq!(child.read(fd, 1), Err(BadHandle));
    assert_eq!(child.unit(Request::Attach { token }), Ok(()));
    assert_eq!(child.session.join_token, 100);
    // One description, one offset, in two processes.
    assert_eq!(child.write(fd, b"def"), Ok(3));
    assert_eq!(parent.tell(fd), 6);
    parent.close(fd).unwrap();
    assert_eq!(child.pread(fd, 0, 10).unwrap(), b"abcdef");
    assert_eq!(child.unit(Request::Attach { token }), Err(NotFound));
    // A token is good only for the same user.
    let token = parent.number(Request::Fork).unwrap();
    let mut bob = parent.other(2000, 2000);
    assert_eq!(bob.unit(Request::Attach { token }), Err(PermissionDenied));
    assert_eq!(bob.unit(Request::Attach { token: !token }), Err(NotFound));
    let mut second = parent.other(0, 0);
    assert_eq!(second.unit(Request::Attach { token }), Ok(()));
    child.close(fd).unwrap();
    assert_eq!(parent.fs.usage().handles, 0);
}

#[test]
fn closing_the_last_reference_frees_an_unlinked_file() {
    let mut c = Client::root();
    let free = c.statfs().blocks_free;
    let fd = c.fd(b"/f", creat());
    assert_eq!(c.write(fd, &[7; 3 * KIB4]), Ok(3 * KIB4 as u64));
    assert_eq!(c.statfs().blocks_free, free - 3);
    let dup = c.number(Request::Dup { fd }).unwrap() as u32;
    c.unlink(b"/f").unwrap();
    assert_eq!(c.stat(at(b"/f")), Err(NotFound));
    let attr = c.stat(Target::Fd(fd)).unwrap();
    assert_eq!((attr.nlink, attr.size), (0, 3 * KIB4 as u64));
    c.close(fd).unwrap();
    assert_eq!(c.statfs().blocks_free, free - 3);
    assert_eq!(c.pread(dup, 0, 2).unwrap(), [7, 7]);
    c.close(dup).unwrap();
    assert_eq!(c.statfs().blocks_free, free);
    let usage = c.fs.usage();
    assert_eq!((usage.inodes, usage.handles, usage.blocks_used), (1, 0, 0));
}

#[test]
fn creating_and_removing_leaves_no_lookup_behind() {
    let mut c = Client::root();
    c.mkdir(b"/d", 0o755).unwrap();
    c.put(b"/d/f", b"x");
    c.symlink(b"f", b"/d/l").unwrap();
    let link = |c: &mut Client, old, new_path| {
        c.unit(Request::Link {
            old,
            new_at: None,
            new_path,
        })
    };
    link(&mut c, at(b"/d/f"), b"/d/h").unwrap();
    let fd = c.fd(b"/d/f", ro());
    link(&mut c, Target::Fd(fd), b"/d/h2").unwrap();
    c.close(fd).unwrap();
    // Failed calls count nothing either.
    assert_eq!(c.mkdir(b"/d", 0o755), Err(Exists));
    assert_eq!(c.open(b"/d/f", excl(), 0o600), Err(Exists));
    assert_eq!(link(&mut c, at(b"/d/f"), b"/d/h"), Err(Exists));
    let fd = c.fd(b"/d/f", creat());
    c.close(fd).unwrap();
    for name in ["f", "l", "h", "h2"] {
        c.unlink(format!("/d/{name}").as_bytes()).unwrap();
    }
    c.rmdir(b"/d").unwrap();
    let usage = c.fs.usage();
    assert_eq!((usage.inodes, usage.handles, usage.blocks_used), (1, 0, 0));
}

#[test]
fn mkdir_rmdir_and_unlink_follow_linux() {
    let mut c = Client::root();
    assert_eq!(c.mkdir(b"/d", 0o755), Ok(()));
    assert_eq!(c.mkdir(b"/d", 0o755), Err(Exists));
    assert_eq!(c.mkdir(b"/e/", 0o700), Ok(()));
    assert_eq!(c.stat(at(b"/e")).unwrap().perm, 0o700);
    assert_eq!(c.mkdir(b"/", 0o755), Err(Exists));
    assert_eq!(c.mkdir(b"/d/.", 0o755), Err(Exists));
    assert_eq!(c.mkdir(b"/s", 0o7777), Ok(()));
    assert_eq!(c.stat(at(b"/s")).unwrap().perm, 0o1777);
    assert_eq!(c.mkdir(b"/nope/x", 0o755), Err(NotFound));
    assert_eq!(c.rmdir(b"/"), Err(Busy));
    assert_eq!(c.rmdir(b"//"), Err(Busy));
    assert_eq!(c.rmdir(b"/d/."), Err(InvalidArgument));
    assert_eq!(c.rmdir(b"/d/.."), Err(NotEmpty));
    c.put(b"/d/f", b"");
    assert_eq!(c.rmdir(b"/d"), Err(NotEmpty));
    assert_eq!(c.rmdir(b"/d/f"), Err(NotADirectory));
    assert_eq!(c.unlink(b"/d"), Err(IsADirectory));
    assert_eq!(c.unlink(b"/d/"), Err(IsADirectory));
    assert_eq!(c.unlink(b"/d/f/"), Err(NotADirectory));
    assert_eq!(c.unlink(b"/d/nope/"), Err(NotFound));
    assert_eq!(c.unlink(b"/d/."), Err(IsADirectory));
    assert_eq!(c.unlink(b"/"), Err(IsADirectory));
    assert_eq!(c.unlink(b"/d/f"), Ok(()));
    assert_eq!(c.unlink(b"/d/f"), Err(NotFound));
    assert_eq!(c.rmdir(b"/d/"), Ok(()));
    assert_eq!(c.rmdir(b"/d"), Err(NotFound));
    // A link to a directory, named with a slash, is still a link to unlink.
    c.symlink(b"e", b"/le").unwrap();
    assert_eq!(c.unlink(b"/le/"), Err(NotADirectory));
    assert_eq!(c.rmdir(b"/le"), Err(NotADirectory));
    assert_eq!(c.unlink(b"/le"), Ok(()));
    assert!(c.stat(at(b"/e")).is_ok());
    // Permissions: write on the parent, and the sticky bit.
    let mut alice = c.other(1000, 1000);
    assert_eq!(alice.mkdir(b"/x", 0o755), Err(PermissionDenied));
    c.put(b"/s/roots", b"");
    assert_eq!(alice.unlink(b"/s/roots"), Err(NotPermitted));
    assert_eq!(alice.mkdir(b"/s/mine", 0o755), Ok(()));
    assert_eq!(alice.rmdir(b"/s/mine"), Ok(()));
    assert_eq!(alice.rmdir(b"/e/x"), Err(PermissionDenied));
}

#[test]
fn rename_follows_linux() {
    let mut c = Client::root();
    c.put(b"/a", b"a");
    c.put(b"/b", b"b");
    c.mkdir(b"/d", 0o755).unwrap();
    let a = c.stat(at(b"/a")).unwrap().ino;
    let b = c.stat(at(b"/b")).unwrap().ino;
    assert_eq!(c.rename(b"/a", b"/c", RenameMode::Replace), Ok(()));
    assert_eq!(c.stat(at(b"/a")), Err(NotFound));
    assert_eq!(c.stat(at(b"/c")).unwrap().ino, a);
    assert_eq!(c.rename(b"/c", b"/b", RenameMode::NoReplace), Err(Exists));
    assert_eq!(
        c.rename(b"/c", b"/nope", RenameMode::Exchange),
        Err(NotFound)
    );
    assert_eq!(c.rename(b"/c", b"/b", RenameMode::Exchange), Ok(()));
    assert_eq!(c.stat(at(b"/c")).unwrap().ino, b);
    assert_eq!(c.stat(at(b"/b")).unwrap().ino, a);
    // Slashes: only a directory may be named with one.
    assert_eq!(
        c.rename(b"/c/", b"/x", RenameMode::Replace),
        Err(NotADirectory)
    );
    assert_eq!(
        c.rename(b"/c", b"/x/", RenameMode::Replace),
        Err(NotADirectory)
    );
    assert_eq!(
        c.rename(b"/c", b"/b/", RenameMode::Replace),
        Err(NotADirectory)
    );
    assert_eq!(c.rename(b"/c", b"/b/", RenameMode::NoReplace), Err(Exists));
    assert_eq!(
        c.rename(b"/d", b"/c/", RenameMode::Exchange),
        Err(NotADirectory)
    );
    assert_eq!(
        c.rename(b"/nope/", b"/x", RenameMode::Replace),
        Err(NotFound)
    );
    assert_eq!(c.rename(b"/d/", b"/dd/", RenameMode::Replace), Ok(()));
    assert_eq!(c.rename(b"/dd", b"/d", RenameMode::Replace), Ok(()));
    // The engine's rules.
    assert_eq!(
        c.rename(b"/d", b"/d/sub", RenameMode::Replace),
        Err(InvalidArgument)
    );
    assert_eq!(c.rename(b"/.", b"/z", RenameMode::Replace), Err(Busy));
    assert_eq!(c.rename(b"/b", b"/d/..", RenameMode::Replace), Err(Busy));
    assert_eq!(
        c.rename(b"/b", b"/d", RenameMode::Replace),
        Err(IsADirectory)
    );
    assert_eq!(
        c.rename(b"/d", b"/b", RenameMode::Replace),
        Err(NotADirectory)
    );
    // Between two directory descriptions.
    c.mkdir(b"/e", 0o755).unwrap();
    let d = c.fd(b"/d", dir());
    let e = c.fd(b"/e", dir());
    c.put(b"/d/f1", b"1");
    let moved = c.unit(Request::Rename {
        old_at: Some(d),
        old_path: b"f1",
        new_at: Some(e),
        new_path: b"f2",
        mode: RenameMode::NoReplace,
    });
    assert_eq!(moved, Ok(()));
    assert_eq!(c.get(b"/e/f2"), b"1");
}

#[test]
fn link_symlink_and_readlink() {
    let mut c = Client::root();
    c.put(b"/f", b"x");
    c.mkdir(b"/d", 0o755).unwrap();
    let f = c.stat(at(b"/f")).unwrap().ino;
    assert_eq!(c.symlink(b"f", b"/l"), Ok(()));
    let l = c.stat(lat(b"/l")).unwrap();
    assert_eq!((l.kind, l.size), (FileType::Symlink, 1));
    let link = |c: &mut Client, old, new_path| {
        c.unit(Request::Link {
            old,
            new_at: None,
            new_path,
        })
    };
    // link(2) does not follow the old name; AT_SYMLINK_FOLLOW does.
    assert_eq!(link(&mut c, lat(b"/l"), b"/hl"), Ok(()));
    assert_eq!(c.stat(lat(b"/hl")).unwrap().ino, l.ino);
    assert_eq!(link(&mut c, at(b"/l"), b"/hf"), Ok(()));
    assert_eq!(c.stat(at(b"/hf")).unwrap().ino, f);
    // AT_EMPTY_PATH.
    let fd = c.fd(b"/f", ro());
    assert_eq!(link(&mut c, Target::Fd(fd), b"/d/hfd"), Ok(()));
    assert_eq!(c.stat(at(b"/f")).unwrap().nlink, 3);
    assert_eq!(link(&mut c, at(b"/f"), b"/hf"), Err(Exists));
    assert_eq!(link(&mut c, at(b"/f"), b"/hnew/"), Err(NotFound));
    assert_eq!(link(&mut c, at(b"/f"), b"/hf/"), Err(Exists));
    assert_eq!(link(&mut c, at(b"/d"), b"/dl"), Err(NotPermitted));
    assert_eq!(link(&mut c, at(b"/f/"), b"/x"), Err(NotADirectory));
    assert_eq!(link(&mut c, Target::Fd(77), b"/x"), Err(BadHandle));
    // symlink: the content is stored as it is.
    assert_eq!(c.symlink(b"x", b"/l2/"), Err(NotFound));
    assert_eq!(c.symlink(b"x", b"/l/"), Err(Exists));
    assert_eq!(c.symlink(b"x", b"/l"), Err(Exists));
    assert_eq!(c.symlink(&[b'a'; PATH_MAX], b"/long"), Err(NameTooLong));
    let readlink = |c: &mut Client, path, max| {
        c.bytes(Request::Readlink {
            at: None,
            path,
            max,
        })
    };
    assert_eq!(c.symlink(b"abc/def", b"/six"), Ok(()));
    assert_eq!(readlink(&mut c, b"/six", 4096).unwrap(), b"abc/def");
    assert_eq!(readlink(&mut c, b"/six", 3).unwrap(), b"abc");
    assert_eq!(readlink(&mut c, b"/six", 0), Err(InvalidArgument));
    assert_eq!(readlink(&mut c, b"/nope", 0), Err(InvalidArgument));
    assert_eq!(readlink(&mut c, b"/nope", 10), Err(NotFound));
    assert_eq!(readlink(&mut c, b"/f", 10), Err(InvalidArgument));
    c.symlink(b"d", b"/ld").unwrap();
    assert_eq!(readlink(&mut c, b"/ld/", 10), Err(InvalidArgument));
    assert_eq!(readlink(&mut c, b"/ld", 10).unwrap(), b"d");
    let long = vec![b'p'; PATH_MAX - 1];
    assert_eq!(c.symlink(&long, b"/max"), Ok(()));
    assert_eq!(readlink(&mut c, b"/max", PATH_MAX as u32).unwrap(), long);
}

#[test]
fn truncate_follows_linux() {
    let mut root = Client::root();
    root.put(b"/f", b"hello world");
    let truncate = |c: &mut Client, target, size| c.unit(Request::Truncate { target, size });
    assert_eq!(truncate(&mut root, at(b"/f"), 5), Ok(()));
    assert_eq!(root.get(b"/f"), b"hello");
    assert_eq!(truncate(&mut root, at(b"/f"), 8), Ok(()));
    assert_eq!(root.get(b"/f"), b"hello\0\0\0");
    root.symlink(b"f", b"/lf").unwrap();
    assert_eq!(truncate(&mut root, at(b"/lf"), 1), Ok(()));
    assert_eq!(root.get(b"/f"), b"h");
    root.mkdir(b"/d", 0o755).unwrap();
    assert_eq!(truncate(&mut root, at(b"/d"), 0), Err(IsADirectory));
    assert_eq!(truncate(&mut root, at(b"/nope"), 0), Err(NotFound));
    // A negative length is refused before anything else is looked at.
    assert_eq!(
        truncate(&mut root, at(b"/nope"), u64::MAX),
        Err(InvalidArgument)
    );
    assert_eq!(
        truncate(&mut root, Target::Fd(99), MAX_OFFSET + 1),
        Err(InvalidArgument)
    );
    assert_eq!(truncate(&mut root, Target::Fd(99), 0), Err(BadHandle));
    // ftruncate wants a description open for writing on a regular file.
    let r = root.fd(b"/f", ro());
    let d = root.fd(b"/d", dir());
    let w = root.fd(b"/f", wo());
    assert_eq!(truncate(&mut root, Target::Fd(r), 0), Err(InvalidArgument));
    assert_eq!(truncate(&mut root, Target::Fd(d), 0), Err(InvalidArgument));
    assert_eq!(truncate(&mut root, Target::Fd(w), 3), Ok(()));
    assert_eq!(root.stat(Target::Fd(r)).unwrap().size, 3);
    assert_eq!(truncate(&mut root, Target::Fd(w), MAX_OFFSET), Ok(()));
    assert_eq!(root.stat(at(b"/f")).unwrap().size, MAX_OFFSET);
    // Permission: write on the file for truncate, the description's access for ftruncate.
    let mut alice = root.other(1000, 1000);
    assert_eq!(truncate(&mut alice, at(b"/f"), 0), Err(PermissionDenied));
    root.mkdir(b"/home", 0o755).unwrap();
    root.chown(at(b"/home"), Some(1000), Some(1000)).unwrap();
    let (aw, _) = alice.open(b"/home/a", excl(), 0o600).unwrap();
    alice.chmod(at(b"/home/a"), 0o400).unwrap();
    assert_eq!(
        truncate(&mut alice, at(b"/home/a"), 10),
        Err(PermissionDenied)
    );
    assert_eq!(truncate(&mut alice, Target::Fd(aw), 10), Ok(()));
    assert_eq!(alice.stat(at(b"/home/a")).unwrap().size, 10);
}

#[test]
fn chmod_chown_and_utimens() {
    let mut root = Client::root();
    root.put(b"/f", b"x");
    assert_eq!(root.chown(at(b"/f"), Some(1000), Some(1000)), Ok(()));
    let mut alice = root.other(1000, 1000);
    let mut bob = root.other(2000, 2000);
    assert_eq!(alice.chmod(at(b"/f"), 0o4755), Ok(()));
    assert_eq!(alice.stat(at(b"/f")).unwrap().perm, 0o4755);
    // chown(f, -1, -1) clears set-user-ID and moves ctime.
    let before = alice.stat(at(b"/f")).unwrap();
    assert_eq!(alice.chown(at(b"/f"), None, None), Ok(()));
    let after = alice.stat(at(b"/f")).unwrap();
    assert_eq!((after.perm, after.uid, after.gid), (0o755, 1000, 1000));
    assert!(after.ctime > before.ctime);
    assert_eq!(bob.chmod(at(b"/f"), 0o777), Err(NotPermitted));
    assert_eq!(bob.chown(at(b"/f"), Some(2000), None), Err(NotPermitted));
    assert_eq!(alice.chown(at(b"/f"), Some(2000), None), Err(NotPermitted));
    assert_eq!(alice.chown(at(b"/f"), None, Some(2000)), Err(NotPermitted));
    assert_eq!(root.chown(at(b"/f"), None, Some(3000)), Ok(()));
    let attr = root.stat(at(b"/f")).unwrap();
    assert_eq!((attr.uid, attr.gid), (1000, 3000));
    // Times: explicit values by the owner; "now" for both also by a writer.
    let t = Timestamp::new(5, 7).unwrap();
    let utimens = |c: &mut Client, target, atime, mtime| {
        c.unit(Request::Utimens {
            target,
            atime,
            mtime,
        })
    };
    let before = root.stat(at(b"/f")).unwrap();
    assert_eq!(
        utimens(&mut alice, at(b"/f"), TimeSet::At(t), TimeSet::Omit),
        Ok(())
    );
    let after = root.stat(at(b"/f")).unwrap();
    assert_eq!((after.atime, after.mtime), (t, before.mtime));
    assert_eq!(
        utimens(&mut bob, at(b"/f"), TimeSet::At(t), TimeSet::At(t)),
        Err(NotPermitted)
    );
    assert_eq!(
        utimens(&mut bob, at(b"/f"), TimeSet::Now, TimeSet::Omit),
        Err(NotPermitted)
    );
    assert_eq!(
        utimens(&mut bob, at(b"/f"), TimeSet::Now, TimeSet::Now),
        Err(PermissionDenied)
    );
    alice.chmod(at(b"/f"), 0o666).unwrap();
    assert_eq!(
        utimens(&mut bob, at(b"/f"), TimeSet::Now, TimeSet::Now),
        Ok(())
    );
    let touched = root.stat(at(b"/f")).unwrap();
    assert!(touched.mtime > after.mtime && touched.atime > t);
    // Nothing to change: not even the path is looked at.
    assert_eq!(
        utimens(&mut bob, at(b"/nope"), TimeSet::Omit, TimeSet::Omit),
        Ok(())
    );
    assert_eq!(
        utimens(&mut bob, at(b"/nope"), TimeSet::Now, TimeSet::Omit),
        Err(NotFound)
    );
    // Symbolic links: the mode of the link itself cannot change; the target's can.
    root.symlink(b"f", b"/l").unwrap();
    assert_eq!(root.chmod(lat(b"/l"), 0o600), Err(NotSupported));
    assert_eq!(root.chmod(at(b"/l"), 0o600), Ok(()));
    assert_eq!(root.stat(at(b"/f")).unwrap().perm, 0o600);
    assert_eq!(root.chown(lat(b"/l"), Some(5), Some(5)), Ok(()));
    let link = root.stat(lat(b"/l")).unwrap();
    assert_eq!((link.uid, link.gid), (5, 5));
    assert_eq!(root.stat(at(b"/f")).unwrap().uid, 1000);
    // Through a description.
    let fd = root.fd(b"/f", ro());
    assert_eq!(root.chmod(Target::Fd(fd), 0o640), Ok(()));
    assert_eq!(root.stat(Target::Fd(fd)).unwrap().perm, 0o640);
    assert_eq!(
        utimens(&mut root, Target::Fd(fd), TimeSet::Omit, TimeSet::At(t)),
        Ok(())
    );
    assert_eq!(root.stat(at(b"/f")).unwrap().mtime, t);
    assert_eq!(root.chmod(Target::Fd(fd + 1), 0o640), Err(BadHandle));
}

#[test]
fn access_and_stat_resolve_like_the_at_calls() {
    let mut root = Client::root();
    root.put(b"/secret", b"x");
    root.chmod(at(b"/secret"), 0o600).unwrap();
    let mut alice = root.other(1000, 1000);
    let access = |c: &mut Client, target, mask| {
        c.unit(Request::Access {
            target,
            mask,
            effective: false,
        })
    };
    assert_eq!(
        access(&mut alice, at(b"/secret"), AccessMask::READ),
        Err(PermissionDenied)
    );
    assert_eq!(
        access(&mut alice, at(b"/secret"), AccessMask::EXISTS),
        Ok(())
    );
    assert_eq!(access(&mut root, at(b"/secret"), AccessMask::WRITE), Ok(()));
    assert_eq!(
        access(&mut root, at(b"/secret"), AccessMask::EXECUTE),
        Err(PermissionDenied)
    );
    assert_eq!(
        access(&mut root, at(b"/nope"), AccessMask::EXISTS),
        Err(NotFound)
    );
    let effective = alice.unit(Request::Access {
        target: at(b"/"),
        mask: AccessMask::EXECUTE,
        effective: true,
    });
    assert_eq!(effective, Ok(()));
    // stat by path, by description, and without following.
    root.mkdir(b"/d", 0o755).unwrap();
    root.put(b"/d/f", b"data");
    root.symlink(b"d/f", b"/l").unwrap();
    let f = root.stat(at(b"/d/f")).unwrap();
    assert_eq!(f.size, 4);
    let fd = root.fd(b"/d/f", ro());
    assert_eq!(root.stat(Target::Fd(fd)), Ok(f));
    assert_eq!(root.stat(at(b"/l")).unwrap().ino, f.ino);
    assert_eq!(root.stat(lat(b"/l")).unwrap().kind, FileType::Symlink);
    assert_eq!(access(&mut root, Target::Fd(fd), AccessMask::READ), Ok(()));
    // A directory description as the start of relative paths.
    let d = root.fd(b"/d", dir());
    let stat_at = |c: &mut Client, at, path| {
        c.stat(Target::Path {
            at,
            path,
            follow: true,
        })
    };
    assert_eq!(stat_at(&mut root, Some(d), b"f").unwrap().ino, f.ino);
    assert_eq!(stat_at(&mut root, Some(d), b"..").unwrap().ino, Ino::ROOT);
    assert_eq!(stat_at(&mut root, Some(d), b"/l").unwrap().ino, f.ino);
    assert_eq!(stat_at(&mut root, Some(fd), b"x"), Err(NotADirectory));
    assert_eq!(stat_at(&mut root, Some(999), b"f"), Err(BadHandle));
    // An absolute path does not look at the directory description at all.
    assert_eq!(stat_at(&mut root, Some(999), b"/d/f").unwrap().ino, f.ino);
    assert_eq!(root.stat(Target::Fd(999)), Err(BadHandle));
}

#[test]
fn relative_calls_use_directory_descriptions() {
    let mut root = Client::root();
    root.mkdir(b"/d", 0o755).unwrap();
    let d = root.fd(b"/d", dir());
    let (f, _) = root.open_at(Some(d), b"f", excl(), 0o644).unwrap();
    assert_eq!(root.write(f, b"in d"), Ok(4));
    assert_eq!(root.get(b"/d/f"), b"in d");
    let mkdir = Request::Mkdir {
        at: Some(d),
        path: b"sub",
        mode: 0o755,
    };
    assert_eq!(root.unit(mkdir), Ok(()));
    let symlink = Request::Symlink {
        target: b"f",
        at: Some(d),
        path: b"lnk",
    };
    assert_eq!(root.unit(symlink), Ok(()));
    let link = Request::Link {
        old: Target::Path {
            at: Some(d),
            path: b"lnk",
            follow: true,
        },
        new_at: Some(d),
        new_path: b"sub/hard",
    };
    assert_eq!(root.unit(link), Ok(()));
    assert_eq!(root.get(b"/d/sub/hard"), b"in d");
    let readlink = Request::Readlink {
        at: Some(d),
        path: b"lnk",
        max: 100,
    };
    assert_eq!(root.bytes(readlink).unwrap(), b"f");
    // The description follows the directory, not its old name.
    root.rename(b"/d", b"/moved", RenameMode::Replace).unwrap();
    assert!(root.open_at(Some(d), b"new", excl(), 0o600).is_ok());
    assert!(root.stat(at(b"/moved/new")).is_ok());
    for path in [&b"new"[..], b"lnk", b"f", b"sub/hard"] {
        assert_eq!(root.unit(Request::Unlink { at: Some(d), path }), Ok(()));
    }
    let rmdir = Request::Rmdir {
        at: Some(d),
        path: b"sub",
    };
    assert_eq!(root.unit(rmdir), Ok(()));
    assert_eq!(root.entries(d, 4096).unwrap().len(), 2);
    // Not a directory, not open.
    let open_in = |c: &mut Client, at| c.open_at(Some(at), b"x", creat(), 0o600);
    assert_eq!(open_in(&mut root, f), Err(NotADirectory));
    assert_eq!(open_in(&mut root, 999), Err(BadHandle));
    // Search permission on the start directory is checked when walking from it.
    root.chmod(at(b"/moved"), 0o755).unwrap();
    let mut alice = root.other(1000, 1000);
    let ad = alice.fd(b"/moved", dir());
    root.chmod(at(b"/moved"), 0o700).unwrap();
    let walk = alice.stat(Target::Path {
        at: Some(ad),
        path: b".",
        follow: true,
    });
    assert_eq!(walk, Err(PermissionDenied));
}

#[test]
fn xattrs_with_size_probes() {
    let mut root = Client::root();
    root.put(b"/f", b"");
    let set = |c: &mut Client, target, name, value, mode| {
        c.unit(Request::SetXattr {
            target,
            name,
            value,
            mode,
        })
    };
    let get =
        |c: &mut Client, target, name, max| match c.run(Request::GetXattr { target, name, max }) {
            Response::Size(n) => Ok((Some(n), Vec::new())),
            Response::Data(data) => Ok((None, data.to_vec())),
            Response::Err(e) => Err(e),
            other => panic!("{other:?}"),
        };
    let list = |c: &mut Client, target, max| match c.run(Request::ListXattr { target, max }) {
        Response::Size(n) => Ok((Some(n), Vec::new())),
        Response::Data(data) => Ok((None, data.to_vec())),
        Response::Err(e) => Err(e),
        other => panic!("{other:?}"),
    };
    let f = at(b"/f");
    assert_eq!(set(&mut root, f, b"user.a", b"vvv", XattrMode::Set), Ok(()));
    assert_eq!(
        set(&mut root, f, b"user.a", b"w", XattrMode::Create),
        Err(Exists)
    );
    assert_eq!(
        set(&mut root, f, b"user.b", b"w", XattrMode::Replace),
        Err(NoData)
    );
    assert_eq!(get(&mut root, f, b"user.a", 0), Ok((Some(3), Vec::new())));
    assert_eq!(get(&mut root, f, b"user.a", 3), Ok((None, b"vvv".to_vec())));
    assert_eq!(
        get(&mut root, f, b"user.a", 100),
        Ok((None, b"vvv".to_vec()))
    );
    assert_eq!(get(&mut root, f, b"user.a", 2), Err(Range));
    assert_eq!(get(&mut root, f, b"user.zz", 2), Err(NoData));
    assert_eq!(list(&mut root, f, 0), Ok((Some(7), Vec::new())));
    assert_eq!(list(&mut root, f, 7), Ok((None, b"user.a\0".to_vec())));
    assert_eq!(list(&mut root, f, 3), Err(Range));
    let fd = root.fd(b"/f", ro());
    let by_fd = Target::Fd(fd);
    assert_eq!(
        get(&mut root, by_fd, b"user.a", 10),
        Ok((None, b"vvv".to_vec()))
    );
    let mut alice = root.other(1000, 1000);
    assert_eq!(
        set(&mut alice, f, b"user.c", b"x", XattrMode::Set),
        Err(PermissionDenied)
    );
    assert_eq!(
        get(&mut alice, f, b"user.a", 10),
        Ok((None, b"vvv".to_vec()))
    );
    let remove = |c: &mut Client, target, name| c.unit(Request::RemoveXattr { target, name });
    assert_eq!(remove(&mut alice, f, b"user.a"), Err(PermissionDenied));
    assert_eq!(remove(&mut root, by_fd, b"user.a"), Ok(()));
    assert_eq!(remove(&mut root, f, b"user.a"), Err(NoData));
    assert_eq!(list(&mut root, f, 0), Ok((Some(0), Vec::new())));
    assert_eq!(get(&mut root, at(b"/nope"), b"user.a", 0), Err(NotFound));
}

#[test]
fn statfs_fsync_and_fallocate() {
    let mut c = Client::root();
    let expected = c.fs.statfs(&c.cred).unwrap();
    assert_eq!(c.statfs(), expected);
    assert_eq!((expected.block_size, expected.blocks), (4096, 256));
    let statfs = |c: &mut Client, target| match c.run(Request::Statfs { target }) {
        Response::StatFs(s) => Ok(s),
        Response::Err(e) => Err(e),
        other => panic!("{other:?}"),
    };
    assert_eq!(statfs(&mut c, at(b"/nope")), Err(NotFound));
    assert_eq!(statfs(&mut c, Target::Fd(9)), Err(BadHandle));
    let fd = c.fd(b"/f", creat());
    let expected = c.fs.statfs(&c.cred).unwrap();
    assert_eq!(expected.files_free + 2, expected.files);
    assert_eq!(statfs(&mut c, Target::Fd(fd)), Ok(expected));
    let fallocate = |c: &mut Client, fd, mode, offset, len| {
        c.unit(Request::Fallocate {
            fd,
            mode,
            offset,
            len,
        })
    };
    let size = |c: &mut Client| c.stat(at(b"/f")).unwrap().size;
    assert_eq!(
        fallocate(&mut c, fd, FallocateMode::Allocate, 0, 8192),
        Ok(())
    );
    assert_eq!(size(&mut c), 8192);
    assert_eq!(c.statfs().blocks_free, expected.blocks_free - 2);
    assert_eq!(
        fallocate(&mut c, fd, FallocateMode::KeepSize, 8192, 4096),
        Ok(())
    );
    assert_eq!(size(&mut c), 8192);
    assert_eq!(c.statfs().blocks_free, expected.blocks_free - 3);
    assert_eq!(
        fallocate(&mut c, fd, FallocateMode::PunchHole, 0, 4096),
        Ok(())
    );
    assert_eq!(size(&mut c), 8192);
    assert_eq!(c.statfs().blocks_free, expected.blocks_free - 2);
    // The range is checked before the description's access; an unknown one comes first.
    let r = c.fd(b"/f", ro());
    assert_eq!(
        fallocate(&mut c, r, FallocateMode::Allocate, 0, 0),
        Err(InvalidArgument)
    );
    assert_eq!(
        fallocate(&mut c, r, FallocateMode::Allocate, 0, 1),
        Err(BadHandle)
    );
    let huge = MAX_OFFSET + 1;
    assert_eq!(
        fallocate(&mut c, fd, FallocateMode::Allocate, huge, 1),
        Err(InvalidArgument)
    );
    assert_eq!(
        fallocate(&mut c, fd, FallocateMode::Allocate, 0, huge),
        Err(InvalidArgument)
    );
    assert_eq!(
        fallocate(&mut c, fd, FallocateMode::Allocate, MAX_OFFSET, 1),
        Err(FileTooLarge)
    );
    assert_eq!(
        fallocate(&mut c, 99, FallocateMode::Allocate, 0, 0),
        Err(BadHandle)
    );
    // The store full: what fits is written, then ENOSPC.
    let big = vec![1u8; ring::MAX_IO];
    assert_eq!(c.pwrite(fd, 0, &big), Ok(ring::MAX_IO as u64));
    assert_eq!(c.statfs().blocks_free, 0);
    assert_eq!(c.pwrite(fd, ring::MAX_IO as u64, b"x"), Err(NoSpace));
}

#[test]
fn a_full_descriptor_table_is_emfile() {
    let mut c = Client::root();
    let fd = c.fd(b"/f", creat());
    for _ in 1..MAX_OPEN {
        c.number(Request::Dup { fd }).unwrap();
    }
    assert_eq!(c.number(Request::Dup { fd }), Err(TooManyOpenFiles));
    // No file is created for a descriptor that cannot be had.
    assert_eq!(c.open(b"/g", creat(), 0o600), Err(TooManyOpenFiles));
    assert_eq!(c.stat(at(b"/g")), Err(NotFound));
    c.close(fd).unwrap();
    assert!(c.open(b"/g", creat(), 0o600).is_ok());
    assert_eq!(c.fs.usage().handles, 2);
}

#[test]
fn hostile_values_are_answered_not_obeyed() {
    let mut c = Client::root();
    c.put(b"/f", b"data");
    c.mkdir(b"/d", 0o755).unwrap();
    let fd = c.fd(b"/f", rw());
    let d = c.fd(b"/d", dir());
    let everything = OpenOptions {
        read: true,
        write: true,
        append: true,
        truncate: true,
        create: true,
        exclusive: true,
        directory: true,
        nofollow: true,
        nonblock: true,
        check_read_write: true,
        path_only: true,
    };
    let requests = [
        Request::Read {
            fd: u32::MAX,
            len: ring::MAX_IO as u32,
        },
        Request::Pread {
            fd,
            offset: u64::MAX,
            len: ring::MAX_IO as u32,
        },
        Request::Pwrite {
            fd,
            offset: u64::MAX,
            data: b"x",
        },
        Request::Lseek {
            fd,
            offset: i64::MIN,
            whence: Whence::Cur,
        },
        Request::Lseek {
            fd: d,
            offset: i64::MIN,
            whence: Whence::Cur,
        },
        Request::Fallocate {
            fd,
            mode: FallocateMode::PunchHole,
            offset: u64::MAX,
            len: u64::MAX,
        },
        Request::Truncate {
            target: Target::Fd(fd),
            size: u64::MAX,
        },
        Request::Getdents { fd: d, max: 1 },
        Request::Open {
            at: Some(u32::MAX),
            path: b"x",
            flags: everything,
            mode: 0o7777,
            prefetch: ring::MAX_IO as u32,
            known_ino: u64::MAX,
            known_version: u64::MAX,
        },
        Request::Attach { token: u64::MAX },
        Request::Hello { version: u8::MAX },
        Request::Readlink {
            at: Some(d),
            path: &[b'/'; PATH_MAX],
            max: PATH_MAX as u32,
        },
        Request::Stat {
            target: Target::Path {
                at: Some(fd),
                path: &[b'a'; 300],
                follow: true,
            },
        },
    ];
    for request in requests {
        let response = c.run(request);
        assert!(
            matches!(response, Response::Err(_)),
            "{request:?} -> {response:?}"
        );
    }
    assert_eq!(c.get(b"/f"), b"data");
}

#[test]
fn copy_range_copies_in_the_server_with_linuxs_checks() {
    let mut c = Client::root();
    c.put(b"/src", b"0123456789");
    c.put(b"/dst", b"abcdefghijklmnop");
    let src = c.fd(b"/src", ro());
    let dst = c.fd(b"/dst", rw());
    let copy = |c: &mut Client, (fd_in, off_in), (fd_out, off_out), len| {
        c.number(Request::CopyRange {
            fd_in,
            off_in,
            fd_out,
            off_out,
            len,
        })
    };
    // Explicit offsets leave both descriptions' offsets where they were.
    assert_eq!(copy(&mut c, (src, Some(2)), (dst, Some(4)), 3), Ok(3));
    assert_eq!(c.get(b"/dst"), b"abcd234hijklmnop");
    assert_eq!((c.tell(src), c.tell(dst)), (0, 0));
    // Without them, each offset moves past what was copied.
    assert_eq!(c.seek(src, 6, Whence::Set), Ok(6));
    assert_eq!(copy(&mut c, (src, None), (dst, None), 100), Ok(4));
    assert_eq!((c.tell(src), c.tell(dst)), (10, 4));
    assert_eq!(c.get(b"/dst"), b"6789234hijklmnop");
    // At the input's end nothing is copied; past the output's end it grows.
    assert_eq!(copy(&mut c, (src, None), (dst, None), 5), Ok(0));
    assert_eq!(copy(&mut c, (src, Some(0)), (dst, Some(20)), 2), Ok(2));
    let grown = [&b"6789234hijklmnop"[..], &[0; 4], b"01"].concat();
    assert_eq!(c.get(b"/dst"), grown);
    // Within one file: apart is fine, overlapping is EINVAL, judged after the count stops at
    // the input's end.
    let both = c.fd(b"/src", rw());
    assert_eq!(copy(&mut c, (both, Some(0)), (both, Some(5)), 5), Ok(5));
    assert_eq!(c.get(b"/src"), b"0123401234");
    assert_eq!(
        copy(&mut c, (both, Some(0)), (both, Some(3)), 5),
        Err(Errno::InvalidArgument)
    );
    assert_eq!(copy(&mut c, (both, Some(8)), (both, Some(0)), 100), Ok(2));
    // Access: the input readable, the output writable and not appending.
    assert_eq!(
        copy(&mut c, (dst, Some(0)), (src, Some(0)), 1),
        Err(Errno::BadHandle)
    );
    let wo_src = c.fd(b"/src", wo());
    assert_eq!(
        copy(&mut c, (wo_src, Some(0)), (dst, Some(0)), 1),
        Err(Errno::BadHandle)
    );
    let appending = c.fd(
        b"/dst",
        OpenOptions {
            append: true,
            ..wo()
        },
    );
    assert_eq!(
        copy(&mut c, (src, Some(0)), (appending, Some(0)), 1),
        Err(Errno::BadHandle)
    );
    // Kinds and ranges.
    c.mkdir(b"/d", 0o755).unwrap();
    let d = c.fd(b"/d", dir());
    assert_eq!(
        copy(&mut c, (d, Some(0)), (dst, Some(0)), 1),
        Err(Errno::IsADirectory)
    );
    assert_eq!(
        copy(&mut c, (src, Some(0)), (dst, Some(i64::MAX as u64)), 1),
        Err(Errno::InvalidArgument)
    );
    assert_eq!(
        copy(&mut c, (99, Some(0)), (dst, Some(0)), 1),
        Err(Errno::BadHandle)
    );
}

// ---- File locks ----

fn set_lock(scope: u8, kind: u8, start: u64, end: u64, wait: bool, fd: u32) -> Request<'static> {
    Request::SetLock {
        fd,
        scope,
        kind,
        start,
        end,
        wait,
    }
}

#[test]
fn lock_requests_refuse_bad_values_and_wrong_access() {
    let mut c = Client::root();
    let rw = OpenOptions {
        read: true,
        write: true,
        create: true,
        ..OpenOptions::default()
    };
    let fd = c.fd(b"/f", rw);
    let ro = c.fd(
        b"/f",
        OpenOptions {
            read: true,
            ..OpenOptions::default()
        },
    );
    let path_only = c.fd(
        b"/f",
        OpenOptions {
            path_only: true,
            ..OpenOptions::default()
        },
    );
    assert_eq!(
        c.unit(set_lock(3, 0, 0, 9, false, fd)),
        Err(Errno::InvalidArgument)
    );
    assert_eq!(
        c.unit(set_lock(0, 3, 0, 9, false, fd)),
        Err(Errno::InvalidArgument)
    );
    // An empty range, or one past i64::MAX.
    assert_eq!(
        c.unit(set_lock(0, 1, 9, 0, false, fd)),
        Err(Errno::InvalidArgument)
    );
    assert_eq!(
        c.unit(set_lock(0, 1, 0, u64::MAX, false, fd)),
        Err(Errno::InvalidArgument)
    );
    assert_eq!(
        c.unit(set_lock(0, 1, 0, 9, false, ro)),
        Err(Errno::BadHandle)
    );
    assert_eq!(c.unit(set_lock(0, 0, 0, 9, false, ro)), Ok(()));
    assert_eq!(c.unit(set_lock(2, 1, 0, 0, false, ro)), Ok(()));
    assert_eq!(
        c.unit(set_lock(2, 1, 0, 0, false, path_only)),
        Err(Errno::BadHandle)
    );
    assert_eq!(
        c.unit(set_lock(0, 0, 0, 9, false, 99)),
        Err(Errno::BadHandle)
    );
    assert_eq!(
        c.unit(Request::LockWait {
            token: 7,
            cancel: false
        }),
        Err(Errno::InvalidArgument)
    );
}

#[test]
fn a_parked_wait_is_granted_on_close_or_interrupted_by_cancel() {
    let mut a = Client::root();
    let mut b = a.other(0, 0);
    let rw = OpenOptions {
        read: true,
        write: true,
        create: true,
        ..OpenOptions::default()
    };
    let fa = a.fd(b"/f", rw);
    let fb = b.fd(b"/f", rw);
    assert_eq!(a.unit(set_lock(0, 1, 0, 99, false, fa)), Ok(()));
    assert_eq!(
        b.unit(set_lock(0, 0, 50, 50, false, fb)),
        Err(Errno::TryAgain)
    );
    match b.run(Request::GetLock {
        fd: fb,
        ofd: false,
        write: false,
        start: 50,
        end: 50,
    }) {
        Response::Lock {
            write, start, end, ..
        } => assert_eq!((write, start, end), (true, 0, 99)),
        other => panic!("expected Lock, got {other:?}"),
    }
    // Parked: still waiting, until A closes a descriptor of the file (its POSIX locks go).
    let token = b.number(set_lock(0, 0, 50, 50, true, fb)).unwrap();
    let poll = |cancel| Request::LockWait { token, cancel };
    assert_eq!(b.number(poll(false)), Ok(token));
    a.unit(Request::Close { fd: fa }).unwrap();
    assert_eq!(b.unit(poll(false)), Ok(()));
    // The token is spent.
    assert_eq!(b.unit(poll(false)), Err(Errno::InvalidArgument));
    // B now holds the read lock on byte 50: A's OFD write lock waits, and is given up.
    let fa = a.fd(b"/f", rw);
    let token = a.number(set_lock(1, 1, 50, 50, true, fa)).unwrap();
    let cancel = Request::LockWait {
        token,
        cancel: true,
    };
    assert_eq!(a.unit(cancel), Err(Errno::Interrupted));
    // B's session ends: its locks go with it.
    drop(b);
    assert_eq!(a.unit(set_lock(1, 1, 50, 50, false, fa)), Ok(()));
}
