//! The interposed C functions, one module per family. Each one asks whether its path or
//! descriptor is btfuse's; if so it is served over the ring and answers with libc's
//! conventions (-1 and `errno`), otherwise it goes to the real libc function untouched.
//!
//! - [`path`]: `open`, `access`, `mkdir`, `unlink`, `rename`, `link`, `symlink`, `readlink`...
//! - [`fd`]: `close`, `dup`, `fcntl`, `close_range`...
//! - [`io`]: `read`, `write`, `lseek`, `fsync` and their positioned and vectored forms.
//! - [`stat`]: `stat`, `statx`, `statfs`...
//! - [`meta`]: `chmod`, `chown`, `utimensat`, `truncate`...
//! - [`xattr`]: extended attributes.
//! - [`cwd`]: `chdir`, `fchdir`, `getcwd`.
//! - [`dir`]: directory streams and `getdents64`.
//! - [`resolve`]: `realpath` and its relatives.
//! - [`stdio`]: `fopen`, `fdopen`, `freopen`, `fileno`; `streams`: the cookie streams they
//!   make, and the stand-ins for `stdin`, `stdout` and `stderr` over btfuse descriptors.
//! - [`process`]: `fork` and `exec`; [`spawn`]: `posix_spawn`, `system`, `popen`;
//!   [`identity`]: `setuid` and the other id changes.

pub mod cwd;
pub mod dir;
pub mod fd;
pub mod identity;
pub mod io;
pub mod meta;
pub mod path;
pub mod process;
pub mod resolve;
pub mod spawn;
pub mod stat;
pub mod stdio;
mod streams;
pub mod xattr;
