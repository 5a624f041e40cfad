//! The helpers a program may call (numbers as in `btfuse_bpf.h`), and what they keep: the
//! programs' identities, their counters and their fault and refusal counts, which the
//! exporter reads at each scrape.
//!
//! Helpers are plain functions of five numbers (rbpf's `Helper`): none of them reads memory
//! through a number a program gave it, so none can be made to read out of bounds. The running
//! program is known from a thread-local slot set before each run.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use super::object::MAX_COUNTERS;

/// `btfuse_time_ns`.
pub(crate) const TIME_NS: u32 = 1;
/// `btfuse_random`.
pub(crate) const RANDOM: u32 = 2;
/// `btfuse_count`.
pub(crate) const COUNT: u32 = 3;
/// `btfuse_log`.
pub(crate) const LOG: u32 = 4;

/// Every helper with its number, in the order rbpf is told of them.
pub(crate) const ALL: [(u32, rbpf::Helper); 4] = [
    (TIME_NS, time_ns),
    (RANDOM, random),
    (COUNT, count),
    (LOG, log_line),
];

/// Most distinct (program, counter, key) series kept; bumps of further ones are dropped and
/// counted, so that a program keyed by something unbounded cannot grow the daemon.
pub const MAX_SERIES: usize = 10_000;

/// Most log lines a second from all programs together.
const LOG_LINES_PER_SECOND: u64 = 10;

/// A program as the metrics know it: by name, and the same across reloads of the same file.
#[derive(Debug)]
pub struct ProgramInfo {
    /// The object file's name without `.o` (the `program` label).
    pub name: String,
    /// Names of its counters 0, 1, ...
    pub counter_names: Vec<String>,
    /// Operations it failed with an errno.
    pub refused: AtomicU64,
    /// Runs that faulted (the operation failed with `EIO`).
    pub faults: AtomicU64,
}

impl ProgramInfo {
    /// The label of counter `counter`.
    pub fn counter_label(&self, counter: u32) -> String {
        self.counter_names
            .get(counter as usize)
            .cloned()
            .unwrap_or_else(|| counter.to_string())
    }
}

/// Programs ever loaded and what their helpers counted.
#[derive(Default)]
pub(crate) struct Registry {
    /// By slot; a slot is never reused for another program.
    pub(crate) programs: Vec<Arc<ProgramInfo>>,
    /// `(slot, counter, key)` -> total.
    pub(crate) counters: HashMap<(usize, u32, u64), u64>,
    /// Bumps dropped because [`MAX_SERIES`] series existed.
    pub(crate) dropped: u64,
}

static REGISTRY: LazyLock<Mutex<Registry>> = LazyLock::new(Mutex::default);

/// The registry, locked.
pub(crate) fn registry() -> MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(|p| p.into_inner())
}

/// The slot of the program named `name` with these counters: the one it had if it was loaded
/// before, so that its counters go on counting across a reload.
pub(crate) fn enrol(name: &str, counter_names: &[String]) -> (usize, Arc<ProgramInfo>) {
    let mut registry = registry();
    if let Some(slot) = registry
        .programs
        .iter()
        .position(|p| p.name == name && p.counter_names == counter_names)
    {
        return (slot, Arc::clone(&registry.programs[slot]));
    }
    let info = Arc::new(ProgramInfo {
        name: name.to_owned(),
        counter_names: counter_names.to_vec(),
        refused: AtomicU64::new(0),
        faults: AtomicU64::new(0),
    });
    registry.programs.push(Arc::clone(&info));
    (registry.programs.len() - 1, info)
}

thread_local! {
    /// The slot of the program running on this thread.
    static RUNNING: Cell<usize> = const { Cell::new(usize::MAX) };
    /// This thread's random state (xorshift64*), seeded on first use.
    static RANDOM_STATE: Cell<u64> = const { Cell::new(0) };
}

/// Marks `slot` as the program running on this thread, for the helpers it calls.
#[inline]
pub(crate) fn set_running(slot: usize) {
    RUNNING.with(|r| r.set(slot));
}

fn running() -> usize {
    RUNNING.with(Cell::get)
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// `btfuse_time_ns()`: nanoseconds since 1970.
fn time_ns(_: u64, _: u64, _: u64, _: u64, _: u64) -> u64 {
    now_ns()
}

/// `btfuse_random()`: 32 pseudo-random bits.
fn random(_: u64, _: u64, _: u64, _: u64, _: u64) -> u64 {
    RANDOM_STATE.with(|state| {
        let mut x = state.get();
        if x == 0 {
            // Seeded from the clock and this thread's own address: distinct per thread.
            x = now_ns() ^ (state as *const Cell<u64> as u64).rotate_left(32) | 1;
        }
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        state.set(x);
        x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32
    })
}

/// `btfuse_count(counter, key, delta)`: 0, or 1 if the counter number is out of range or the
/// series could not be kept.
fn count(counter: u64, key: u64, delta: u64, _: u64, _: u64) -> u64 {
    let Ok(counter) = u32::try_from(counter) else {
        return 1;
    };
    if counter as usize >= MAX_COUNTERS {
        return 1;
    }
    let slot = running();
    let mut registry = registry();
    let Registry {
        counters, dropped, ..
    } = &mut *registry;
    let full = counters.len() >= MAX_SERIES;
    match counters.get_mut(&(slot, counter, key)) {
        Some(total) => *total = total.wrapping_add(delta),
        None if full => {
            *dropped += 1;
            return 1;
        }
        None => {
            counters.insert((slot, counter, key), delta);
        }
    }
    0
}

/// Lines logged in the current second, and the second.
static LOG_WINDOW: Mutex<(u64, u64, u64)> = Mutex::new((0, 0, 0));

/// `btfuse_log(tag, a, b)`: a log line, rate-limited.
fn log_line(tag: u64, a: u64, b: u64, _: u64, _: u64) -> u64 {
    let second = now_ns() / 1_000_000_000;
    let suppressed = {
        let mut window = LOG_WINDOW.lock().unwrap_or_else(|p| p.into_inner());
        let (at, lines, suppressed) = &mut *window;
        if *at != second {
            *at = second;
            *lines = 0;
        }
        if *lines >= LOG_LINES_PER_SECOND {
            *suppressed += 1;
            return 1;
        }
        *lines += 1;
        std::mem::take(suppressed)
    };
    let tag: String = tag
        .to_le_bytes()
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| if c.is_ascii_graphic() { c as char } else { '?' })
        .collect();
    let name = registry()
        .programs
        .get(running())
        .map_or_else(|| "?".to_owned(), |p| p.name.clone());
    if suppressed > 0 {
        log::info!("bpf {name}: {tag} {a} {b} ({suppressed} earlier lines not shown)");
    } else {
        log::info!("bpf {name}: {tag} {a} {b}");
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_numbers_are_32_bits_and_vary() {
        let draws: Vec<u64> = (0..1000).map(|_| random(0, 0, 0, 0, 0)).collect();
        assert!(draws.iter().all(|&d| d <= u64::from(u32::MAX)));
        let distinct: std::collections::BTreeSet<_> = draws.iter().collect();
        assert!(distinct.len() > 990);
        // Roughly uniform: each tenth of the range gets a share.
        for tenth in 0..10u64 {
            let lo = tenth * (u64::from(u32::MAX) / 10);
            let hi = lo + u64::from(u32::MAX) / 10;
            let n = draws.iter().filter(|&&d| d >= lo && d < hi).count();
            assert!((50..=150).contains(&n), "tenth {tenth}: {n}");
        }
    }

    #[test]
    fn counters_are_kept_per_program_counter_and_key() {
        let (slot, _) = enrol("helpers-test", &["a".into()]);
        let (again, _) = enrol("helpers-test", &["a".into()]);
        assert_eq!(slot, again);
        set_running(slot);
        assert_eq!(count(0, 7, 2, 0, 0), 0);
        assert_eq!(count(0, 7, 3, 0, 0), 0);
        assert_eq!(count(MAX_COUNTERS as u64, 7, 1, 0, 0), 1);
        assert_eq!(registry().counters.get(&(slot, 0, 7)), Some(&5));
        let t = time_ns(0, 0, 0, 0, 0);
        assert!(t > 1_600_000_000 * 1_000_000_000);
    }
}
