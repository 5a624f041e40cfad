//! Paths whose walk leaves the btfuse tree.
//!
//! The server walks a path as if it did not know where the tree appears: a walk that leaves
//! it (an absolute symbolic link, `..` above the root) acts on nothing and is answered
//! `Outside`, with the rest of the walk and the links followed. The call goes on here, where
//! the kernel would go on: the rest, joined to the prefix when it is relative to it, is
//! handled as if the program had named it. A path that leads back under the prefix goes to
//! the server again; any other goes to the real libc function, which acts with the process's
//! own identity, in its own namespace. Links are counted across these hops, and more than 40
//! in all is `ELOOP` as on Linux (a hop through the kernel counts its own links as well).
//!
//! [`follow`] drives the calls that name one path, [`follow_two`] those that name two
//! (`rename`, `link`).

use std::borrow::Cow;
use std::ffi::{CStr, CString};

use btfuse_core::path::MAX_SYMLINKS;
use btfuse_core::ring::{Request, Response, Target};
use libc::c_int;

use crate::config::config;
use crate::connection::{PROTOCOL, call, take_fell_back};
use crate::errno::{errno, fail, set_errno};
use crate::left::{Left, watched};
use crate::paths::{PathTarget, at_target};

/// The absolute path a walk goes on at: `rest` itself if absolute, else `rest` from the
/// prefix, its leading `..` climbing from the prefix (lexically: the prefix is where the
/// tree appears, a directory path of its own; `..` at `/` stays there).
fn host_path(prefix: &[u8], rest: &[u8]) -> Result<CString, i32> {
    let path = if rest.first() == Some(&b'/') {
        rest.to_vec()
    } else {
        let mut base = prefix.to_vec();
        let mut rest = rest;
        while let Some(after) = rest.strip_prefix(b"..") {
            if !(after.is_empty() || after[0] == b'/') {
                break;
            }
            let cut = base.iter().rposition(|&b| b == b'/').unwrap_or(0);
            base.truncate(cut);
            rest = &after[after.iter().take_while(|&&b| b == b'/').count()..];
        }
        base.push(b'/');
        base.extend_from_slice(rest);
        if rest.is_empty() && base.len() > 1 {
            base.pop();
        }
        base
    };
    if path.len() >= libc::PATH_MAX as usize {
        return Err(libc::ENAMETOOLONG);
    }
    CString::new(path).map_err(|_| libc::EINVAL)
}

/// Adds a hop's links to those of the call so far; `ELOOP` past Linux's bound.
fn count(links: &mut u32, more: u32) -> Result<(), i32> {
    *links = links.saturating_add(more);
    if *links > MAX_SYMLINKS {
        Err(libc::ELOOP)
    } else {
        Ok(())
    }
}

/// The prefix the rest of a walk is relative to.
fn prefix() -> Result<&'static [u8], i32> {
    config().map(|c| c.prefix()).ok_or(libc::ENOENT)
}

/// Where the walk that left as `left` goes on, its links added to `links`: the absolute path,
/// and the target to serve it over the ring if it is btfuse's (else it is the kernel's).
fn next_hop(links: &mut u32, left: &Left) -> Result<(CString, Option<PathTarget<'static>>), i32> {
    count(links, left.links)?;
    let host = host_path(prefix()?, &left.path)?;
    // SAFETY: `host` is a C string that outlives the call, and the target is made owned.
    let next = unsafe { at_target(libc::AT_FDCWD, host.as_ptr()) }.map(PathTarget::into_owned);
    Ok((host, next))
}

/// Serves a call on `first` with `serve` and, each time its walk leaves the tree, goes on with
/// the rest of the walk: `serve` again when it leads back under the prefix, else `kernel`, the
/// real libc call made with that absolute path. `failed` is the call's answer for an errno.
///
/// `None`: the server was found gone while serving `first`, and the kernel resolves its path
/// the same way (absolute, or from the kernel's own working directory; the mount answers if
/// it is still there): the caller makes its real call with its own path. A path relative to
/// a btfuse directory keeps the lost session's error.
pub(crate) fn follow<T>(
    first: PathTarget<'_>,
    mut serve: impl FnMut(&PathTarget<'_>) -> T,
    mut kernel: impl FnMut(&CStr) -> T,
    failed: impl Fn(i32) -> T,
) -> Option<T> {
    let saved_errno = errno();
    let mut target = first;
    let mut host: Option<CString> = None;
    let mut links = 0;
    loop {
        let (value, left) = watched(|| serve(&target));
        let Some(left) = left else {
            if take_fell_back() && target.at.is_none() {
                return host.map(|h| kernel(&h));
            }
            return Some(value);
        };
        set_errno(saved_errno);
        match next_hop(&mut links, &left) {
            Err(e) => return Some(failed(e)),
            Ok((path, None)) => return Some(kernel(&path)),
            Ok((path, Some(next))) => {
                target = next;
                host = Some(path);
            }
        }
    }
}

/// `path` cut before its last component: the directory part (`.` when there is none, `/` at
/// the root) and the last component with what follows it, as written.
pub(crate) fn split_last(path: &[u8]) -> (&[u8], &[u8]) {
    let end = path.iter().rposition(|&b| b != b'/').map_or(0, |i| i + 1);
    match path[..end].iter().rposition(|&b| b == b'/') {
        None if path.first() == Some(&b'/') => (b"/", path),
        None => (b".", path),
        Some(slash) => {
            let dir_end = path[..slash]
                .iter()
                .rposition(|&b| b != b'/')
                .map_or(1, |i| i + 1);
            (&path[..dir_end], &path[slash + 1..])
        }
    }
}

/// How a call names what a path leads to.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Naming {
    /// By its directory and last component: a name made, removed or renamed.
    Parent,
    /// By the whole path, following a final link or not (`link`'s old name).
    Whole { follow: bool },
}

/// Where btfuse path `target` leads when it leaves the tree: the kernel's path for it, named
/// as `naming` says, or `None` if it stays btfuse's. For a call that names two paths, one of
/// which is the kernel's: the other must be the kernel's too (else `EXDEV`).
///
/// The walk is `stat`'s; by its directory, the last component is kept as written, so that `.`
/// or `..` there mean to the kernel what they mean to the call.
fn on_host(
    target: &PathTarget<'_>,
    naming: Naming,
    links: &mut u32,
) -> Result<Option<CString>, i32> {
    let (walked, last, follow) = match naming {
        Naming::Parent => {
            let (dir, last) = split_last(&target.path);
            (dir.to_vec(), Some(last), true)
        }
        Naming::Whole { follow } => (target.path.to_vec(), None, follow),
    };
    let mut current = PathTarget {
        client: target.client.clone(),
        at: target.at,
        path: Cow::Owned(walked),
    };
    loop {
        let stat = |t: &PathTarget<'_>| {
            let target = Target::Path {
                at: t.at,
                path: &t.path,
                follow,
            };
            call(&t.client, &Request::Stat { target }, |r| match r {
                Response::Attr(_) => Ok(()),
                _ => Err(PROTOCOL),
            })
        };
        let (stayed, left) = watched(|| stat(&current));
        let Some(left) = left else {
            return stayed.map(|()| None);
        };
        let (host, next) = next_hop(links, &left)?;
        if let Some(next) = next {
            current = next;
            continue;
        }
        let Some(last) = last else {
            return Ok(Some(host));
        };
        let mut path = host.into_bytes();
        if path.last() != Some(&b'/') {
            path.push(b'/');
        }
        path.extend_from_slice(last);
        if path.len() >= libc::PATH_MAX as usize {
            return Err(libc::ENAMETOOLONG);
        }
        return CString::new(path).map(Some).map_err(|_| libc::EINVAL);
    }
}

/// One path of a call that names two.
pub(crate) enum Side<'a> {
    /// Btfuse's.
    Ring(PathTarget<'a>),
    /// The kernel's: a directory descriptor (or `AT_FDCWD`) and a path from it.
    Kernel(c_int, Cow<'a, CStr>),
}

/// [`follow`] for a call that names two paths (`rename`, `link`): `serve` while both are
/// btfuse's, `kernel` once both are the kernel's, and `EXDEV` (as across two filesystems)
/// when one stays btfuse's and the other is the kernel's. Answers with -1 and `errno` on
/// failure.
pub(crate) fn follow_two(
    (mut old, old_naming): (Side<'_>, Naming),
    (mut new, new_naming): (Side<'_>, Naming),
    mut serve: impl FnMut(&PathTarget<'_>, &PathTarget<'_>) -> c_int,
    kernel: impl FnOnce((c_int, &CStr), (c_int, &CStr)) -> c_int,
) -> c_int {
    let saved_errno = errno();
    let mut links = 0;
    let to_kernel = |host: CString| Side::Kernel(libc::AT_FDCWD, Cow::Owned(host));
    loop {
        match (old, new) {
            (Side::Ring(from), Side::Ring(to)) => {
                let (rc, left) = watched(|| serve(&from, &to));
                let Some(left) = left else {
                    return rc;
                };
                set_errno(saved_errno);
                let side = match next_hop(&mut links, &left) {
                    Err(e) => return fail(e),
                    Ok((_, Some(next))) => Side::Ring(next),
                    Ok((host, None)) => to_kernel(host),
                };
                (old, new) = if left.second {
                    (Side::Ring(from), side)
                } else {
                    (side, Side::Ring(to))
                };
            }
            (Side::Kernel(old_dir, old_path), Side::Kernel(new_dir, new_path)) => {
                return kernel((old_dir, &old_path), (new_dir, &new_path));
            }
            (Side::Ring(from), kernel_side @ Side::Kernel(..)) => {
                match on_host(&from, old_naming, &mut links) {
                    Ok(Some(host)) => (old, new) = (to_kernel(host), kernel_side),
                    Ok(None) => return fail(libc::EXDEV),
                    Err(e) => return fail(e),
                }
            }
            (kernel_side @ Side::Kernel(..), Side::Ring(to)) => {
                match on_host(&to, new_naming, &mut links) {
                    Ok(Some(host)) => (old, new) = (kernel_side, to_kernel(host)),
                    Ok(None) => return fail(libc::EXDEV),
                    Err(e) => return fail(e),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(prefix: &str, rest: &str) -> String {
        let path = host_path(prefix.as_bytes(), rest.as_bytes()).unwrap();
        path.into_string().unwrap()
    }

    #[test]
    fn the_rest_of_a_walk_is_joined_to_the_prefix() {
        assert_eq!(host("/mnt/bt", "/etc/hostname"), "/etc/hostname");
        assert_eq!(host("/mnt/bt", "/tmp/x/"), "/tmp/x/");
        assert_eq!(host("/mnt/bt", ".."), "/mnt");
        assert_eq!(host("/mnt/bt", "../x/y"), "/mnt/x/y");
        assert_eq!(host("/mnt/bt", "../../x"), "/x");
        assert_eq!(host("/mnt/bt", "../../../x"), "/x");
        assert_eq!(host("/mnt/bt", "..//./x/../y/"), "/mnt/./x/../y/");
        assert_eq!(host("/mnt/bt", "../"), "/mnt");
        assert_eq!(host("/mnt/bt", "../..x"), "/mnt/..x");
        assert_eq!(host("/bt", ".."), "/");
        assert_eq!(host("", "../x"), "/x");
        let long = format!("/{}", "x".repeat(libc::PATH_MAX as usize));
        assert_eq!(host_path(b"/p", long.as_bytes()), Err(libc::ENAMETOOLONG));
    }

    #[test]
    fn links_are_counted_across_hops() {
        let mut links = 0;
        assert_eq!(count(&mut links, 39), Ok(()));
        assert_eq!(count(&mut links, 1), Ok(()));
        assert_eq!(count(&mut links, 0), Ok(()));
        assert_eq!(count(&mut links, 1), Err(libc::ELOOP));
    }

    #[test]
    fn the_last_component_is_cut_as_written() {
        let split = |p: &str| {
            let (dir, last) = split_last(p.as_bytes());
            (
                String::from_utf8(dir.to_vec()).unwrap(),
                String::from_utf8(last.to_vec()).unwrap(),
            )
        };
        let pair = |d: &str, l: &str| (d.to_owned(), l.to_owned());
        assert_eq!(split("/a/b"), pair("/a", "b"));
        assert_eq!(split("/a//b//"), pair("/a", "b//"));
        assert_eq!(split("a/.."), pair("a", ".."));
        assert_eq!(split("name"), pair(".", "name"));
        assert_eq!(split("/name"), pair("/", "name"));
        assert_eq!(split("//name/"), pair("/", "name/"));
    }
}
