//! The re-entry guard: work done for an intercepted call (the client's own socket and memory
//! calls) runs with a per-thread flag set, and calls made while it is set pass through; so do
//! calls made before the library has read its configuration (see [`crate::config::ready`]),
//! such as those of other libraries' constructors and of an allocator initialising itself.

use std::cell::Cell;

thread_local! {
    static BUSY: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` as the interceptor: calls it makes into libc are not intercepted again. Returns
/// `None` (pass the call through) when already inside, or before the library is ready.
pub(crate) fn guarded<T>(f: impl FnOnce() -> T) -> Option<T> {
    if !crate::config::ready() {
        return None;
    }
    // One lookup of the thread-local for both entering and leaving: in a shared library each
    // lookup is a call into the dynamic loader, and this runs on every intercepted call.
    // (A thread being torn down has no thread-locals left: pass through.)
    let busy: *const Cell<bool> = BUSY.try_with(|busy| busy as *const Cell<bool>).ok()?;
    // SAFETY: the cell is this thread's, and lives as long as the thread, which outlives this
    // call; a `Cell` is only ever used from its own thread.
    if unsafe { (*busy).replace(true) } {
        return None;
    }
    struct Leave(*const Cell<bool>);
    impl Drop for Leave {
        fn drop(&mut self) {
            // SAFETY: as above; the same cell, on the same thread.
            unsafe { (*self.0).set(false) };
        }
    }
    let _leave = Leave(busy);
    Some(f())
}
