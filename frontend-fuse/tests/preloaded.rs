//! Unmodified programs under `libbtfuse_preload.so` on a real `btfuse-fuse` mount, with no
//! `BTFUSE_*` variable set: the library finds the mount in `/proc/self/mountinfo` and its ring
//! socket by the documented rule.
//!
//! Each script runs twice: under the preload in a directory of the mount, and without it in a
//! directory of a tmpfs. Three things must hold:
//!
//! - the transcripts (exit status, standard output and error, the directory's name replaced)
//!   are the same;
//! - the trees the scripts leave are the same as this test process reads them afterwards, and
//!   it is not preloaded, so on the btfuse side it reads through the kernel and the mount:
//!   names, types, permission bits, link counts, sizes of files and symbolic links, link
//!   targets, contents, and which names share an inode;
//! - the daemon's metrics show that the script's calls went over the ring and, for the scripts
//!   that [`Route::RingOnly`] marks, that none reached the daemon through the kernel.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output};

use btfuse_testkit::programs::{
    ARCHIVES_AND_COPIES, BUILD_AND_EDIT, CALLS_C, CARGO_BUILD, FSX_CONFIG, fsx, fsx_operations,
};
use common::{Mount, Tmpfs, fuse_operations, preloaded, ring_operations};

/// Fewer ring operations than this for a whole script would mean the programs did not use
/// the ring (the smallest script below, freopen's, makes about 40; the others hundreds).
/// Reads of a file opened only for reading are mostly answered with its open, so they add
/// few.
const MIN_RING_OPERATIONS: u64 = 25;

/// Which way a script's calls are expected to reach the daemon.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    /// All over the ring: not one FUSE request while the script runs.
    RingOnly,
    /// Mostly over the ring, some through the kernel and the mount, for the reason the
    /// script's test gives.
    RingAndKernel,
}

/// Runs `script` with `interpreter` and the variables `vars`, and returns its transcript with
/// each variable's value written as `$NAME` (the longest values first).
fn run_with(
    interpreter: &[&str],
    script: &str,
    vars: &[(&str, &str)],
    under_preload: bool,
) -> String {
    let mut command = Command::new(interpreter[0]);
    command
        .args(&interpreter[1..])
        .arg(script)
        .env("LC_ALL", "C")
        .env_remove("LD_PRELOAD");
    for (name, value) in vars {
        command.env(name, value);
    }
    if under_preload {
        preloaded(&mut command);
    }
    let Output {
        status,
        stdout,
        stderr,
    } = command.output().expect("run the script");
    let mut text = format!(
        "status {:?}\n--- stdout\n{}--- stderr\n{}",
        status.code(),
        String::from_utf8_lossy(&stdout),
        String::from_utf8_lossy(&stderr)
    );
    let mut vars = vars.to_vec();
    vars.sort_by_key(|(_, value)| std::cmp::Reverse(value.len()));
    for (name, value) in vars.into_iter().filter(|(_, value)| !value.is_empty()) {
        text = text.replace(value, &format!("${name}"));
    }
    text
}

/// What a plain (not preloaded) reader sees of the tree under `root`, one line per name in
/// path order. Directory sizes are left out: tmpfs counts them its own way.
fn snapshot(root: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    let mut first_name_of_inode = BTreeMap::new();
    walk(root, root, &mut lines, &mut first_name_of_inode);
    lines
}

fn walk(
    root: &Path,
    dir: &Path,
    lines: &mut Vec<String>,
    first_name_of_inode: &mut BTreeMap<u64, String>,
) {
    let mut names: Vec<_> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("list {}: {e}", dir.display()))
        .map(|entry| entry.expect("read a directory entry").file_name())
        .collect();
    names.sort();
    for name in names {
        let path = dir.join(&name);
        let relative = path
            .strip_prefix(root)
            .expect("below the root")
            .display()
            .to_string();
        let meta =
            fs::symlink_metadata(&path).unwrap_or_else(|e| panic!("lstat {}: {e}", path.display()));
        let mode = meta.permissions().mode() & 0o7777;
        let links = meta.nlink();
        let kind = meta.file_type();
        let mut line = if kind.is_dir() {
            format!("{relative} dir {mode:o} links {links}")
        } else if kind.is_symlink() {
            let target = fs::read_link(&path).expect("read a link");
            format!(
                "{relative} symlink -> {} size {}",
                target.display(),
                meta.len()
            )
        } else if kind.is_file() {
            let contents = fs::read(&path).expect("read a file");
            format!(
                "{relative} file {mode:o} links {links} size {} blocks {} {:?}",
                meta.len(),
                meta.blocks(),
                String::from_utf8_lossy(&contents)
            )
        } else {
            format!("{relative} other {mode:o}")
        };
        if links > 1 && !kind.is_dir() {
            let first = first_name_of_inode
                .entry(meta.ino())
                .or_insert_with(|| relative.clone());
            line.push_str(&format!(" inode of {first}"));
        }
        lines.push(line);
        if kind.is_dir() {
            walk(root, &path, lines, first_name_of_inode);
        }
    }
}

/// A fresh directory `name` (mode 0755) under `parent`, made by this (plain) process.
fn fresh_dir(parent: &Path, name: &str) -> std::path::PathBuf {
    let dir = parent.join(name);
    fs::create_dir(&dir).expect("create the script's directory");
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod 0755");
    dir
}

/// Runs `script` under the preload on a fresh mount and plainly on a fresh tmpfs and checks
/// the three things the file's documentation lists.
fn same_as_tmpfs(interpreter: &[&str], name: &str, route: Route, script: &str) {
    same_as_tmpfs_with(interpreter, name, route, script, &[]);
}

/// [`same_as_tmpfs`] with the variables `vars` set too, and `$OUT` naming a fresh directory
/// outside the mount (and outside the tmpfs) for each run.
fn same_as_tmpfs_with(
    interpreter: &[&str],
    name: &str,
    route: Route,
    script: &str,
    vars: &[(&str, &str)],
) {
    let mount = Mount::start(&["--metrics", "127.0.0.1:0"]);
    let tmpfs = Tmpfs::new();
    let fast_dir = fresh_dir(mount.path(), name);
    let reference_dir = fresh_dir(tmpfs.path(), name);
    let outside = Tmpfs::new();
    let fast_out = fresh_dir(outside.path(), "fast");
    let reference_out = fresh_dir(outside.path(), "reference");
    let with = |dir: &Path, out: &Path| -> Vec<(String, String)> {
        let mut all = vec![
            ("D".to_owned(), dir.to_str().expect("UTF-8").to_owned()),
            ("OUT".to_owned(), out.to_str().expect("UTF-8").to_owned()),
        ];
        all.extend(vars.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())));
        all
    };
    fn borrowed(all: &[(String, String)]) -> Vec<(&str, &str)> {
        all.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect()
    }
    let (fast_vars, reference_vars) = (
        with(&fast_dir, &fast_out),
        with(&reference_dir, &reference_out),
    );

    let metrics_before = mount.metrics();
    let fast = run_with(interpreter, script, &borrowed(&fast_vars), true);
    let metrics_after = mount.metrics();
    let reference = run_with(interpreter, script, &borrowed(&reference_vars), false);
    assert_eq!(
        fast, reference,
        "script {name} under the preload on the mount (left) and on tmpfs (right):\n{script}"
    );

    let ring = ring_operations(&metrics_after) - ring_operations(&metrics_before);
    let kernel = fuse_operations(&metrics_after) - fuse_operations(&metrics_before);
    assert!(
        ring >= MIN_RING_OPERATIONS,
        "script {name}: only {ring} ring operations (and {kernel} through the kernel): the \
         programs did not use the ring"
    );
    assert!(
        route == Route::RingAndKernel || kernel == 0,
        "script {name}: {kernel} operations reached the daemon through the kernel ({ring} over \
         the ring)"
    );
    eprintln!("script {name}: {ring} ring operations, {kernel} through the kernel");

    let through_mount = snapshot(&fast_dir);
    let on_tmpfs = snapshot(&reference_dir);
    assert_eq!(
        through_mount, on_tmpfs,
        "script {name}: the tree read through the mount (left) and on tmpfs (right)"
    );
}

const SH: &[&str] = &["sh", "-c"];
const BASH: &[&str] = &["bash", "-c"];
const PYTHON: &[&str] = &["python3", "-c"];

#[test]
fn shell_redirections() {
    // Its `cd "$D"` moves the kernel's working directory into the mount too, through it.
    same_as_tmpfs(
        SH,
        "redirections",
        Route::RingAndKernel,
        r#"
        sh -c 'echo hi > "$D/F"; cat "$D/F"'
        printf 'b\na\nc\n' > "$D/A"
        cat "$D/A" > "$D/B"; cat "$D/B"
        sort < "$D/A" > "$D/S"; cat "$D/S"
        echo one >> "$D/S"; printf 'two\n' >> "$D/S"; ls >> "$D/S"; cat "$D/S"
        while read l; do echo "[$l]"; done < "$D/S"
        while read l; do echo "<$l>"; done < "$D/A" > "$D/W"; cat "$D/W"
        exec 3> "$D/three"; echo via3 >&3; printf 'more\n' >&3; echo piped | cat >&3
        exec 3>&-; wc -l < "$D/three"
        { read first; echo "first=$first"; cat; } < "$D/S"
        (echo a; echo b) > "$D/sub"; cat "$D/sub"
        (cd "$D" && cat missing 2> err; echo "status $?"; pwd | sed "s#$D#D#"); cat "$D/err"
        "#,
    );
}

/// `rmdir` of a mount point is the kernel's to refuse (`EBUSY`): the library keeps the mount
/// table and reads it again only when the kernel says it changed, so one process sees a
/// mount made, then gone, between two of its `rmdir` calls; and after it moves to a mount
/// namespace of its own (`unshare`), it sees that namespace's mounts, not the old one's.
#[test]
fn rmdir_of_a_mount_point_is_ebusy_as_the_mount_table_changes() {
    same_as_tmpfs(
        PYTHON,
        "rmdir_mount_point",
        // The mount and the refused `rmdir` go through the kernel.
        Route::RingAndKernel,
        r#"
import errno, os, subprocess
d = os.environ["D"]
os.mkdir(d + "/m"); os.mkdir(d + "/n")
os.rmdir(d + "/n"); print("plain directory removed")
for i in range(20):
    os.mkdir(d + "/t%d" % i); os.rmdir(d + "/t%d" % i)
def rmdir_mount_point(path, label):
    try:
        os.rmdir(path); print(label, "removed")
    except OSError as e:
        print(label + ":", errno.errorcode[e.errno])
subprocess.run(["mount", "-t", "tmpfs", "none", d + "/m"], check=True)
rmdir_mount_point(d + "/m", "mount point")
subprocess.run(["umount", d + "/m"], check=True)
os.rmdir(d + "/m"); print("removed once unmounted")
os.mkdir(d + "/p"); os.rmdir(d + "/p"); print("seen before unsharing")
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
if libc.unshare(0x00020000) != 0:  # CLONE_NEWNS
    print("unshare:", errno.errorcode[ctypes.get_errno()])
subprocess.run(["mount", "--make-rprivate", "/"], check=True)
os.mkdir(d + "/q")
subprocess.run(["mount", "-t", "tmpfs", "none", d + "/q"], check=True)
rmdir_mount_point(d + "/q", "mount point in the new namespace")
subprocess.run(["umount", d + "/q"], check=True)
os.rmdir(d + "/q"); print("removed once unmounted")
print(sorted(os.listdir(d)))
"#,
    );
}

#[test]
fn coreutils_on_files_and_directories() {
    same_as_tmpfs(
        SH,
        "coreutils",
        // `mkdir -p` walks down with relative `chdir` calls from a working directory outside
        // the mount; the interceptor leaves relative paths from a kernel working directory to
        // the kernel, so those directories are made through the mount.
        Route::RingAndKernel,
        r#"
        mkdir -p "$D/a/b/c"; touch "$D/a/b/c/empty" "$D/a/x"; echo hi > "$D/a/b/y"
        printf '%s\n' 3 1 2 > "$D/n"; sort "$D/n" > "$D/sorted"; sort -r < "$D/n"
        cp -r "$D/a" "$D/copy"; mv "$D/copy/x" "$D/copy/moved"
        ls -la "$D/a" | awk 'NR > 1 {print $1, $2, $NF}'
        stat -c '%n %s %F %a %h' "$D/a/b/y" "$D/a/b" "$D/n" | sed "s#$D#D#"
        find "$D" | sort | sed "s#$D#D#"; find "$D" -type f -name y | sort | sed "s#$D#D#"
        du -a "$D/a" | sort -k2 | sed "s#$D#D#"
        head -n 2 "$D/n"; tail -n 1 "$D/n"; wc "$D/n" | sed "s#$D#D#"; wc -c < "$D/a/b/y"
        ln "$D/a/b/y" "$D/hard"; stat -c %h "$D/a/b/y"; ln -s a/b/y "$D/soft"; cat "$D/soft"
        readlink "$D/soft"; chmod 640 "$D/n"; chmod u+x "$D/a/x"; stat -c %a "$D/n" "$D/a/x"
        truncate -s 10 "$D/sorted"; truncate -s 2 "$D/a/b/y"; od -c "$D/sorted" | head -n 2
        dd if=/dev/zero of="$D/zeros" bs=1k count=5 2>/dev/null; stat -c %s "$D/zeros"
        dd if="$D/n" of="$D/dd" bs=1 skip=2 2>/dev/null; cat "$D/dd"
        dd if=/dev/zero of="$D/zeros" bs=1 count=3 seek=1 conv=notrunc 2>/dev/null
        rm -r "$D/copy/b"; rmdir "$D/a/b"; echo "rmdir non-empty: $?"
        rm "$D/nope"; echo "rm missing: $?"; ls "$D" "$D/copy"
        "#,
    );
}

#[test]
fn bash_pipes_and_descriptors() {
    same_as_tmpfs(
        BASH,
        "bash",
        Route::RingOnly,
        r#"
        printf '%s\n' c a b a c c > "$D/in"
        cat "$D/in" | sort | uniq -c | sort -rn > "$D/out"; cat "$D/out"
        sort "$D/in" | tee "$D/tee" | wc -l; head -n 2 < "$D/tee"
        for i in 1 2 3; do echo "line $i"; done > "$D/loop"; cat "$D/loop"
        { echo first; cat "$D/loop"; } | grep -c line >> "$D/loop"; tail -n 1 "$D/loop"
        x=$(cat "$D/in"); echo "[${x//$'\n'/,}]"
        mapfile -t lines < "$D/in"; echo "${#lines[@]} ${lines[2]}"
        exec {fd}> "$D/dyn"; echo dynamic >&$fd; ls "$D" >&$fd; exec {fd}>&-; cat "$D/dyn"
        exec 4< "$D/in"; read -u 4 one; read -u 4 two; echo "$one$two"; cat <&4; exec 4<&-
        [ -f "$D/in" ] && echo file; [ -d "$D" ] && echo dir; [ -e "$D/nope" ] || echo absent
        "#,
    );
}

#[test]
fn python_files_walks_and_copies() {
    same_as_tmpfs(
        PYTHON,
        "python",
        Route::RingOnly,
        r#"
import os, shutil, pathlib
d = os.environ["D"]
with open(f"{d}/a", "w") as f:
    f.write("hello\nworld\n")
print(open(f"{d}/a").read().split())
with open(f"{d}/a", "a") as f:
    f.write("more\n")
with open(f"{d}/a", "rb") as f:
    f.seek(6); print(f.read())
os.makedirs(f"{d}/t/b/c")
for name in ["t/x", "t/b/y", "t/b/c/z"]:
    with open(f"{d}/{name}", "w") as f:
        f.write(name * 100)
print([(r[len(d):], sorted(ds), sorted(fs)) for r, ds, fs in sorted(os.walk(d))])
print(sorted(os.listdir(d)), sorted(os.listdir(f"{d}/t/b")))
shutil.copytree(f"{d}/t", f"{d}/copy")
os.rename(f"{d}/copy/x", f"{d}/copy/renamed")
os.chmod(f"{d}/copy/renamed", 0o600)
print(sorted(str(p.relative_to(d)) for p in pathlib.Path(d).rglob("*")))
p = pathlib.Path(d) / "pl"
p.mkdir()
(p / "t.txt").write_text("path\n")
print((p / "t.txt").read_text(), [x.name for x in p.iterdir()], (p / "t.txt").stat().st_size)
os.symlink("t.txt", p / "link")
print(os.readlink(p / "link"), (p / "link").read_text(), end="")
try:
    open(f"{d}/missing")
except FileNotFoundError as e:
    print("missing:", e.errno)
shutil.rmtree(f"{d}/t/b")
print(sorted(os.listdir(f"{d}/t")))
"#,
    );
}

/// A file read with `pread` often enough is shown in the reader's own mapping (`MapFile`):
/// what it reads must stay the file's through writes by the same and other descriptors,
/// holes, truncation and regrowth, and reads must move the access time as on tmpfs.
#[test]
fn preads_of_a_mapped_file_follow_every_change() {
    same_as_tmpfs(
        PYTHON,
        "mapped",
        Route::RingOnly,
        r#"
import os
d = os.environ["D"]
f = f"{d}/big"
with open(f, "wb") as w:
    w.write(bytes(range(256)) * 64)
fd = os.open(f, os.O_RDWR)
other = os.open(f, os.O_WRONLY)
def show(tag):
    st = os.fstat(fd)
    print(tag, st.st_size, [os.pread(fd, 4096, o)[:8].hex() for o in (0, 4095, 8192, 16380, 40000)],
          os.pread(fd, 100, st.st_size - 50).hex(), st.st_atime_ns >= st.st_mtime_ns)
for i in range(12):
    show(i)
os.pwrite(fd, b"mine", 4094)
show("own write")
os.pwrite(other, b"theirs" * 1000, 30000)
show("other write")
st = os.stat(f)
print("stat after read", st.st_atime_ns >= st.st_mtime_ns)
os.truncate(f, 5000)
show("shrunk")
os.ftruncate(other, 20000)
show("grown")
with open(f, "ab") as a:
    a.write(b"appended")
show("appended")
st = os.stat(f)
print("stat after read", st.st_atime_ns >= st.st_mtime_ns)
os.close(other)
os.close(fd)
"#,
    );
}

/// A static program (no loader, so no preload) that prints its arguments, one per line, or
/// without arguments copies its standard input to its standard output; built with `cc`.
fn static_program(dir: &Path) -> std::path::PathBuf {
    let source = dir.join("static.c");
    fs::write(
        &source,
        r#"
#include <string.h>
#include <unistd.h>
int main(int argc, char **argv) {
    if (argc > 1) {
        for (int i = 1; i < argc; i++) {
            if (write(1, argv[i], strlen(argv[i])) < 0 || write(1, "\n", 1) != 1) return 1;
        }
        return 0;
    }
    char buf[4096];
    ssize_t n;
    while ((n = read(0, buf, sizeof buf)) > 0) {
        if (write(1, buf, n) != n) return 1;
    }
    return n < 0;
}
"#,
    )
    .expect("write the static program's source");
    let binary = dir.join("static-copy");
    let status = Command::new("cc")
        .args(["-static", "-O1", "-o"])
        .arg(&binary)
        .arg(&source)
        .status()
        .expect("run cc");
    assert!(status.success(), "cc -static failed");
    binary
}

/// Programs that do not load the preload (`env -u LD_PRELOAD`, `env -i`, a static binary)
/// get the shell's btfuse redirections as kernel descriptors of the mount, handed off with
/// their offsets: what they write lands between what the shell writes, what they read
/// continues where the shell stopped, appends append, and an unlinked file stays reachable.
#[test]
fn redirections_reach_programs_without_the_preload() {
    let build = tempfile::tempdir().expect("a directory for the static program");
    let program = static_program(build.path());
    let script = r#"
        exec 3> "$D/F"; env -u LD_PRELOAD sh -c 'echo x >&3'; echo y >&3; exec 3>&-; cat "$D/F"
        { echo a; env -u LD_PRELOAD sh -c 'echo b'; echo c; } > "$D/G"; cat "$D/G"
        echo first > "$D/A"; env -u LD_PRELOAD sh -c 'echo appended' >> "$D/A"
        echo last >> "$D/A"; env -i /bin/sh -c 'echo from-env-i >&3' 3>> "$D/A"; cat "$D/A"
        printf 'in1\nin2\n' > "$D/input"; env -u LD_PRELOAD sh -c 'cat > "$D/C"' < "$D/input"
        cat "$D/C"
        { read l; echo "shell read $l"; env -u LD_PRELOAD cat; } < "$D/input"
        printf 'r1\nr2\nr3\n' > "$D/R"
        { read l; env -u LD_PRELOAD sh -c 'read m; echo "child $m"'; read n; echo "$l $n"; } < "$D/R"
        exec 4<> "$D/U"; rm "$D/U"; echo before >&4
        env -u LD_PRELOAD sh -c 'echo during >&4; stat -L -c "%h %s" /proc/self/fd/4'
        echo after >&4; env -u LD_PRELOAD cat /proc/self/fd/4; exec 4>&-; ls "$D"
        STATIC static-arg > "$D/S"; echo shell >> "$D/S"; STATIC < "$D/input" >> "$D/S"
        { echo one; STATIC two; echo three; } >> "$D/S"; cat "$D/S"
        "#
    .replace("STATIC", program.to_str().expect("a UTF-8 path"));
    same_as_tmpfs(SH, "handoff", Route::RingAndKernel, &script);
}

/// A C program whose glibc stream over a kernel file is `freopen`ed onto a file in `$D`
/// (argv[1]; a kernel scratch file in argv[2]).
const FREOPEN_PROGRAM: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
int main(int argc, char **argv) {
    (void)argc;
    const char *d = getenv("D");
    char path[512];
    snprintf(path, sizeof path, "%s/reopened.txt", d);
    FILE *f = fopen(argv[1], "w");
    if (!f) { perror("fopen"); return 1; }
    fputs("to the kernel file\n", f);
    FILE *g = freopen(path, "w", f);
    if (!g) { perror("freopen"); return 1; }
    fprintf(g, "written through the reopened stream, %s\n", g == f ? "same FILE" : "other FILE");
    if (fclose(g) != 0) { perror("fclose"); return 1; }
    /* Read back over the ring, many times: the same contents each time. Opened for reading
       and writing, so that each open is the server's (an open for reading only of a file
       read before may be answered in the process). */
    char first[512] = "", line[256];
    for (int i = 0; i < 20; i++) {
        char all[512] = "";
        FILE *r = fopen(path, "r+");
        while (r && fgets(line, sizeof line, r)) strncat(all, line, sizeof all - strlen(all) - 1);
        if (r) fclose(r);
        if (i == 0) strcpy(first, all);
        else if (strcmp(all, first) != 0) { puts("contents changed"); return 1; }
    }
    fputs(first, stdout);
    return 0;
}
"#;

/// `freopen` of a glibc stream over a kernel file onto a file in the mount: glibc reopens it
/// through the kernel, and what it writes is the same file the ring shows.
#[test]
fn a_glibc_stream_reopened_onto_the_mount() {
    let build = tempfile::tempdir().expect("a directory for the program");
    let source = build.path().join("freopen.c");
    fs::write(&source, FREOPEN_PROGRAM).expect("write the program");
    let binary = build.path().join("freopen");
    let status = Command::new("cc")
        .args(["-O1", "-o"])
        .arg(&binary)
        .arg(&source)
        .status()
        .expect("run cc");
    assert!(status.success(), "cc failed");
    let scratch = build.path().join("kernel-file");
    same_as_tmpfs(
        &[binary.to_str().expect("UTF-8 path")],
        "freopen",
        Route::RingAndKernel,
        scratch.to_str().expect("UTF-8 path"),
    );
}

/// What the script of [`links_out_of_the_mount_lead_where_the_kernel_goes`] does in `$D`, a
/// directory at the root of a mount, with `$O` (named `$ON`) a kernel directory beside that
/// mount: links to `/etc/hostname`, into `$O` and back into `$D` (absolute, and relative
/// through `..` above the mount's root), a kernel link into `$D`, and a loop through `$O`.
const OUT_OF_THE_MOUNT: &str = r#"
    echo outside > $O/outside.txt; mkdir $O/od; echo deep > $O/od/f
    MN=$(basename $(dirname $D)); DN=$(basename $D)
    mkdir $D/d; echo inside > $D/d/f
    ln -s /etc/hostname $D/host
    ln -s ../../$ON/outside.txt $D/up
    ln -s $O/od $D/out
    ln -s $D/d $D/back
    ln -s ../../$MN/$DN/d $D/rel_back
    ln -s $D/d $O/into
    cmp $D/host /etc/hostname && echo host is /etc/hostname
    cat $D/up $D/out/f $D/back/f $D/rel_back/f $D/out/../into/f
    stat -L -c '%s %F' $D/host $D/up $D/out
    ls -l $D/host $D/up | awk '{print $1, $5, $10, $11}'
    ls $D/out $D/rel_back $D/out/../into; readlink $D/up; readlink -f $D/up
    cd $D/..; cat ../$ON/outside.txt; ls ../$ON/od
    cd $D; cat ../../$ON/od/f; cd ../..; cat $ON/outside.txt
    echo made > $D/out/made; cat $O/od/made; echo again >> $D/up; cat $O/outside.txt
    mkdir $D/out/sub; mv $D/out/made $D/out/sub/; ls $O/od/sub
    mv $D/out/sub/made $D/d/moved_in; cat $D/d/moved_in; ls $O/od/sub
    echo via-back > $D/rel_back/vb; cat $D/d/vb
    chmod 600 $D/up; stat -c %a $O/outside.txt
    ln -s ../../$ON/loop $D/loop; ln -s ../$MN/$DN/loop $O/loop
    cat $D/loop; echo "loop through the kernel: $?"
"#;

/// A walk that leaves the mount goes where the kernel goes: the same script under the
/// preload on the mount, without it on the mount (the kernel's own walk through FUSE) and on
/// a tmpfs gives one transcript, and the first used the ring.
#[test]
fn links_out_of_the_mount_lead_where_the_kernel_goes() {
    let mount = Mount::start(&["--metrics", "127.0.0.1:0"]);
    let tmpfs = Tmpfs::new();
    let run_in = |root: &Path, name: &str, under_preload: bool| {
        let dir = fresh_dir(root, name);
        let kept = tempfile::Builder::new()
            .prefix("btfuse-out-")
            .tempdir()
            .expect("a kernel directory beside the mount");
        let outside = fs::canonicalize(kept.path()).expect("canonical");
        assert_eq!(outside.parent(), root.parent(), "beside the mount");
        let name = outside
            .file_name()
            .expect("a name")
            .to_str()
            .expect("UTF-8");
        let vars = [
            ("D", dir.to_str().expect("UTF-8")),
            ("O", outside.to_str().expect("UTF-8")),
            ("ON", name),
        ];
        run_with(SH, OUT_OF_THE_MOUNT, &vars, under_preload)
    };
    let before = mount.metrics();
    let fast = run_in(mount.path(), "preloaded", true);
    let after = mount.metrics();
    let kernel = run_in(mount.path(), "plain", false);
    let reference = run_in(tmpfs.path(), "plain", false);
    assert_eq!(
        fast, kernel,
        "under the preload (left) and through the kernel (right)"
    );
    assert_eq!(fast, reference, "on the mount (left) and on tmpfs (right)");
    let ring = ring_operations(&after) - ring_operations(&before);
    assert!(
        ring >= MIN_RING_OPERATIONS,
        "only {ring} ring operations: the programs did not use the ring"
    );
}

/// The btfuse mounts a preloaded process found are handed to the programs it executes in
/// `BTFUSE_MOUNTS` (so that only the first process of a script looks for them), and a
/// program uses a mount of such a list only once the server's mount is seen at its mount
/// point: here a child given an empty list leaves the mount to the kernel, one given a list
/// that names the mount uses the ring, and one whose list names, for the mount's socket, a
/// mount point where something else is mounted (as a list from another mount namespace
/// might) leaves it to the kernel too.
#[test]
fn the_mounts_found_are_handed_to_children() {
    let mount = Mount::start(&["--metrics", "127.0.0.1:0"]);
    let dir = fresh_dir(mount.path(), "inherit");
    fs::write(dir.join("f"), "content\n").unwrap();
    let escaped = mount.path().to_str().unwrap().replace(' ', "\\040");

    let handed = run_with(
        SH,
        r#"cat "$D/f"; sh -c 'echo "$BTFUSE_MOUNTS"'"#,
        &[("D", dir.to_str().unwrap())],
        true,
    );
    // Other btfuse mounts of the machine may be listed too.
    let list = handed
        .strip_prefix("status Some(0)\n--- stdout\ncontent\n")
        .and_then(|rest| rest.strip_suffix("\n--- stderr\n"))
        .unwrap_or_else(|| panic!("{handed}"));
    assert!(
        list.split(' ').any(|f| f == format!("0:{escaped}")),
        "{list}"
    );

    let ops = |list: String, path: &Path| {
        let before = mount.metrics();
        let text = run_with(
            &["cat"],
            path.to_str().unwrap(),
            &[("BTFUSE_MOUNTS", &list)],
            true,
        );
        assert_eq!(text, "status Some(0)\n--- stdout\ncontent\n--- stderr\n");
        ring_operations(&mount.metrics()) - ring_operations(&before)
    };
    let file = dir.join("f");
    assert_eq!(
        ops(String::new(), &file),
        0,
        "an empty list: nothing over the ring"
    );
    assert!(
        ops(format!("0:{escaped}"), &file) > 0,
        "the list handed down is used"
    );
    // A tmpfs mounted inside the btfuse mount, named in the list with the btfuse mount's
    // socket: the server's mount is not what is mounted there, so the kernel serves it.
    let inner = fresh_dir(mount.path(), "inner-tmpfs");
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "none"])
        .arg(&inner)
        .status()
        .unwrap();
    assert!(mounted.success());
    let _unmount = Unmount(inner.clone());
    fs::write(inner.join("f"), "content\n").unwrap();
    let inner_escaped = inner.to_str().unwrap().replace(' ', "\\040");
    let socket_of = |point: &Path| btfuse_ring_client::discovery::socket_for_mount(point, 0, None);
    let alias = Removed(socket_of(&inner));
    std::os::unix::fs::symlink(socket_of(mount.path()), &alias.0).unwrap();
    let ring = ops(format!("0:{inner_escaped}"), &inner.join("f"));
    assert_eq!(
        ring, 0,
        "a socket whose mount is not there: nothing over the ring"
    );
}

/// Unmounts a directory when dropped (a failed assertion included).
struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Removes a file when dropped (a failed assertion included).
struct Removed(std::path::PathBuf);

impl Drop for Removed {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// A shell whose working directory is a btfuse directory on the mount (its `cd` served over
/// the ring, the kernel's following through the mount) starts programs that touch no btfuse
/// file without a single ring request for them: the children resolve relative names from
/// the kernel's directory, so neither the fork nor the exec hands them the shell's. One that
/// does use a relative name still reaches the file over the ring.
#[test]
fn children_of_a_shell_in_a_btfuse_directory_connect_only_to_use_it() {
    let mount = Mount::start(&["--metrics", "127.0.0.1:0"]);
    let dir = fresh_dir(mount.path(), "cwd-children");
    fs::write(dir.join("f"), "here\n").unwrap();
    let ops_of = |script: &str| {
        let before = mount.metrics();
        let text = run_with(SH, script, &[("D", dir.to_str().unwrap())], true);
        let after = mount.metrics();
        (
            text,
            ring_operations(&after) - ring_operations(&before),
            fuse_operations(&after) - fuse_operations(&before),
        )
    };
    let (text, alone, _) = ops_of(r#"cd "$D" && pwd"#);
    assert_eq!(text, "status Some(0)\n--- stdout\n$D\n--- stderr\n");
    assert!(alone > 0, "the shell's cd was not served over the ring");
    let (text, with_children, _) =
        ops_of(r#"cd "$D" && pwd && for i in 1 2 3 4 5 6 7 8 9 10; do /bin/true; done"#);
    assert_eq!(text, "status Some(0)\n--- stdout\n$D\n--- stderr\n");
    assert_eq!(
        with_children, alone,
        "ten children that touch no btfuse file made ring requests"
    );
    let (text, reading, kernel) = ops_of(r#"cd "$D" && cat f && /bin/pwd && sh -c 'cat f'"#);
    assert_eq!(
        text,
        "status Some(0)\n--- stdout\nhere\n$D\nhere\n--- stderr\n"
    );
    assert!(
        reading >= alone + 4,
        "the children's relative reads did not go over the ring ({reading} ring requests, \
         {kernel} through the kernel)"
    );
}

const VFORK_C: &str = include_str!("../../testkit/c/vfork.c");

/// `testkit/c/vfork.c` (children made with `vfork` create and read files, take a descriptor
/// of their parent's, execute programs, use a relative name after the parent's `chdir`,
/// close the parent's descriptor) gives tmpfs's transcript through the mount, plain and under
/// the preload. Under the preload, a parent with no btfuse descriptor makes a real `vfork`
/// (the kernel serves the child through the mount) and one with a descriptor a `fork`: the
/// trace shows four of the first kind and two of the second.
#[test]
fn vfork_children_match_tmpfs_and_stay_vforks_without_descriptors() {
    let build = tempfile::tempdir().unwrap();
    let binary = common::compile_source(build.path(), "vfork", VFORK_C);
    let mount = Mount::start(&[]);
    let tmpfs = Tmpfs::new();
    let script = format!("'{}' \"$D\"", binary.display());
    let reference_dir = fresh_dir(tmpfs.path(), "vfork");
    let reference = run_with(
        SH,
        &script,
        &[("D", reference_dir.to_str().unwrap())],
        false,
    );
    assert!(
        reference.contains("appended: [parent still]"),
        "{reference}"
    );
    for preload in [false, true] {
        let dir = fresh_dir(mount.path(), &format!("vfork-{preload}"));
        let text = run_with(SH, &script, &[("D", dir.to_str().unwrap())], preload);
        assert_eq!(
            text, reference,
            "preload {preload} (left) and tmpfs (right)"
        );
    }
    let dir = fresh_dir(mount.path(), "vfork-traced");
    let log = tempfile::NamedTempFile::new().unwrap();
    let preload = format!("LD_PRELOAD={}", common::preload_library().display());
    let tracer = [
        "strace",
        "-f",
        "-qq",
        "-e",
        "trace=vfork,fork,clone,clone3",
        "-o",
        log.path().to_str().unwrap(),
        "-E",
        preload.as_str(),
    ];
    let traced = Command::new("strace")
        .args(tracer)
        .arg(&binary)
        .arg(&dir)
        .env_remove("LD_PRELOAD")
        .output()
        .expect("strace (scripts/install-test-deps installs it)");
    assert!(traced.status.success(), "{traced:?}");
    let calls = fs::read_to_string(log.path()).unwrap();
    let vforks = calls.lines().filter(|l| l.contains("vfork()")).count();
    let forks = calls.lines().filter(|l| l.contains("clone(")).count();
    assert_eq!((vforks, forks), (4, 2), "{calls}");
}

/// dash opens a redirection's file before its `vfork`, so the child has a btfuse descriptor
/// and is a `fork`; it executes the program at once, or exits when there is none. Every such
/// process connects once: the program attaches to the table the child inherited (the child
/// itself does not), and a child that exits without a program attaches on its way out, so
/// the table goes with it.
#[test]
fn a_dash_child_with_a_btfuse_redirection_connects_once() {
    let mount = Mount::start(&[]);
    let dir = fresh_dir(mount.path(), "redirected");
    let log = tempfile::NamedTempFile::new().unwrap();
    let preload = format!("LD_PRELOAD={}", common::preload_library().display());
    let script = r#"cd "$D" && echo x > f && cat f > g && wc -c < g > h && cat h &&
        no-such-command > k 2> /dev/null; cat g k; echo $?"#;
    let tracer = [
        "strace",
        "-f",
        "-qq",
        "-e",
        "trace=connect",
        "-o",
        log.path().to_str().unwrap(),
        "-E",
        preload.as_str(),
        "dash",
        "-c",
    ];
    let text = run_with(&tracer, script, &[("D", dir.to_str().unwrap())], false);
    assert_eq!(text, "status Some(0)\n--- stdout\n2\nx\n0\n--- stderr\n");
    let calls = fs::read_to_string(log.path()).unwrap();
    let mut by_pid: BTreeMap<&str, usize> = BTreeMap::new();
    for line in calls.lines().filter(|l| l.contains("connect(")) {
        *by_pid.entry(line.split(' ').next().unwrap()).or_default() += 1;
    }
    assert!(by_pid.len() >= 4, "{calls}");
    assert!(by_pid.values().all(|&n| n == 1), "{calls}");
}

/// Finding the mounts costs a new program little and is done once per process tree: the
/// mount table (`/proc/self/mountinfo`, which the kernel writes out whole at every read) is
/// never read; a preloaded program that resolves an absolute path lists the socket
/// directory once, whether it touches the mount or not; and a shell lists it once (at its
/// first `exec` at the latest) and hands the mounts to its children, which do not list it.
#[test]
fn the_mounts_are_found_once_per_process_tree_without_the_mount_table() {
    let mount = Mount::start(&[]);
    let dir = fresh_dir(mount.path(), "table");
    fs::write(dir.join("f"), "on btfuse\n").unwrap();
    let outside = tempfile::NamedTempFile::new().unwrap();
    fs::write(outside.path(), "outside\n").unwrap();
    let log = tempfile::NamedTempFile::new().unwrap();
    let log_path = log.path().to_str().unwrap();
    // strace itself is not preloaded (it would hand the traced program its list): it sets
    // LD_PRELOAD for the program it starts.
    let preload = format!("LD_PRELOAD={}", common::preload_library().display());
    let socket_dir = btfuse_ring_client::discovery::socket_dir(0, None);
    let listing = format!("\"{}\"", socket_dir.display());
    let opens_of = |program: &[&str], script: &str| {
        let tracer = [
            "strace",
            "-f",
            "-qq",
            "-e",
            "trace=openat",
            "-o",
            log_path,
            "-E",
        ];
        let mut interpreter = tracer.to_vec();
        interpreter.push(preload.as_str());
        interpreter.extend(program);
        let text = run_with(
            &interpreter,
            script,
            &[
                ("D", dir.to_str().unwrap()),
                ("OUT", outside.path().to_str().unwrap()),
            ],
            false,
        );
        let opens = fs::read_to_string(log.path()).unwrap();
        assert_eq!(
            opens.matches("/proc/self/mountinfo").count(),
            0,
            "the mount table was read:\n{opens}"
        );
        (text, opens.matches(listing.as_str()).count())
    };
    let (text, listings) = opens_of(&["cat"], outside.path().to_str().unwrap());
    assert_eq!(text, "status Some(0)\n--- stdout\noutside\n--- stderr\n");
    assert_eq!(listings, 1, "a program off btfuse lists the sockets once");
    let (text, listings) = opens_of(&["cat"], dir.join("f").to_str().unwrap());
    assert_eq!(text, "status Some(0)\n--- stdout\non btfuse\n--- stderr\n");
    assert_eq!(listings, 1, "a program on the mount lists the sockets once");
    let (text, listings) = opens_of(&["sh", "-c"], r#"cat "$D/f"; cat "$D/f"; cat "$OUT""#);
    assert_eq!(
        text,
        "status Some(0)\n--- stdout\non btfuse\non btfuse\noutside\n--- stderr\n"
    );
    assert_eq!(
        listings, 1,
        "the shell lists the sockets and hands the mounts to its children"
    );
}

#[test]
fn make_editors_and_a_fifo() {
    // The program built is run by the kernel through the mount, and the fifo is made and
    // opened through it: those steps reach the daemon through the kernel.
    same_as_tmpfs_with(
        BASH,
        "build",
        Route::RingAndKernel,
        BUILD_AND_EDIT,
        &[("RUN_PROGRAMS", "1"), ("KERNEL_OBJECTS", "1")],
    );
}

#[test]
fn archives_copies_and_a_venv() {
    // The fifo goes through the kernel, and so does the venv's python once executed.
    same_as_tmpfs_with(
        BASH,
        "archives",
        Route::RingAndKernel,
        ARCHIVES_AND_COPIES,
        &[("KERNEL_OBJECTS", "1")],
    );
}

#[test]
fn the_calls_glibc_makes_inside_itself() {
    let build = tempfile::tempdir().expect("a build directory");
    let binary = common::compile_source_with(
        build.path(),
        "calls",
        CALLS_C,
        &["-O2", "-D_FORTIFY_SOURCE=2", "-w"],
    );
    // The program's `chdir` moves the kernel's working directory into the mount.
    same_as_tmpfs(
        &[binary.to_str().expect("UTF-8")],
        "calls",
        Route::RingAndKernel,
        "",
    );
}

#[test]
fn fsx_through_the_mount_with_the_preload() {
    let mount = Mount::start(&[]);
    let work = tempfile::tempdir().expect("a work directory");
    let config = work.path().join("fsx.toml");
    fs::write(&config, FSX_CONFIG).expect("write fsx.toml");
    let mut command = Command::new(fsx());
    command
        .arg("-f")
        .arg(&config)
        .args(["-N", &fsx_operations(), "-S", "1", "-P"])
        .arg(work.path())
        .arg(mount.path().join("fsx-file"))
        .env_remove("LD_PRELOAD");
    let output = preloaded(&mut command).output().expect("run fsx");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success() && text.contains("All operations completed A-OK!"),
        "fsx through the mount with the preload: {text}"
    );
}

/// `cargo build` under the preload: cargo and rustc use jemalloc, whose initialisation calls
/// `readlink` before the library may do anything of its own; cargo takes `flock` on its lock
/// files, and rustc maps the files it wrote in the target directory.
#[test]
fn cargo_builds_a_crate_with_its_target_inside() {
    same_as_tmpfs_with(BASH, "cargo", Route::RingAndKernel, CARGO_BUILD, &[]);
}

/// git through its whole life on the mount under the preload: init, add of 200 files, commit,
/// branch, merge, `gc` (which maps packs and takes lock files), `fsck`, and a clone inside the
/// filesystem. Dates and identity are fixed so that the transcripts can match; the
/// repositories are removed at the end (their index files hold inode numbers and times).
#[test]
fn git_init_commit_merge_gc_and_clone() {
    let script = r#"set -e
cd "$D"
export GIT_AUTHOR_NAME=t GIT_AUTHOR_EMAIL=t@example GIT_COMMITTER_NAME=t
export GIT_COMMITTER_EMAIL=t@example HOME="$D" GIT_CONFIG_NOSYSTEM=1
export GIT_AUTHOR_DATE=2020-01-01T00:00:00Z GIT_COMMITTER_DATE=2020-01-01T00:00:00Z
git init -q -b main repo
cd repo
for i in $(seq 1 200); do echo "file $i" > f$i.txt; done
git add .
git commit -q -m first
git checkout -q -b topic
echo change >> f1.txt; git commit -q -am topic
git checkout -q main
echo other >> f2.txt; git commit -q -am main
git merge -q --no-edit topic
git gc -q
git fsck --no-progress
git log --format='%H %s'
git cat-file -p HEAD:f1.txt
cd ..
git clone -q repo clone
cd clone && git log --format=%s && ls | wc -l && git status --short | wc -l
cd .. && rm -rf repo clone .gitconfig"#;
    same_as_tmpfs(BASH, "git", Route::RingAndKernel, script);
}

/// sqlite3 on the mount under the preload: 10,000 rows in one transaction with the rollback
/// journal and with `journal_mode=wal` (whose `-shm` index is a shared mapping), an
/// `integrity_check` of each, and two processes inserting at once (each waits on the other's
/// locks). The databases are removed at the end (their headers count changes).
#[test]
fn sqlite3_rollback_journal_wal_and_two_writers() {
    let script = r#"set -e
cd "$D"
{ echo "BEGIN;"; echo "CREATE TABLE t(a INTEGER PRIMARY KEY, b TEXT);"
  for i in $(seq 1 10000); do echo "INSERT INTO t(b) VALUES('row $i');"; done
  echo "COMMIT;"; } > ins.sql
sqlite3 rb.db < ins.sql
sqlite3 rb.db "PRAGMA integrity_check; SELECT count(*), sum(a) FROM t;"
sqlite3 wal.db "PRAGMA journal_mode=wal;"
sqlite3 wal.db < ins.sql
sqlite3 wal.db "PRAGMA integrity_check; SELECT count(*), max(b) FROM t;"
sqlite3 two.db "CREATE TABLE c(n INTEGER);"
w() { for i in $(seq 1 50); do sqlite3 -cmd ".timeout 20000" two.db "INSERT INTO c VALUES($1);"; done; }
w 1 & w 2 & wait
sqlite3 two.db "SELECT count(*), sum(n) FROM c; PRAGMA integrity_check;"
rm -f rb.db wal.db wal.db-wal wal.db-shm two.db ins.sql"#;
    same_as_tmpfs(BASH, "sqlite3", Route::RingAndKernel, script);
}

/// Python's `mmap` (shared and private, written, flushed, read back with `read`),
/// `fcntl.flock` and `fcntl.lockf` on the mount under the preload.
#[test]
fn python_mmap_flock_and_lockf() {
    let script = r#"
import fcntl, mmap, os
d = os.environ["D"]
p = os.path.join(d, "m")
with open(p, "wb") as f:
    f.write(b"0123456789" * 500)
with open(p, "r+b") as f:
    m = mmap.mmap(f.fileno(), 0)
    m[0:5] = b"HELLO"
    m.flush()
    print(m[:12], len(m))
    m.close()
    f.seek(0)
    print(f.read(12))
    pm = mmap.mmap(f.fileno(), 0, flags=mmap.MAP_PRIVATE)
    pm[0:5] = b"xxxxx"
    print(pm[:7])
    pm.close()
    f.seek(0)
    print(f.read(7))
    fcntl.flock(f, fcntl.LOCK_EX)
    with open(p, "rb") as g:
        try:
            fcntl.flock(g, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError as e:
            print("flock busy", e.errno)
    fcntl.flock(f, fcntl.LOCK_UN)
    fcntl.lockf(f, fcntl.LOCK_EX, 10, 0)
    pid = os.fork()
    if pid == 0:
        with open(p, "r+b") as g:
            try:
                fcntl.lockf(g, fcntl.LOCK_EX | fcntl.LOCK_NB, 10, 0)
                print("child locked")
            except OSError as e:
                print("child lockf busy", e.errno)
            fcntl.lockf(g, fcntl.LOCK_EX | fcntl.LOCK_NB, 10, 10)
            print("child locked 10..20")
        os._exit(0)
    os.waitpid(pid, 0)
os.remove(p)
"#;
    same_as_tmpfs(PYTHON, "python_locks", Route::RingAndKernel, script);
}

/// How many operations `fsx_with_memory_maps_under_the_preload` runs
/// (`BTFUSE_FSX_MAPPED_OPS`): mapped operations cost a kernel round trip each, so fewer than
/// the unmapped run's, about 15 s on two busy cores. fsx 0.3.2 never unmaps what a mapped
/// read mapped, on any filesystem: past roughly 60,000 operations its process reaches
/// `vm.max_map_count` (65,530 by default) and its next `mmap` fails with `ENOMEM`, on tmpfs
/// too, and each leaked mapping makes every later truncate slower, so the run's time grows
/// with the square of its length. A longer run needs the limit raised first
/// (`sysctl vm.max_map_count=2000000`), or an fsx whose mapped read unmaps what it mapped (one
/// added line, `munmap(p, map_size).unwrap();` at the end of `domapread`) first on `PATH`.
fn fsx_mapped_operations() -> String {
    std::env::var("BTFUSE_FSX_MAPPED_OPS").unwrap_or_else(|_| "10000".to_owned())
}

/// `fsx` (installed by `scripts/install-test-deps`) on the mount under the preload, with its
/// memory-mapped reads and writes on (its default), reopening and fsync added: it checks every
/// read, mapped or not, against its own copy of the file and prints `A-OK` only if all match.
#[test]
fn fsx_with_memory_maps_under_the_preload() {
    let mount = Mount::start(&[]);
    let dir = fresh_dir(mount.path(), "fsx");
    let artifacts = tempfile::tempdir().unwrap();
    let config = artifacts.path().join("fsx.toml");
    fs::write(&config, "[weights]\nclose_open = 1.0\nfsync = 1.0\n").unwrap();
    let mut command = Command::new(fsx());
    command
        .arg("-f")
        .arg(&config)
        .args(["-N", &fsx_mapped_operations(), "-S", "20"])
        .arg("-P")
        .arg(artifacts.path())
        .arg(dir.join("exercised"))
        .env_remove("LD_PRELOAD");
    preloaded(&mut command);
    let output = command
        .output()
        .expect("fsx (scripts/install-test-deps installs it)");
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && text.contains("All operations completed A-OK!"),
        "fsx ended with {:?}:\n{text}",
        output.status
    );
}
