//! The calls glibc serves through its own internal calls, which an interposer cannot see
//! unless it defines them itself: `realpath`, directory positions and `getdents64`,
//! `closefrom`, the `exec` and spawn families, `freopen`. As in `programs.rs`, each script runs
//! under the preload at `/btfuse/...` (nothing there for the kernel) and on tmpfs, and the
//! transcripts must match.

mod common;

use common::{PYTHON, SH, compile_c, same_as_tmpfs};

/// Runs a C program (built with `flags`) under the preload and on tmpfs.
fn c_program_same_as_tmpfs(name: &str, source: &str, flags: &[&str]) {
    let (_build, binary) = compile_c(source, flags);
    same_as_tmpfs(&[binary.to_str().unwrap()], name, "");
}

const REALPATH_PROGRAM: &str = r#"
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
static char d[PATH_MAX];
static void show(const char *label, const char *rel) {
    char path[PATH_MAX * 2], buf[PATH_MAX];
    if (rel[0] == '/' || rel[0] == '.' && rel[1] == '/') snprintf(path, sizeof path, "%s", rel);
    else if (rel[0] == '@') snprintf(path, sizeof path, "%s", rel + 1);
    else snprintf(path, sizeof path, "%s/%s", d, rel);
    memset(buf, 0, sizeof buf);
    errno = 0;
    /* With _FORTIFY_SOURCE this is __realpath_chk. */
    char *r = realpath(path, buf);
    if (r) printf("%-10s %s\n", label, r);
    else printf("%-10s errno %d partial [%s]\n", label, errno, buf);
}
int main(void) {
    snprintf(d, sizeof d, "%s", getenv("D"));
    char p[PATH_MAX * 2], q[PATH_MAX * 2];
#define AT(x) (snprintf(p, sizeof p, "%s/%s", d, x), p)
    mkdir(AT("a"), 0755); mkdir(AT("a/b"), 0755);
    close(creat(AT("a/f"), 0644));
    symlink("a/b", AT("rel"));
    snprintf(q, sizeof q, "%s/a", d); symlink(q, AT("abs"));
    symlink("loop", AT("loop"));
    symlink("../f", AT("a/b/up"));
    symlink("missing", AT("dangling"));
    symlink("/usr/bin/../lib", AT("out"));
    show("dir", "");
    show("slash", "/");
    show("dot", ".");
    show("dotdot", "a/../a/f");
    show("rel", "rel");
    show("rel..", "rel/..");
    show("chain", "abs/b/up");
    show("loop", "loop");
    show("dangling", "dangling");
    show("missing", "missing/x");
    show("notdir", "a/f/x");
    show("fslash", "a/f/");
    show("fdot", "a/f/.");
    show("fdotdot", "a/f/..");
    show("slashes", "a//b///");
    show("out", "out");
    show("empty", "@");
    char *m = canonicalize_file_name(AT("rel"));
    printf("canon      %s\n", m ? m : "(null)");
    free(m);
    m = realpath(AT("abs/b/up"), NULL);
    printf("malloc     %s\n", m ? m : "(null)");
    free(m);
    errno = 0;
    m = canonicalize_file_name(AT("nope"));
    printf("canon-miss %s %d\n", m ? m : "(null)", errno);
    /* A kernel symbolic link leading into the directory. */
    char k[] = "/tmp/btfuse-rp-XXXXXX";
    if (!mkdtemp(k)) return 1;
    snprintf(q, sizeof q, "%s/in", k);
    symlink(AT("a"), q);
    snprintf(q, sizeof q, "@%s/in/b/up", k);
    show("kernel-in", q);
    snprintf(q, sizeof q, "%s/in", k); unlink(q); rmdir(k);
    /* Relative names from a working directory inside. */
    if (chdir(AT("a")) != 0) return 2;
    show("cwd-dot", "./");
    show("cwd-rel", "./b/up");
    show("cwd-up", "./../rel");
    show("cwd-bare", "@b");
    show("cwd-miss", "@nothing/here");
    return 0;
}
"#;

#[test]
fn realpath_in_c_with_and_without_fortify() {
    c_program_same_as_tmpfs("realpath", REALPATH_PROGRAM, &["-O0"]);
    c_program_same_as_tmpfs(
        "realpath_chk",
        REALPATH_PROGRAM,
        &["-O2", "-D_FORTIFY_SOURCE=2"],
    );
}

#[test]
fn realpath_from_coreutils_and_python() {
    same_as_tmpfs(
        SH,
        "realpath_tools",
        r#"
        mkdir -p $D/a/b; touch $D/a/f; ln -s a/b $D/rel; ln -s $D/a $D/abs; ln -s ../f $D/a/b/up
        ln -s nowhere $D/dangling
        realpath $D/rel $D/abs/b/up $D/rel/..; readlink -f $D/abs/b/up
        realpath -e $D/dangling; echo "realpath -e dangling: $?"
        realpath -m $D/dangling/x; readlink -f $D/missing/x; echo "readlink -f missing: $?"
        realpath $D/a/f/x; echo "notdir: $?"
        cd $D/a && realpath ../rel b/up . && readlink -f b/up
        "#,
    );
    same_as_tmpfs(
        PYTHON,
        "realpath_python",
        r#"
import os, pathlib
d = os.environ["D"]
os.makedirs(f"{d}/a/b"); open(f"{d}/a/f", "w").close()
os.symlink("a/b", f"{d}/rel"); os.symlink(f"{d}/a", f"{d}/abs"); os.symlink("../f", f"{d}/a/b/up")
os.symlink("nowhere", f"{d}/dangling"); os.symlink("loop", f"{d}/loop")
for p in ["rel", "abs/b/up", "rel/..", "dangling", "missing/x", "a/../rel"]:
    print(p, os.path.realpath(f"{d}/{p}"))
for p in ["abs/b/up", "dangling", "loop"]:
    try:
        print(p, pathlib.Path(f"{d}/{p}").resolve(strict=True))
    except OSError as e:
        print(p, type(e).__name__, e.errno)
os.chdir(f"{d}/a")
print(os.path.realpath("b/up"), os.path.realpath(".."), pathlib.Path("b").resolve())
"#,
    );
}
