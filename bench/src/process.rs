//! The workloads that run whole programs, one process per operation, as the original write-up
//! ran its experiments from a shell: what a user of the preload pays or gains per process,
//! start-up included.
//!
//! The worker that runs them is never preloaded itself: it starts each program with
//! `posix_spawn` (through `std::process::Command`) and waits for it, and on the preloaded
//! target only the programs get `LD_PRELOAD` (no `BTFUSE_*` variable: the library finds the
//! mount itself, as a user's program would). Every program's exit status is checked, and the
//! warm-up checks each program's output against the exact expected text. Each process is
//! timed alone and a run reports the median process (times the count, so that the report's
//! time per operation is that median).
//!
//! - `cat-proc`: one `cat` of a 4 KiB file per operation.
//! - `find-proc`: one `find` over a tree of 1,000 entries per operation.
//! - `untouched`: one `cat` of a 4 KiB file outside btfuse (in the system's temporary
//!   directory) per operation: on tmpfs without the preload, on the preloaded target with it
//!   set. The difference is what merely having the library in the environment costs.
//! - `script`: one run of a shell script doing a small build per operation: for each of
//!   [`SCRIPT_UNITS`] units it writes a source file, then `cat`, `wc`, `grep` and `cp` it (four
//!   processes), and at the end joins, sorts and lists the results ([`SCRIPT_PROCESSES`]
//!   processes in all).

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::workload::{Measured, Workload};

/// Units of the `script` workload's build.
const SCRIPT_UNITS: u64 = 60;
/// Processes one run of the `script` workload starts besides its shell (four per unit, nine
/// around the loop).
pub(crate) const SCRIPT_PROCESSES: u64 = 4 * SCRIPT_UNITS + 9;

/// Directories of the `find-proc` tree and files in each: 1,000 entries below the root.
const FIND_DIRS: u64 = 10;
const FIND_FILES_PER_DIR: u64 = 99;

/// The contents of the files the `cat` workloads read.
fn small_file() -> Vec<u8> {
    (0..4096u32).map(|i| b'a' + (i % 26) as u8).collect()
}

/// Runs process workload `workload` `size` times in `dir` (created if missing), with the
/// programs preloaded with `preload` if given. Set-up and one warm-up run whose output is
/// checked come first; what it created is removed at the end.
pub(crate) fn run(
    workload: Workload,
    size: u64,
    dir: &Path,
    preload: Option<&Path>,
) -> io::Result<Measured> {
    std::fs::create_dir_all(dir)?;
    let outside = tempfile::Builder::new()
        .prefix("btfuse-bench-untouched-")
        .tempdir()?;
    let job = Job::prepare(workload, dir, outside.path())?;
    let program = |cmd: &mut Command| {
        cmd.env_remove("LD_PRELOAD")
            .env_remove("BTFUSE_SOCKET")
            .env_remove("BTFUSE_PREFIX")
            .env_remove("BTFUSE_INHERIT")
            .env_remove("BTFUSE_MOUNTS")
            .env("LC_ALL", "C")
            .stdin(Stdio::null());
        if let Some(library) = preload {
            cmd.env("LD_PRELOAD", library);
        }
    };
    // The warm-up: once, with the output checked.
    let mut cmd = job.check();
    program(&mut cmd);
    let out = cmd.stderr(Stdio::inherit()).output()?;
    if !out.status.success() || out.stdout != job.expected {
        return Err(io::Error::other(format!(
            "{} gave {} and {:?} instead of {:?}",
            workload.name(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&job.expected)
        )));
    }
    let mut each = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    for _ in 0..size {
        let mut cmd = job.command();
        program(&mut cmd);
        let start = Instant::now();
        let status = cmd.stdout(Stdio::null()).stderr(Stdio::null()).status()?;
        each.push(u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX));
        if !status.success() {
            return Err(io::Error::other(format!(
                "{} failed ({status})",
                workload.name()
            )));
        }
    }
    job.clean_up()?;
    Ok(Measured {
        ops: size,
        nanos: median(&mut each).saturating_mul(size),
    })
}

/// The median of `times` (0 for none). A process's time is its own start, run and exit plus
/// whatever else the machine did meanwhile; a few processes that waited for a CPU weigh on a
/// mean, not on the median, which is what a typical process of the kind costs.
fn median(times: &mut [u64]) -> u64 {
    times.sort_unstable();
    times.get(times.len() / 2).copied().unwrap_or(0)
}

/// One process workload's program and what it must print.
struct Job {
    /// The program one operation runs, and its arguments.
    program: &'static str,
    args: Vec<PathBuf>,
    /// The warm-up's program, when it differs (`find-proc` counts the lines with `wc`).
    check: Option<(&'static str, Vec<PathBuf>)>,
    /// What the warm-up must print.
    expected: Vec<u8>,
    /// What to remove afterwards.
    created: PathBuf,
}

impl Job {
    fn prepare(workload: Workload, dir: &Path, outside: &Path) -> io::Result<Job> {
        let created = dir.join("process");
        if created.exists() {
            std::fs::remove_dir_all(&created)?;
        }
        std::fs::create_dir(&created)?;
        let job = match workload {
            Workload::CatProc | Workload::Untouched => {
                let base = if workload == Workload::CatProc {
                    &created
                } else {
                    outside
                };
                let file = base.join("hot");
                std::fs::write(&file, small_file())?;
                Job {
                    program: "cat",
                    args: vec![file],
                    check: None,
                    expected: small_file(),
                    created,
                }
            }
            Workload::FindProc => {
                let root = created.join("tree");
                std::fs::create_dir(&root)?;
                for d in 0..FIND_DIRS {
                    let sub = root.join(format!("d{d}"));
                    std::fs::create_dir(&sub)?;
                    for f in 0..FIND_FILES_PER_DIR {
                        std::fs::write(sub.join(format!("f{f}")), b"")?;
                    }
                }
                // find lists in the order the directory gives: the warm-up counts the lines.
                let lines = 1 + FIND_DIRS * (1 + FIND_FILES_PER_DIR);
                let check = ["-c", "find \"$1\" | wc -l", "sh"].map(PathBuf::from);
                let mut check = check.to_vec();
                check.push(root.clone());
                Job {
                    program: "find",
                    args: vec![root],
                    check: Some(("sh", check)),
                    expected: format!("{lines}\n").into_bytes(),
                    created,
                }
            }
            Workload::Script => {
                let work = created.join("build");
                std::fs::create_dir(&work)?;
                Job {
                    program: "sh",
                    args: vec![
                        PathBuf::from("-c"),
                        PathBuf::from(BUILD_SCRIPT),
                        PathBuf::from("sh"),
                        work,
                        PathBuf::from(SCRIPT_UNITS.to_string()),
                    ],
                    check: None,
                    expected: build_output(SCRIPT_UNITS).into_bytes(),
                    created,
                }
            }
            other => {
                return Err(io::Error::other(format!(
                    "{} is not a process workload",
                    other.name()
                )));
            }
        };
        Ok(job)
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(self.program);
        cmd.args(&self.args);
        cmd
    }

    fn check(&self) -> Command {
        match &self.check {
            Some((program, args)) => {
                let mut cmd = Command::new(program);
                cmd.args(args);
                cmd
            }
            None => self.command(),
        }
    }

    fn clean_up(self) -> io::Result<()> {
        std::fs::remove_dir_all(&self.created)
    }
}

/// The `script` workload: a small build in `$1` of `$2` units. Four processes per unit
/// (`cat`, `wc`, `grep`, `cp`), nine around the loop (`rm` twice, `seq`, `cat`, `sort`, `wc`
/// twice, `ls`, `grep`).
const BUILD_SCRIPT: &str = r#"set -e
cd "$1"
rm -f ./*
for i in $(seq "$2"); do
    printf 'int unit%s(void) { return %s; }\n' "$i" "$i" > "src$i.c"
    cat "src$i.c" > "obj$i.o"
    wc -c < "obj$i.o" > "size$i"
    grep -c unit "obj$i.o" >> log
    cp "obj$i.o" "copy$i.o"
done
cat obj*.o > lib.a
sort -n log > sorted
echo "lib $(wc -c < lib.a) bytes, $(wc -l < sorted) units"
ls | grep -c copy
rm copy*.o
"#;

/// What [`BUILD_SCRIPT`] prints for `units` units.
fn build_output(units: u64) -> String {
    let bytes: usize = (1..=units)
        .map(|i| format!("int unit{i}(void) {{ return {i}; }}\n").len())
        .sum();
    format!("lib {bytes} bytes, {units} units\n{units}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_prints_what_is_expected_and_starts_its_processes() {
        let dir = tempfile::tempdir().unwrap();
        let measured = run(Workload::Script, 2, dir.path(), None).unwrap();
        assert_eq!(measured.ops, 2);
        assert!(!dir.path().join("process").exists(), "cleaned up");
        assert_eq!(build_output(2), "lib 60 bytes, 2 units\n2\n");
    }

    #[test]
    fn every_process_workload_checks_its_output() {
        let dir = tempfile::tempdir().unwrap();
        for w in [Workload::CatProc, Workload::FindProc, Workload::Untouched] {
            let measured = run(w, 3, dir.path(), None).unwrap();
            assert_eq!(measured.ops, 3, "{}", w.name());
        }
        assert!(run(Workload::Cat, 1, dir.path(), None).is_err());
    }

    #[test]
    fn a_run_is_its_median_process() {
        assert_eq!(median(&mut [5, 1, 900, 3, 4]), 4);
        assert_eq!(median(&mut [7, 2]), 7);
        assert_eq!(median(&mut [9]), 9);
        assert_eq!(median(&mut []), 0);
    }
}
