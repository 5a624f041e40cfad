//! The interposed C functions, one module per family. Each one asks whether its path or
//! descriptor is btfuse's; if so it is served over the ring and answers with libc's
//! conventions (-1 and `errno`), otherwise it goes to the real libc function untouched.
//!
//! - [`path`]: `open`, `access`, `mkdir`, `unlink`, `rename`, `link`, `symlink`, `readlink`...
//! - [`fd`]: `close`, `dup`, `fcntl`, `close_range`...
//! - [`io`]: `read`, `write`, `lseek`, `fsync` and their positioned and vectored forms.
//! - [`lock`]: `fcntl`'s record locks, `flock`, `lockf`; [`mmap`]: `mmap` of btfuse files.
//! - [`stat`]: `stat`, `statx`, `statfs`...
//! - [`meta`]: `chmod`, `chown`, `utimensat`, `truncate`...
//! - [`kernel_only`]: `bind`, `connect`, `inotify_add_watch`, `name_to_handle_at`.
//! - [`node`]: `mknod`, `mkfifo`: fifos, sockets and devices are the kernel's.
//! - [`xattr`]: extended attributes.
//! - [`temp`]: `mkstemp` and the other unique names.
//! - [`cwd`]: `chdir`, `fchdir`, `getcwd`.
//! - [`dir`]: directory streams and `getdents64`.
//! - [`resolve`]: `realpath` and its relatives.
//! - [`stdio`]: `fopen`, `fdopen`, `freopen`, `fileno`; `streams`: the cookie streams they
//!   make, and the stand-ins for `stdin`, `stdout` and `stderr` over btfuse descriptors.
//! - [`process`]: `fork` and `exec`; [`spawn`]: `posix_spawn`, `system`, `popen`;
//!   [`identity`]: `setuid` and the other id changes.

/// Defines interposed C functions that serve the call or pass it to libc: the body runs as
/// this library (see [`crate::guard`]) and answers `Some(result)` when it served the call,
/// `None` to hand it to libc's function of the same name with the same arguments. One body
/// may define several names (`fn pread, pread64(..)`); `; real = NAME` binds the accessor of
/// that libc function for a body that needs it (where a walk that left the tree goes on).
macro_rules! interpose {
    ($(
        $(#[$attr:meta])*
        fn $($name:ident),+ ($($param:tt)*) -> $ret:ty $(; real = $real:ident)? $body:block
    )*) => {
        $(
            interpose!(@names [$(#[$attr])*] [$($real)?] [$($name)+] ($($param)*) $ret, $body);
        )*
    };
    (@names $attrs:tt $real:tt [$($name:ident)+] $params:tt $ret:ty, $body:block) => {
        $(
            interpose!(@one $attrs $real $name $params $ret, $body);
        )+
    };
    (
        @one [$(#[$attr:meta])*] [$($real:ident)?]
        $name:ident ($($arg:ident: $ty:ty),* $(,)?) $ret:ty, $body:block
    ) => {
        $(#[$attr])*
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name($($arg: $ty),*) -> $ret {
            $(let $real = $crate::real::$name;)?
            let served = $crate::guard::guarded(|| -> Option<$ret> { $body }).flatten();
            // SAFETY: libc's contract for this call, passed on.
            served.unwrap_or_else(|| unsafe { $crate::real::$name()($($arg),*) })
        }
    };
}

pub mod cwd;
pub mod dir;
pub mod fd;
pub mod identity;
pub mod io;
pub mod kernel_only;
pub mod lock;
pub mod meta;
pub mod mmap;
pub mod node;
pub mod path;
pub mod process;
pub mod resolve;
pub mod spawn;
pub mod stat;
pub mod stdio;
mod streams;
pub mod temp;
pub mod xattr;
