//! Real programs both frontends' interceptor tests run, under the preload and on tmpfs
//! (`frontend-shm/preload/tests/real_programs.rs` with the ring alone,
//! `frontend-fuse/tests/preloaded.rs` on a mount): the scripts and the C program, kept once
//! in `testkit/programs/`, and `fsx`.

use std::path::PathBuf;

/// `make -j2` of a generated C project, `sed -i`, `perl -pi`, `patch`, `sort -o`, in `$D`;
/// runs the program built when `$RUN_PROGRAMS` is 1 and a fifo when `$KERNEL_OBJECTS` is 1.
pub const BUILD_AND_EDIT: &str = include_str!("../programs/build-and-edit.sh");

/// `tar` with every file type (a fifo when `$KERNEL_OBJECTS` is 1), long and non-ASCII
/// names and a sparse file, `cp -a`, `rsync -a` into `$D` and out to `$OUT`,
/// `python3 -m venv` and an import from it.
pub const ARCHIVES_AND_COPIES: &str = include_str!("../programs/archives-and-copies.sh");

/// `cargo build --offline` of a crate without dependencies with its target directory in
/// `$D`, twice, and the program it built.
pub const CARGO_BUILD: &str = include_str!("../programs/cargo-build.sh");

/// A C program printing the result of every call glibc makes through internal entry points
/// or that came late to the interceptor, in `$D`; built with `-O2 -D_FORTIFY_SOURCE=2`.
pub const CALLS_C: &str = include_str!("../programs/calls.c");

/// `fsx`'s configuration: every operation but those through memory maps.
pub const FSX_CONFIG: &str = include_str!("../programs/fsx.toml");

/// The `fsx` binary (`cargo install fsx`, which `scripts/install-test-deps` runs): on `PATH`
/// or in `~/.cargo/bin`.
pub fn fsx() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("fsx"))
        .find(|p| p.is_file());
    let in_cargo = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo/bin/fsx"));
    on_path
        .or(in_cargo.filter(|p| p.is_file()))
        .expect("fsx is missing: cargo install fsx (scripts/install-test-deps installs it)")
}

/// How many operations an `fsx` run makes: `BTFUSE_FSX_OPS`, else 100,000 (a few seconds).
pub fn fsx_operations() -> String {
    std::env::var("BTFUSE_FSX_OPS").unwrap_or_else(|_| "100000".to_owned())
}
