//! A busy machine on demand: `--load N` runs every measurement a second time while N CPU hogs,
//! threads of this process at normal priority, keep the cores busy. The harness starts them
//! right before a loaded measurement and stops them right after it, so idle and loaded figures
//! come from the same minutes of the same run.
//!
//! Hog `i` is bound to the `i`-th CPU this process may use (round robin when there are more
//! hogs than CPUs), so that with as many hogs as CPUs every CPU has one. Left to the
//! scheduler, two hogs on two CPUs sometimes shared one CPU for a whole measurement (three
//! runnable threads on two CPUs look balanced either way), and the measured thread then had
//! the other CPU to itself: the FUSE mount's loaded `randread` read either its idle time or
//! twice it, round by round, depending on where the set-up had left the hogs.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long the hogs run before the measurement starts, so that they are on the cores (and the
/// scheduler has placed them) when it does.
const SETTLE: Duration = Duration::from_millis(20);

/// Running CPU hogs; [`Hogs::stop`] stops them and says how busy they kept the cores.
#[derive(Debug)]
pub(crate) struct Hogs {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    started: Instant,
    /// The hogs' CPU time when they had settled.
    settled_cpu: Duration,
}

impl Hogs {
    /// Starts `n` hog threads (none for 0) and lets them settle.
    pub(crate) fn start(n: usize) -> io::Result<Hogs> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut hogs = Hogs {
            stop: Arc::clone(&stop),
            threads: Vec::with_capacity(n),
            started: Instant::now(),
            settled_cpu: Duration::ZERO,
        };
        let cpus = allowed_cpus();
        for i in 0..n {
            let stop = Arc::clone(&stop);
            let thread = std::thread::Builder::new()
                .name(format!("cpu-hog-{i}"))
                .spawn(move || burn(&stop))?;
            if !cpus.is_empty() {
                bind(&thread, cpus[i % cpus.len()]);
            }
            hogs.threads.push(thread);
        }
        if n > 0 {
            std::thread::sleep(SETTLE);
        }
        hogs.started = Instant::now();
        hogs.settled_cpu = hogs.cpu();
        Ok(hogs)
    }

    /// The CPU time the hog threads have used so far, read from each thread's CPU clock (what
    /// they got, which on a busy machine can be much less than the time that passed).
    fn cpu(&self) -> Duration {
        use std::os::unix::thread::JoinHandleExt;
        self.threads
            .iter()
            .map(|t| {
                let mut clock: libc::clockid_t = 0;
                // SAFETY: the thread is alive (joined only in `halt`), and the call writes the
                // one clock id given.
                if unsafe { libc::pthread_getcpuclockid(t.as_pthread_t(), &mut clock) } != 0 {
                    return Duration::ZERO;
                }
                clock_time(clock)
            })
            .sum()
    }

    /// Stops the hogs; the share of the time since they settled that they spent on a CPU,
    /// averaged over the hogs (1.0: each had a core to itself; `None` without hogs).
    pub(crate) fn stop(mut self) -> Option<f64> {
        let wall = self.started.elapsed();
        let used = self.cpu().saturating_sub(self.settled_cpu);
        let n = self.threads.len();
        self.halt();
        (n > 0).then(|| (used.as_secs_f64() / (wall.as_secs_f64() * n as f64)).min(1.0))
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl Drop for Hogs {
    fn drop(&mut self) {
        self.halt();
    }
}

/// The CPUs this process may run on, in order (empty if they cannot be read).
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: an all-zero cpu_set_t is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: sched_getaffinity writes at most the size given into the set.
    if unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set) } != 0 {
        return Vec::new();
    }
    members(&set)
}

/// The CPUs in `set`, in order.
fn members(set: &libc::cpu_set_t) -> Vec<usize> {
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: `cpu` is below CPU_SETSIZE, the set's size in bits.
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, set) })
        .collect()
}

/// Binds `thread` to `cpu`. A hog that cannot be bound runs where the scheduler puts it.
fn bind(thread: &JoinHandle<()>, cpu: usize) {
    use std::os::unix::thread::JoinHandleExt;
    // SAFETY: as in `allowed_cpus`; `cpu` came from this process's own affinity mask, so it
    // is below CPU_SETSIZE; the thread is alive (joined only in `halt`).
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::pthread_setaffinity_np(thread.as_pthread_t(), size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Computes until told to stop.
fn burn(stop: &AtomicBool) {
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..4096 {
            // xorshift: work the optimiser cannot remove, no memory traffic.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
        }
        std::hint::black_box(x);
    }
}

/// The time of clock `clock` (a thread's CPU clock here).
fn clock_time(clock: libc::clockid_t) -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the one timespec given.
    if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hogs_burn_cpu_and_stop() {
        let hogs = Hogs::start(1).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let share = hogs.stop().unwrap();
        // One hog on a machine with at least one core: busy for most of the time even when
        // the machine is shared (the test's only claim is that it ran, and stopped).
        assert!(share > 0.05 && share <= 1.0, "{share}");
        assert_eq!(Hogs::start(0).unwrap().stop(), None);
    }

    #[test]
    fn each_hog_is_bound_to_its_own_cpu() {
        let cpus = allowed_cpus();
        assert!(!cpus.is_empty());
        let hogs = Hogs::start(cpus.len()).unwrap();
        use std::os::unix::thread::JoinHandleExt;
        let bound: Vec<Vec<usize>> = hogs
            .threads
            .iter()
            .map(|t| {
                // SAFETY: an all-zero cpu_set_t is a valid empty set.
                let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
                // SAFETY: the thread is alive until `stop`; the call writes the one set given.
                let rc = unsafe {
                    libc::pthread_getaffinity_np(
                        t.as_pthread_t(),
                        size_of::<libc::cpu_set_t>(),
                        &mut set,
                    )
                };
                assert_eq!(rc, 0);
                members(&set)
            })
            .collect();
        hogs.stop();
        let expected: Vec<Vec<usize>> = cpus.iter().map(|&cpu| vec![cpu]).collect();
        assert_eq!(bound, expected);
    }
}
