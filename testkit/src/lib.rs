//! Test support for btfuse: a reference model of the filesystem, clocks for tests, the
//! strategies the property tests draw operations from, the eBPF programs of the `--bpf`
//! tests ([`bpf`]), and the real programs the interceptor's tests run.

pub mod bpf;
pub mod clock;
pub mod model;
pub mod ops;
pub mod programs;
