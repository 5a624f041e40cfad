//! The `--bpf` examples and the misbehaving programs, compiled from C with clang and run by
//! `Programmed` around a real `MemFs`, each checked against a plain `MemFs` that runs the same
//! steps (a step a program refuses is left out of the reference: it must have changed
//! nothing):
//!
//! - `error_inject` fails exactly the opens and creates of names starting with `inject`, even
//!   after a rename gives an inode such a name, and with `INJECT_PERCENT` about that share;
//! - `readonly_uid` answers `EROFS` to every change by its uid and nothing else;
//! - `audit` counts unlinks, directory removals and renames per uid, exactly, in the exposition;
//! - a loop is refused with the file and the instruction; an out-of-bounds read fails only the
//!   operations that make it (`EIO`, counted); a division by zero yields 0 as the instruction
//!   set says; a return value that is no errno is a fault;
//! - a reload swaps programs in place, and a reload that fails keeps the old ones.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use btfuse_core::{
    Attr, Config, Credentials, Errno, FileType, Filesystem, Ino, MemFs, MemPool, OpenFlags,
    RenameMode, SetAttr, XattrMode,
};
use btfuse_daemon::SystemClock;
use btfuse_daemon::bpf::{Hooks, Program, Programmed};
use btfuse_daemon::metrics::{Frontend, exposition};
use btfuse_testkit::bpf::{compile, example, test_program};

type Fs = MemFs<MemPool>;

fn memfs() -> Arc<Fs> {
    Arc::new(MemFs::new(
        MemPool::new(64 << 20),
        Config::default(),
        SystemClock,
    ))
}

fn user(uid: u32) -> Credentials {
    Credentials {
        uid,
        gid: uid,
        groups: vec![],
        pid: 1,
    }
}

fn load(object: &Path) -> Arc<Hooks> {
    Hooks::load(vec![object.to_path_buf()]).expect("the program loads")
}

/// The engine with `hooks` and a plain reference engine.
fn pair(hooks: &Arc<Hooks>) -> (Programmed<Fs>, Fs) {
    let programmed = Programmed::new(memfs(), Some(Arc::clone(hooks)), Frontend::Shm);
    let reference = Arc::into_inner(memfs()).expect("fresh");
    (programmed, reference)
}

/// A tree entry: kind, permissions, owner, links, size, contents.
type Node = (FileType, u32, u32, u32, u64, Vec<u8>);

/// What a tree holds, as a test compares it: each path's kind, permissions, owner, links,
/// size and file contents.
fn tree(fs: &dyn Filesystem) -> BTreeMap<String, Node> {
    let root = Credentials::root();
    let mut out = BTreeMap::new();
    let mut dirs = vec![(Ino::ROOT, String::new())];
    while let Some((dir, path)) = dirs.pop() {
        let fh = fs.open(&root, dir, OpenFlags::READ).expect("open dir");
        let mut names = Vec::new();
        fs.readdir(&root, fh, 0, &mut |e| {
            if e.name != b"." && e.name != b".." {
                names.push(e.name.to_vec());
            }
            true
        })
        .expect("readdir");
        fs.release(fh).expect("release");
        for name in names {
            let attr = fs.find(&root, dir, &name).expect("find");
            let full = format!("{path}/{}", String::from_utf8_lossy(&name));
            let content = if attr.kind == FileType::RegularFile {
                let fh = fs.open(&root, attr.ino, OpenFlags::READ).expect("open");
                let mut buf = vec![0; attr.size as usize];
                let n = fs.read(&root, fh, 0, &mut buf).expect("read");
                fs.release(fh).expect("release");
                buf.truncate(n);
                buf
            } else {
                Vec::new()
            };
            if attr.kind == FileType::Directory {
                dirs.push((attr.ino, full.clone()));
            }
            let a = attr;
            out.insert(full, (a.kind, a.perm, a.uid, a.nlink, a.size, content));
        }
    }
    out
}

/// One step both engines take; the outcome compared without inode times.
fn outcome<T>(result: &Result<T, Errno>, view: impl Fn(&T) -> String) -> String {
    match result {
        Ok(v) => format!("ok {}", view(v)),
        Err(e) => format!("{e}"),
    }
}

fn attr_view(a: &Attr) -> String {
    format!(
        "{:?} {:o} {} {} {}",
        a.kind, a.perm, a.nlink, a.size, a.ino.0
    )
}

/// Runs `step` on both engines, unless `refused` says the program refuses it: then the
/// programmed engine must answer that errno, and the reference does not take the step.
fn both<T>(
    programmed: &Programmed<Fs>,
    reference: &Fs,
    refused: Option<Errno>,
    step: impl Fn(&dyn Filesystem) -> Result<T, Errno>,
    view: impl Fn(&T) -> String,
) -> Option<T> {
    let got = step(programmed);
    match refused {
        Some(errno) => {
            assert_eq!(got.as_ref().err(), Some(&errno), "a refused step");
            None
        }
        None => {
            let want = step(reference);
            assert_eq!(outcome(&got, &view), outcome(&want, &view));
            got.ok()
        }
    }
}

#[test]
fn error_inject_fails_exactly_the_opens_of_inject_names() {
    let hooks = load(&compile(&example("error_inject"), &[]));
    let (p, r) = pair(&hooks);
    let root = Credentials::root();
    let eio = Some(Errno::Io);
    let none = None;
    let unit = |_: &()| String::new();
    let d = both(
        &p,
        &r,
        none,
        |fs| fs.mkdir(&root, Ino::ROOT, b"d", 0o755),
        attr_view,
    )
    .unwrap()
    .ino;
    let rw = OpenFlags::READ_WRITE;
    for (dir, name, refused) in [
        (Ino::ROOT, &b"a"[..], none),
        (Ino::ROOT, b"inject", eio),
        (Ino::ROOT, b"inject_1", eio),
        (d, b"inject.log", eio),
        (d, b"injec", none),
        (d, b"xinject", none),
        (d, b"Inject", none),
    ] {
        let made = both(
            &p,
            &r,
            refused,
            |fs| fs.create(&root, dir, name, 0o644, rw),
            |(a, _)| attr_view(a),
        );
        if let Some((_, fh)) = made {
            p.write(&root, fh, 0, name).unwrap();
            p.release(fh).unwrap();
            let fh = r
                .find(&root, dir, name)
                .and_then(|a| r.open(&root, a.ino, rw))
                .unwrap();
            r.write(&root, fh, 0, name).unwrap();
            r.release(fh).unwrap();
        }
    }
    // Names that are not opened are not refused: a FIFO, a symbolic link, a directory.
    both(
        &p,
        &r,
        none,
        |fs| fs.mknod(&root, d, b"inject_fifo", FileType::NamedPipe, 0o644, 0),
        attr_view,
    );
    both(
        &p,
        &r,
        none,
        |fs| fs.symlink(&root, d, b"inject_link", b"a"),
        attr_view,
    );
    both(
        &p,
        &r,
        none,
        |fs| fs.mkdir(&root, d, b"inject_dir", 0o755),
        attr_view,
    );
    // Reached through `.` or `..`, a directory keeps its own name: `inject_dir/.` is still
    // `inject_dir`, whose open is refused; `inject_dir/..` is still `d`.
    let inject_dir = p.find(&root, d, b"inject_dir").unwrap().ino;
    assert_eq!(p.find(&root, inject_dir, b".").unwrap().ino, inject_dir);
    assert_eq!(p.find(&root, inject_dir, b"..").unwrap().ino, d);
    let dir_flags = OpenFlags {
        directory: true,
        ..OpenFlags::READ
    };
    both(
        &p,
        &r,
        eio,
        |fs| fs.open(&root, inject_dir, dir_flags),
        |_| String::new(),
    );
    both(
        &p,
        &r,
        none,
        |fs| fs.open(&root, d, dir_flags),
        |_| String::new(),
    );
    // A rename is let through; the inode's next open, by its new name, is refused.
    both(
        &p,
        &r,
        none,
        |fs| fs.rename(&root, Ino::ROOT, b"a", d, b"inject_a", RenameMode::Replace),
        unit,
    );
    let moved = both(&p, &r, none, |fs| fs.find(&root, d, b"inject_a"), attr_view).unwrap();
    both(
        &p,
        &r,
        eio,
        |fs| fs.open(&root, moved.ino, OpenFlags::READ),
        |_| String::new(),
    );
    both(&p, &r, none, |fs| fs.getattr(&root, moved.ino), attr_view);
    // Renamed back to a plain name, it opens again.
    both(
        &p,
        &r,
        none,
        |fs| fs.rename(&root, d, b"inject_a", Ino::ROOT, b"b", RenameMode::Replace),
        unit,
    );
    let fh = both(
        &p,
        &r,
        none,
        |fs| fs.open(&root, moved.ino, OpenFlags::READ),
        |_| String::new(),
    );
    assert!(fh.is_some());
    both(&p, &r, none, |fs| fs.unlink(&root, d, b"injec"), unit);
    assert_eq!(tree(&**p.inner()), tree(&r));
    let left = tree(&**p.inner());
    let names: Vec<&str> = left.keys().map(String::as_str).collect();
    let expected = ["/b", "/d", "/d/Inject", "/d/inject_dir", "/d/inject_fifo"];
    assert_eq!(
        names,
        [&expected[..], &["/d/inject_link", "/d/xinject"]].concat()
    );
}

#[test]
fn error_inject_with_a_probability_fails_about_that_share() {
    let hooks = load(&compile(&example("error_inject"), &["INJECT_PERCENT=30"]));
    let fs = Programmed::new(memfs(), Some(hooks), Frontend::Fuse);
    let root = Credentials::root();
    let (mut failed, mut created) = (0, 0);
    for i in 0..2000 {
        match fs.create(
            &root,
            Ino::ROOT,
            format!("inject{i}").as_bytes(),
            0o644,
            OpenFlags::WRITE,
        ) {
            Ok((_, fh)) => {
                created += 1;
                fs.release(fh).unwrap();
            }
            Err(Errno::Io) => failed += 1,
            Err(e) => panic!("{e}"),
        }
        // Other names: never.
        let (_, fh) = fs
            .create(
                &root,
                Ino::ROOT,
                format!("plain{i}").as_bytes(),
                0o644,
                OpenFlags::WRITE,
            )
            .unwrap();
        fs.release(fh).unwrap();
    }
    // 30% of 2,000 is 600; the bounds are more than 6 standard deviations (20.5) away.
    assert!((470..=730).contains(&failed), "{failed} of 2000 failed");
    assert_eq!(failed + created, 2000);
    assert_eq!(tree(&**fs.inner()).len(), 2000 + created);
}

#[test]
fn readonly_uid_refuses_every_change_by_its_uid_and_nothing_else() {
    let hooks = load(&compile(&example("readonly_uid"), &["READONLY_UID=4001"]));
    let (p, r) = pair(&hooks);
    let root = Credentials::root();
    let ro = user(4001);
    let other = user(4002);
    let erofs = Some(Errno::ReadOnlyFilesystem);
    let unit = |_: &()| String::new();
    let setup = |fs: &dyn Filesystem| {
        let pubdir = fs.mkdir(&root, Ino::ROOT, b"pub", 0o777).unwrap().ino;
        let (f, fh) = fs
            .create(&root, pubdir, b"f", 0o666, OpenFlags::WRITE)
            .unwrap();
        fs.write(&root, fh, 0, b"shared").unwrap();
        fs.release(fh).unwrap();
        fs.mkdir(&root, pubdir, b"sub", 0o777).unwrap();
        (pubdir, f.ino)
    };
    let (dir, f) = setup(&p);
    setup(&r);
    for cred in [&ro, &other] {
        let refused = if cred.uid == 4001 { erofs } else { None };
        let name = format!("new{}", cred.uid);
        let name = name.as_bytes();
        // Reading is never refused.
        let fh = both(
            &p,
            &r,
            None,
            |fs| fs.open(cred, f, OpenFlags::READ),
            |_| String::new(),
        )
        .unwrap();
        let mut buf = [0; 16];
        assert_eq!(p.read(cred, fh, 0, &mut buf), Ok(6));
        p.release(fh).unwrap();
        both(&p, &r, None, |fs| fs.getattr(cred, f), attr_view);
        both(&p, &r, None, |fs| fs.find(cred, dir, b"sub"), attr_view);
        // Every way of changing something is.
        both(
            &p,
            &r,
            refused,
            |fs| fs.open(cred, f, OpenFlags::WRITE),
            |_| String::new(),
        );
        let trunc = OpenFlags {
            truncate: true,
            ..OpenFlags::READ
        };
        both(
            &p,
            &r,
            refused,
            |fs| fs.open(cred, f, trunc),
            |_| String::new(),
        );
        both(
            &p,
            &r,
            refused,
            |fs| fs.create(cred, dir, name, 0o644, OpenFlags::WRITE),
            |(a, _)| attr_view(a),
        );
        both(
            &p,
            &r,
            refused,
            |fs| fs.mkdir(cred, dir, b"m", 0o755).map(|_| ()),
            unit,
        );
        both(
            &p,
            &r,
            refused,
            |fs| fs.symlink(cred, dir, b"l", b"f").map(|_| ()),
            unit,
        );
        both(
            &p,
            &r,
            refused,
            |fs| fs.link(cred, f, dir, b"h").map(|_| ()),
            unit,
        );
        both(
            &p,
            &r,
            refused,
            |fs| {
                fs.mknod(cred, dir, b"p", FileType::NamedPipe, 0o644, 0)
                    .map(|_| ())
            },
            unit,
        );
        let chmod = SetAttr {
            size: Some(2),
            ..SetAttr::default()
        };
        both(
            &p,
            &r,
            refused,
            |fs| fs.setattr(cred, f, &chmod, None).map(|a| a.size),
            |s| s.to_string(),
        );
        both(
            &p,
            &r,
            refused,
            |fs| fs.setxattr(cred, f, b"user.k", b"v", XattrMode::Set),
            unit,
        );
        both(
            &p,
            &r,
            refused,
            |fs| fs.rename(cred, dir, b"l", dir, b"l2", RenameMode::Replace),
            unit,
        );
        both(&p, &r, refused, |fs| fs.unlink(cred, dir, b"h"), unit);
        both(&p, &r, refused, |fs| fs.rmdir(cred, dir, b"m"), unit);
        // A handle opened by another user still refuses this user's writes.
        let fh = p.open(&root, f, OpenFlags::WRITE).unwrap();
        let wrote = p.write(cred, fh, 0, b"x");
        p.release(fh).unwrap();
        match refused {
            Some(e) => assert_eq!(wrote, Err(e)),
            None => {
                let fh = r.open(&root, f, OpenFlags::WRITE).unwrap();
                assert_eq!(wrote, r.write(cred, fh, 0, b"x"));
                r.release(fh).unwrap();
            }
        }
    }
    assert_eq!(tree(&**p.inner()), tree(&r));
}

/// The value of the sample of `metric` with exactly these labels, from the exposition.
fn sample(metric: &str, labels: &str) -> Option<u64> {
    let text = exposition().unwrap();
    let head = format!("{metric}{{{labels}}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&head))
        .map(|v| v.trim().parse().unwrap())
}

#[test]
fn audit_counts_unlinks_rmdirs_and_renames_per_uid_in_the_exposition() {
    // A name of its own: counters are kept per program name for the life of the process.
    let object = compile(&example("audit"), &[]);
    let renamed = object.with_file_name("audit_engine_test.o");
    std::fs::copy(&object, &renamed).unwrap();
    let hooks = load(&renamed);
    let (p, r) = pair(&hooks);
    let root = Credentials::root();
    let d = p.mkdir(&root, Ino::ROOT, b"d", 0o777).unwrap().ino;
    r.mkdir(&root, Ino::ROOT, b"d", 0o777).unwrap();
    let (a, b) = (user(4001), user(4002));
    let unit = |_: &()| String::new();
    for i in 0..5 {
        let name = format!("f{i}");
        for fs in [&p as &dyn Filesystem, &r] {
            let (_, fh) = fs
                .create(&a, d, name.as_bytes(), 0o644, OpenFlags::WRITE)
                .unwrap();
            fs.release(fh).unwrap();
        }
    }
    for i in 0..3 {
        both(
            &p,
            &r,
            None,
            |fs| fs.unlink(&a, d, format!("f{i}").as_bytes()),
            unit,
        );
    }
    both(
        &p,
        &r,
        None,
        |fs| fs.rename(&b, d, b"f3", d, b"g3", RenameMode::Replace),
        unit,
    );
    both(
        &p,
        &r,
        None,
        |fs| fs.rename(&b, d, b"f4", d, b"g4", RenameMode::Replace),
        unit,
    );
    // Failed operations are counted too: the program runs before the engine decides.
    both(&p, &r, None, |fs| fs.unlink(&b, d, b"missing"), unit);
    both(
        &p,
        &r,
        None,
        |fs| fs.mkdir(&b, d, b"e", 0o755).map(|_| ()),
        unit,
    );
    both(&p, &r, None, |fs| fs.rmdir(&b, d, b"e"), unit);
    assert_eq!(tree(&**p.inner()), tree(&r));
    let labels = |counter: &str, uid: u32| {
        format!("program=\"audit_engine_test\",counter=\"{counter}\",key=\"{uid}\"")
    };
    assert_eq!(
        sample("btfuse_bpf_counter_total", &labels("unlinks", 4001)),
        Some(3)
    );
    assert_eq!(
        sample("btfuse_bpf_counter_total", &labels("unlinks", 4002)),
        Some(1)
    );
    assert_eq!(
        sample("btfuse_bpf_counter_total", &labels("renames", 4002)),
        Some(2)
    );
    assert_eq!(
        sample("btfuse_bpf_counter_total", &labels("rmdirs", 4002)),
        Some(1)
    );
    assert_eq!(
        sample("btfuse_bpf_counter_total", &labels("renames", 4001)),
        None
    );
    assert_eq!(
        sample("btfuse_bpf_refused_total", "program=\"audit_engine_test\""),
        Some(0)
    );
}

#[test]
fn a_looping_program_is_refused_with_its_name_and_the_instruction() {
    let object = compile(&test_program("loop"), &[]);
    let Err(e) = Hooks::load(vec![object.clone()]) else {
        panic!("a loop was loaded");
    };
    assert_eq!(e.path, object);
    let message = e.to_string();
    assert!(message.starts_with(&format!(
        "bpf program {}: refused: insn #",
        object.display()
    )));
    assert!(message.contains("jumps back to #"), "{message}");
    // Not an object at all, or no program in it: refused too, with the reason.
    let garbage = object.with_extension("txt");
    std::fs::write(&garbage, b"not elf").unwrap();
    let e = Hooks::load(vec![garbage.clone()])
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("not a little-endian ELF"), "{e}");
    std::fs::remove_file(&garbage).unwrap();
    let e = Hooks::load(vec!["/nonexistent.o".into()])
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("cannot read"), "{e}");
}

#[test]
fn an_out_of_bounds_read_fails_only_its_own_operations() {
    let object = compile(&test_program("out_of_bounds"), &[]);
    let program = Program::load(&object).unwrap();
    assert!(
        !program.is_compiled(),
        "an unproved program must be interpreted"
    );
    let hooks = Hooks::from_programs(vec![program]);
    let (p, r) = pair(&hooks);
    let root = Credentials::root();
    let eio = Some(Errno::Io);
    let (a, fh) = p
        .create(&root, Ino::ROOT, b"a", 0o644, OpenFlags::WRITE)
        .unwrap();
    p.write(&root, fh, 0, b"data").unwrap();
    p.release(fh).unwrap();
    let (_, fh) = r
        .create(&root, Ino::ROOT, b"a", 0o644, OpenFlags::WRITE)
        .unwrap();
    r.write(&root, fh, 0, b"data").unwrap();
    r.release(fh).unwrap();
    let name = format!("program=\"{}\"", program_name(&object));
    let faults_before = sample("btfuse_bpf_faults_total", &name).unwrap_or(0);
    for _ in 0..3 {
        both(
            &p,
            &r,
            eio,
            |fs| fs.open(&root, a.ino, OpenFlags::READ),
            |_| String::new(),
        );
    }
    both(&p, &r, None, |fs| fs.getattr(&root, a.ino), attr_view);
    both(
        &p,
        &r,
        None,
        |fs| fs.find(&root, Ino::ROOT, b"a"),
        attr_view,
    );
    both(
        &p,
        &r,
        None,
        |fs| fs.unlink(&root, Ino::ROOT, b"a"),
        |_| String::new(),
    );
    assert_eq!(tree(&**p.inner()), tree(&r));
    assert_eq!(
        sample("btfuse_bpf_faults_total", &name),
        Some(faults_before + 3)
    );
}

fn program_name(object: &Path) -> String {
    let file = object.file_name().unwrap().to_str().unwrap();
    file.strip_suffix(".o").unwrap().to_owned()
}

#[test]
fn a_division_by_zero_yields_zero_as_the_instruction_set_says() {
    let program = Program::load(&compile(&test_program("divide_by_zero"), &[])).unwrap();
    assert!(program.is_compiled() || cfg!(not(target_arch = "x86_64")));
    let fs = Programmed::new(
        memfs(),
        Some(Hooks::from_programs(vec![program])),
        Frontend::Shm,
    );
    let root = Credentials::root();
    let (_, fh) = fs
        .create(&root, Ino::ROOT, b"f", 0o644, OpenFlags::READ_WRITE)
        .unwrap();
    fs.write(&root, fh, 0, &[7; 100]).unwrap();
    let mut buf = [0; 30];
    // Offset 0: length / 0 is 0, the read goes on.
    assert_eq!(fs.read(&root, fh, 0, &mut buf), Ok(30));
    // Offset 10, length 30: quotient 3, refused: the division ran.
    assert_eq!(fs.read(&root, fh, 10, &mut buf), Err(Errno::NotPermitted));
    assert_eq!(fs.read(&root, fh, 5, &mut buf), Ok(30));
    fs.release(fh).unwrap();
}

#[test]
fn a_return_value_that_is_no_errno_is_a_fault() {
    let object = compile(&test_program("bad_errno"), &[]);
    let hooks = load(&object);
    let fs = Programmed::new(memfs(), Some(hooks), Frontend::Shm);
    let root = Credentials::root();
    let name = format!("program=\"{}\"", program_name(&object));
    let before = sample("btfuse_bpf_faults_total", &name).unwrap_or(0);
    assert_eq!(fs.getattr(&root, Ino::ROOT), Err(Errno::Io));
    assert!(
        fs.find(&root, Ino::ROOT, b"x")
            .is_err_and(|e| e == Errno::NotFound)
    );
    assert_eq!(sample("btfuse_bpf_faults_total", &name), Some(before + 1));
}

#[test]
fn a_reload_swaps_the_programs_and_a_failed_one_keeps_them() {
    let inject = compile(&example("error_inject"), &[]);
    let trivial = compile(&test_program("trivial"), &[]);
    let live = inject.with_file_name(format!("reloaded-{}.o", std::process::id()));
    std::fs::copy(&inject, &live).unwrap();
    let hooks = load(&live);
    let fs = Programmed::new(memfs(), Some(Arc::clone(&hooks)), Frontend::Fuse);
    let root = Credentials::root();
    let create = |name: &[u8]| {
        fs.create(&root, Ino::ROOT, name, 0o644, OpenFlags::WRITE)
            .map(|(_, fh)| fs.release(fh).unwrap())
    };
    assert_eq!(create(b"inject1"), Err(Errno::Io));
    std::fs::copy(&trivial, &live).unwrap();
    assert_eq!(hooks.reload(), Ok(1));
    assert_eq!(create(b"inject2"), Ok(()));
    std::fs::write(&live, b"broken").unwrap();
    let e = hooks.reload().unwrap_err();
    assert!(e.to_string().contains("not a little-endian ELF"), "{e}");
    // The trivial program stays.
    assert_eq!(create(b"inject3"), Ok(()));
    std::fs::copy(&inject, &live).unwrap();
    assert_eq!(hooks.reload(), Ok(1));
    assert_eq!(create(b"inject4"), Err(Errno::Io));
    std::fs::remove_file(&live).unwrap();
}
