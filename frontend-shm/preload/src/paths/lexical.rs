//! Paths as bytes: C string arguments, the server's path for one spelled from the prefix, and
//! paths joined without a walk.

use std::borrow::Cow;
use std::ffi::CStr;

use crate::config::config_for;

/// `base` (a path from the served root) joined with `rel` and made lexical (`.` and `..`
/// resolved); `None` if `..` climbs above the served root.
pub(crate) fn join_lexically(base: &[u8], rel: &[u8]) -> Option<Vec<u8>> {
    let mut parts: Vec<&[u8]> = Vec::new();
    let start: &[u8] = if rel.first() == Some(&b'/') {
        b""
    } else {
        base
    };
    for component in start.split(|&b| b == b'/').chain(rel.split(|&b| b == b'/')) {
        match component {
            b"" | b"." => {}
            b".." => {
                parts.pop()?;
            }
            name => parts.push(name),
        }
    }
    let mut out = Vec::new();
    for part in parts {
        out.push(b'/');
        out.extend_from_slice(part);
    }
    if out.is_empty() {
        out.push(b'/');
    }
    Some(out)
}

/// The server's path for `path` if it is spelled from the prefix (absolute). A `..` that
/// climbs out of the tree is the server's to walk as well: it answers where the walk goes on
/// (see [`crate::outside`]), after the links it met on the way.
#[unsafe(link_section = ".text.hot.btfuse")]
pub(crate) fn ring_path(path: &[u8]) -> Option<Vec<u8>> {
    ring_path_in(path).map(Cow::into_owned)
}

/// [`ring_path`] without a copy: the part of `path` after the prefix.
pub(crate) fn ring_path_in(path: &[u8]) -> Option<Cow<'_, [u8]>> {
    if path.first() != Some(&b'/') {
        return None;
    }
    let config = config_for(path)?;
    let rest = path.strip_prefix(config.prefix())?;
    if !(rest.is_empty() || rest[0] == b'/') {
        return None;
    }
    Some(if rest.is_empty() {
        Cow::Borrowed(b"/")
    } else {
        Cow::Borrowed(rest)
    })
}

/// The end of the address space a process's own pointers can reach: the lowest address of
/// the kernel's half on 4-level page tables (a program that asks for addresses above it on
/// 5-level tables gets them only by naming them to `mmap`).
#[cfg(target_arch = "x86_64")]
const USER_END: usize = 1 << 47;
#[cfg(not(target_arch = "x86_64"))]
const USER_END: usize = 1 << 48;

/// Whether `p` can point at the caller's memory at all: not in the first page (never mapped)
/// and below [`USER_END`]. A call given any other pointer goes to the kernel, which answers
/// `EFAULT` without reading it, where reading it here would crash the program.
pub(crate) fn user_pointer(p: *const libc::c_char) -> bool {
    (4096..USER_END).contains(&(p as usize))
}

/// A C string argument as bytes (`None` for a null pointer, or one that cannot point at the
/// caller's memory: see [`user_pointer`]).
///
/// # Safety
/// `p` is a NUL-terminated string valid for the call, or fails [`user_pointer`].
pub(crate) unsafe fn c_bytes<'a>(p: *const libc::c_char) -> Option<&'a [u8]> {
    if !user_pointer(p) {
        return None;
    }
    // SAFETY: the caller's contract.
    Some(unsafe { CStr::from_ptr(p) }.to_bytes())
}
