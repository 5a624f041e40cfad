//! btfuse-daemon: what both btfuse daemons share, `btfuse-fuse` (the FUSE mount, which also
//! hosts the ring) and `btfuse-shm` (the ring alone). Nothing here is linked into a client.
//!
//! - [`bpf`]: eBPF programs run before every engine operation (`--bpf`), and
//!   [`Programmed`](bpf::Programmed), the engine wrapper that runs them.
//! - [`metrics`]: per-thread recording of every operation, the `--metrics` exporter
//!   (Prometheus text over HTTP) and [`Metered`](metrics::Metered), which meters any engine.
//! - [`creds`]: who a caller is, from the kernel's word and `/proc/PID/status`.
//! - [`SystemClock`], the engine's wall clock; [`parse_size`] and [`Sizing`], sizes as tmpfs
//!   takes them; [`block_stop_signals`] and [`wait_for_signal`], the signals that stop a daemon or
//!   reload its programs;
//!   [`raise_descriptor_limit`].

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod bpf;
mod clock;
pub mod creds;
pub mod metrics;
mod size;
mod sys;

pub use clock::SystemClock;
pub use size::{Sizing, memory_bytes, memory_total, parse_size};
pub use sys::{Signal, block_stop_signals, wait_for_signal};

/// Raises the soft limit on open descriptors to the hard limit, as a daemon that holds one
/// per client connection should, and logs the limit it runs with (or why it could not).
pub fn raise_descriptor_limit() {
    match crate::sys::raise_nofile_limit() {
        Ok(limit) => log::debug!("open descriptor limit: {limit}"),
        Err(e) => log::warn!("cannot raise the open descriptor limit: {e}"),
    }
}
