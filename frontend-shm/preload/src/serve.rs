//! What the interposed calls stand on: the btfuse descriptor behind a number and the
//! connection to serve it ([`descriptor`]), a description given back ([`release`]), a request
//! sent and its answer in libc's conventions ([`expect_ok`], [`ring_read`], [`ring_write`]),
//! and a path call served over the ring or, where its walk leaves the tree, by the kernel
//! ([`simple`]). All of it runs inside an interposed call, as this library (the re-entry
//! guard held by the interposer).

use std::ffi::CStr;

use btfuse_core::ring::{MAX_IO, Request, Response, Target};
use btfuse_ring_client::Client;
use libc::{c_char, c_int, c_void, size_t, ssize_t};

use crate::connection::{self, PROTOCOL, call};
use crate::descriptors::{self, Entry};
use crate::errno::fail;
use crate::outside::follow;
use crate::paths::{self, PathTarget, at_target};
use crate::{attrs, held};

/// Gives up this process's reference to description `desc` (and what it remembered of it),
/// or parks it (see `held`).
pub(crate) fn release(client: &Client, desc: u32) {
    release_then(client, desc, || ());
}

/// Like [`release`], but waits for the server's answer: for a description whose locks
/// another process must find gone once this returns.
pub(crate) fn release_waited(client: &Client, desc: u32) {
    if !let_go(client, desc) {
        let _ = call(client, &Request::Close { fd: desc }, |_| Ok(()));
    }
}

/// Like [`release`], running `then` while the request travels to the server.
pub(crate) fn release_then<T>(client: &Client, desc: u32, then: impl FnOnce() -> T) -> T {
    if let_go(client, desc) {
        return then();
    }
    // Not waited for: the program's close needs nothing from the answer (see Client::post).
    let (posted, value) = client.post_then(&Request::Close { fd: desc }, then);
    if let Err(e) = posted {
        connection::transport_failed(&e);
    }
    value
}

/// Forgets what this process remembered of description `desc`, which the program let go;
/// whether it was parked for the next open of its path instead (see `held`), in which case
/// it stays open and no close is sent. Walks from it are forgotten either way: none is kept
/// while it is parked, and once closed its number may name another description.
fn let_go(client: &Client, desc: u32) -> bool {
    paths::forget_path(desc);
    attrs::forget(desc);
    crate::shown::forget(desc);
    held::forget(client, desc)
}

/// The btfuse entry behind `fd` and a connection, if `fd` is btfuse's, with the server's
/// description made the one truth about its offset (see `held`): for every call on a
/// descriptor but those that read with the offset this process keeps or do not depend on it
/// (`fstat`, `fstatfs`).
#[unsafe(link_section = ".text.hot.btfuse")]
pub(crate) fn descriptor(fd: c_int) -> Option<(Entry, Client)> {
    let (entry, client) = held_descriptor(fd)?;
    // A write-back (`Lseek` to a valid offset) fails only when the channel does, and then so
    // does the call that follows it on the same channel.
    let _ = held::settle(&client, entry.desc);
    Some((entry, client))
}

/// Like [`descriptor`], leaving an offset this process keeps where it is: for calls that read
/// with it or do not use it.
pub(crate) fn held_descriptor(fd: c_int) -> Option<(Entry, Client)> {
    let entry = descriptors::lookup(fd)?;
    Some((
        entry,
        connection::current_client().or_else(connection::client)?,
    ))
}

/// Reads into the caller's buffer over the ring.
pub(crate) fn ring_read(
    client: &Client,
    request: &Request<'_>,
    buf: *mut c_void,
    count: size_t,
) -> ssize_t {
    let result = call(client, request, |r| match r {
        Response::Data(data) if data.len() <= count => {
            // SAFETY: the caller's buffer holds `count` bytes; `data` is at most that long.
            unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), buf.cast::<u8>(), data.len()) };
            Ok(data.len() as ssize_t)
        }
        _ => Err(PROTOCOL),
    });
    result.unwrap_or_else(|e| fail(e) as ssize_t)
}

pub(crate) fn ring_write(client: &Client, request: &Request<'_>) -> ssize_t {
    call(client, request, |r| match r {
        Response::Size(n) => Ok(n as ssize_t),
        _ => Err(PROTOCOL),
    })
    .unwrap_or_else(|e| fail(e) as ssize_t)
}

/// The caller's buffer as a slice (empty for a null pointer with a zero count).
///
/// # Safety
/// `buf` holds `count` readable bytes.
pub(crate) unsafe fn input<'a>(buf: *const c_void, count: size_t) -> &'a [u8] {
    if count == 0 || buf.is_null() {
        return &[];
    }
    // SAFETY: the caller's contract.
    unsafe { std::slice::from_raw_parts(buf.cast(), count.min(MAX_IO)) }
}

/// The ring target of a path, following a final symbolic link unless `AT_SYMLINK_NOFOLLOW`.
pub(crate) fn path_target<'a>(t: &'a PathTarget<'_>, flags: c_int) -> Target<'a> {
    Target::Path {
        at: t.at,
        path: &t.path,
        follow: flags & libc::AT_SYMLINK_NOFOLLOW == 0,
    }
}

/// A path call: `serve` over the ring for a btfuse path, `kernel` (the real call with an
/// absolute path) where a walk that left the tree goes on outside it.
///
/// # Safety
/// `path` is null or a valid C string.
pub(crate) unsafe fn simple(
    dirfd: c_int,
    path: *const c_char,
    serve: impl FnMut(&PathTarget) -> c_int,
    kernel: impl FnMut(&CStr) -> c_int,
) -> Option<c_int> {
    // SAFETY: the caller's contract.
    let t = unsafe { at_target(dirfd, path) }?;
    follow(t, serve, kernel, fail)
}

pub(crate) fn expect_ok(client: &Client, request: &Request<'_>) -> c_int {
    call(client, request, |_| Ok(0)).unwrap_or_else(fail)
}
