//! Nanoseconds per operation of `MemFs` called directly (no FUSE), in a directory of 1,000 and
//! one of 1,000,000 entries: whether the hot paths stay cheap and flat as a directory grows.
//!
//! Each group builds its directory once (the million-entry one takes a few seconds) and then
//! measures, in that directory:
//!
//! - `lookup_random`: `find` of an existing name, a different one each time in a scattered
//!   order, so a large directory's entries are not all in cache; `lookup_working_set_1k`: 1,000
//!   names spread over the directory, so its size counts but its cache footprint does not;
//!   `lookup_same`: one name over and over, the cache-hot best case;
//! - `create`: `create` + `release` of a new name (the `unlink` and `forget` that take it away
//!   again run outside the timed part);
//! - `write_4k` / `read_4k`: 4 KiB at offset 0 of an open file of the directory;
//! - `readdir_one_call`: the whole listing in one `readdir` call, the sink copying each name
//!   into a 4 KiB reply buffer as a frontend would; `readdir_paged_4k`: the same listing as a
//!   FUSE frontend asks for it, one `readdir` call per 4 KiB reply, resuming by cookie. Both
//!   report throughput in entries, so time per entry is 1 / throughput.
//!
//! Run with `cargo bench -p btfuse-testkit --bench core_ops`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use btfuse_core::{
    Config, Credentials, DirEntry, Fh, FileType, Filesystem, Ino, MemFs, MemPool, OpenFlags,
};
use btfuse_daemon::SystemClock;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

type Fs = MemFs<MemPool>;

/// Size of the replies a FUSE frontend fills (one page).
const REPLY_BYTES: usize = 4096;
/// Bytes a `fuse_dirent` takes besides its name (ino, off, namelen, type), before padding.
const DIRENT_HEADER: usize = 24;
/// Names `lookup_working_set_1k` cycles through.
const WORKING_SET: u64 = 1_000;
/// Creates timed back to back before the untimed cleanup removes them again, so that the
/// directory never grows by more than this during a `create` measurement.
const CREATE_BATCH: u64 = 64;

/// `f` followed by seven decimal digits of `i`: every name of the big directory is 8 bytes.
fn entry_name(i: u64, buf: &mut [u8; 8]) -> &[u8] {
    buf[0] = b'f';
    let mut n = i;
    for slot in buf[1..].iter_mut().rev() {
        *slot = b'0' + (n % 10) as u8;
        n /= 10;
    }
    &buf[..]
}

/// A filesystem with one directory of `entries` empty files (entry 0 holds 4 KiB of data and
/// is open for reading and writing).
struct Fixture {
    fs: Fs,
    cred: Credentials,
    dir: Ino,
    entries: u64,
    data_fh: Fh,
}

impl Fixture {
    fn build(entries: u64) -> Fixture {
        let started = Instant::now();
        let fs = MemFs::new(MemPool::new(1 << 30), Config::default(), SystemClock);
        let cred = Credentials::root();
        let dir = fs
            .mkdir(&cred, Ino::ROOT, b"dir", 0o755)
            .expect("mkdir")
            .ino;
        fs.forget(dir, 1);
        let mut buf = [0u8; 8];
        for i in 0..entries {
            let name = entry_name(i, &mut buf);
            let attr = fs
                .mknod(&cred, dir, name, FileType::RegularFile, 0o644, 0)
                .expect("mknod");
            fs.forget(attr.ino, 1);
        }
        let data = fs
            .find(&cred, dir, entry_name(0, &mut buf))
            .expect("find")
            .ino;
        let data_fh = fs.open(&cred, data, OpenFlags::READ_WRITE).expect("open");
        fs.write(&cred, data_fh, 0, &[0x5a; 4096]).expect("write");
        eprintln!(
            "built a directory of {entries} entries in {:?}",
            started.elapsed()
        );
        Fixture {
            fs,
            cred,
            dir,
            entries,
            data_fh,
        }
    }
}

fn bench_directory(c: &mut Criterion, label: &str, entries: u64) {
    let fx = Fixture::build(entries);
    let (fs, cred, dir) = (&fx.fs, &fx.cred, fx.dir);
    let mut group = c.benchmark_group(format!("dir_{label}"));
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));

    group.throughput(Throughput::Elements(1));
    group.bench_function("lookup_random", |b| {
        // A stride coprime with the entry count visits every name in a scattered order.
        let stride = 7_919 % fx.entries.max(1);
        let mut i = 0;
        let mut buf = [0u8; 8];
        b.iter(|| {
            i = (i + stride) % fx.entries;
            fs.find(cred, dir, black_box(entry_name(i, &mut buf)))
                .expect("find")
        })
    });
    group.bench_function("lookup_working_set_1k", |b| {
        // 1,000 names spread over the whole directory, visited in a scattered order: the
        // directory's size without its cache footprint.
        let spacing = fx.entries / WORKING_SET;
        let mut k = 0;
        let mut buf = [0u8; 8];
        b.iter(|| {
            k = (k + 389) % WORKING_SET;
            fs.find(cred, dir, black_box(entry_name(k * spacing, &mut buf)))
                .expect("find")
        })
    });
    group.bench_function("lookup_same", |b| {
        let mut buf = [0u8; 8];
        let name = entry_name(fx.entries / 2, &mut buf).to_vec();
        b.iter(|| fs.find(cred, dir, black_box(&name)).expect("find"))
    });
    group.bench_function("create", |b| {
        let flags = OpenFlags {
            exclusive: true,
            ..OpenFlags::READ_WRITE
        };
        let names: Vec<Vec<u8>> = (0..CREATE_BATCH)
            .map(|i| format!("new{i:05}").into_bytes())
            .collect();
        let mut created = Vec::with_capacity(CREATE_BATCH as usize);
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            let mut done = 0;
            while done < iters {
                let batch = (iters - done).min(CREATE_BATCH) as usize;
                let start = Instant::now();
                for name in &names[..batch] {
                    let (attr, fh) = fs.create(cred, dir, name, 0o644, flags).expect("create");
                    fs.release(fh).expect("release");
                    created.push(attr.ino);
                }
                timed += start.elapsed();
                for (name, ino) in names.iter().zip(created.drain(..)) {
                    fs.unlink(cred, dir, name).expect("unlink");
                    fs.forget(ino, 1);
                }
                done += batch as u64;
            }
            timed
        })
    });
    group.bench_function("write_4k", |b| {
        let data = [0xa5u8; 4096];
        b.iter(|| {
            fs.write(cred, fx.data_fh, 0, black_box(&data))
                .expect("write")
        })
    });
    group.bench_function("read_4k", |b| {
        let mut buf = [0u8; 4096];
        b.iter(|| {
            let n = fs.read(cred, fx.data_fh, 0, &mut buf).expect("read");
            black_box(&buf);
            n
        })
    });

    // `.` and `..` are listed too.
    let listed = fx.entries + 2;
    group.throughput(Throughput::Elements(listed));
    let dir_flags = OpenFlags {
        directory: true,
        ..OpenFlags::READ
    };
    let dir_fh = fs.open(cred, dir, dir_flags).expect("opendir");
    group.bench_function("readdir_one_call", |b| {
        let mut reply = Vec::with_capacity(REPLY_BYTES);
        b.iter(|| {
            let mut count = 0u64;
            let mut sink = |e: DirEntry<'_>| {
                if reply.len() + DIRENT_HEADER + e.name.len() > REPLY_BYTES {
                    black_box(&reply);
                    reply.clear();
                }
                reply.extend_from_slice(&e.ino.0.to_le_bytes());
                reply.extend_from_slice(&e.cookie.to_le_bytes());
                reply.extend_from_slice(e.name);
                count += 1;
                true
            };
            fs.readdir(cred, dir_fh, 0, &mut sink).expect("readdir");
            assert_eq!(count, listed);
            count
        })
    });
    group.bench_function("readdir_paged_4k", |b| {
        let mut reply = Vec::with_capacity(REPLY_BYTES);
        b.iter(|| {
            let (mut cookie, mut count) = (0u64, 0u64);
            loop {
                reply.clear();
                let mut last = cookie;
                let mut sink = |e: DirEntry<'_>| {
                    if reply.len() + DIRENT_HEADER + e.name.len() > REPLY_BYTES {
                        return false;
                    }
                    reply.extend_from_slice(&e.ino.0.to_le_bytes());
                    reply.extend_from_slice(&e.cookie.to_le_bytes());
                    reply.extend_from_slice(e.name);
                    last = e.cookie;
                    count += 1;
                    true
                };
                fs.readdir(cred, dir_fh, cookie, &mut sink)
                    .expect("readdir");
                black_box(&reply);
                if last == cookie {
                    break;
                }
                cookie = last;
            }
            assert_eq!(count, listed);
            count
        })
    });
    fs.release(dir_fh).expect("release");
    group.finish();
}

fn directory_of_1k(c: &mut Criterion) {
    bench_directory(c, "1k", 1_000);
}

fn directory_of_1m(c: &mut Criterion) {
    bench_directory(c, "1m", 1_000_000);
}

criterion_group!(benches, directory_of_1k, directory_of_1m);
criterion_main!(benches);
