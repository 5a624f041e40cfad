//! btfuse-ring-client: the client half of btfuse's shared-memory fast path, and the wire
//! layouts both halves share.
//!
//! A client reaches the engine without entering the kernel on the hot path: it connects once
//! to the server's Unix socket, receives a shared region (a sealed memfd), and from then on
//! writes requests into the region and reads responses from it, in the record format of
//! [`btfuse_core::ring`]. This crate is what a client links, `libbtfuse_preload.so` included,
//! so it holds nothing of the server; the server (`btfuse-ring-server`) imports its layouts
//! from here, never the reverse.
//!
//! - [`channel`]: the region's layout and the submission/completion protocol (atomics, futex
//!   sleeps announced by flags, no system call while both sides are busy).
//! - [`waiting`]: how long a waiting side spins before it sleeps, sized to the CPUs free (a
//!   process-wide record of whether its threads get preempted).
//! - [`handshake`]: the hello and welcome that set a channel up on the socket;
//!   [`kernel_file`]: the message that comes with a descriptor handed to the kernel; [`socket`]:
//!   how descriptors travel with them.
//! - [`contents`]: the content table's layout, and a client's read-only view of it.
//! - [`discovery`]: where a mount's ring socket is, and which btfuse mounts there are.
//! - [`Client`]: a `std::fs`-like API over channels, usable from many threads, with file
//!   locks ([`Client::set_lock`]) kept in the engine.
//!
//! Open file descriptions (offset, status flags, the engine handle) live in the server, one
//! table per client session, so `dup` and `fork` share them as the kernel's do. A client may
//! keep the first bytes of a file it opened for reading, sent with the open, for as long as
//! the server's content table (mapped read-only by every client) says they are current.

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod channel;
mod client;
pub mod contents;
pub mod discovery;
pub mod handshake;
pub mod kernel_file;
mod locks;
pub mod mapped;
#[cfg(feature = "raw")]
pub mod raw;
mod sys;
pub mod waiting;

pub use client::{
    Client, DEAD_SERVER_CHECK, DirEntry, File, LeftTree, MAX_CHANNELS, Metadata, OpenOptions, Sent,
    identity_changed, identity_epoch, set_private_fd_floor,
};
pub use locks::{LONGEST_NAP, LockHolder, LockScope, LockType};

/// Messages with descriptors attached (`SCM_RIGHTS`) on a channel's socket: the server sends
/// the region and the content table with the welcome, and kernel files after `Handoff`, and
/// throws away whatever a client sends after its hello; the client receives them. And whether
/// the other end hung up.
pub mod socket {
    pub use crate::sys::{
        MAX_FDS, discard_received, peer_hung_up, send_with_fd_nonblocking, send_with_fds,
    };
}
