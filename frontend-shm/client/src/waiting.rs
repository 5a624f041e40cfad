//! When a side of a channel that waits for the other spins, and when it sleeps instead.
//!
//! Spinning pays only while the other side is on a CPU at the same time: then the answer
//! comes within a cache-line transfer or two, sooner than any futex wake-up. On a machine
//! whose cores are all busy (builds, batch jobs, more threads than cores) it does the
//! opposite. The spinning thread burns the time slice its peer needs, and under Linux's fair
//! scheduler (EEVDF) the CPU time it burns counts against it: once it has run past its share
//! it is no longer eligible when it is woken, and waits out another task's whole slice
//! (milliseconds) before it runs. `sched_yield` does not help: each call moves the yielder's
//! deadline a slice later, so a thread that yields in a loop hands its CPU to every other
//! task for the rest of their slices. A thread that sleeps, by contrast, keeps its claim on
//! the CPU and is run soon after it is woken.
//!
//! So a process keeps one [`Contention`] record, [`MACHINE`]: a spinning thread that finds a
//! gap of more than [`GAP`] between two readings of the clock was preempted (the cores are
//! taken) and says so. For a while afterwards ([`Contention`] says how long) a waiting side
//! spins [`BUSY_SPIN`] at most, which is enough while its peer is on a CPU too; and not at all
//! when its peer announced that it sleeps, since waking up takes longer than that: it hands
//! the CPU over at once with a futex sleep. On an idle machine nothing is ever preempted and
//! a wait spins as long as its caller allows ([`Spin::new`]), as before.
//!
//! Spinning threads are also counted ([`Spinners`]): at most one client thread per CPU spins
//! at a time in a process; a thread beyond that sleeps as soon as it has published, so that
//! with more client threads than cores the CPUs go to threads that work, the server's
//! included, rather than to threads polling for answers that need those CPUs first.
//!
//! The choice only decides how long to spin: whatever it decides, sleeping goes through the
//! announce-then-check protocol of [`channel`](crate::channel), so no wake-up is lost.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// A gap this long between two clock readings of a spinning loop (normally a microsecond or
/// two apart) means the thread was off its CPU: preempted by another task.
pub const GAP: Duration = Duration::from_micros(50);
/// Longest spin while the machine is contended: about two round trips of a peer that is on a
/// CPU, so that a quick answer is still caught without a sleep.
pub const BUSY_SPIN: Duration = Duration::from_micros(4);
/// How long the machine counts as contended after a preemption is seen.
const HOLD: Duration = Duration::from_millis(10);
/// The longest hold: a machine found contended again and again is probed this rarely. Short,
/// because a hold outlives the load that caused it: a server that stayed in handing-over
/// mode for a second after the hogs stopped measured tens of times slower than idle.
const MAX_HOLD: Duration = Duration::from_millis(80);
/// A preemption seen this soon after a hold ended doubles the next hold (each probe of a
/// still-busy machine costs a preempted spin, so a machine that stays busy is probed less
/// and less often).
const REPROBE: Duration = Duration::from_millis(100);
/// Polls between two readings of the clock.
pub const POLLS_PER_CLOCK: u32 = 64;

/// Nanoseconds of the monotonic clock (`CLOCK_MONOTONIC`, read through the vDSO).
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    crate::sys::clock_monotonic(&mut ts);
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The CPUs this process may run on (its affinity mask; read once, without touching a file,
/// since an interposer must not open files behind the program's back).
pub fn cpus() -> usize {
    static CPUS: OnceLock<usize> = OnceLock::new();
    *CPUS.get_or_init(crate::sys::cpus_allowed)
}

/// Most client threads of one process that spin at once: one per CPU. The others sleep as
/// soon as they have published. (Leaving a CPU to the server measured slower with two
/// threads on two CPUs, and no better with four or eight.)
pub fn client_spinners_allowed() -> usize {
    cpus()
}

/// The threads of a process spinning for an answer right now.
#[derive(Debug)]
pub struct Spinners {
    now: AtomicUsize,
}

/// The spinners of this process's channels.
pub static CLIENT_SPINNERS: Spinners = Spinners::new();

impl Spinners {
    /// No one spinning.
    pub const fn new() -> Spinners {
        Spinners {
            now: AtomicUsize::new(0),
        }
    }

    /// A place to spin in, if fewer than `most` threads hold one.
    pub fn enter(&self, most: usize) -> Option<SpinPlace<'_>> {
        let before = self.now.fetch_add(1, Ordering::Relaxed);
        if before < most {
            Some(SpinPlace { spinners: self })
        } else {
            self.now.fetch_sub(1, Ordering::Relaxed);
            None
        }
    }

    /// Spinners now.
    pub fn count(&self) -> usize {
        self.now.load(Ordering::Relaxed)
    }
}

impl Default for Spinners {
    fn default() -> Self {
        Spinners::new()
    }
}

/// A thread's place among the spinners, given back when it drops.
#[derive(Debug)]
pub struct SpinPlace<'a> {
    spinners: &'a Spinners,
}

impl Drop for SpinPlace<'_> {
    fn drop(&mut self) {
        self.spinners.now.fetch_sub(1, Ordering::Relaxed);
    }
}

fn nanos(d: Duration) -> u64 {
    d.as_nanos() as u64
}

/// Whether this machine's cores have been seen taken lately. Threads of one process share
/// it ([`MACHINE`]): what one finds holds for all. Its fields are hints, read and written
/// with relaxed atomics; a race between two threads only makes a hold a little shorter or
/// longer.
#[derive(Debug)]
pub struct Contention {
    /// Set while a hold may be in force: the idle machine's check is this one load.
    flagged: AtomicBool,
    /// When the current (or last) hold ends, in [`now_ns`] time; 0 before the first.
    until: AtomicU64,
    /// The length of the current hold.
    hold: AtomicU64,
}

/// The contention record of this process.
pub static MACHINE: Contention = Contention::new();

impl Contention {
    /// A record of a machine not seen contended.
    pub const fn new() -> Contention {
        Contention {
            flagged: AtomicBool::new(false),
            until: AtomicU64::new(0),
            hold: AtomicU64::new(0),
        }
    }

    /// Whether the machine counts as contended now.
    #[inline]
    pub fn contended(&self) -> bool {
        if !self.flagged.load(Ordering::Relaxed) {
            return false;
        }
        self.contended_at(now_ns())
    }

    fn contended_at(&self, now: u64) -> bool {
        if now < self.until.load(Ordering::Relaxed) {
            return true;
        }
        self.flagged.store(false, Ordering::Relaxed);
        false
    }

    /// Says that a thread was preempted at `now`: the machine counts as contended for a
    /// hold, twice as long as the last one if that ended less than [`REPROBE`] ago.
    pub fn preempted(&self, now: u64) {
        let last_end = self.until.load(Ordering::Relaxed);
        let last_hold = self.hold.load(Ordering::Relaxed);
        if now < last_end {
            // Already held: another thread saw it first.
            return;
        }
        let hold = if last_end != 0 && now < last_end + nanos(REPROBE) {
            (last_hold * 2).clamp(nanos(HOLD), nanos(MAX_HOLD))
        } else {
            nanos(HOLD)
        };
        self.hold.store(hold, Ordering::Relaxed);
        self.until.store(now + hold, Ordering::Relaxed);
        self.flagged.store(true, Ordering::Relaxed);
    }
}

impl Default for Contention {
    fn default() -> Self {
        Contention::new()
    }
}

/// One spell of polling: how long it may go on, and the clock readings that tell whether the
/// polling thread was preempted meanwhile.
#[derive(Debug)]
pub struct Spin<'a> {
    machine: &'a Contention,
    polls: u32,
    /// When the spell began and the clock was last read (0: not read yet).
    start: u64,
    last: u64,
    limit: u64,
}

impl<'a> Spin<'a> {
    /// A spell of at most `idle_limit` on an idle machine. On a contended one (by `machine`)
    /// it is at most [`BUSY_SPIN`], and nothing when `peer_sleeps`.
    pub fn new(machine: &'a Contention, idle_limit: Duration, peer_sleeps: bool) -> Spin<'a> {
        let limit = if !machine.contended() {
            idle_limit
        } else if peer_sleeps {
            Duration::ZERO
        } else {
            BUSY_SPIN.min(idle_limit)
        };
        Spin {
            machine,
            polls: 0,
            start: 0,
            last: 0,
            limit: nanos(limit),
        }
    }

    /// Called after a poll that found nothing: whether to poll again. Reads the clock every
    /// [`POLLS_PER_CLOCK`] polls (a quick answer never waits for it), and pauses between
    /// polls (the pause keeps this core from stealing back the line the other side is about
    /// to write: measured faster).
    #[inline]
    pub fn again(&mut self) -> bool {
        if self.limit == 0 {
            return false;
        }
        self.polls += 1;
        if !self.polls.is_multiple_of(POLLS_PER_CLOCK) {
            std::hint::spin_loop();
            return true;
        }
        self.check(now_ns())
    }

    fn check(&mut self, now: u64) -> bool {
        if self.start == 0 {
            self.start = now;
        } else if now.saturating_sub(self.last) > nanos(GAP) {
            // Off the CPU between two readings: the cores are taken. Stop spinning now, the
            // peer has had plenty of time and may be waiting for a CPU itself.
            self.machine.preempted(now);
            return false;
        }
        self.last = now;
        now - self.start < self.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn a_preemption_holds_and_repeated_ones_hold_longer() {
        let c = Contention::new();
        assert!(!c.contended_at(5 * MS));
        c.preempted(10 * MS);
        assert!(c.contended_at(10 * MS + 1));
        assert!(c.contended_at(19 * MS));
        // A second preemption inside the hold changes nothing.
        c.preempted(15 * MS);
        assert!(!c.contended_at(20 * MS));
        // Seen again soon after the hold ended: the next hold is twice as long.
        c.preempted(40 * MS);
        assert!(c.contended_at(59 * MS));
        assert!(!c.contended_at(60 * MS));
        c.preempted(100 * MS);
        assert_eq!(c.until.load(Ordering::Relaxed), 140 * MS);
        // Seen long after: back to the first hold.
        c.preempted(1000 * MS);
        assert_eq!(c.until.load(Ordering::Relaxed), 1010 * MS);
    }

    #[test]
    fn holds_stop_growing_at_the_longest() {
        let c = Contention::new();
        let mut now = MS;
        for _ in 0..20 {
            c.preempted(now);
            now = c.until.load(Ordering::Relaxed) + 1;
        }
        assert_eq!(c.hold.load(Ordering::Relaxed), nanos(MAX_HOLD));
    }

    #[test]
    fn spells_are_sized_to_the_machine() {
        let idle = Contention::new();
        let limit = |s: &Spin<'_>| s.limit;
        assert_eq!(
            limit(&Spin::new(&idle, Duration::from_micros(50), true)),
            50_000
        );
        let busy = Contention::new();
        busy.preempted(now_ns());
        assert_eq!(
            limit(&Spin::new(&busy, Duration::from_micros(50), false)),
            nanos(BUSY_SPIN)
        );
        let mut none = Spin::new(&busy, Duration::from_micros(50), true);
        assert!(!none.again(), "a sleeping peer on a busy machine: no spin");
    }

    #[test]
    fn spinners_are_capped_and_give_their_places_back() {
        let spinners = Spinners::new();
        let a = spinners.enter(2).unwrap();
        let b = spinners.enter(2).unwrap();
        assert!(spinners.enter(2).is_none());
        assert_eq!(spinners.count(), 2);
        drop(a);
        let c = spinners.enter(2).unwrap();
        drop((b, c));
        assert_eq!(spinners.count(), 0);
    }

    #[test]
    fn the_cpu_count_is_the_affinity_mask() {
        let n = cpus();
        assert!(n >= 1);
        assert_eq!(
            n,
            std::thread::available_parallelism().map_or(1, usize::from),
            "no cgroup quota on a test machine: both counts agree"
        );
        assert_eq!(client_spinners_allowed(), n);
    }

    #[test]
    fn a_gap_between_readings_ends_the_spell_and_flags_the_machine() {
        let c = Contention::new();
        let mut spin = Spin::new(&c, Duration::from_micros(50), false);
        assert!(spin.check(1_000_000));
        assert!(spin.check(1_002_000));
        // 40 µs in: under the limit, no gap.
        assert!(spin.check(1_040_000));
        // Past the limit.
        assert!(!spin.check(1_050_001));
        assert!(!c.contended_at(1_050_001));
        let mut spin = Spin::new(&c, Duration::from_millis(10), false);
        assert!(spin.check(2_000_000));
        // 200 µs between two readings: preempted.
        assert!(!spin.check(2_200_000));
        assert!(c.contended_at(2_200_001));
    }
}
