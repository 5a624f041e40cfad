//! Symbolic links and `..` that lead out of the btfuse tree, under `libbtfuse_preload.so` with
//! the ring alone: the walk goes on in the kernel's namespace, as on a kernel filesystem, and
//! comes back to the ring when it leads under the prefix again; a loop through the kernel ends
//! in `ELOOP` after 40 links. Each script runs twice: under the preload with the tree at `$P`,
//! the `fs` of a kernel directory `$B` where the kernel has nothing at `fs`, and with `$P` a
//! real directory in a tmpfs `$B`; the transcripts must match.

mod common;

use std::path::Path;

use common::{PYTHON, SH, Server, run_with};

/// Runs `script` with `interpreter` under the preload and on tmpfs, as the file's doc says.
fn same_as_tmpfs_around(interpreter: &[&str], script: &str) {
    let server = Server::start();
    let base = tempfile::tempdir_in("/dev/shm").unwrap();
    let prefix = base.path().join("fs");
    let (b, p) = (base.path().to_str().unwrap(), prefix.to_str().unwrap());
    let fast = run_with(
        interpreter,
        script,
        &[("B", b), ("P", p)],
        Some((&server, p)),
    );
    assert!(
        !prefix.exists(),
        "nothing may exist at the prefix for the kernel"
    );
    let tmp = tempfile::tempdir_in("/dev/shm").unwrap();
    let dir = tmp.path().join("fs");
    std::fs::create_dir(&dir).unwrap();
    let (b, p) = (tmp.path().to_str().unwrap(), dir.to_str().unwrap());
    let kernel = run_with(interpreter, script, &[("B", b), ("P", p)], None);
    assert_eq!(fast, kernel, "script:\n{script}");
    assert!(Path::new(b).join("fs").is_dir());
}

/// Files on both sides: `$B/outside.txt`, `$B/od/f`, and `$P/d/f` in the tree, with links out
/// of it (`host`, `up`, `updir`) and back into it (`abs_back`, `rel_back`).
const SETUP: &str = r#"
    echo outside > $B/outside.txt; mkdir $B/od; echo deep > $B/od/f
    mkdir $P/d; echo inside > $P/d/f
    ln -s /etc/hostname $P/host
    ln -s ../outside.txt $P/up
    ln -s ../od $P/updir
    ln -s $P/d $P/abs_back
    ln -s ../fs/d $P/rel_back
"#;

#[test]
fn links_and_dotdot_out_of_the_tree_reach_the_kernels_files() {
    let script = format!(
        "{SETUP}{}",
        r#"
        cmp $P/host /etc/hostname && echo host is /etc/hostname
        cat $P/up $P/updir/f $P/d/../up
        stat -L -c '%s %F' $P/host $P/up $P/updir
        stat -c '%s %F' $P/host $P/updir
        ls -l $P/host $P/up | awk '{print $1, $5, $9, $10, $11}'
        ls -l $P/updir/ | awk '{print $1, $5, $9}'
        ls $P/updir; ls -d $P/updir/..; ls $P/updir/../od
        readlink $P/up; readlink -f $P/up $P/updir/f
        test -e $P/up && echo up exists; test -d $P/updir/ && echo updir is a directory
        test -r $P/host && echo host is readable
        cat $P/host/x; echo "through a file: $?"
        cat $P/updir/missing; echo "missing: $?"
        cd $P; cat ../outside.txt; ls ../od; cat d/../../outside.txt
        cd d; cat ../../od/f ../up; cd ../..; cat outside.txt
        "#
    );
    same_as_tmpfs_around(SH, &script);
}

#[test]
fn calls_through_a_link_out_of_the_tree_act_on_the_kernels_files() {
    let script = format!(
        "{SETUP}{}",
        r#"
        echo made > $P/updir/made; cat $B/od/made
        echo more >> $P/up; cat $B/outside.txt
        mkdir $P/updir/sub; mv $P/updir/made $P/updir/sub/moved; ls $B/od $B/od/sub
        ln $P/updir/sub/moved $P/updir/hard; stat -c %h $B/od/hard
        ln -s target $P/updir/soft; readlink $B/od/soft $P/updir/soft
        rm $P/updir/hard $P/updir/soft; rmdir $P/updir/sub 2>&1; ls $B/od
        chmod 600 $P/up; stat -c %a $B/outside.txt
        touch -d @1000000000 $P/updir/f; stat -c %Y $B/od/f
        truncate -s 3 $P/up; cat $B/outside.txt; echo
        mv $P/d/f $P/updir/from_tree; cat $B/od/from_tree; ls $P/d
        cp $P/updir/from_tree $P/d/back; cat $P/d/back
        rm -r $P/updir/sub; ls $B/od
        "#
    );
    same_as_tmpfs_around(SH, &script);
}

#[test]
fn links_that_lead_back_into_the_tree_are_served_again() {
    let script = format!(
        "{SETUP}{}",
        r#"
        cat $P/abs_back/f $P/rel_back/f
        echo via-abs > $P/abs_back/a; echo via-rel > $P/rel_back/r; cat $P/d/a $P/d/r
        ls $P/abs_back $P/rel_back/
        stat -c '%F' $P/abs_back $P/rel_back/
        mkdir $P/rel_back/sub; mv $P/abs_back/a $P/rel_back/sub/a; ls -R $P/d
        cd $P/rel_back; cat f sub/a; cd ../../fs/abs_back/sub; cat a
        "#
    );
    same_as_tmpfs_around(SH, &script);
}

#[test]
fn loops_through_the_kernel_end_in_eloop_after_40_links() {
    let script = r#"
        ln -s ../fs/hop $P/hop; cat $P/hop; echo "loop through the kernel: $?"
        ln -s loop $P/loop; cat $P/loop; echo "loop inside: $?"
        i=0; while [ $i -lt 40 ]; do ln -s ../fs/c$((i + 1)) $P/c$i; i=$((i + 1)); done
        echo end > $P/c40
        cat $P/c0; echo "40 links: $?"
        ln -s ../fs/c0 $P/c; cat $P/c; echo "41 links: $?"
        stat -c %F $P/c 2>&1 | sed 's/.*: //'
        echo x > $P/c; echo "create through 41: $?"
        ls $P/c/ 2>&1 | sed 's/.*: //'
        "#;
    same_as_tmpfs_around(SH, script);
}

#[test]
fn python_at_calls_from_a_btfuse_directory_descriptor() {
    let script = r#"
import errno, os
P, B = os.environ["P"], os.environ["B"]
with open(B + "/outside.txt", "w") as f:
    f.write("outside\n")
os.mkdir(B + "/od")
os.mkdir(P + "/d")
os.symlink("/etc/hostname", P + "/host")
os.symlink("../od", P + "/updir")
d = os.open(P, os.O_RDONLY | os.O_DIRECTORY)
print(os.stat("host", dir_fd=d).st_size == os.stat("/etc/hostname").st_size)
print(os.stat("host", dir_fd=d, follow_symlinks=False).st_size)
print(open("../outside.txt", opener=lambda p, f: os.open(p, f, dir_fd=d)).read(), end="")
print(os.readlink("host", dir_fd=d), os.access("../outside.txt", os.R_OK, dir_fd=d))
os.mkdir("updir/x", dir_fd=d)
os.rename("updir/x", "updir/y", src_dir_fd=d, dst_dir_fd=d)
os.symlink("target", "updir/s", dir_fd=d)
print(sorted(os.listdir(B + "/od")), os.readlink(B + "/od/s"))
os.unlink("updir/s", dir_fd=d)
os.chmod("updir/y", 0o700, dir_fd=d)
os.utime("updir/y", (1, 2), dir_fd=d)
st = os.stat(B + "/od/y")
print(sorted(os.listdir(B + "/od")), oct(st.st_mode & 0o777), st.st_mtime)
os.truncate(P + "/d/../../outside.txt", 3)
print(open(B + "/outside.txt").read())
try:
    os.setxattr(P + "/updir/y", "user.k", b"v")
    print(os.getxattr(P + "/updir/y", "user.k"), os.listxattr(P + "/updir/y"))
except OSError as e:
    print("xattr", errno.errorcode[e.errno])
print(os.statvfs(P + "/updir").f_bsize == os.statvfs(B).f_bsize)
os.chdir(P + "/d")
print(os.getcwd(), open("../../outside.txt").read(), os.path.realpath("../updir"))
os.chdir("../..")
print(os.getcwd(), os.path.exists("outside.txt"))
os.chdir(P)
os.chdir("updir")
print(os.getcwd(), sorted(os.listdir(".")))
"#;
    same_as_tmpfs_around(PYTHON, script);
}
