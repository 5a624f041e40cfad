//! The original write-up's two experiments on one directory, for comparing targets:
//! (1) open + read 4 KiB + close of one file, 100,000 times; (2) walk a tree of 10,000 files
//! and stat each.
//!
//! `experiments DIR [ROUNDS]` prints nanoseconds per operation (median of the rounds). Run it
//! on a tmpfs directory, on a btfuse mount, and under `libbtfuse_preload.so` on a path under
//! `BTFUSE_PREFIX` (it then goes through the ring): the program is the same, so the
//! difference is the path its calls take.

use std::fs::{self, File};
use std::io::Read;
use std::path::Path;
use std::time::Instant;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn cat_many(dir: &Path) -> f64 {
    let path = dir.join("hot");
    fs::write(&path, vec![7u8; 4096]).unwrap();
    let n = 100_000;
    let mut buf = [0u8; 4096];
    let t = Instant::now();
    for _ in 0..n {
        let mut f = File::open(&path).unwrap();
        f.read_exact(&mut buf).unwrap();
    }
    t.elapsed().as_nanos() as f64 / f64::from(n)
}

fn make_tree(root: &Path) {
    for d in 0..100 {
        let dir = root.join(format!("d{d}"));
        fs::create_dir_all(&dir).unwrap();
        for f in 0..100 {
            File::create(dir.join(format!("f{f}"))).unwrap();
        }
    }
}

fn walk(dir: &Path, count: &mut u64) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let meta = fs::symlink_metadata(&path).unwrap();
        *count += 1;
        if meta.is_dir() {
            walk(&path, count);
        }
    }
}

fn find(root: &Path) -> f64 {
    let t = Instant::now();
    let mut count = 0;
    walk(root, &mut count);
    assert_eq!(count, 10_100);
    t.elapsed().as_nanos() as f64 / count as f64
}

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args.next().expect("usage: experiments DIR [ROUNDS]");
    let rounds: usize = args
        .next()
        .map_or(5, |r| r.parse().expect("ROUNDS is a number"));
    let dir = Path::new(&dir);
    let tree = dir.join("tree");
    make_tree(&tree);
    let cat: Vec<f64> = (0..rounds).map(|_| cat_many(dir)).collect();
    let walks: Vec<f64> = (0..rounds).map(|_| find(&tree)).collect();
    println!(
        "cat 4 KiB x100k: {:.0} ns/op   find+stat 10k: {:.0} ns/entry",
        median(cat),
        median(walks)
    );
    fs::remove_dir_all(&tree).unwrap();
    fs::remove_file(dir.join("hot")).unwrap();
}
