//! What `--bpf` costs an engine call: nanoseconds per operation of `MemFs` called directly,
//! bare; through `Programmed` with no program (what every daemon without `--bpf` runs); with
//! a trivial program (returns 0, compiled by rbpf's JIT); and with `error_inject` (reads the
//! operation and, for opens, the name), both compiled with clang from the shipped sources.
//!
//! Operations: `getattr` of a file (the cheapest call: the hook's share is largest), `find`
//! of a name in a directory of 1,000, and `open` + `release` of a file whose name
//! `error_inject` compares (not an `inject` name: the program runs its whole test and lets it
//! through).
//!
//! The `hook` group measures the programs' part alone, with no engine call around it (and so
//! less of the engine's noise): building an open's context (name included) and running the
//! programs on it (`Hooks::check`).
//!
//! Run with `cargo bench -p btfuse-testkit --bench bpf_cost` (clang must be installed).

use std::hint::black_box;
use std::sync::Arc;

use btfuse_core::{Config, Credentials, Filesystem, Ino, MemFs, MemPool, OpenFlags};
use btfuse_daemon::SystemClock;
use btfuse_daemon::bpf::{Context, Hooks, Op, Program, Programmed};
use btfuse_daemon::metrics::Frontend;
use btfuse_testkit::bpf::{compile, example, test_program};
use criterion::{Criterion, criterion_group, criterion_main};

type Fs = MemFs<MemPool>;

/// Files in the directory the operations work in.
const FILES: u64 = 1_000;

struct Fixture {
    fs: Arc<Fs>,
    dir: Ino,
    file: Ino,
}

fn fixture() -> Fixture {
    let fs = Arc::new(MemFs::new(
        MemPool::new(64 << 20),
        Config::default(),
        SystemClock,
    ));
    let root = Credentials::root();
    let dir = fs.mkdir(&root, Ino::ROOT, b"dir", 0o755).unwrap().ino;
    for i in 0..FILES {
        let (_, fh) = fs
            .create(
                &root,
                dir,
                format!("file{i:04}").as_bytes(),
                0o644,
                OpenFlags::WRITE,
            )
            .unwrap();
        fs.release(fh).unwrap();
    }
    let file = fs.find(&root, dir, b"file0500").unwrap().ino;
    Fixture { fs, dir, file }
}

fn program(source: &std::path::Path) -> Program {
    let program = Program::load(&compile(source, &[])).unwrap();
    assert!(
        program.is_compiled() || cfg!(not(target_arch = "x86_64")),
        "the benchmarked programs run as machine code"
    );
    program
}

fn bench_engine<F: Filesystem>(c: &mut Criterion, variant: &str, fs: &F, fixture: &Fixture) {
    let cred = Credentials::root();
    let mut group = c.benchmark_group(variant);
    group.bench_function("getattr", |b| {
        b.iter(|| black_box(fs.getattr(&cred, black_box(fixture.file)).unwrap()))
    });
    group.bench_function("find", |b| {
        b.iter(|| black_box(fs.find(&cred, fixture.dir, black_box(b"file0500")).unwrap()))
    });
    group.bench_function("open_release", |b| {
        b.iter(|| {
            let fh = fs
                .open(&cred, black_box(fixture.file), OpenFlags::READ)
                .unwrap();
            fs.release(fh).unwrap();
        })
    });
    group.finish();
}

/// The programs' part of an open alone: its context built and the programs run on it.
fn bench_hook(c: &mut Criterion, fixture: &Fixture) {
    let cred = Credentials::root();
    let mut group = c.benchmark_group("hook");
    group.bench_function("context_only", |b| {
        b.iter(|| {
            let mut ctx = Context::new(Op::Open, Frontend::Fuse, &cred);
            ctx.ino(fixture.file)
                .name(fixture.dir, black_box(b"file0500"))
                .flags(0);
            black_box(ctx)
        })
    });
    for (variant, source) in [
        ("trivial", test_program("trivial")),
        ("error_inject", example("error_inject")),
    ] {
        let hooks = Hooks::from_programs(vec![program(&source)]);
        group.bench_function(variant, |b| {
            b.iter(|| {
                let mut ctx = Context::new(Op::Open, Frontend::Fuse, &cred);
                ctx.ino(fixture.file)
                    .name(fixture.dir, black_box(b"file0500"))
                    .flags(0);
                black_box(hooks.check(&mut ctx))
            })
        });
    }
    group.finish();
}

fn costs(c: &mut Criterion) {
    let fixture = fixture();
    bench_hook(c, &fixture);
    bench_engine(c, "bare", &*fixture.fs, &fixture);
    let unhooked = Programmed::new(Arc::clone(&fixture.fs), None, Frontend::Fuse);
    bench_engine(c, "no_program", &unhooked, &fixture);
    for (variant, source) in [
        ("trivial", test_program("trivial")),
        ("error_inject", example("error_inject")),
    ] {
        let hooks = Hooks::from_programs(vec![program(&source)]);
        let hooked = Programmed::new(Arc::clone(&fixture.fs), Some(hooks), Frontend::Fuse);
        // The name the opens are given, as a lookup by the frontend would have recorded it.
        hooked
            .find(&Credentials::root(), fixture.dir, b"file0500")
            .unwrap();
        bench_engine(c, variant, &hooked, &fixture);
    }
}

criterion_group!(benches, costs);
criterion_main!(benches);
