//! The ring's `Handoff` on a real mount: a ring description handed to the kernel opens the
//! very inode through the mount (one only the ring has seen, one the kernel already knows, one
//! unlinked and still open), at the description's offset and with its access mode and
//! `O_APPEND`, and from then on the ring description and the kernel file share one offset.

mod common;

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;

use btfuse_ring_client::OpenOptions;
use common::{Mount, connect_ring};

fn status_flags(file: &fs::File) -> libc::c_int {
    // SAFETY: F_GETFL on a descriptor the test owns.
    unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETFL) }
}

#[test]
fn a_file_only_the_ring_made_is_handed_off_at_its_offset() {
    let mount = Mount::start(&[]);
    let client = connect_ring(&mount.default_socket());
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .open(&client, "/f")
        .unwrap();
    (&file).write_all(b"ab").unwrap();
    let mut kernel = file.handoff().unwrap();
    let meta = kernel.metadata().unwrap();
    assert_eq!(meta.ino(), client.metadata("/f").unwrap().attr.ino.0);
    assert_eq!(status_flags(&kernel) & libc::O_ACCMODE, libc::O_WRONLY);
    assert_eq!(kernel.stream_position().unwrap(), 2);
    kernel.write_all(b"cd").unwrap();
    (&file).write_all(b"ef").unwrap();
    kernel.write_all(b"gh").unwrap();
    assert_eq!(fs::read(mount.path().join("f")).unwrap(), b"abcdefgh");
    assert_eq!(client.read("/f").unwrap(), b"abcdefgh");
    // A seek on either side moves both.
    assert_eq!((&file).seek(SeekFrom::Start(1)).unwrap(), 1);
    assert_eq!(kernel.stream_position().unwrap(), 1);
    kernel.write_all(b"B").unwrap();
    assert_eq!((&file).stream_position().unwrap(), 2);
    drop(kernel);
    // The description goes on through its kernel file after the handed descriptor closed.
    (&file).write_all(b"C").unwrap();
    drop(file);
    assert_eq!(fs::read(mount.path().join("f")).unwrap(), b"aBCdefgh");
}

#[test]
fn reading_continues_where_the_other_side_left_off() {
    let mount = Mount::start(&[]);
    fs::write(mount.path().join("r"), b"one\ntwo\nthree\n").unwrap();
    let client = connect_ring(&mount.default_socket());
    let file = client.open("/r").unwrap();
    let mut line = [0u8; 4];
    (&file).read_exact(&mut line).unwrap();
    let mut kernel = file.handoff().unwrap();
    assert_eq!(status_flags(&kernel) & libc::O_ACCMODE, libc::O_RDONLY);
    let mut two = [0u8; 4];
    kernel.read_exact(&mut two).unwrap();
    assert_eq!(&two, b"two\n");
    let mut rest = String::new();
    (&file).read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "three\n");
    assert!(
        kernel.write_all(b"x").is_err(),
        "a read-only description stays read-only"
    );
}

#[test]
fn an_append_description_appends_on_both_sides() {
    let mount = Mount::start(&[]);
    fs::write(mount.path().join("a"), b"start\n").unwrap();
    let client = connect_ring(&mount.default_socket());
    let file = OpenOptions::new().append(true).open(&client, "/a").unwrap();
    let mut kernel = file.handoff().unwrap();
    assert_ne!(status_flags(&kernel) & libc::O_APPEND, 0);
    kernel.write_all(b"kernel\n").unwrap();
    (&file).write_all(b"ring\n").unwrap();
    fs::OpenOptions::new()
        .append(true)
        .open(mount.path().join("a"))
        .unwrap()
        .write_all(b"other\n")
        .unwrap();
    kernel.write_all(b"kernel again\n").unwrap();
    assert_eq!(
        fs::read_to_string(mount.path().join("a")).unwrap(),
        "start\nkernel\nring\nother\nkernel again\n"
    );
}

#[test]
fn an_unlinked_file_is_handed_off() {
    let mount = Mount::start(&[]);
    let client = connect_ring(&mount.default_socket());
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .open(&client, "/gone")
        .unwrap();
    (&file).write_all(b"kept ").unwrap();
    client.remove_file("/gone").unwrap();
    assert!(!mount.path().join("gone").exists());
    let mut kernel = file.handoff().unwrap();
    assert_eq!(kernel.metadata().unwrap().nlink(), 0);
    kernel.write_all(b"alive").unwrap();
    let mut all = String::new();
    kernel.seek(SeekFrom::Start(0)).unwrap();
    kernel.read_to_string(&mut all).unwrap();
    assert_eq!(all, "kept alive");
    assert_eq!((&file).stream_position().unwrap(), 10);
    // Directories stay with the ring.
    let root = client.open("/").unwrap();
    assert_eq!(
        root.handoff().unwrap_err().raw_os_error(),
        Some(libc::EISDIR)
    );
}

#[test]
fn a_daemon_that_handed_files_off_still_stops_and_unmounts() {
    let mut mount = Mount::start(&[]);
    let client = connect_ring(&mount.default_socket());
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .open(&client, "/h")
        .unwrap();
    let kernel = file.handoff().unwrap();
    drop(kernel);
    drop(file);
    drop(client);
    let stopped = mount.stop();
    assert!(stopped.unmounted, "{stopped:?}");
    assert!(stopped.status.is_some_and(|s| s.success()), "{stopped:?}");
}

/// Opens `path` through the ring with `flags`; the description number.
fn open_raw(
    client: &btfuse_ring_client::Client,
    path: &[u8],
    flags: btfuse_core::ring::OpenOptions,
) -> u32 {
    use btfuse_core::ring::{Request, Response};
    let request = Request::Open {
        at: None,
        path,
        flags,
        mode: 0,
        prefetch: 0,
        known_ino: 0,
        known_version: 0,
    };
    client
        .request(&request, |r| match r {
            Response::Opened { fd, .. } => Ok(fd),
            other => panic!("expected Opened, got {other:?}"),
        })
        .unwrap()
}

#[test]
fn a_description_that_grants_nothing_is_handed_off_as_one_that_grants_nothing() {
    let mount = Mount::start(&[]);
    fs::write(mount.path().join("secret"), b"not for reading").unwrap();
    let client = connect_ring(&mount.default_socket());
    let mode3 = btfuse_core::ring::OpenOptions {
        check_read_write: true,
        ..Default::default()
    };
    let o_path = btfuse_core::ring::OpenOptions {
        path_only: true,
        ..Default::default()
    };
    for flags in [mode3, o_path] {
        let fd = open_raw(&client, b"/secret", flags);
        let kernel = fs::File::from(client.handoff(fd).unwrap());
        // The kernel file is an O_PATH one: it names the inode and reads nothing.
        assert_ne!(status_flags(&kernel) & libc::O_PATH, 0, "{flags:?}");
        assert_eq!(
            kernel.metadata().unwrap().ino(),
            client.metadata("/secret").unwrap().attr.ino.0
        );
        let mut buf = [0u8; 8];
        let err = (&kernel).read(&mut buf).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EBADF), "{flags:?}");
        let err = (&kernel).write(b"x").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EBADF), "{flags:?}");
    }
    assert_eq!(
        fs::read(mount.path().join("secret")).unwrap(),
        b"not for reading"
    );
}
