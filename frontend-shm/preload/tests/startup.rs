//! Guards what loading the interposer costs a program that never touches btfuse: the library
//! brings no other shared object with it (libgcc_s's constructor alone cost about 150 µs per
//! process), so a preloaded program maps exactly the objects it maps without the preload,
//! plus the library.

mod common;

use std::collections::BTreeSet;
use std::process::Command;

use common::artifact;

/// The shared objects `cat /proc/self/maps` has mapped, by file name.
fn objects(preload: bool) -> BTreeSet<String> {
    let mut cmd = Command::new("cat");
    cmd.arg("/proc/self/maps").env_remove("LD_PRELOAD");
    if preload {
        cmd.env("LD_PRELOAD", artifact("libbtfuse_preload.so"));
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .filter(|path| path.contains(".so"))
        .filter_map(|path| path.rsplit('/').next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_library_loads_no_other_object() {
    let plain = objects(false);
    let mut expected = plain.clone();
    expected.insert("libbtfuse_preload.so".to_owned());
    assert_eq!(objects(true), expected, "without the preload: {plain:?}");
}
