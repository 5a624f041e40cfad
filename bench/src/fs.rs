//! The two ways the workloads reach a filesystem.
//!
//! [`Posix`] makes the C library's calls on kernel paths: on tmpfs and on the FUSE mount they
//! enter the kernel, and under `libbtfuse_preload.so` the same calls are caught in user space
//! and go over the ring. [`Ring`] is the ring's Rust client, with no C library in between.

use std::ffi::{CStr, CString, OsString};
use std::io::{self, Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

use crate::workload::Fs;

/// libc calls on paths in the kernel's namespace.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Posix;

/// A descriptor [`Posix`] opened.
#[derive(Debug)]
pub(crate) struct Fd(libc::c_int);

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path holds a NUL byte"))
}

/// `-1` → the errno as an error.
fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn check_len(ret: isize) -> io::Result<usize> {
    usize::try_from(ret).map_err(|_| io::Error::last_os_error())
}

impl Posix {
    fn open(path: &Path, flags: libc::c_int) -> io::Result<Fd> {
        let path = c_path(path)?;
        // SAFETY: `path` is a NUL-terminated string that outlives the call.
        check(unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC, 0o644) }).map(Fd)
    }

    fn path_call(path: &Path, call: impl FnOnce(&CStr) -> libc::c_int) -> io::Result<()> {
        check(call(&c_path(path)?)).map(drop)
    }
}

impl Fs for Posix {
    type File = Fd;

    fn create(&self, path: &Path) -> io::Result<Fd> {
        Posix::open(path, libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC)
    }

    fn open_read(&self, path: &Path) -> io::Result<Fd> {
        Posix::open(path, libc::O_RDONLY)
    }

    fn open_rw(&self, path: &Path) -> io::Result<Fd> {
        Posix::open(path, libc::O_RDWR)
    }

    fn read(&self, file: &mut Fd, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
        check_len(unsafe { libc::read(file.0, buf.as_mut_ptr().cast(), buf.len()) })
    }

    fn write(&self, file: &mut Fd, buf: &[u8]) -> io::Result<usize> {
        // SAFETY: `buf` is valid for reads of `buf.len()` bytes.
        check_len(unsafe { libc::write(file.0, buf.as_ptr().cast(), buf.len()) })
    }

    fn pread(&self, file: &mut Fd, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let offset = libc::off_t::try_from(offset).map_err(|_| io::Error::other("offset"))?;
        // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
        check_len(unsafe { libc::pread(file.0, buf.as_mut_ptr().cast(), buf.len(), offset) })
    }

    fn pwrite(&self, file: &mut Fd, buf: &[u8], offset: u64) -> io::Result<usize> {
        let offset = libc::off_t::try_from(offset).map_err(|_| io::Error::other("offset"))?;
        // SAFETY: `buf` is valid for reads of `buf.len()` bytes.
        check_len(unsafe { libc::pwrite(file.0, buf.as_ptr().cast(), buf.len(), offset) })
    }

    fn close(&self, file: Fd) -> io::Result<()> {
        // SAFETY: the descriptor is this value's own and is not used again.
        check(unsafe { libc::close(file.0) }).map(drop)
    }

    fn lstat_is_dir(&self, path: &Path) -> io::Result<bool> {
        let path = c_path(path)?;
        let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
        // SAFETY: `path` is NUL-terminated; `st` is valid for a `struct stat`.
        check(unsafe { libc::lstat(path.as_ptr(), st.as_mut_ptr()) })?;
        // SAFETY: lstat succeeded, so it filled `st`.
        let mode = unsafe { st.assume_init() }.st_mode;
        Ok(mode & libc::S_IFMT == libc::S_IFDIR)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<OsString>> {
        let path = c_path(dir)?;
        // SAFETY: `path` is NUL-terminated.
        let stream = unsafe { libc::opendir(path.as_ptr()) };
        if stream.is_null() {
            return Err(io::Error::last_os_error());
        }
        let mut names = Vec::new();
        let result = loop {
            // readdir reports errors only through errno, so clear it first.
            // SAFETY: errno is this thread's own.
            unsafe { *libc::__errno_location() = 0 };
            // SAFETY: `stream` is an open directory stream.
            let entry = unsafe { libc::readdir64(stream) };
            if entry.is_null() {
                let err = io::Error::last_os_error();
                break if err.raw_os_error() == Some(0) {
                    Ok(())
                } else {
                    Err(err)
                };
            }
            // SAFETY: a non-null entry points at a dirent with a NUL-terminated name, valid
            // until the next readdir on this stream.
            let name = unsafe { CStr::from_ptr((*entry).d_name.as_ptr()) }.to_bytes();
            if name != b"." && name != b".." {
                names.push(OsString::from_vec(name.to_vec()));
            }
        };
        // SAFETY: `stream` is open and not used again.
        unsafe { libc::closedir(stream) };
        result.map(|()| names)
    }

    fn mkdir(&self, path: &Path) -> io::Result<()> {
        // SAFETY: the path is NUL-terminated.
        Posix::path_call(path, |p| unsafe { libc::mkdir(p.as_ptr(), 0o755) })
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let to = c_path(to)?;
        // SAFETY: both paths are NUL-terminated.
        Posix::path_call(from, |p| unsafe { libc::rename(p.as_ptr(), to.as_ptr()) })
    }

    fn unlink(&self, path: &Path) -> io::Result<()> {
        // SAFETY: the path is NUL-terminated.
        Posix::path_call(path, |p| unsafe { libc::unlink(p.as_ptr()) })
    }

    fn rmdir(&self, path: &Path) -> io::Result<()> {
        // SAFETY: the path is NUL-terminated.
        Posix::path_call(path, |p| unsafe { libc::rmdir(p.as_ptr()) })
    }
}

/// The ring's Rust client; paths are in the filesystem's own namespace (`/` is its root).
#[derive(Debug)]
pub(crate) struct Ring(pub(crate) btfuse_ring_client::Client);

impl Fs for Ring {
    type File = btfuse_ring_client::File;

    fn create(&self, path: &Path) -> io::Result<btfuse_ring_client::File> {
        btfuse_ring_client::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&self.0, path)
    }

    fn open_read(&self, path: &Path) -> io::Result<btfuse_ring_client::File> {
        self.0.open(path)
    }

    fn open_rw(&self, path: &Path) -> io::Result<btfuse_ring_client::File> {
        btfuse_ring_client::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.0, path)
    }

    fn read(&self, file: &mut btfuse_ring_client::File, buf: &mut [u8]) -> io::Result<usize> {
        file.read(buf)
    }

    fn write(&self, file: &mut btfuse_ring_client::File, buf: &[u8]) -> io::Result<usize> {
        file.write(buf)
    }

    fn pread(
        &self,
        file: &mut btfuse_ring_client::File,
        buf: &mut [u8],
        offset: u64,
    ) -> io::Result<usize> {
        file.read_at(buf, offset)
    }

    fn pwrite(
        &self,
        file: &mut btfuse_ring_client::File,
        buf: &[u8],
        offset: u64,
    ) -> io::Result<usize> {
        file.write_at(buf, offset)
    }

    fn close(&self, file: btfuse_ring_client::File) -> io::Result<()> {
        drop(file);
        Ok(())
    }

    fn lstat_is_dir(&self, path: &Path) -> io::Result<bool> {
        Ok(self.0.symlink_metadata(path)?.is_dir())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<OsString>> {
        Ok(self.0.read_dir(dir)?.into_iter().map(|e| e.name).collect())
    }

    fn mkdir(&self, path: &Path) -> io::Result<()> {
        self.0.create_dir_mode(path, 0o755)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.0.rename(from, to)
    }

    fn unlink(&self, path: &Path) -> io::Result<()> {
        self.0.remove_file(path)
    }

    fn rmdir(&self, path: &Path) -> io::Result<()> {
        self.0.remove_dir(path)
    }
}
