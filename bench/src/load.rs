//! A busy machine on demand: `--load N` runs every measurement a second time while N CPU hogs,
//! threads of this process at normal priority, keep the cores busy. The harness starts them
//! right before a loaded measurement and stops them right after it, so idle and loaded figures
//! come from the same minutes of the same run.

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
    threads: Vec<JoinHandle<Duration>>,
    started: Instant,
}

impl Hogs {
    /// Starts `n` hog threads (none for 0) and lets them settle.
    pub(crate) fn start(n: usize) -> io::Result<Hogs> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut hogs = Hogs {
            stop: Arc::clone(&stop),
            threads: Vec::with_capacity(n),
            started: Instant::now(),
        };
        for i in 0..n {
            let stop = Arc::clone(&stop);
            let thread = std::thread::Builder::new()
                .name(format!("cpu-hog-{i}"))
                .spawn(move || burn(&stop))?;
            hogs.threads.push(thread);
        }
        if n > 0 {
            std::thread::sleep(SETTLE);
        }
        hogs.started = Instant::now();
        Ok(hogs)
    }

    /// Stops the hogs; the share of the time since they settled that they spent on a CPU,
    /// averaged over the hogs (1.0: each had a core to itself; `None` without hogs).
    pub(crate) fn stop(mut self) -> Option<f64> {
        let wall = self.started.elapsed();
        let used = self.halt();
        (!used.is_empty()).then(|| {
            let cpu: Duration = used.iter().sum();
            // Settling time is in `cpu` but not in `wall`: at most SETTLE more per hog.
            let settled = cpu.saturating_sub(SETTLE * used.len() as u32);
            (settled.as_secs_f64() / (wall.as_secs_f64() * used.len() as f64)).min(1.0)
        })
    }

    fn halt(&mut self) -> Vec<Duration> {
        self.stop.store(true, Ordering::Relaxed);
        self.threads
            .drain(..)
            .filter_map(|t| t.join().ok())
            .collect()
    }
}

impl Drop for Hogs {
    fn drop(&mut self) {
        self.halt();
    }
}

/// Computes until told to stop; the CPU time the thread used.
fn burn(stop: &AtomicBool) -> Duration {
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
    thread_cpu_time()
}

/// CPU time of the calling thread.
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the one timespec given.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } != 0 {
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
}
