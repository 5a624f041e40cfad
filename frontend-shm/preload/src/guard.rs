//! The re-entry guard: work done for an intercepted call (the client's own socket and memory
//! calls) runs with a per-thread flag set, and calls made while it is set pass through; so do
//! calls made before the library has read its configuration (see [`crate::config::ready`]),
//! such as those of other libraries' constructors and of an allocator initialising itself.
//!
//! **vfork.** A child made by `vfork` runs on its parent's memory, this library's tables and
//! connection included, until it executes a program or exits. When the parent has nothing
//! of btfuse's for a child to take (see `calls::process`), its `vfork` is the kernel's, and
//! the thread that made it is marked with its pid: in the child (another pid on the same
//! memory) every call passes through to libc, so nothing of the parent's changes; the
//! parent's first call after the child let it go clears the mark.

use std::cell::Cell;

thread_local! {
    /// [`FREE`], [`BUSY`] (inside an intercepted call), or the pid of a process whose
    /// `vfork` this thread made (positive).
    static STATE: Cell<libc::pid_t> = const { Cell::new(FREE) };
}

const FREE: libc::pid_t = 0;
const BUSY: libc::pid_t = -1;

fn pid() -> libc::pid_t {
    // SAFETY: getpid has no preconditions.
    unsafe { libc::getpid() }
}

/// Runs `f` as the interceptor: calls it makes into libc are not intercepted again. Returns
/// `None` (pass the call through) when already inside, in a `vfork` child, or before the
/// library is ready.
pub(crate) fn guarded<T>(f: impl FnOnce() -> T) -> Option<T> {
    if !crate::config::ready() {
        return None;
    }
    // One lookup of the thread-local for both entering and leaving: in a shared library each
    // lookup is a call into the dynamic loader, and this runs on every intercepted call.
    // (A thread being torn down has no thread-locals left: pass through.)
    let state: *const Cell<libc::pid_t> = STATE.try_with(|s| s as *const Cell<_>).ok()?;
    // SAFETY: the cell is this thread's, and lives as long as the thread, which outlives this
    // call; a `Cell` is only ever used from its own thread.
    let now = unsafe { (*state).get() };
    // Marked by a `vfork`: the child passes through; the parent, running again, goes on
    // (entering replaces the mark).
    if now == BUSY || (now != FREE && pid() != now) {
        return None;
    }
    // SAFETY: as above.
    unsafe { (*state).set(BUSY) };
    struct Leave(*const Cell<libc::pid_t>);
    impl Drop for Leave {
        fn drop(&mut self) {
            // SAFETY: as above; the same cell, on the same thread.
            unsafe { (*self.0).set(FREE) };
        }
    }
    let _leave = Leave(state);
    Some(f())
}

/// Whether this is a `vfork` child still on its parent's memory (see the module doc).
pub(crate) fn in_vfork_child() -> bool {
    STATE
        .try_with(|s| {
            let now = s.get();
            now > 0 && pid() != now
        })
        .unwrap_or(false)
}

/// Marks this thread as about to `vfork` (see the module doc); false if it cannot be marked
/// (inside an intercepted call, or a `vfork` child itself).
pub(crate) fn mark_vfork() -> bool {
    STATE
        .try_with(|s| {
            let now = s.get();
            let markable = now == FREE || (now > 0 && pid() == now);
            if markable {
                s.set(pid());
            }
            markable
        })
        .unwrap_or(false)
}
