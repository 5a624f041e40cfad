//! `libbtfuse_preload.so`: runs unmodified programs on the btfuse fast path.
//!
//! Loaded with `LD_PRELOAD` and configured by `BTFUSE_SOCKET` (the server's socket) and
//! `BTFUSE_PREFIX` (the directory the filesystem appears at), it defines the C library's file
//! functions itself. A call on a path under the prefix, or on a descriptor it issued, goes to
//! the server over the shared-memory ring; every other call goes to the real function
//! (`dlsym(RTLD_NEXT, ..)`), after one table lookup.
//!
//! # Layers
//!
//! From the bottom up; each module uses only those above it in this list.
//!
//! - [`real`]: libc's own functions, found once. [`errno`]: `errno`, read and set.
//!   [`guard`]: the re-entry flag (below). [`config`]: where the filesystem is and how to
//!   reach it. [`left`]: where a walk left the tree, as the server answered.
//! - [`connection`]: the client handle, made on first use and replaced in a fork child, the
//!   lost session, the private descriptor floor, and requests with their answers as errno
//!   values. [`held`]: descriptions whose offset and first bytes this process keeps.
//!   [`listings`]: directory listings this process keeps. [`attrs`]: answers to `stat` of a
//!   path this process keeps.
//! - [`descriptors`]: the descriptor table every descriptor call asks first (which numbers
//!   stand for server descriptions), the placeholders that give them their numbers, and the
//!   library's own descriptors.
//! - [`paths`]: what a path argument names: lexical helpers, the kernel's working directory,
//!   the paths of btfuse directories. [`outside`]: a walk that left the tree, going on where
//!   the kernel would. [`serve`]: what the interposed calls share.
//!   [`program`]: whether the program an `exec` starts will load this library.
//! - [`calls`]: the interposed C functions, one module per family ([`path`](calls::path),
//!   [`fd`](calls::fd), [`io`](calls::io), [`stat`](calls::stat), [`meta`](calls::meta),
//!   [`node`](calls::node), [`temp`](calls::temp), [`kernel_only`](calls::kernel_only),
//!   [`xattr`](calls::xattr), [`cwd`](calls::cwd), [`dir`](calls::dir),
//!   [`resolve`](calls::resolve), [`stdio`](calls::stdio), [`process`](calls::process),
//!   [`spawn`](calls::spawn), [`identity`](calls::identity)); most are written with one macro
//!   that serves a call or passes it to libc. Among them, `io` is below the cookie streams,
//!   which are below every family that changes descriptors 0 to 2 and `stdio` itself.
//!
//! **Descriptor numbers.** A btfuse descriptor is a real kernel descriptor (an `O_PATH`
//! descriptor of `/`) that stands for the server's open description. The kernel therefore
//! never gives the number to anything else, `dup2` onto standard output and `exec` keep it as
//! they keep any descriptor, and programs that count, close or poll their descriptors see
//! nothing odd. A call that reaches the kernel with it instead of this library (I/O made
//! inside libc, a static program) fails with `EBADF`, and `copy_file_range` to or from a
//! kernel file answers `EXDEV` (so callers copy with read and write). File locks (`fcntl`,
//! `flock`, `lockf`) are the server's, kept in the engine with the mount's. Nothing is
//! read or written anywhere silently. The library's own descriptors (the channels' sockets)
//! sit near the top of the descriptor limit, away from the numbers programs pick.
//!
//! **stdio.** glibc's streams read and write through internal calls no interposer sees, so
//! `fopen` and `fdopen` of btfuse files return `fopencookie` streams over this library's
//! calls, and when standard input, output or error becomes a btfuse descriptor (a shell
//! redirection inherited across `exec`, or `dup2`), the matching `stdin`, `stdout` or `stderr`
//! stream is replaced by such a stream until the descriptor changes again.
//!
//! **Processes.** See [`process`](calls::process): `fork` shares descriptions with the
//! child, `exec` hands the surviving descriptors to the next program (the variadic `execl`
//! family is a small C file calling it), to the kernel first when that program will not load
//! this library. [`spawn`](calls::spawn): `posix_spawn`, `system` and `popen` exec inside
//! glibc, so a spawn that involves btfuse is made here from `fork`, the file actions and that
//! `exec`. The same C file holds `dprintf` and its relatives (glibc writes their text with an
//! internal `write`) and `syscall`, which sends the numbers this library serves
//! (`copy_file_range`, `fallocate`, `getdents64`) to its own functions.
//!
//! **Paths and directories.** [`resolve`](calls::resolve): `realpath` walks a path through
//! this library's calls, as glibc's walks it through internal ones. [`dir`](calls::dir):
//! directory streams, `seekdir`/`telldir` and `getdents64` over the server's readdir
//! cookies. A path whose walk leaves the tree (a symbolic link to `/etc/hostname`, `..` above
//! the root) goes on where the kernel would go on, served again if that is under the prefix
//! and by libc otherwise ([`outside`]).
//!
//! **Identity.** [`identity`](calls::identity): after `setuid`, `setgroups`, `setfsuid` and
//! the rest, the channels are connected again, so the server checks later calls with the new
//! ids.
//!
//! **Re-entry.** Work done for an intercepted call (the client's own socket and memory
//! calls) runs with a per-thread flag set, and calls made while it is set pass through.
//!
//! Every exported function is a C entry point with the contract of the libc function of the
//! same name; they are `unsafe extern "C"` for that reason, and FFI is this crate's whole
//! purpose, so `unsafe` is allowed throughout.

#![allow(unsafe_code)]
#![allow(clippy::missing_safety_doc)]
// The layers above are private modules; `cargo doc --document-private-items` shows them.
#![allow(rustdoc::private_intra_doc_links)]

mod attrs;
pub mod calls;
mod config;
mod connection;
mod descriptors;
mod errno;
mod guard;
mod held;
mod hot;
mod left;
mod listings;
mod outside;
mod paths;
mod program;
mod real;
mod serve;
mod shown;

pub use config::{INHERIT_VAR, MOUNTS_VAR, PREFIX_VAR, SOCKET_VAR};
