//! What the interceptor costs a call that is not btfuse's: `passthrough FILE` times `fstat`,
//! `pread` and `stat` on a file outside the prefix. Run it with and without `LD_PRELOAD` (and
//! `BTFUSE_PREFIX` set to somewhere else) and compare.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::time::Instant;

fn per_call(n: u32, mut f: impl FnMut()) -> f64 {
    let t = Instant::now();
    for _ in 0..n {
        f();
    }
    t.elapsed().as_nanos() as f64 / f64::from(n)
}

fn main() {
    let path = std::env::args().nth(1).expect("usage: passthrough FILE");
    std::fs::write(&path, b"x").unwrap();
    let c_path = CString::new(std::path::Path::new(&path).as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid C string; the descriptor is closed at the end.
    let fd = unsafe { libc::open(c_path.as_ptr(), libc::O_RDONLY) };
    assert!(fd >= 0);
    // SAFETY: an all-zero stat is valid.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    let mut byte = [0u8; 1];
    let n = 2_000_000;
    let fstat = per_call(n, || {
        // SAFETY: a valid descriptor and a live struct.
        unsafe { libc::fstat(fd, &mut st) };
    });
    let pread = per_call(n, || {
        // SAFETY: a valid descriptor and a one-byte buffer.
        unsafe { libc::pread(fd, byte.as_mut_ptr().cast(), 1, 0) };
    });
    let stat = per_call(n / 4, || {
        // SAFETY: a valid C string and a live struct.
        unsafe { libc::stat(c_path.as_ptr(), &mut st) };
    });
    println!("fstat {fstat:.1} ns  pread {pread:.1} ns  stat {stat:.1} ns");
    // SAFETY: closes the descriptor opened above.
    unsafe { libc::close(fd) };
    std::fs::remove_file(&path).unwrap();
}
