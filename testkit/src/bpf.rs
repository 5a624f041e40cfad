//! eBPF programs for the tests and benchmarks of `--bpf`: compiled from C with clang, the way
//! the README tells users to (`clang -O2 -g -target bpf -Iexamples/bpf -c SRC -o OBJ`).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace's root directory.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testkit lives in the workspace")
        .to_path_buf()
}

/// `examples/bpf/NAME.bpf.c`.
pub fn example(name: &str) -> PathBuf {
    workspace_root()
        .join("examples/bpf")
        .join(format!("{name}.bpf.c"))
}

/// `testkit/tests/bpf/NAME.bpf.c`: the programs that misbehave on purpose, and the trivial one.
pub fn test_program(name: &str) -> PathBuf {
    workspace_root()
        .join("testkit/tests/bpf")
        .join(format!("{name}.bpf.c"))
}

/// Compiles `source` with `-D` `defines` into an object file under `target/bpf-objects/`,
/// named after the source and the defines; panics with clang's message if it fails.
pub fn compile(source: &Path, defines: &[&str]) -> PathBuf {
    let dir = workspace_root().join("target/bpf-objects");
    std::fs::create_dir_all(&dir).expect("create target/bpf-objects");
    let stem = source
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".bpf.c"))
        .expect("sources are named NAME.bpf.c");
    let mut name = stem.to_owned();
    for define in defines {
        name.push('-');
        name.extend(define.chars().filter(|c| c.is_ascii_alphanumeric()));
    }
    // One object per process too: tests of several binaries may compile at once.
    let object = dir.join(format!("{name}-{}.o", std::process::id()));
    let include = workspace_root().join("examples/bpf");
    let output = Command::new("clang")
        .args(["-O2", "-g", "-target", "bpf"])
        .arg(format!("-I{}", include.display()))
        .args(defines.iter().map(|d| format!("-D{d}")))
        .arg("-c")
        .arg(source)
        .arg("-o")
        .arg(&object)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run clang ({e}): scripts/install-test-deps installs it")
        });
    assert!(
        output.status.success(),
        "clang failed on {}:\n{}",
        source.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    object
}
