//! btfuse-shm: the shared-memory fast path of btfuse.
//!
//! A client reaches the engine without entering the kernel on the hot path: it connects once
//! to the server's Unix socket, receives a shared region (a sealed memfd), and from then on
//! writes requests into the region and reads responses from it, in the record format of
//! [`btfuse_core::ring`].
//!
//! - `btfuse_ring_client`: the region's layout and protocol, the handshake and the Rust client.
//! - [`Server`]: the listener, channel set-up (`SO_PEERCRED`, `SCM_RIGHTS`) and the worker
//!   threads that serve channels, waiting on all of them at once through `io_uring`.
//!
//! Open file descriptions (offset, status flags, the engine handle) live in the server, one
//! table per client session, so `dup` and `fork` share them as the kernel's do. A client may
//! keep the first bytes of a file it opened for reading, sent with the open, for as long as
//! the server's content table (mapped read-only by every client) says they are current.

#![deny(unsafe_code)]
#![warn(missing_docs)]

mod contents;
pub mod server;
mod sys;

pub use server::{Server, ServerConfig};
