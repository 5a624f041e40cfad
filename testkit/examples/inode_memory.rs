//! Resident memory per empty inode: creates 1,000,000 empty files in one directory of a
//! `MemFs` and reports the growth of the process's resident set (`VmRSS` in
//! `/proc/self/status`) per file, in total and without the bytes of the names themselves.
//!
//! The figure covers everything a file costs: its inode, its slot in the inode table, its
//! directory entry and name index slot, and the allocator's overhead on each. Run with
//! `cargo run --release -p btfuse-testkit --example inode_memory`.

use btfuse_core::{Config, Credentials, Filesystem, Ino, MemFs, MemPool, OpenFlags};
use btfuse_daemon::SystemClock;

/// Files created.
const FILES: u64 = 1_000_000;

/// The resident set size of this process, in bytes.
fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("a VmRSS line");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("VmRSS in kB");
    kib * 1024
}

fn main() {
    let fs = MemFs::new(MemPool::new(1 << 20), Config::default(), SystemClock);
    let cred = Credentials::root();
    let dir = fs
        .mkdir(&cred, Ino::ROOT, b"dir", 0o755)
        .expect("mkdir")
        .ino;
    fs.forget(dir, 1);
    let flags = OpenFlags {
        exclusive: true,
        ..OpenFlags::READ_WRITE
    };

    let before = resident_bytes();
    let mut name_bytes = 0u64;
    let mut name = Vec::with_capacity(16);
    for i in 0..FILES {
        name.clear();
        name.extend_from_slice(format!("f{i:07}").as_bytes());
        let (attr, fh) = fs.create(&cred, dir, &name, 0o644, flags).expect("create");
        fs.release(fh).expect("release");
        fs.forget(attr.ino, 1);
        name_bytes += name.len() as u64;
    }
    let after = resident_bytes();
    assert_eq!(fs.usage().inodes, FILES + 2);

    let grown = after.saturating_sub(before) as f64;
    let files = FILES as f64;
    println!(
        "{FILES} empty files: {:.1} resident bytes per inode, {:.1} excluding the {:.1} name \
         bytes (RSS {:.1} MiB -> {:.1} MiB)",
        grown / files,
        (grown - name_bytes as f64) / files,
        name_bytes as f64 / files,
        before as f64 / (1 << 20) as f64,
        after as f64 / (1 << 20) as f64,
    );
}
