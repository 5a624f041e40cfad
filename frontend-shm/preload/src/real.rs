//! The C library's own functions, found with `dlsym(RTLD_NEXT, ..)` once and cached: what an
//! interposed call falls through to for everything that is not btfuse's.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Resolves `name` (NUL-terminated) to the next definition after this library; aborts with a
/// message if there is none, since a program whose libc lacks a function it calls cannot go on.
#[unsafe(link_section = ".text.hot.btfuse")]
pub(crate) fn resolve(slot: &AtomicUsize, name: &'static [u8]) -> usize {
    let cached = slot.load(Ordering::Relaxed);
    if cached != 0 {
        return cached;
    }
    // SAFETY: `name` is a NUL-terminated literal; dlsym only reads it.
    let found = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr().cast()) } as usize;
    if found == 0 {
        let msg = b"libbtfuse_preload: a libc function is missing\n";
        // SAFETY: writes a static buffer to stderr, then aborts.
        unsafe {
            libc::write(2, msg.as_ptr().cast(), msg.len());
            libc::abort();
        }
    }
    slot.store(found, Ordering::Relaxed);
    found
}

/// Declares accessors for real libc functions: `real::open()` returns libc's `open`.
macro_rules! real_fns {
    ($($name:ident : fn($($arg:ty),*) -> $ret:ty;)*) => {
        $(
            #[allow(dead_code)]
            #[unsafe(link_section = ".text.hot.btfuse")]
            pub(crate) fn $name() -> unsafe extern "C" fn($($arg),*) -> $ret {
                // In `.data`, beside the flags every process touches (see `crate::hot`): as
                // zero-initialised statics the slots made a page of `.bss` of their own, which
                // the first call through any of them faulted in twice (read, then written).
                #[unsafe(link_section = ".data.btfuse.real")]
                static SLOT: AtomicUsize = AtomicUsize::new(0);
                let p = resolve(&SLOT, concat!(stringify!($name), "\0").as_bytes());
                // SAFETY: the symbol is libc's function of this name, whose C signature is the
                // one declared here.
                unsafe { std::mem::transmute::<usize, unsafe extern "C" fn($($arg),*) -> $ret>(p) }
            }
        )*
    };
}

use libc::{c_char, c_int, c_uint, c_void, mode_t, off_t, size_t, ssize_t};

real_fns! {
    setuid: fn(libc::uid_t) -> c_int;
    seteuid: fn(libc::uid_t) -> c_int;
    setreuid: fn(libc::uid_t, libc::uid_t) -> c_int;
    setresuid: fn(libc::uid_t, libc::uid_t, libc::uid_t) -> c_int;
    setfsuid: fn(libc::uid_t) -> c_int;
    setgid: fn(libc::gid_t) -> c_int;
    setegid: fn(libc::gid_t) -> c_int;
    setregid: fn(libc::gid_t, libc::gid_t) -> c_int;
    setresgid: fn(libc::gid_t, libc::gid_t, libc::gid_t) -> c_int;
    setfsgid: fn(libc::gid_t) -> c_int;
    setgroups: fn(size_t, *const libc::gid_t) -> c_int;
    initgroups: fn(*const c_char, libc::gid_t) -> c_int;
    open: fn(*const c_char, c_int, mode_t) -> c_int;
    open64: fn(*const c_char, c_int, mode_t) -> c_int;
    openat: fn(c_int, *const c_char, c_int, mode_t) -> c_int;
    openat64: fn(c_int, *const c_char, c_int, mode_t) -> c_int;
    __open_2: fn(*const c_char, c_int) -> c_int;
    __open64_2: fn(*const c_char, c_int) -> c_int;
    creat: fn(*const c_char, mode_t) -> c_int;
    creat64: fn(*const c_char, mode_t) -> c_int;
    close: fn(c_int) -> c_int;
    read: fn(c_int, *mut c_void, size_t) -> ssize_t;
    write: fn(c_int, *const c_void, size_t) -> ssize_t;
    pread: fn(c_int, *mut c_void, size_t, off_t) -> ssize_t;
    pread64: fn(c_int, *mut c_void, size_t, off_t) -> ssize_t;
    pwrite: fn(c_int, *const c_void, size_t, off_t) -> ssize_t;
    pwrite64: fn(c_int, *const c_void, size_t, off_t) -> ssize_t;
    lseek: fn(c_int, off_t, c_int) -> off_t;
    lseek64: fn(c_int, off_t, c_int) -> off_t;
    fstat: fn(c_int, *mut libc::stat) -> c_int;
    fstat64: fn(c_int, *mut libc::stat) -> c_int;
    stat: fn(*const c_char, *mut libc::stat) -> c_int;
    stat64: fn(*const c_char, *mut libc::stat) -> c_int;
    lstat: fn(*const c_char, *mut libc::stat) -> c_int;
    lstat64: fn(*const c_char, *mut libc::stat) -> c_int;
    fstatat: fn(c_int, *const c_char, *mut libc::stat, c_int) -> c_int;
    fstatat64: fn(c_int, *const c_char, *mut libc::stat, c_int) -> c_int;
    statx: fn(c_int, *const c_char, c_int, c_uint, *mut libc::statx) -> c_int;
    access: fn(*const c_char, c_int) -> c_int;
    faccessat: fn(c_int, *const c_char, c_int, c_int) -> c_int;
    euidaccess: fn(*const c_char, c_int) -> c_int;
    eaccess: fn(*const c_char, c_int) -> c_int;
    mkdir: fn(*const c_char, mode_t) -> c_int;
    mkdirat: fn(c_int, *const c_char, mode_t) -> c_int;
    rmdir: fn(*const c_char) -> c_int;
    unlink: fn(*const c_char) -> c_int;
    unlinkat: fn(c_int, *const c_char, c_int) -> c_int;
    rename: fn(*const c_char, *const c_char) -> c_int;
    renameat: fn(c_int, *const c_char, c_int, *const c_char) -> c_int;
    renameat2: fn(c_int, *const c_char, c_int, *const c_char, c_uint) -> c_int;
    dup: fn(c_int) -> c_int;
    dup2: fn(c_int, c_int) -> c_int;
    dup3: fn(c_int, c_int, c_int) -> c_int;
    fcntl: fn(c_int, c_int, libc::c_ulong) -> c_int;
    fcntl64: fn(c_int, c_int, libc::c_ulong) -> c_int;
    flock: fn(c_int, c_int) -> c_int;
    mmap: fn(*mut libc::c_void, size_t, c_int, c_int, c_int, off_t) -> *mut libc::c_void;
    mmap64: fn(*mut libc::c_void, size_t, c_int, c_int, c_int, off_t) -> *mut libc::c_void;
    lockf: fn(c_int, c_int, off_t) -> c_int;
    lockf64: fn(c_int, c_int, off_t) -> c_int;
    ftruncate: fn(c_int, off_t) -> c_int;
    ftruncate64: fn(c_int, off_t) -> c_int;
    truncate: fn(*const c_char, off_t) -> c_int;
    truncate64: fn(*const c_char, off_t) -> c_int;
    fsync: fn(c_int) -> c_int;
    fdatasync: fn(c_int) -> c_int;
    copy_file_range: fn(c_int, *mut off_t, c_int, *mut off_t, size_t, c_uint) -> ssize_t;
    fork: fn() -> libc::pid_t;
    vfork: fn() -> libc::pid_t;
    unshare: fn(c_int) -> c_int;
    setns: fn(c_int, c_int) -> c_int;
    execve: fn(*const c_char, *const *const c_char, *const *const c_char) -> c_int;
    execv: fn(*const c_char, *const *const c_char) -> c_int;
    execvp: fn(*const c_char, *const *const c_char) -> c_int;
    execvpe: fn(*const c_char, *const *const c_char, *const *const c_char) -> c_int;
    fexecve: fn(c_int, *const *const c_char, *const *const c_char) -> c_int;
    execveat: fn(c_int, *const c_char, *const *const c_char, *const *const c_char, c_int) -> c_int;
    opendir: fn(*const c_char) -> *mut libc::DIR;
    fdopendir: fn(c_int) -> *mut libc::DIR;
    readdir: fn(*mut libc::DIR) -> *mut libc::dirent;
    readdir64: fn(*mut libc::DIR) -> *mut libc::dirent64;
    closedir: fn(*mut libc::DIR) -> c_int;
    dirfd: fn(*mut libc::DIR) -> c_int;
    rewinddir: fn(*mut libc::DIR) -> ();
    seekdir: fn(*mut libc::DIR, libc::c_long) -> ();
    telldir: fn(*mut libc::DIR) -> libc::c_long;
    getdents64: fn(c_int, *mut c_void, size_t) -> ssize_t;
    readlink: fn(*const c_char, *mut c_char, size_t) -> ssize_t;
    symlink: fn(*const c_char, *const c_char) -> c_int;
    fchmod: fn(c_int, mode_t) -> c_int;
    chdir: fn(*const c_char) -> c_int;
    readv: fn(c_int, *const libc::iovec, c_int) -> ssize_t;
    writev: fn(c_int, *const libc::iovec, c_int) -> ssize_t;
    preadv: fn(c_int, *const libc::iovec, c_int, off_t) -> ssize_t;
    preadv64: fn(c_int, *const libc::iovec, c_int, off_t) -> ssize_t;
    pwritev: fn(c_int, *const libc::iovec, c_int, off_t) -> ssize_t;
    pwritev64: fn(c_int, *const libc::iovec, c_int, off_t) -> ssize_t;
    statfs: fn(*const c_char, *mut libc::statfs) -> c_int;
    statfs64: fn(*const c_char, *mut libc::statfs) -> c_int;
    statvfs: fn(*const c_char, *mut libc::statvfs) -> c_int;
    statvfs64: fn(*const c_char, *mut libc::statvfs) -> c_int;
    fstatfs: fn(c_int, *mut libc::statfs) -> c_int;
    fstatfs64: fn(c_int, *mut libc::statfs) -> c_int;
    fstatvfs: fn(c_int, *mut libc::statvfs) -> c_int;
    fstatvfs64: fn(c_int, *mut libc::statvfs) -> c_int;
    close_range: fn(c_uint, c_uint, c_int) -> c_int;
    preadv2: fn(c_int, *const libc::iovec, c_int, off_t, c_int) -> ssize_t;
    pwritev2: fn(c_int, *const libc::iovec, c_int, off_t, c_int) -> ssize_t;
    preadv64v2: fn(c_int, *const libc::iovec, c_int, off_t, c_int) -> ssize_t;
    pwritev64v2: fn(c_int, *const libc::iovec, c_int, off_t, c_int) -> ssize_t;
    getxattr: fn(*const c_char, *const c_char, *mut c_void, size_t) -> ssize_t;
    lgetxattr: fn(*const c_char, *const c_char, *mut c_void, size_t) -> ssize_t;
    fgetxattr: fn(c_int, *const c_char, *mut c_void, size_t) -> ssize_t;
    listxattr: fn(*const c_char, *mut c_char, size_t) -> ssize_t;
    llistxattr: fn(*const c_char, *mut c_char, size_t) -> ssize_t;
    flistxattr: fn(c_int, *mut c_char, size_t) -> ssize_t;
    setxattr: fn(*const c_char, *const c_char, *const c_void, size_t, c_int) -> c_int;
    lsetxattr: fn(*const c_char, *const c_char, *const c_void, size_t, c_int) -> c_int;
    fsetxattr: fn(c_int, *const c_char, *const c_void, size_t, c_int) -> c_int;
    removexattr: fn(*const c_char, *const c_char) -> c_int;
    lremovexattr: fn(*const c_char, *const c_char) -> c_int;
    fremovexattr: fn(c_int, *const c_char) -> c_int;
    fchdir: fn(c_int) -> c_int;
    getcwd: fn(*mut c_char, size_t) -> *mut c_char;
    symlinkat: fn(*const c_char, c_int, *const c_char) -> c_int;
    readlinkat: fn(c_int, *const c_char, *mut c_char, size_t) -> ssize_t;
    link: fn(*const c_char, *const c_char) -> c_int;
    linkat: fn(c_int, *const c_char, c_int, *const c_char, c_int) -> c_int;
    utimensat: fn(c_int, *const c_char, *const libc::timespec, c_int) -> c_int;
    futimens: fn(c_int, *const libc::timespec) -> c_int;
    fchmodat: fn(c_int, *const c_char, mode_t, c_int) -> c_int;
    fchownat: fn(c_int, *const c_char, libc::uid_t, libc::gid_t, c_int) -> c_int;
    fchown: fn(c_int, libc::uid_t, libc::gid_t) -> c_int;
    fopen: fn(*const c_char, *const c_char) -> *mut libc::FILE;
    fopen64: fn(*const c_char, *const c_char) -> *mut libc::FILE;
    fdopen: fn(c_int, *const c_char) -> *mut libc::FILE;
    freopen: fn(*const c_char, *const c_char, *mut libc::FILE) -> *mut libc::FILE;
    freopen64: fn(*const c_char, *const c_char, *mut libc::FILE) -> *mut libc::FILE;
    fileno: fn(*mut libc::FILE) -> c_int;
    fileno_unlocked: fn(*mut libc::FILE) -> c_int;
    posix_spawn: fn(*mut libc::pid_t, *const c_char, *const libc::posix_spawn_file_actions_t, *const libc::posix_spawnattr_t, *const *mut c_char, *const *mut c_char) -> c_int;
    posix_spawnp: fn(*mut libc::pid_t, *const c_char, *const libc::posix_spawn_file_actions_t, *const libc::posix_spawnattr_t, *const *mut c_char, *const *mut c_char) -> c_int;
    system: fn(*const c_char) -> c_int;
    popen: fn(*const c_char, *const c_char) -> *mut libc::FILE;
    pclose: fn(*mut libc::FILE) -> c_int;
    realpath: fn(*const c_char, *mut c_char) -> *mut c_char;
    __realpath_chk: fn(*const c_char, *mut c_char, size_t) -> *mut c_char;
    mknod: fn(*const c_char, mode_t, libc::dev_t) -> c_int;
    mknodat: fn(c_int, *const c_char, mode_t, libc::dev_t) -> c_int;
    mkfifo: fn(*const c_char, mode_t) -> c_int;
    mkfifoat: fn(c_int, *const c_char, mode_t) -> c_int;
    mkostemps: fn(*mut c_char, c_int, c_int) -> c_int;
    mkdtemp: fn(*mut c_char) -> *mut c_char;
    mktemp: fn(*mut c_char) -> *mut c_char;
    __openat_2: fn(c_int, *const c_char, c_int) -> c_int;
    __openat64_2: fn(c_int, *const c_char, c_int) -> c_int;
    __readlink_chk: fn(*const c_char, *mut c_char, size_t, size_t) -> ssize_t;
    __readlinkat_chk: fn(c_int, *const c_char, *mut c_char, size_t, size_t) -> ssize_t;
    __getcwd_chk: fn(*mut c_char, size_t, size_t) -> *mut c_char;
    bind: fn(c_int, *const libc::sockaddr, libc::socklen_t) -> c_int;
    connect: fn(c_int, *const libc::sockaddr, libc::socklen_t) -> c_int;
    inotify_add_watch: fn(c_int, *const c_char, u32) -> c_int;
    name_to_handle_at: fn(c_int, *const c_char, *mut c_void, *mut c_int, c_int) -> c_int;
    fallocate: fn(c_int, c_int, off_t, off_t) -> c_int;
    fallocate64: fn(c_int, c_int, off_t, off_t) -> c_int;
    posix_fallocate: fn(c_int, off_t, off_t) -> c_int;
    posix_fallocate64: fn(c_int, off_t, off_t) -> c_int;
    posix_fadvise: fn(c_int, off_t, off_t, c_int) -> c_int;
    posix_fadvise64: fn(c_int, off_t, off_t, c_int) -> c_int;
    readahead: fn(c_int, off_t, size_t) -> ssize_t;
    sendfile: fn(c_int, c_int, *mut off_t, size_t) -> ssize_t;
    sendfile64: fn(c_int, c_int, *mut off_t, size_t) -> ssize_t;
    splice: fn(c_int, *mut off_t, c_int, *mut off_t, size_t, c_uint) -> ssize_t;
    sync_file_range: fn(c_int, off_t, off_t, c_uint) -> c_int;
    syncfs: fn(c_int) -> c_int;
    __read_chk: fn(c_int, *mut c_void, size_t, size_t) -> ssize_t;
    __pread_chk: fn(c_int, *mut c_void, size_t, off_t, size_t) -> ssize_t;
    __pread64_chk: fn(c_int, *mut c_void, size_t, off_t, size_t) -> ssize_t;
}
