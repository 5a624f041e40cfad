//! Test support for btfuse: a reference model of the filesystem, clocks for tests, and the
//! strategies the property tests draw operations from, and the eBPF programs of the `--bpf`
//! tests ([`bpf`]).

pub mod bpf;
pub mod clock;
pub mod model;
pub mod ops;
