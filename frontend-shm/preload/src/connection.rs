//! The connection to the server: the client handle every intercepted call reads with one load
//! and no lock, made on first use and replaced in a fork child; the session found lost when
//! the server goes away; the lock held across `fork`; where this library's own descriptors
//! go; and a request sent with its answer mapped to an errno.

use std::cell::Cell;
use std::io;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, AtomicU64, Ordering};

use btfuse_core::ring::{Request, Response};
use btfuse_ring_client::Client;

use crate::config::config;
use crate::left::{self, Left};

/// The connection, once made: a leaked `Box`, so that every intercepted call reads it with
/// one load and no lock. It is freed only by [`set_client`], which runs in a fork child
/// before the child has a second thread: no other thread can hold a reference then.
static CLIENT: AtomicPtr<Client> = AtomicPtr::new(std::ptr::null_mut());

/// Serialises making the connection (and is held across `fork`).
static CONNECTING: Mutex<()> = Mutex::new(());

/// The connection if one is made.
fn loaded() -> Option<Client> {
    let client = CLIENT.load(Ordering::Acquire);
    // SAFETY: a non-null pointer is a live leaked `Box<Client>` (see `CLIENT`); the Acquire
    // load pairs with the Release store that published it.
    (!client.is_null()).then(|| unsafe { (*client).clone() })
}

/// The connection to the server, made on first use. `None` if it cannot be made: the call
/// then goes to the kernel, which answers for the prefix as it would without btfuse. Once the
/// session is lost (the server went away) no new one is made: this process's btfuse
/// descriptors and working directory belong to the lost one, so path calls go to the kernel
/// (to the mount, if it is still there) and those descriptors keep failing with `ENOTCONN`.
pub(crate) fn client() -> Option<Client> {
    let config = config()?;
    if LOST.load(Ordering::Relaxed) {
        return None;
    }
    if let Some(client) = loaded() {
        return Some(client);
    }
    let _connecting = CONNECTING.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(client) = loaded() {
        return Some(client);
    }
    // After a failed attempt (no daemon, a mount without the ring), calls go to the kernel
    // for a second before the next attempt, instead of paying for one each.
    let now = coarse_seconds();
    let failed = LAST_FAILURE.load(Ordering::Relaxed);
    if failed != 0 && now.saturating_sub(failed) < 1 {
        return None;
    }
    btfuse_ring_client::set_private_fd_floor(private_fd_floor());
    let client = Client::connect(config.socket())
        .ok()
        .filter(|client| crate::config::serves_mount(config, client.mount_device()));
    let Some(client) = client else {
        LAST_FAILURE.store(now.max(1), Ordering::Relaxed);
        return None;
    };
    // A child made for `vfork` continues with its parent's table from its first use of the
    // connection. If the server no longer has it, the inherited descriptors fail with
    // `EBADF` as closed ones do.
    if let Some(token) = take_pending() {
        let _ = client.attach(token);
    }
    CLIENT.store(Box::into_raw(Box::new(client.clone())), Ordering::Release);
    Some(client)
}

/// The fork token a child made for `vfork` inherited its parent's table under and has not
/// attached to yet (0: none). Set only in such a child, before it runs anything else.
static PENDING: AtomicU64 = AtomicU64::new(0);

/// Records `token` as the table this process (a child made for `vfork`) continues with, to
/// attach to when it first connects or to hand to the program it executes.
pub(crate) fn set_pending(token: u64) {
    PENDING.store(token, Ordering::Relaxed);
}

/// The token set by [`set_pending`] and not yet attached to.
pub(crate) fn pending() -> Option<u64> {
    Some(PENDING.load(Ordering::Relaxed)).filter(|&t| t != 0)
}

fn take_pending() -> Option<u64> {
    Some(PENDING.swap(0, Ordering::Relaxed)).filter(|&t| t != 0)
}

/// When the last connection attempt failed (coarse seconds; 0: none failed).
static LAST_FAILURE: AtomicU64 = AtomicU64::new(0);

fn coarse_seconds() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the struct it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    ts.tv_sec as u64
}

/// Set when a call found the server gone: see [`client`].
static LOST: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// Set by the call that found the server gone, for its caller to redo through the kernel.
    static FELL_BACK: Cell<bool> = const { Cell::new(false) };
}

/// Records that the server is gone (a call failed with `ENOTCONN` from the transport); the
/// call that finds it out is marked for its caller.
fn lost() {
    if !LOST.swap(true, Ordering::Relaxed) {
        let _ = FELL_BACK.try_with(|f| f.set(true));
    }
}

/// The session for a name relative to a btfuse directory (a descriptor or the working
/// directory): the live one, or once the server is gone the lost one, whose calls fail with
/// `ENOTCONN`. Never the kernel: it would resolve the name from the wrong directory.
pub(crate) fn session() -> Option<Client> {
    if LOST.load(Ordering::Relaxed) {
        current_client()
    } else {
        client()
    }
}

/// Whether the call just made found the server gone; clears the mark.
pub(crate) fn take_fell_back() -> bool {
    FELL_BACK.try_with(|f| f.replace(false)).unwrap_or(false)
}

/// The connection if one is already made, without making one; except in a child made for
/// `vfork` that has not attached yet, whose descriptions are on the server only once it has.
pub(crate) fn current_client() -> Option<Client> {
    if pending().is_some() {
        return client();
    }
    loaded()
}

/// Replaces the connection. Only in a fork child, before it starts a thread: the old one is
/// freed, which no other thread may then be reading (see [`CLIENT`]).
pub(crate) fn set_client(client: Option<Client>) {
    let new = client.map_or(std::ptr::null_mut(), |c| Box::into_raw(Box::new(c)));
    let old = CLIENT.swap(new, Ordering::AcqRel);
    if !old.is_null() {
        // SAFETY: `old` was a leaked Box (see `CLIENT`), now unreachable; this process has
        // one thread (the caller's contract), so nobody else holds a reference into it.
        drop(unsafe { Box::from_raw(old) });
    }
}

/// Holds the lock of making the connection (across `fork`, so the child never inherits it
/// taken).
pub(crate) fn hold_client() -> std::sync::MutexGuard<'static, ()> {
    CONNECTING.lock().unwrap_or_else(|p| p.into_inner())
}

/// Where this library's own descriptors (the channels' sockets, the placeholders' base) go:
/// near the top of the descriptor limit, far from the small numbers programs choose
/// themselves (a shell's `exec 3> file` must not land on a socket of ours).
pub(crate) fn private_fd_floor() -> i32 {
    let floor = compute_private_fd_floor();
    PRIVATE_FLOOR.fetch_min(floor, Ordering::Relaxed);
    floor
}

/// The lowest number any of this library's own descriptors may have (`i32::MAX` before the
/// first is made): below it, a descriptor is never one of them, with no lock taken to know.
static PRIVATE_FLOOR: AtomicI32 = AtomicI32::new(i32::MAX);

/// The lowest number any of this library's own descriptors may have so far (`i32::MAX`
/// before the first is made).
pub(crate) fn lowest_private_fd() -> i32 {
    PRIVATE_FLOOR.load(Ordering::Relaxed)
}

fn compute_private_fd_floor() -> i32 {
    let mut limit = libc::rlimit {
        rlim_cur: 1024,
        rlim_max: 1024,
    };
    // SAFETY: getrlimit writes the struct it is given.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    let soft = i64::try_from(limit.rlim_cur).unwrap_or(i64::MAX);
    (soft - 64).clamp(100, 4096) as i32
}

/// The errno of an I/O error from the client (`EIO` if it carries none).
pub(crate) fn errno_of(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}

/// Sends `request` and maps the answer with `read`; failures become errno values.
pub(crate) fn call<T>(
    client: &Client,
    request: &Request<'_>,
    read: impl FnOnce(Response<'_>) -> Result<T, i32>,
) -> Result<T, i32> {
    match client.send(request) {
        Ok(sent) => finish(sent, read),
        Err(e) => Err(transport_failed(&e)),
    }
}

/// Waits for the answer to a request sent with `Client::send` and maps it as [`call`] does.
/// An `Outside` answer is kept for the path call being served (see [`crate::left`]), and
/// fails with [`PROTOCOL`].
pub(crate) fn finish<T>(
    sent: btfuse_ring_client::Sent<'_>,
    read: impl FnOnce(Response<'_>) -> Result<T, i32>,
) -> Result<T, i32> {
    let mut outcome = Err(libc::EIO);
    let received = sent.finish(|r| {
        outcome = match r {
            Response::Err(e) => Err(e.code()),
            Response::Outside {
                second,
                links,
                path,
            } => {
                left::record(Left {
                    second,
                    links,
                    path: path.to_vec(),
                });
                Err(PROTOCOL)
            }
            other => read(other),
        };
        Ok(())
    });
    match received {
        Ok(()) => outcome,
        Err(e) => Err(transport_failed(&e)),
    }
}

/// The errno of a request that could not be carried out; notes a server that is gone.
pub(crate) fn transport_failed(e: &io::Error) -> i32 {
    let code = errno_of(e);
    if code == libc::ENOTCONN {
        lost();
    }
    code
}

/// The errno for an answer of an unexpected kind: the server broke the protocol.
pub(crate) const PROTOCOL: i32 = libc::EIO;
