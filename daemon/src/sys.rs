//! The system calls a daemon process makes for itself: the signals that stop it or reload its
//! programs, its descriptor limit, and running an eBPF program. The only module of this crate
//! with `unsafe`.
#![allow(unsafe_code)]

use std::io;
use std::time::Duration;

/// Sets the soft `RLIMIT_NOFILE` to the hard one; the limit now.
pub(crate) fn raise_nofile_limit() -> io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit, which `limit` is.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: setrlimit only reads `limit`.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(limit.rlim_cur)
}

/// The signals the daemon waits for: `SIGINT` and `SIGTERM` stop it, `SIGHUP` reloads its
/// eBPF programs.
const STOP_SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// A signal the daemon was sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// `SIGINT` or `SIGTERM` (the number): stop.
    Stop(libc::c_int),
    /// `SIGHUP`: reload the `--bpf` programs.
    Reload,
}

fn stop_set() -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the set it is given; sigaddset only adds valid signals.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in STOP_SIGNALS {
            libc::sigaddset(&mut set, sig);
        }
        set
    }
}

/// Blocks the signals [`wait_for_signal`] waits for in the calling thread and every thread it
/// starts afterwards, so that only it receives them.
pub fn block_stop_signals() -> io::Result<()> {
    let set = stop_set();
    // SAFETY: `set` is a valid initialised sigset; the old mask is not wanted.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}

/// Waits up to `timeout` for a signal to stop or reload; returns it, or `None` on timeout.
pub fn wait_for_signal(timeout: Duration) -> Option<Signal> {
    let set = stop_set();
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `set` and `ts` are valid for the call; no siginfo is requested.
    let sig = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &ts) };
    match sig {
        libc::SIGHUP => Some(Signal::Reload),
        sig if sig > 0 => Some(Signal::Stop(sig)),
        _ => None,
    }
}

/// An rbpf virtual machine that worker threads share.
pub(crate) struct SharedVm(pub(crate) rbpf::EbpfVmRaw<'static>);

// SAFETY: running a program takes `&self` and keeps every piece of mutable state of a run on
// the caller's stack (the interpreter's registers and stack, the JIT's frame); what the VM
// holds is written only while it is built (the code, the helper table, the JIT's machine code)
// and only read afterwards. Its one non-`Send` field, the stack-usage calculator's `Box<dyn
// Any>`, is never set by the daemon (it stays `None`).
unsafe impl Send for SharedVm {}
// SAFETY: as for `Send`: shared use only reads.
unsafe impl Sync for SharedVm {}

/// Runs `vm`'s program on `mem` (a whole context): as machine code if `compiled`, else in
/// rbpf's interpreter, which checks every access.
///
/// The caller guarantees what the JIT does not check: a `compiled` `vm` was JIT-compiled, and
/// its program was proved by `bpf::verify` to load and store only inside `mem` and its own
/// stack, and to jump only forward (so it ends).
pub(crate) fn run_program(
    vm: &SharedVm,
    compiled: bool,
    mem: &mut [u8],
) -> Result<u64, std::io::Error> {
    debug_assert_eq!(mem.len(), crate::bpf::CONTEXT_SIZE);
    let (ptr, len) = (mem.as_mut_ptr(), mem.len());
    // SAFETY: rbpf's signatures tie the memory to the VM's `'static` lifetime, but a run only
    // uses it during the call and keeps nothing of it; `mem` is borrowed mutably for as long
    // as this function runs, so the slice made here is the only access to it meanwhile.
    let mem: &'static mut [u8] = unsafe { std::slice::from_raw_parts_mut(ptr, len) };
    #[cfg(target_arch = "x86_64")]
    if compiled {
        // SAFETY: per this function's contract: every access the code makes was proved inside
        // `mem` or the stack frame the JIT sets up, the helpers it calls take numbers only,
        // and it terminates.
        return unsafe { vm.0.execute_program_jit(mem) };
    }
    debug_assert!(!compiled || cfg!(not(target_arch = "x86_64")));
    vm.0.execute_program(mem)
}
