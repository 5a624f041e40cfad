//! Where a walk left the tree: the server's `Outside` answer, kept for the path call being
//! served when the connection receives it, and taken by [`crate::outside`], which goes on with
//! the walk.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Where a walk left the tree, as the server answered it.
#[derive(Debug)]
pub(crate) struct Left {
    /// The request's second path left (`rename`'s and `link`'s new name).
    pub(crate) second: bool,
    /// Links followed before leaving.
    pub(crate) links: u32,
    /// The rest of the walk: absolute, or relative to the prefix (`..` first).
    pub(crate) path: Vec<u8>,
}

thread_local! {
    /// The `Outside` answer this thread received last and no call has taken yet.
    static LEFT: Cell<Option<Left>> = const { Cell::new(None) };
}

/// `Outside` answers recorded and not yet taken, in all threads. While there are none (nearly
/// always) a call need not look at its thread's slot: in a shared library every thread-local
/// lookup is a call into the dynamic loader, and this is on every path call's way.
static RECORDED: AtomicUsize = AtomicUsize::new(0);

/// Keeps an `Outside` answer for the call being served (see [`watched`]).
pub(crate) fn record(left: Left) {
    let _ = LEFT.try_with(|slot| {
        if slot.replace(Some(left)).is_none() {
            RECORDED.fetch_add(1, Ordering::Relaxed);
        }
    });
}

/// This thread's recorded answer, if any. (A thread sees its own additions to `RECORDED` in
/// program order; another thread's only cost it a look.)
fn take() -> Option<Left> {
    if RECORDED.load(Ordering::Relaxed) == 0 {
        return None;
    }
    let left = LEFT.try_with(Cell::take).ok().flatten();
    if left.is_some() {
        RECORDED.fetch_sub(1, Ordering::Relaxed);
    }
    left
}

/// Drops what this thread recorded: for a request whose failure the caller answers by asking
/// something else (the walk of that will record again if it leaves).
pub(crate) fn discard() {
    drop(take());
}

/// Runs `serve`, which may be answered `Outside`: its value, and where its walk left if it did
/// (`serve` then failed, with [`PROTOCOL`](crate::connection::PROTOCOL) as its errno). An
/// answer no call expected (from a server that broke the protocol) is dropped first.
pub(crate) fn watched<T>(serve: impl FnOnce() -> T) -> (T, Option<Left>) {
    drop(take());
    let value = serve();
    (value, take())
}
