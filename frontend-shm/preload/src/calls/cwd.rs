//! The working directory: `chdir`, `fchdir` and `getcwd`. A btfuse directory becomes the
//! working directory in this library; with a mount at the prefix the kernel's follows it
//! there, and without one it moves to a removed directory, where no relative name leads
//! anywhere, until a kernel directory is chosen again.

use std::borrow::Cow;
use std::ffi::CStr;

use btfuse_core::ring::{self, Request, Response};
use btfuse_ring_client::Client;
use libc::{c_char, c_int, size_t};

use crate::config;
use crate::connection::{self, PROTOCOL, call};
use crate::errno::fail;
use crate::guard::guarded;
use crate::outside::follow;
use crate::paths::{self, PathTarget, c_bytes};
use crate::real;
use crate::serve::{descriptor, release};

/// Makes the btfuse directory open as `desc` (path `path` from the served root) the working
/// directory, releasing the previous one.
fn set_cwd(client: &Client, new: Option<(u32, Vec<u8>)>) {
    let old = std::mem::replace(
        &mut *paths::CWD.lock().unwrap_or_else(|p| p.into_inner()),
        new,
    );
    if let Some((desc, _)) = old {
        release(client, desc);
    }
}

/// Opens a btfuse directory for use as the working directory.
fn open_dir(client: &Client, at: Option<u32>, path: &[u8]) -> Result<u32, i32> {
    let flags = ring::OpenOptions {
        read: true,
        directory: true,
        ..ring::OpenOptions::default()
    };
    call(
        client,
        &Request::Open {
            at,
            path,
            flags,
            mode: 0,
            prefetch: 0,
            known_ino: 0,
            known_version: 0,
        },
        |r| match r {
            Response::Opened { fd, .. } => Ok(fd),
            _ => Err(PROTOCOL),
        },
    )
}

/// What `chdir` did over the ring, or the kernel's directory it must go to instead.
enum Chdir {
    Done(c_int),
    Kernel(std::ffi::CString),
}

/// Interposed: a btfuse directory becomes the working directory in this library (the
/// kernel's stays where it was, and is used again once a kernel directory is chosen). A
/// path whose walk leaves the tree (`cd ..` from the root) goes on in the kernel.
#[unsafe(no_mangle)]
#[unsafe(link_section = ".text.hot.btfuse")]
pub unsafe extern "C" fn chdir(path: *const c_char) -> c_int {
    let served = guarded(|| {
        // SAFETY: libc's contract.
        let bytes = unsafe { c_bytes(path) }?;
        let cwd = paths::CWD.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let (at, ring_path, base) = if bytes.first() == Some(&b'/') {
            (None, paths::ring_path(bytes)?, Vec::new())
        } else {
            let (desc, base) = cwd?;
            (Some(desc), bytes.to_vec(), base)
        };
        let first = PathTarget {
            client: connection::client()?,
            at,
            path: Cow::Owned(ring_path),
        };
        let enter = |t: &PathTarget<'_>| {
            // The path `getcwd` answers: lexical, as the shell keeps it (a name that climbs
            // above the root lexically, yet not on the server, went through a link there).
            let logical = match t.at {
                None => t.path.to_vec(),
                Some(_) => paths::join_lexically(&base, &t.path).unwrap_or_else(|| b"/".to_vec()),
            };
            Chdir::Done(match open_dir(&t.client, t.at, &t.path) {
                Ok(desc) => {
                    // The kernel's name for it: from the prefix, or relative to the kernel's
                    // working directory, which is this same directory (see `follow_in_kernel`).
                    let kernel_name = match t.at {
                        None => config::config().map(|c| {
                            let mut full = c.prefix().to_vec();
                            full.extend_from_slice(&t.path);
                            full
                        }),
                        Some(_) => Some(t.path.to_vec()),
                    };
                    paths::remember_path(desc, logical.clone());
                    set_cwd(&t.client, Some((desc, logical)));
                    follow_in_kernel(kernel_name.as_deref());
                    0
                }
                Err(e) => fail(e),
            })
        };
        let kernel = |host: &CStr| Chdir::Kernel(host.to_owned());
        follow(first, enter, kernel, |e| Chdir::Done(fail(e)))
    })
    .flatten();
    match served {
        Some(Chdir::Done(rc)) => rc,
        // SAFETY: libc's `chdir` with a path that leaves the tree.
        Some(Chdir::Kernel(host)) => kernel_cwd_after(unsafe { real::chdir()(host.as_ptr()) }),
        // SAFETY: libc's contract, passed on.
        None => kernel_cwd_after(unsafe { real::chdir()(path) }),
    }
}

/// The btfuse working directory just changed: the kernel's follows it through the mount
/// when there is one (`name` is the kernel's path for it), so that whatever reaches the
/// kernel with a relative name (the dynamic loader, calls glibc makes inside itself, a
/// program that does not load this library) resolves it where the program is.
fn follow_in_kernel(name: Option<&[u8]>) {
    if !config::prefix_is_mounted() {
        leave_kernel_nowhere();
        return;
    }
    let Some(name) = name.and_then(|n| std::ffi::CString::new(n).ok()) else {
        return;
    };
    // SAFETY: a C string that outlives the call. A failure leaves the kernel where it was:
    // the mount answers as the server did a moment ago, so it fails only in a race with a
    // change to the tree.
    unsafe { real::chdir()(name.as_ptr()) };
    paths::forget_kernel_cwd();
}

/// Without a mount the kernel has no directory for the btfuse one: its working directory
/// becomes an empty directory that no longer exists, so that a relative name reaching the
/// kernel (the dynamic loader, a program that does not load this library) fails with
/// `ENOENT`, as nothing can be made in a removed directory, instead of naming something in
/// the directory the program left. Where no such directory can be made, the kernel's stays.
fn leave_kernel_nowhere() {
    for base in ["/dev/shm", "/tmp"] {
        let Ok(template) = std::ffi::CString::new(format!("{base}/.btfuse-cwd-XXXXXX")) else {
            continue;
        };
        let mut template = template.into_bytes_with_nul();
        // SAFETY: a writable C string; the real calls, on a directory made here.
        unsafe {
            let dir = template.as_mut_ptr().cast::<c_char>();
            if real::mkdtemp()(dir).is_null() {
                continue;
            }
            let entered = real::chdir()(dir) == 0;
            real::rmdir()(dir);
            if entered {
                paths::forget_kernel_cwd();
                return;
            }
        }
    }
}

/// After the kernel's `chdir`/`fchdir` returned `rc`: on success the working directory is
/// the kernel's again.
fn kernel_cwd_after(rc: c_int) -> c_int {
    if rc == 0 {
        paths::forget_kernel_cwd();
        let _ = guarded(|| {
            if let Some(client) = connection::current_client() {
                set_cwd(&client, None);
            }
        });
    }
    rc
}

/// Interposed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fchdir(fd: c_int) -> c_int {
    let served = guarded(|| {
        let (entry, client) = descriptor(fd)?;
        if !entry.dir {
            return Some(fail(libc::ENOTDIR));
        }
        let dup = call(&client, &Request::Dup { fd: entry.desc }, |r| match r {
            Response::Fd(d) => Ok(d),
            _ => Err(PROTOCOL),
        });
        Some(match dup {
            Ok(desc) => {
                let path = paths::dir_path(fd).unwrap_or_else(|| b"/".to_vec());
                let kernel_name = config::config().map(|c| {
                    let mut full = c.prefix().to_vec();
                    full.extend_from_slice(&path);
                    full
                });
                paths::remember_path(desc, path.clone());
                set_cwd(&client, Some((desc, path)));
                follow_in_kernel(kernel_name.as_deref());
                0
            }
            Err(e) => fail(e),
        })
    })
    .flatten();
    if let Some(rc) = served {
        return rc;
    }
    // SAFETY: libc's contract, passed on.
    kernel_cwd_after(unsafe { real::fchdir()(fd) })
}

interpose! {
    /// Interposed: a btfuse working directory is the prefix joined with its path.
    #[unsafe(link_section = ".text.hot.btfuse")]
    fn getcwd(buf: *mut c_char, size: size_t) -> *mut c_char {
        let (_, path) = paths::CWD
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()?;
        let config = config::config()?;
        let mut full = config.prefix().to_vec();
        if path != b"/" {
            full.extend_from_slice(&path);
        }
        if full.is_empty() {
            full.push(b'/');
        }
        full.push(0);
        if buf.is_null() {
            // glibc's extension: allocate (at least `size` bytes when given).
            let len = full.len().max(size);
            // SAFETY: malloc'd memory the caller frees; `full` fits.
            unsafe {
                let out = libc::malloc(len).cast::<c_char>();
                if out.is_null() {
                    fail(libc::ENOMEM);
                    return Some(std::ptr::null_mut());
                }
                std::ptr::copy_nonoverlapping(full.as_ptr().cast(), out, full.len());
                return Some(out);
            }
        }
        if size < full.len() {
            fail(libc::ERANGE);
            return Some(std::ptr::null_mut());
        }
        // SAFETY: `buf` holds `size` bytes, enough for `full`.
        unsafe { std::ptr::copy_nonoverlapping(full.as_ptr().cast(), buf, full.len()) };
        Some(buf)
    }
}

/// Interposed: `getcwd` as `_FORTIFY_SOURCE` compiles it, with the buffer's known size.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __getcwd_chk(
    buf: *mut c_char,
    size: size_t,
    buf_len: size_t,
) -> *mut c_char {
    if size > buf_len {
        // SAFETY: libc's contract, passed on: libc reports the overflow and aborts.
        return unsafe { real::__getcwd_chk()(buf, size, buf_len) };
    }
    // SAFETY: libc's contract.
    unsafe { getcwd(buf, size) }
}

/// Interposed: `getcwd` into a buffer of `PATH_MAX` bytes (glibc calls its internal one).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn getwd(buf: *mut c_char) -> *mut c_char {
    // SAFETY: libc's contract: `buf` holds PATH_MAX bytes.
    let got = unsafe { getcwd(buf, libc::PATH_MAX as size_t) };
    if got.is_null() && !buf.is_null() {
        // glibc copies the error's text into the buffer.
        let text = b"getwd: cannot get the working directory\0";
        // SAFETY: `buf` holds PATH_MAX bytes, more than the text.
        unsafe { std::ptr::copy_nonoverlapping(text.as_ptr().cast(), buf, text.len()) };
    }
    got
}

/// Interposed: glibc answers `$PWD` when it names the working directory (its internal
/// `stat` of both), else `getcwd`; here both go through this library.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn get_current_dir_name() -> *mut c_char {
    // SAFETY: getenv's value is read before anything can change it.
    let pwd = unsafe { libc::getenv(c"PWD".as_ptr()) };
    if !pwd.is_null() {
        // SAFETY: an all-zero stat is valid; this library's `stat`.
        let same = unsafe {
            let mut a: libc::stat = std::mem::zeroed();
            let mut b: libc::stat = std::mem::zeroed();
            crate::calls::stat::stat(pwd, &mut a) == 0
                && crate::calls::stat::stat(c".".as_ptr(), &mut b) == 0
                && (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
        };
        if same {
            // SAFETY: a C string from the environment.
            return unsafe { libc::strdup(pwd) };
        }
    }
    // SAFETY: glibc's extension: a null buffer is allocated.
    unsafe { getcwd(std::ptr::null_mut(), 0) }
}
