//! btfuse-core: the engine of btfuse, an in-memory POSIX filesystem.
//!
//! Layers, bottom up:
//!
//! - [`block`]: the [`BlockStore`] trait (fixed-size blocks) and [`MemPool`], its in-memory
//!   implementation with a hard capacity, plus wrappers for fault injection and tracing.
//! - [`rbtree`]: the arena red-black tree that orders each directory's entries by readdir
//!   cookie.
//! - [`fs`]: the inode-based [`Filesystem`] trait every frontend speaks, with the
//!   [`types`] and [`Errno`] it uses.
//! - [`memfs`]: [`MemFs`], the implementation of [`Filesystem`] over any [`BlockStore`].
//! - [`locks`]: the [`LockTable`](locks::LockTable) of POSIX, OFD and `flock` locks that
//!   every frontend of an engine shares.
//! - [`path`]: path resolution for frontends that receive paths instead of inodes.
//! - [`ring`]: the wire format of the shared-memory ring: requests and responses as bytes.
//!
//! The rules each operation follows, and which error wins when several apply, are written down
//! in `docs/semantics.md` at the root of the repository.

#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

// Inode tables, directory indices and file block maps grow with the data: the heap is needed.
extern crate alloc;

pub mod block;
pub mod error;
pub mod fs;
pub mod locks;
pub mod memfs;
pub mod path;
pub mod rbtree;
pub mod ring;
pub mod types;

pub use block::{BlockNo, BlockStore, MemPool, StoreError};
pub use error::{Errno, Result};
pub use fs::{Change, ContentWatch, Filesystem};
pub use memfs::{AtimePolicy, Config, MemFs, Usage};
pub use types::*;

/// A clock that always reads the epoch: for examples and tests that ignore time.
#[derive(Clone, Copy, Debug, Default)]
pub struct ZeroClock;

impl Clock for ZeroClock {
    fn now(&self) -> Timestamp {
        Timestamp::EPOCH
    }
}

impl<C: Clock + ?Sized> Clock for alloc::sync::Arc<C> {
    fn now(&self) -> Timestamp {
        (**self).now()
    }
}
