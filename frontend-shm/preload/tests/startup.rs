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

/// What `readelf` prints for the library with `flags`, line by line.
fn readelf(flags: &str) -> Vec<String> {
    let out = Command::new("readelf")
        .args([flags, "-W"])
        .arg(artifact("libbtfuse_preload.so"))
        .output()
        .expect("readelf (binutils) runs");
    assert!(out.status.success(), "readelf {flags} failed");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Every preloading process has the dynamic loader resolve each symbol relocation of the
/// library, a search through every object loaded before it; a call of the library to a
/// function it defines itself (`write`, `read`, `open`, which std and the library call too)
/// is bound when the library is linked instead (`-Bsymbolic-functions`), so no relocation
/// names one of its own functions.
#[test]
fn the_library_binds_its_own_functions_when_linked() {
    let defined: BTreeSet<String> = readelf("--dyn-syms")
        .iter()
        .filter_map(|line| {
            // Num: Value Size Type Bind Vis Ndx Name
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.len() >= 8 && fields[3] == "FUNC" && fields[6] != "UND")
                .then(|| fields[7].split('@').next().unwrap().to_owned())
        })
        .collect();
    assert!(
        defined.contains("open") && defined.contains("write"),
        "the interposed functions are exported: {defined:?}"
    );
    let relocated: BTreeSet<String> = readelf("--relocs")
        .iter()
        .filter(|line| line.contains("R_X86_64_"))
        .filter_map(|line| line.split_whitespace().nth(4))
        .map(|name| name.split('@').next().unwrap().to_owned())
        .collect();
    let own: Vec<&String> = relocated.intersection(&defined).collect();
    assert!(
        own.is_empty(),
        "relocations against the library's own functions: {own:?}"
    );
}

/// The addresses of the library's section `name`.
fn section(name: &str) -> std::ops::Range<u64> {
    readelf("--section-headers")
        .iter()
        .find_map(|line| {
            // [Nr] Name Type Address Off Size ...
            let fields: Vec<&str> = line
                .trim_start_matches(|c: char| c == '[' || c.is_ascii_digit() || c == ' ')
                .trim_start_matches(']')
                .split_whitespace()
                .collect();
            (fields.first() == Some(&name)).then(|| {
                let start = u64::from_str_radix(fields[2], 16).unwrap();
                let size = u64::from_str_radix(fields[4], 16).unwrap();
                start..start + size
            })
        })
        .unwrap_or_else(|| panic!("the library has a {name} section"))
}

/// The defined symbols of `kind` (`FUNC`, `OBJECT`) that `readelf flags` lists, with their
/// addresses; a name loses its `@version`.
fn symbols(flags: &str, kind: &str) -> Vec<(String, u64)> {
    readelf(flags)
        .iter()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.len() >= 8 && fields[3] == kind && fields[6] != "UND").then(|| {
                let name = fields[7].split('@').next().unwrap().to_owned();
                (name, u64::from_str_radix(fields[1], 16).unwrap())
            })
        })
        .collect()
}

/// The code every preloaded process runs sits together in `.text.hot` (see the library's
/// `hot` module): the interposed calls programs make at start and the constructors, so that a
/// process that never touches btfuse touches a few neighbouring pages of code, not one in each
/// part of the library.
#[test]
fn the_common_calls_sit_together() {
    let hot = section(".text.hot");
    let functions = symbols("--dyn-syms", "FUNC");
    for name in [
        "open", "openat", "read", "write", "close", "fstat", "stat", "statx", "lseek", "fcntl",
        "access", "opendir", "readdir", "closedir", "mmap", "_exit", "syscall",
    ] {
        let (_, address) = functions
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("{name} is exported"));
        assert!(
            hot.contains(address),
            "{name} at {address:#x}, outside .text.hot {hot:x?}"
        );
    }
}

/// The small statics the first calls of every process write lie in `.data` (see the library's
/// `hot` module), whose pages the dynamic loader has written already, not each on a page of
/// `.bss` of its own.
#[test]
fn the_first_writes_land_on_written_pages() {
    let data = section(".data");
    // Local symbols too: the library keeps its symbol table.
    let statics = symbols("--syms", "OBJECT");
    let find = |part: &str| {
        statics
            .iter()
            .find(|(name, _)| name.contains(part))
            .map(|&(_, address)| address)
            .unwrap_or_else(|| panic!("a symbol named like {part}"))
    };
    for part in [
        "4real5fstat4SLOT",
        "6config10CANDIDATES",
        "next_syscall",
        "3hot3HOT",
    ] {
        let address = find(part);
        assert!(
            data.contains(&address),
            "{part} at {address:#x}, outside .data {data:x?}"
        );
    }
}
