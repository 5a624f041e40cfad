//! Changes of the process's ids: the server checks every request with the ids the kernel gave
//! the channel it came on (`SO_PEERCRED` and `/proc` when it connected), so after any change
//! every channel of this process is replaced by a new one, joining the same session, before the
//! next request ([`btfuse_ring_client::identity_changed`]). Descriptions opened before keep the
//! access they were granted, as the kernel's do.
//!
//! glibc applies each of these calls to every thread of the process, so one interposer per
//! function covers changes made from any thread. The epoch is moved after the real call,
//! whatever it answered (a failed call changed nothing, and a new channel costs only a
//! connect), and nothing here allocates or takes a lock: these run in forked children and
//! around privilege changes where little else may.

use libc::{c_char, c_int, gid_t, size_t, uid_t};

use crate::real;

/// Declares interposers that call the real function, then note the change.
macro_rules! id_changers {
    ($($name:ident($($arg:ident: $ty:ty),*);)*) => {
        $(
            /// Interposed: the real call, then the channels are renewed (see the module doc).
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn $name($($arg: $ty),*) -> c_int {
                // SAFETY: the caller's contract is libc's for the same function.
                let result = unsafe { real::$name()($($arg),*) };
                btfuse_ring_client::identity_changed();
                result
            }
        )*
    };
}

id_changers! {
    setuid(uid: uid_t);
    seteuid(euid: uid_t);
    setreuid(ruid: uid_t, euid: uid_t);
    setresuid(ruid: uid_t, euid: uid_t, suid: uid_t);
    setfsuid(fsuid: uid_t);
    setgid(gid: gid_t);
    setegid(egid: gid_t);
    setregid(rgid: gid_t, egid: gid_t);
    setresgid(rgid: gid_t, egid: gid_t, sgid: gid_t);
    setfsgid(fsgid: gid_t);
    setgroups(size: size_t, list: *const gid_t);
    initgroups(user: *const c_char, group: gid_t);
}
