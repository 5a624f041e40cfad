//! Builds a small filesystem in memory through the `Filesystem` trait and prints it as a tree
//! with modes, links, owners and sizes: the engine at work without any frontend.
//!
//! Run it with `cargo run -p btfuse-core --example tree`.

use btfuse_core::{Attr, Config, Credentials, Errno, Filesystem, Ino, MemFs, MemPool, OpenFlags};
use btfuse_daemon::SystemClock;

fn mode_string(attr: &Attr) -> String {
    let kind = match attr.kind {
        btfuse_core::FileType::Directory => 'd',
        btfuse_core::FileType::Symlink => 'l',
        btfuse_core::FileType::RegularFile => '-',
        btfuse_core::FileType::NamedPipe => 'p',
        btfuse_core::FileType::Socket => 's',
        btfuse_core::FileType::CharDevice => 'c',
        btfuse_core::FileType::BlockDevice => 'b',
    };
    let bits = "rwxrwxrwx";
    let perms: String = bits
        .chars()
        .enumerate()
        .map(|(i, c)| {
            if attr.perm & (0o400 >> i) != 0 {
                c
            } else {
                '-'
            }
        })
        .collect();
    let mut perms: Vec<char> = perms.chars().collect();
    for (bit, at, on_x, on_dash) in [
        (0o4000, 2, 's', 'S'),
        (0o2000, 5, 's', 'S'),
        (0o1000, 8, 't', 'T'),
    ] {
        if attr.perm & bit != 0 {
            perms[at] = if perms[at] == 'x' { on_x } else { on_dash };
        }
    }
    format!("{kind}{}", perms.into_iter().collect::<String>())
}

fn print_tree(
    fs: &impl Filesystem,
    cred: &Credentials,
    dir: Ino,
    depth: usize,
) -> Result<(), Errno> {
    let fh = fs.open(
        cred,
        dir,
        OpenFlags {
            directory: true,
            ..OpenFlags::READ
        },
    )?;
    let mut names = Vec::new();
    fs.readdir(cred, fh, 2, &mut |e| {
        names.push(e.name.to_vec());
        true
    })?;
    fs.release(fh)?;
    for name in names {
        let attr = fs.find(cred, dir, &name)?;
        let mut line = format!(
            "{} {:>2} {:>4}:{:<4} {:>8}  {}{}",
            mode_string(&attr),
            attr.nlink,
            attr.uid,
            attr.gid,
            attr.size,
            "    ".repeat(depth),
            String::from_utf8_lossy(&name)
        );
        if attr.kind == btfuse_core::FileType::Symlink {
            line += &format!(
                " -> {}",
                String::from_utf8_lossy(&fs.readlink(cred, attr.ino)?)
            );
        }
        println!("{line}");
        if attr.kind == btfuse_core::FileType::Directory {
            print_tree(fs, cred, attr.ino, depth + 1)?;
        }
    }
    Ok(())
}

fn main() -> Result<(), Errno> {
    let fs = MemFs::new(
        MemPool::new(64 << 20),
        Config {
            root_perm: 0o1777,
            ..Config::default()
        },
        SystemClock,
    );
    let root = Credentials::root();
    let alice = Credentials::user(1000, 1000);

    let home = fs.mkdir(&root, Ino::ROOT, b"home", 0o755)?;
    let alice_home = fs.mkdir(&root, home.ino, b"alice", 0o750)?;
    fs.setattr(
        &root,
        alice_home.ino,
        &btfuse_core::SetAttr {
            uid: Some(1000),
            gid: Some(1000),
            ..Default::default()
        },
        None,
    )?;
    let (notes, fh) = fs.create(
        &alice,
        alice_home.ino,
        b"notes.txt",
        0o644,
        OpenFlags::WRITE,
    )?;
    fs.write(&alice, fh, 0, b"btfuse keeps everything in memory.\n")?;
    fs.release(fh)?;
    fs.link(&alice, notes.ino, alice_home.ino, b"notes-link.txt")?;
    fs.symlink(&alice, alice_home.ino, b"latest", b"notes.txt")?;
    let (_, fh) = fs.create(&alice, Ino::ROOT, b"sparse.img", 0o600, OpenFlags::WRITE)?;
    fs.write(&alice, fh, 1 << 30, b"end")?;
    fs.release(fh)?;
    fs.mkdir(&root, Ino::ROOT, b"tmp", 0o1777)?;

    println!("/");
    print_tree(&fs, &root, Ino::ROOT, 0)?;
    let usage = fs.usage();
    println!(
        "\n{} inodes, {} of {} blocks of {} bytes in use (the 1 GiB sparse file holds one)",
        usage.inodes, usage.blocks_used, usage.blocks_total, usage.block_size
    );
    Ok(())
}
