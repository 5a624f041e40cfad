//! `btfuse-fuse --bpf` on a real mount, through the kernel and through the preload (the ring
//! beside the mount), each run compared with the same steps on a tmpfs:
//!
//! - the README's two commands (clang, then `btfuse-fuse --bpf inject.o MOUNTPOINT`) work as
//!   written, and `error_inject` fails exactly the opens of `inject*` names with `EIO`, every
//!   other step answering as on tmpfs, both ways in;
//! - `readonly_uid` answers `EROFS` to uid 4001's changes and lets uid 4002 do them;
//! - `audit`'s counters of unlinks and renames per uid reach `/metrics`, from both ways in;
//! - a program the loader refuses stops the start with its name and the reason, leaving no
//!   mount; one that reads out of bounds fails only its opens and the daemon stays up;
//! - `SIGHUP` swaps the programs while the mount and a connected ring client stay.

mod common;

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use btfuse_testkit::bpf::{compile, example, test_program, workspace_root};
use common::{Creds, Mount, Tmpfs, as_user, connect_ring, errno_name, preloaded, send_signal};

/// Steps a shell takes in `$D`; each prints its name and exit status. Standard error is
/// dropped: the status is what is compared.
const STEPS: &str = r#"
cd "$D" || exit 9
step() { name=$1; shift; "$@" >/dev/null 2>&1; echo "$name $?"; }
step create_plain eval 'echo a > plain'
step create_inject eval 'echo b > inject_x'
step read_plain cat plain
step append_plain eval 'echo more >> plain'
step mkdir_inject mkdir inject_dir
step create_in_dir eval 'echo c > inject_dir/ok'
step rename_to_inject mv plain inject_y
step stat_renamed stat inject_y
step read_renamed cat inject_y
step rename_back mv inject_y plain2
step read_back cat plain2
step symlink ln -s plain2 inject_link
step readlink readlink inject_link
step unlink rm inject_link
step list ls
ls -1
"#;

/// Runs [`STEPS`] in `dir`, under the preload or not; its output.
fn run_steps(dir: &Path, under_preload: bool) -> String {
    let mut command = Command::new("sh");
    command.arg("-c").arg(STEPS).env("D", dir);
    if under_preload {
        preloaded(&mut command);
    }
    let output = command.output().expect("run sh");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).expect("UTF-8")
}

/// What [`STEPS`] print on tmpfs, changed as `error_inject` must change it: the create of
/// `inject_x` and the read of `inject_y` fail (the shell's status 2 for a redirection, `cat`'s
/// 1), and `inject_x` is not listed.
fn injected(reference: &str) -> String {
    reference
        .lines()
        .filter(|l| *l != "inject_x")
        .map(|l| match l {
            "create_inject 0" => "create_inject 2".to_owned(),
            "read_renamed 0" => "read_renamed 1".to_owned(),
            other => other.to_owned(),
        })
        .map(|l| l + "\n")
        .collect()
}

/// `examples/bpf/error_inject.bpf.c` compiled by the README's own command, run in the
/// workspace's root as written there; the object is moved out of the tree.
fn inject_as_the_readme_says(into: &Path) -> PathBuf {
    let readme = fs::read_to_string(workspace_root().join("README.md")).unwrap();
    let command = readme
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("clang ") && l.contains("error_inject.bpf.c"))
        .expect("the README gives the clang command");
    assert_eq!(
        command,
        "clang -O2 -g -target bpf -Iexamples/bpf -c examples/bpf/error_inject.bpf.c -o inject.o"
    );
    assert!(
        readme.contains("btfuse-fuse --bpf inject.o MOUNTPOINT"),
        "the README gives the mount command"
    );
    let status = Command::new("sh")
        .arg("-c")
        .arg(command)
        .current_dir(workspace_root())
        .status()
        .expect("run clang");
    assert!(status.success());
    let object = into.join("inject.o");
    fs::rename(workspace_root().join("inject.o"), &object).unwrap();
    object
}

#[test]
fn error_inject_fails_exactly_the_inject_opens_through_the_kernel_and_the_preload() {
    let objects = tempfile::tempdir().unwrap();
    let inject = inject_as_the_readme_says(objects.path());
    let tmpfs = Tmpfs::new();
    let reference = run_steps(tmpfs.path(), false);
    assert!(reference.contains("create_inject 0\n") && reference.contains("inject_x\n"));
    let mount = Mount::start(&[
        "--bpf",
        inject.to_str().unwrap(),
        "--metrics",
        "127.0.0.1:0",
    ]);
    let kernel_dir = mount.path().join("kernel");
    let ring_dir = mount.path().join("ring");
    fs::create_dir(&kernel_dir).unwrap();
    fs::create_dir(&ring_dir).unwrap();
    let expected = injected(&reference);
    assert_eq!(
        run_steps(&kernel_dir, false),
        expected,
        "through the kernel"
    );
    let before = common::ring_operations(&mount.metrics());
    assert_eq!(run_steps(&ring_dir, true), expected, "through the preload");
    let metrics = mount.metrics();
    assert!(
        common::ring_operations(&metrics) > before + 20,
        "the steps used the ring"
    );
    // Refusals are counted per program: two steps of each run.
    assert!(
        metrics.contains("btfuse_bpf_refused_total{program=\"inject\"} 4\n"),
        "{metrics}"
    );
    // The same names as the kernel sees them afterwards.
    for dir in [&kernel_dir, &ring_dir] {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["inject_dir", "plain2"]);
        assert_eq!(fs::read_to_string(dir.join("plain2")).unwrap(), "a\nmore\n");
    }
}

#[test]
fn readonly_uid_refuses_one_users_changes_with_erofs() {
    let object = compile(&example("readonly_uid"), &["READONLY_UID=4001"]);
    let mount = Mount::start(&[
        "--bpf",
        object.to_str().unwrap(),
        "--mode",
        "1777",
        "--allow-other",
    ]);
    let dir = mount.path().to_path_buf();
    fs::write(dir.join("shared"), b"shared\n").unwrap();
    fs::set_permissions(
        dir.join("shared"),
        std::os::unix::fs::PermissionsExt::from_mode(0o666),
    )
    .unwrap();
    let attempts = |uid: u32| {
        let dir = dir.clone();
        as_user(&Creds::new(uid, uid, &[]), move || {
            let name = |r: std::io::Result<()>| match r {
                Ok(()) => "ok".to_owned(),
                Err(e) => errno_name(&e),
            };
            let own = dir.join(format!("own{uid}"));
            vec![
                format!("read {}", name(fs::read(dir.join("shared")).map(drop))),
                format!("stat {}", name(fs::metadata(dir.join("shared")).map(drop))),
                format!("create {}", name(fs::write(&own, b"x"))),
                format!(
                    "write {}",
                    name(
                        fs::OpenOptions::new()
                            .append(true)
                            .open(dir.join("shared"))
                            .map(drop)
                    )
                ),
                format!(
                    "mkdir {}",
                    name(fs::create_dir(dir.join(format!("d{uid}"))))
                ),
                format!(
                    "rename {}",
                    name(fs::rename(&own, dir.join(format!("moved{uid}"))))
                ),
            ]
        })
    };
    assert_eq!(
        attempts(4001),
        [
            "read ok",
            "stat ok",
            "create EROFS",
            "write EROFS",
            "mkdir EROFS",
            "rename ENOENT"
        ]
    );
    assert_eq!(
        attempts(4002),
        [
            "read ok",
            "stat ok",
            "create ok",
            "write ok",
            "mkdir ok",
            "rename ok"
        ]
    );
    // Through the preload: the shell's own message for EROFS.
    let output = preloaded(Command::new("sh").arg("-c").arg("echo x > \"$D/p\""))
        .env("D", &dir)
        .uid(4001)
        .gid(4001)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("Read-only file system"), "{stderr}");
    assert!(!dir.join("p").exists() && !dir.join("own4001").exists());
}

/// The value of `metric{labels}` in `metrics`, if sampled.
fn sample(metrics: &str, metric: &str, labels: &str) -> Option<u64> {
    let head = format!("{metric}{{{labels}}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&head))
        .map(|v| v.trim().parse().unwrap())
}

#[test]
fn audit_counts_reach_the_metrics_from_both_ways_in() {
    let object = compile(&example("audit"), &[]);
    let audit = object.with_file_name("audit.o");
    fs::copy(&object, &audit).unwrap();
    let mount = Mount::start(&[
        "--bpf",
        audit.to_str().unwrap(),
        "--metrics",
        "127.0.0.1:0",
        "--mode",
        "1777",
        "--allow-other",
    ]);
    let dir = mount.path().to_path_buf();
    for uid in [4001, 4002] {
        let dir = dir.clone();
        let made = as_user(&Creds::new(uid, uid, &[]), move || {
            (0..4)
                .map(|i| {
                    format!(
                        "{:?}",
                        fs::write(dir.join(format!("{uid}-{i}")), b"x").is_ok()
                    )
                })
                .collect()
        });
        assert_eq!(made, ["true"; 4]);
    }
    // uid 4001: three unlinks through the kernel; uid 4002: two renames and a removal
    // through the preload.
    let kernel = as_user(&Creds::new(4001, 4001, &[]), {
        let dir = dir.clone();
        move || {
            (0..3)
                .map(|i| {
                    format!(
                        "{:?}",
                        fs::remove_file(dir.join(format!("4001-{i}"))).is_ok()
                    )
                })
                .collect()
        }
    });
    assert_eq!(kernel, ["true"; 3]);
    let script = "cd \"$D\" && mv 4002-0 r0 && mv 4002-1 r1 && rm 4002-2 && mkdir e && rmdir e";
    let output = preloaded(Command::new("sh").arg("-c").arg(script))
        .env("D", &dir)
        .uid(4002)
        .gid(4002)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let metrics = mount.metrics();
    let labels =
        |counter: &str, uid: u32| format!("program=\"audit\",counter=\"{counter}\",key=\"{uid}\"");
    let counter = "btfuse_bpf_counter_total";
    assert_eq!(
        sample(&metrics, counter, &labels("unlinks", 4001)),
        Some(3),
        "{metrics}"
    );
    assert_eq!(sample(&metrics, counter, &labels("renames", 4002)), Some(2));
    assert_eq!(sample(&metrics, counter, &labels("unlinks", 4002)), Some(1));
    assert_eq!(sample(&metrics, counter, &labels("rmdirs", 4002)), Some(1));
    assert_eq!(sample(&metrics, counter, &labels("renames", 4001)), None);
    assert_eq!(
        sample(&metrics, "btfuse_bpf_refused_total", "program=\"audit\""),
        Some(0)
    );
}

#[test]
fn a_refused_program_stops_the_start_with_its_name_and_leaves_no_mount() {
    let object = compile(&test_program("loop"), &[]);
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_btfuse-fuse"))
        .arg("--bpf")
        .arg(&object)
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let expected = format!(
        "btfuse-fuse: error: bpf program {}: refused: insn #",
        object.display()
    );
    assert!(stderr.contains(&expected), "{stderr}");
    assert!(stderr.contains("jumps back"), "{stderr}");
    assert_eq!(common::mounted_fstype(dir.path()), None);
}

#[test]
fn an_out_of_bounds_program_fails_only_its_opens_and_the_daemon_stays_up() {
    let object = compile(&test_program("out_of_bounds"), &[]);
    let mount = Mount::start(&[
        "--bpf",
        object.to_str().unwrap(),
        "--metrics",
        "127.0.0.1:0",
    ]);
    let dir = mount.path();
    let file = dir.join("f");
    // Creating is not opening: it goes through.
    assert_eq!(fs::write(&file, b"x").map_err(|e| errno_name(&e)), Ok(()));
    for _ in 0..3 {
        let e = fs::read(&file).unwrap_err();
        assert_eq!(errno_name(&e), "EIO");
    }
    let output = preloaded(Command::new("cat").arg(&file)).output().unwrap();
    assert!(String::from_utf8_lossy(&output.stderr).contains("Input/output error"));
    assert_eq!(fs::metadata(&file).unwrap().len(), 1);
    fs::rename(&file, dir.join("g")).unwrap();
    fs::remove_file(dir.join("g")).unwrap();
    let metrics = mount.metrics();
    let name = object.file_stem().unwrap().to_str().unwrap();
    let faults = sample(
        &metrics,
        "btfuse_bpf_faults_total",
        &format!("program=\"{name}\""),
    );
    assert!(faults >= Some(4), "{metrics}");
    assert!(mount.output().contains("fault #1 on open, answered EIO"));
}

#[test]
fn sighup_reloads_the_programs_while_the_mount_and_ring_clients_stay() {
    let objects = tempfile::tempdir().unwrap();
    let live = objects.path().join("live.o");
    fs::copy(compile(&example("error_inject"), &[]), &live).unwrap();
    let mut mount = Mount::start(&["--bpf", live.to_str().unwrap()]);
    let client = connect_ring(&mount.default_socket());
    assert_eq!(
        client.write("/inject_1", b"x").map_err(|e| errno_name(&e)),
        Err("EIO".into())
    );
    assert!(fs::write(mount.path().join("inject_2"), b"x").is_err());
    fs::copy(compile(&test_program("trivial"), &[]), &live).unwrap();
    send_signal(mount.daemon_pid().unwrap(), libc::SIGHUP).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !mount.output().contains("SIGHUP: 1 bpf programs reloaded") {
        assert!(Instant::now() < deadline, "no reload:\n{}", mount.output());
        std::thread::sleep(Duration::from_millis(20));
    }
    // The same client, the same mount.
    client.write("/inject_1", b"ring").unwrap();
    fs::write(mount.path().join("inject_2"), b"kernel").unwrap();
    assert_eq!(fs::read(mount.path().join("inject_1")).unwrap(), b"ring");
    assert_eq!(client.read("/inject_2").unwrap(), b"kernel");
    // A file that no longer loads: the trivial program stays.
    fs::write(&live, b"garbage").unwrap();
    send_signal(mount.daemon_pid().unwrap(), libc::SIGHUP).unwrap();
    while !mount.output().contains("the programs loaded before stay") {
        assert!(
            Instant::now() < deadline,
            "no failed reload:\n{}",
            mount.output()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    client.write("/inject_3", b"still").unwrap();
    let stopped = mount.stop();
    assert!(stopped.status.is_some_and(|s| s.success()) && stopped.unmounted);
}
