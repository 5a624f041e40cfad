//! One daemon, one truth: `btfuse-fuse` serves the ring beside the mount, and whatever a ring
//! client changes is seen through the mount at once, despite the kernel's caches (pages kept
//! across opens, names and attributes for a second), and the other way round.

mod common;

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use btfuse_core::ring::{self, Request, Response};
use btfuse_ring_client::{Client, OpenOptions};
use common::{Mount, connect_ring, preloaded, ring_operations};

/// A mount with its ring socket in a private temporary directory, and a ring client.
fn mount_with_ring() -> (Mount, Client, tempfile::TempDir) {
    let sockets = tempfile::tempdir().unwrap();
    let socket = sockets.path().join("ring.sock");
    let mount = Mount::start(&["--shm-socket", socket.to_str().unwrap()]);
    let client = connect_ring(&socket);
    (mount, client, sockets)
}

fn read_through(path: &Path) -> Vec<u8> {
    fs::read(path).unwrap()
}

#[test]
fn ring_changes_show_through_the_mount_at_once() {
    let (mount, ring, _sockets) = mount_with_ring();
    let m = mount.path();

    // Data: the kernel keeps this file's pages across opens; a ring write must drop them.
    fs::write(m.join("data"), b"0123456789").unwrap();
    assert_eq!(read_through(&m.join("data")), b"0123456789");
    let f = OpenOptions::new().write(true).open(&ring, "/data").unwrap();
    f.write_at(b"AB", 3).unwrap();
    assert_eq!(
        read_through(&m.join("data")),
        b"012AB56789",
        "pages after a ring pwrite"
    );
    // An append through the ring lands at the end, and the mount sees the new size.
    let mut a = OpenOptions::new()
        .append(true)
        .open(&ring, "/data")
        .unwrap();
    a.write_all(b"++").unwrap();
    assert_eq!(
        read_through(&m.join("data")),
        b"012AB56789++",
        "size after a ring append"
    );
    drop((f, a));

    // Truncation and extension.
    assert_eq!(fs::metadata(m.join("data")).unwrap().len(), 12);
    ring.truncate("/data", 4).unwrap();
    assert_eq!(fs::metadata(m.join("data")).unwrap().len(), 4);
    assert_eq!(read_through(&m.join("data")), b"012A");
    ring.create("/data").unwrap(); // O_TRUNC through the ring
    assert_eq!(read_through(&m.join("data")), b"");

    // Attributes: cached for a second by the kernel.
    fs::write(m.join("attrs"), b"x").unwrap();
    assert_eq!(fs::metadata(m.join("attrs")).unwrap().mode() & 0o777, 0o644);
    ring.set_permissions("/attrs", 0o600).unwrap();
    assert_eq!(fs::metadata(m.join("attrs")).unwrap().mode() & 0o777, 0o600);
    ring.chown("/attrs", Some(1234), Some(4321)).unwrap();
    let meta = fs::metadata(m.join("attrs")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (1234, 4321));

    // Names: a cached entry must go when the ring renames or removes it.
    fs::write(m.join("old"), b"moved").unwrap();
    assert!(m.join("old").exists());
    ring.rename("/old", "/new").unwrap();
    assert!(!m.join("old").exists(), "entry after a ring rename");
    assert_eq!(read_through(&m.join("new")), b"moved");
    ring.remove_file("/new").unwrap();
    assert!(!m.join("new").exists(), "entry after a ring unlink");

    // A name the kernel just failed to find, then created through the ring.
    assert!(!m.join("later").exists());
    ring.write("/later", b"here").unwrap();
    assert_eq!(read_through(&m.join("later")), b"here");

    // Directories: listings and removals.
    fs::create_dir(m.join("d")).unwrap();
    assert_eq!(fs::read_dir(m.join("d")).unwrap().count(), 0);
    ring.create_dir("/d/sub").unwrap();
    ring.symlink("sub", "/d/link").unwrap();
    let mut names: Vec<_> = fs::read_dir(m.join("d"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["link", "sub"]);
    assert_eq!(
        fs::read_link(m.join("d/link")).unwrap(),
        PathBuf::from("sub")
    );
    assert!(m.join("d/sub").is_dir());
    ring.remove_dir("/d/sub").unwrap();
    assert!(!m.join("d/sub").exists(), "entry after a ring rmdir");

    // Hard links change the link count of a cached inode.
    fs::write(m.join("one"), b"1").unwrap();
    assert_eq!(fs::metadata(m.join("one")).unwrap().nlink(), 1);
    ring.hard_link("/one", "/two").unwrap();
    assert_eq!(fs::metadata(m.join("one")).unwrap().nlink(), 2);
    assert_eq!(
        fs::metadata(m.join("two")).unwrap().ino(),
        fs::metadata(m.join("one")).unwrap().ino()
    );
}

#[test]
fn mount_changes_show_through_the_ring_at_once() {
    let (mount, ring, _sockets) = mount_with_ring();
    let m = mount.path();
    let mut f = fs::OpenOptions::new()
        .create(true)
        .read(true)
        .write(true)
        .truncate(true)
        .open(m.join("shared"))
        .unwrap();
    f.write_all(b"hello").unwrap();
    assert_eq!(ring.read("/shared").unwrap(), b"hello");
    f.seek(SeekFrom::Start(0)).unwrap();
    f.write_all(b"J").unwrap();
    assert_eq!(ring.read("/shared").unwrap(), b"Jello");
    fs::set_permissions(m.join("shared"), fs::Permissions::from_mode(0o640)).unwrap();
    assert_eq!(ring.metadata("/shared").unwrap().mode() & 0o777, 0o640);
    fs::rename(m.join("shared"), m.join("renamed")).unwrap();
    assert!(ring.metadata("/shared").is_err());
    // Both sides at once: the ring appends while the mount reads what is there.
    let mut appender = OpenOptions::new()
        .append(true)
        .open(&ring, "/renamed")
        .unwrap();
    for i in 0..100u8 {
        appender.write_all(&[b'a' + i % 26]).unwrap();
        let mut seen = Vec::new();
        fs::File::open(m.join("renamed"))
            .unwrap()
            .read_to_end(&mut seen)
            .unwrap();
        assert_eq!(seen.len(), 5 + usize::from(i) + 1, "round {i}");
    }
}

/// `StatStamped` of `path` through the ring: whether the walk succeeded, and the stamps.
fn stat_stamped(ring: &Client, path: &str) -> (bool, Vec<(u32, u64)>) {
    let target = ring::Target::Path {
        at: None,
        path: path.as_bytes(),
        follow: true,
    };
    ring.request(&Request::StatStamped { target }, |r| match r {
        Response::Stamped { outcome, stamps } => Ok((
            outcome.is_ok(),
            stamps.iter().map(|s| (s.slot, s.version)).collect(),
        )),
        other => panic!("expected Stamped, got {other:?}"),
    })
    .unwrap()
}

#[test]
fn a_stamped_stat_goes_stale_when_the_mount_changes_what_it_was_made_from() {
    let (mount, ring, _sockets) = mount_with_ring();
    let m = mount.path();
    fs::create_dir(m.join("d")).unwrap();
    fs::write(m.join("d/f"), b"first").unwrap();
    let current = |stamps: &[(u32, u64)]| {
        stamps
            .iter()
            .all(|&(slot, v)| ring.attributes_are_current(slot, v))
    };
    type Change = fn(&Path);
    let changes: [(&str, Change, &str); 5] = [
        (
            "/d/f",
            |m| fs::set_permissions(m.join("d/f"), fs::Permissions::from_mode(0o600)).unwrap(),
            "a chmod through the mount",
        ),
        (
            "/d/f",
            |m| fs::set_permissions(m.join("d"), fs::Permissions::from_mode(0o700)).unwrap(),
            "a directory's chmod through the mount",
        ),
        (
            "/d/f",
            |m| fs::write(m.join("d/f"), b"second, longer").unwrap(),
            "a write through the mount",
        ),
        (
            "/d/g",
            |m| fs::write(m.join("d/g"), b"").unwrap(),
            "the missing name made through the mount",
        ),
        (
            "/d/f",
            |m| fs::rename(m.join("d/f"), m.join("d/h")).unwrap(),
            "a rename through the mount",
        ),
    ];
    for (path, change, what) in changes {
        let (_, stamps) = stat_stamped(&ring, path);
        assert!(current(&stamps), "{what}: fresh");
        change(m);
        assert!(!current(&stamps), "{what}: still current");
    }
    let (found, _) = stat_stamped(&ring, "/d/h");
    assert!(found);
}

/// Opens `path` through the ring for reading with its first bytes sent along: the
/// description, the inode's content table slot, the content version and the bytes.
fn open_prefetched(ring: &Client, path: &str) -> (u32, u32, u64, Vec<u8>) {
    let request = Request::Open {
        at: None,
        path: path.as_bytes(),
        flags: ring::OpenOptions {
            read: true,
            ..ring::OpenOptions::default()
        },
        mode: 0,
        prefetch: 64,
        known_ino: 0,
        known_version: 0,
    };
    ring.request(&request, |r| match r {
        Response::Prefetched {
            fd,
            slot,
            version,
            data,
            ..
        } => Ok((fd, slot, version, data.to_vec())),
        other => panic!("expected Prefetched, got {other:?}"),
    })
    .unwrap()
}

#[test]
fn content_sent_with_an_open_goes_stale_when_the_mount_changes_it() {
    let (mount, ring, _sockets) = mount_with_ring();
    let m = mount.path();
    fs::write(m.join("kept"), b"first").unwrap();
    let (fd, slot, version, data) = open_prefetched(&ring, "/kept");
    assert_eq!(data, b"first");
    assert!(ring.content_is_current(slot, version));
    // Reading through the mount changes nothing.
    assert_eq!(read_through(&m.join("kept")), b"first");
    assert!(ring.content_is_current(slot, version));
    // A write through the kernel does, before it returns.
    let mut f = fs::OpenOptions::new()
        .write(true)
        .open(m.join("kept"))
        .unwrap();
    f.write_all(b"F").unwrap();
    assert!(
        !ring.content_is_current(slot, version),
        "a write through the mount"
    );
    let (again, _, version, data) = open_prefetched(&ring, "/kept");
    assert_eq!(data, b"First");
    // So does a truncation.
    f.set_len(2).unwrap();
    assert!(
        !ring.content_is_current(slot, version),
        "a truncation through the mount"
    );
    for desc in [fd, again] {
        ring.post(&Request::Close { fd: desc }).unwrap();
    }
}

#[test]
fn the_default_socket_follows_the_documented_rule() {
    let mut mount = Mount::start(&[]);
    let expected = mount.default_socket();
    assert!(
        expected.starts_with("/run/btfuse"),
        "{}",
        expected.display()
    );
    let meta = fs::symlink_metadata(&expected).unwrap_or_else(|e| {
        panic!(
            "no socket at {}: {e}\n{}",
            expected.display(),
            mount.output()
        )
    });
    assert_eq!(
        meta.mode() & 0o777,
        0o600,
        "only the mounting user may connect"
    );
    let ring = connect_ring(&expected);
    ring.write("/via-ring", b"1").unwrap();
    assert_eq!(fs::read(mount.path().join("via-ring")).unwrap(), b"1");
    assert!(
        mount.output().contains(&expected.display().to_string()),
        "the daemon says where"
    );
    let stopped = mount.stop();
    assert!(
        stopped.status.is_some_and(|s| s.success()) && stopped.unmounted,
        "{stopped:?}\n{}",
        mount.output()
    );
    assert!(!expected.exists(), "socket removed at shutdown");
    assert_eq!(
        ring.read("/via-ring").unwrap_err().raw_os_error(),
        Some(libc::ENOTCONN)
    );

    // --no-shm: no socket at all.
    let mut quiet = Mount::start(&["--no-shm"]);
    let canonical = fs::canonicalize(quiet.path()).unwrap();
    assert!(!btfuse_ring_client::discovery::socket_for_mount(&canonical, 0, None).exists());
    let stopped = quiet.stop();
    assert!(stopped.status.is_some_and(|s| s.success()) && stopped.unmounted);
}

#[test]
fn the_preload_finds_the_mount_by_itself() {
    let mount = Mount::start(&["--metrics", "127.0.0.1:0"]);
    let m = mount.path().to_str().unwrap().to_owned();
    let before = ring_operations(&mount.metrics());
    let out = preloaded(&mut std::process::Command::new("sh"))
        .arg("-c")
        .arg("echo hi > \"$M/f\"; sort < \"$M/f\" > \"$M/g\"; cat \"$M/g\"; cd \"$M\" && ls")
        .env("M", &m)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\nf\ng\n");
    let after = ring_operations(&mount.metrics());
    assert!(
        after >= before + 10,
        "the program's calls went over the ring ({before} then {after} ring operations)"
    );
    // And the mount agrees, at once.
    assert_eq!(fs::read(mount.path().join("g")).unwrap(), b"hi\n");
}
