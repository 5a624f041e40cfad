//! The small flags nearly every preloaded process reads or writes, kept in one static so that
//! they share one page.
//!
//! A preloaded process pays for each page of this library it touches: a page fault, 3–7 µs on
//! a virtual machine. The linker places statics as it pleases, so flags that are each one
//! atomic landed among the large buffers, each on a page of its own, and a flag read before
//! any write cost two faults (the shared zero page, then a private copy). Fields of one static
//! stay together, on one cache line here. Its initial value is not all zeros (no mount chosen
//! is `config::NONE`, `usize::MAX`), so it lies in `.data`, whose few pages the dynamic
//! loader writes anyway when it relocates the library and clears the start of `.bss`: in
//! practice reading and writing it costs no fault of its own. The other small statics the
//! first calls of every process write (the cache of libc's functions in `real`, the listed
//! candidate mount points in `config`, the C half's `next_syscall`) are put in `.data` by
//! name (`.data.btfuse.*`) for the same reason; of the large buffers, only what a process
//! uses is written (`config::ENVIRONMENT` keeps its lengths and short values on one page,
//! and the `BTFUSE_MOUNTS=` entry is made only when a program is started).
//!
//! Code is kept together the same way: the constructors, the interposed calls every program
//! makes (`open`, `read`, `write`, `close`, `fstat`, `stat`, `fcntl`, directory streams...)
//! and what they ask of a path or descriptor that is not btfuse's are marked
//! `#[unsafe(link_section = ".text.hot.btfuse")]`, and the library is linked with
//! `-z keep-text-section-prefix`, so they make one `.text.hot` of a few pages instead of being
//! spread over the library's 700 KB of code, where the kernel maps 64 KiB around each page a
//! process touches first. What only a btfuse call runs stays in `.text`.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize};

use crate::config;

/// See the module doc; each field's own doc is where it is used.
#[repr(C, align(64))]
pub(crate) struct Hot {
    /// `config`: set once the variables are read.
    pub(crate) ready: AtomicBool,
    /// `config`: whether the variables named a configuration; written before `ready`.
    pub(crate) has_explicit: AtomicBool,
    /// `config`: where finding the mounts stands.
    pub(crate) discovery: AtomicU8,
    /// `config`: where listing the candidate mount points stands.
    pub(crate) listing: AtomicU8,
    /// `descriptors`: whether any btfuse descriptor was ever numbered in this process.
    pub(crate) descriptors_used: AtomicBool,
    /// `config`: where making `BTFUSE_MOUNTS=...` for started programs stands.
    pub(crate) entry: AtomicU8,
    /// `config`: the mounts found.
    pub(crate) mount_count: AtomicUsize,
    /// `config`: the length of `BTFUSE_MOUNTS=...` for the programs this process executes.
    pub(crate) mounts_entry_len: AtomicUsize,
    /// `config`: the mount this process serves over the ring.
    pub(crate) chosen: AtomicUsize,
    /// `descriptors`: the table's generation.
    pub(crate) generation: AtomicU64,
    /// `descriptors`: serialises changes to the table.
    pub(crate) table_lock: Mutex<()>,
}

/// The flags (see the module doc).
pub(crate) static HOT: Hot = Hot {
    ready: AtomicBool::new(false),
    has_explicit: AtomicBool::new(false),
    discovery: AtomicU8::new(config::UNREAD),
    listing: AtomicU8::new(config::UNREAD),
    descriptors_used: AtomicBool::new(false),
    entry: AtomicU8::new(config::UNREAD),
    mount_count: AtomicUsize::new(0),
    mounts_entry_len: AtomicUsize::new(0),
    chosen: AtomicUsize::new(config::NONE),
    generation: AtomicU64::new(0),
    table_lock: Mutex::new(()),
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flags_fit_one_cache_line() {
        assert_eq!(size_of::<Hot>(), 64);
        assert_eq!(std::ptr::from_ref(&HOT).addr() % 64, 0);
    }
}
