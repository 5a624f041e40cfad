//! `realpath` and its relatives for paths that reach btfuse.
//!
//! glibc's `realpath` walks a path with its own internal `readlink` and `access`, which no
//! interposer sees, so a path under the prefix (or relative to a btfuse working directory)
//! would come back `ENOENT`. This module walks the path the way glibc does, one component
//! at a time, but through this library's `getcwd`, `readlink` and `faccessat`, which send
//! each component to btfuse or to the kernel as it belongs: a symbolic link may lead out of
//! the prefix or into it.

use libc::{c_char, size_t};

use super::{cwd, path};
use crate::config;
use crate::errno::{errno, fail};
use crate::guard::guarded;
use crate::paths::{self, c_bytes};
use crate::real;

/// glibc's `PATH_MAX`: the size of a caller's `resolved` buffer.
const PATH_MAX: usize = libc::PATH_MAX as usize;

/// glibc's bound on symbolic links followed in one resolution (`__eloop_threshold`: at least
/// 40, `_SC_SYMLOOP_MAX` being unlimited on Linux).
const MAX_LINKS: usize = 40;

/// An errno and the part of the path resolved when it happened (glibc copies that part into
/// the caller's buffer).
type Failure = (i32, Vec<u8>);

/// The working directory, through this library's `getcwd` (a btfuse directory if that is
/// where the program is).
fn working_directory() -> Result<Vec<u8>, i32> {
    let mut buf = vec![0u8; PATH_MAX];
    loop {
        // SAFETY: `buf` holds `buf.len()` bytes; `getcwd` is this library's.
        let got = unsafe { cwd::getcwd(buf.as_mut_ptr().cast(), buf.len()) };
        if !got.is_null() {
            let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
            buf.truncate(len);
            return Ok(buf);
        }
        match errno() {
            libc::ERANGE => buf.resize(buf.len() * 2, 0),
            e => return Err(e),
        }
    }
}

/// The target of symbolic link `path`, or the errno `readlink` gave (`EINVAL`: not a link).
fn read_link(path: &[u8]) -> Result<Vec<u8>, i32> {
    let c_path = c_string(path);
    let mut buf = vec![0u8; PATH_MAX];
    loop {
        // SAFETY: `c_path` is NUL-terminated, `buf` holds `buf.len()` bytes; `readlink` is
        // this library's.
        let n =
            unsafe { path::readlink(c_path.as_ptr().cast(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            return Err(errno());
        }
        let n = n as usize;
        if n < buf.len() {
            buf.truncate(n);
            return Ok(buf);
        }
        buf.resize(buf.len() * 2, 0);
    }
}

fn c_string(path: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(path.len() + 1);
    out.extend_from_slice(path);
    out.push(0);
    out
}

/// glibc's `suffix_requires_dir_check`: whether what follows a component (`rest`, starting
/// at the slash after it) makes it a directory by syntax: only slashes, a last `.`, or a
/// `..` anywhere before the next ordinary name.
fn suffix_requires_dir_check(rest: &[u8]) -> bool {
    let mut i = 0;
    while rest.get(i) == Some(&b'/') {
        while rest.get(i) == Some(&b'/') {
            i += 1;
        }
        let component_end = rest[i..]
            .iter()
            .position(|&b| b == b'/')
            .map_or(rest.len(), |p| i + p);
        match &rest[i..component_end] {
            b"" | b".." => return true,
            b"." if component_end == rest.len() => return true,
            b"." => i = component_end,
            _ => return false,
        }
    }
    false
}

/// glibc's `dir_check`: `path` followed by a slash can be reached (it is a directory).
fn is_reachable_directory(path: &[u8]) -> Result<(), i32> {
    let mut with_slash = path.to_vec();
    with_slash.push(b'/');
    let c_path = c_string(&with_slash);
    // SAFETY: `c_path` is NUL-terminated; `faccessat` is this library's.
    let rc = unsafe {
        path::faccessat(
            libc::AT_FDCWD,
            c_path.as_ptr().cast(),
            libc::F_OK,
            libc::AT_EACCESS,
        )
    };
    if rc == 0 { Ok(()) } else { Err(errno()) }
}

/// Drops the last component of `dest` (absolute, no trailing slash), staying at `/`.
fn pop_component(dest: &mut Vec<u8>) {
    let cut = dest.iter().rposition(|&b| b == b'/').unwrap_or(0);
    dest.truncate(cut.max(1));
}

/// The canonical absolute form of `name`, every component existing, as glibc's `realpath`
/// computes it.
fn canonical(name: &[u8]) -> Result<Vec<u8>, Failure> {
    if name.is_empty() {
        return Err((libc::ENOENT, Vec::new()));
    }
    let mut dest = if name[0] == b'/' {
        b"/".to_vec()
    } else {
        working_directory().map_err(|e| (e, Vec::new()))?
    };
    // What is left to walk; a symbolic link's target is put in front of it.
    let mut rest = name.to_vec();
    let mut at = 0;
    let mut links = 0;
    loop {
        while rest.get(at) == Some(&b'/') {
            at += 1;
        }
        if at == rest.len() {
            return Ok(dest);
        }
        let end = rest[at..]
            .iter()
            .position(|&b| b == b'/')
            .map_or(rest.len(), |p| at + p);
        match &rest[at..end] {
            b"." => {}
            b".." => pop_component(&mut dest),
            component => {
                if dest.last() != Some(&b'/') {
                    dest.push(b'/');
                }
                dest.extend_from_slice(component);
                match read_link(&dest) {
                    Ok(target) => {
                        links += 1;
                        if links > MAX_LINKS {
                            return Err((libc::ELOOP, dest));
                        }
                        if target.first() == Some(&b'/') {
                            dest = b"/".to_vec();
                        } else {
                            pop_component(&mut dest);
                        }
                        let mut walk = target;
                        walk.extend_from_slice(&rest[end..]);
                        rest = walk;
                        at = 0;
                        continue;
                    }
                    Err(e) => {
                        let usable = if suffix_requires_dir_check(&rest[end..]) {
                            is_reachable_directory(&dest)
                        } else if e == libc::EINVAL {
                            Ok(())
                        } else {
                            Err(e)
                        };
                        if let Err(e) = usable {
                            return Err((e, dest));
                        }
                    }
                }
            }
        }
        at = end;
    }
}

/// Whether this library must walk `name` itself: it is spelled from the prefix, or it is
/// relative and the working directory is btfuse's.
fn reaches_btfuse(name: &[u8]) -> bool {
    if name.first() == Some(&b'/') {
        config::spelled_under_prefix(name)
    } else {
        !name.is_empty() && paths::cwd_desc().is_some()
    }
}

/// glibc's `realpath`, with the components walked through this library.
///
/// # Safety
/// `name` is a valid C string; `resolved` is null or holds `PATH_MAX` bytes.
unsafe fn realpath_here(name: &[u8], resolved: *mut c_char) -> *mut c_char {
    let (outcome, text) = match canonical(name) {
        Ok(path) => (Ok(()), path),
        Err((e, partial)) => (Err(e), partial),
    };
    if resolved.is_null() {
        if let Err(e) = outcome {
            fail(e);
            return std::ptr::null_mut();
        }
        // SAFETY: a fresh allocation the caller frees, large enough for the path and NUL.
        unsafe {
            let out = libc::malloc(text.len() + 1).cast::<c_char>();
            if out.is_null() {
                fail(libc::ENOMEM);
                return out;
            }
            std::ptr::copy_nonoverlapping(text.as_ptr().cast(), out, text.len());
            *out.add(text.len()) = 0;
            return out;
        }
    }
    // glibc copies the result when it fits, and on failure the part resolved so far if the
    // failure was a missing or forbidden component.
    let copied = match outcome {
        Ok(()) => true,
        Err(e) => e == libc::ENOENT || e == libc::EACCES,
    };
    if copied && text.len() < PATH_MAX {
        // SAFETY: `resolved` holds PATH_MAX bytes (the caller's contract).
        unsafe {
            std::ptr::copy_nonoverlapping(text.as_ptr().cast(), resolved, text.len());
            *resolved.add(text.len()) = 0;
        }
    }
    match outcome {
        Err(e) => {
            fail(e);
            std::ptr::null_mut()
        }
        Ok(()) if text.len() >= PATH_MAX => {
            fail(libc::ENAMETOOLONG);
            std::ptr::null_mut()
        }
        Ok(()) => resolved,
    }
}

/// Interposed: paths that reach btfuse are walked here; others go to libc, and come back
/// here only if libc found a component missing (a symbolic link may lead into the prefix,
/// which the kernel cannot follow).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn realpath(name: *const c_char, resolved: *mut c_char) -> *mut c_char {
    let ours = guarded(|| {
        // SAFETY: libc's contract.
        unsafe { c_bytes(name) }.map(|n| (reaches_btfuse(n), config::config().is_some()))
    })
    .flatten();
    let Some((reaches, configured)) = ours else {
        // SAFETY: libc's contract, passed on (a null `name` is libc's EINVAL).
        return unsafe { real::realpath()(name, resolved) };
    };
    // SAFETY: libc's contract: `name` is a valid C string.
    let bytes = unsafe { c_bytes(name) }.unwrap_or_default();
    if !reaches {
        // SAFETY: libc's contract, passed on.
        let got = unsafe { real::realpath()(name, resolved) };
        if !got.is_null() || !configured || errno() != libc::ENOENT {
            return got;
        }
    }
    // SAFETY: the caller's contract.
    unsafe { realpath_here(bytes, resolved) }
}

/// Interposed: `realpath` into a malloc'd buffer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn canonicalize_file_name(name: *const c_char) -> *mut c_char {
    // SAFETY: libc's contract.
    unsafe { realpath(name, std::ptr::null_mut()) }
}

/// Interposed: `realpath` as `_FORTIFY_SOURCE` compiles it, with the buffer's known size.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __realpath_chk(
    name: *const c_char,
    resolved: *mut c_char,
    resolved_len: size_t,
) -> *mut c_char {
    if resolved_len < PATH_MAX {
        // SAFETY: libc's contract, passed on: libc reports the overflow and aborts.
        return unsafe { real::__realpath_chk()(name, resolved, resolved_len) };
    }
    // SAFETY: libc's contract.
    unsafe { realpath(name, resolved) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes_that_demand_a_directory() {
        assert!(suffix_requires_dir_check(b"/"));
        assert!(suffix_requires_dir_check(b"//"));
        assert!(suffix_requires_dir_check(b"/."));
        assert!(suffix_requires_dir_check(b"/.."));
        assert!(suffix_requires_dir_check(b"/./"));
        assert!(suffix_requires_dir_check(b"/./.."));
        assert!(suffix_requires_dir_check(b"/../a"));
        assert!(!suffix_requires_dir_check(b""));
        assert!(!suffix_requires_dir_check(b"/a"));
        assert!(!suffix_requires_dir_check(b"/./a"));
        assert!(!suffix_requires_dir_check(b"/.a"));
        assert!(!suffix_requires_dir_check(b"/..."));
    }

    #[test]
    fn popping_stops_at_the_root() {
        let mut p = b"/a/b".to_vec();
        pop_component(&mut p);
        assert_eq!(p, b"/a");
        pop_component(&mut p);
        assert_eq!(p, b"/");
        pop_component(&mut p);
        assert_eq!(p, b"/");
    }
}
