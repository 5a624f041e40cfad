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
//! Whatever the machine, a side stops spinning as soon as its peer cannot be running: the peer
//! last said it runs on this side's CPU (see [`channel`](crate::channel): each side publishes
//! its CPU), or the peer was woken and has not said it runs within [`WAKE_GRACE`]. Two sides
//! the scheduler puts on one CPU then hand it to each other at once with a futex sleep,
//! where each used to spin a whole spell (50 µs) for a peer that could not run until it ended;
//! no clock gap shows that case, since neither is preempted while it spins.
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
/// The poll at which a spell first asks whether the peer is on a CPU: late enough that a
/// quick answer on an idle machine (a few hundred nanoseconds) comes before it and pays
/// nothing, early enough to cost little next to the hand-over it leads to.
pub const FIRST_PEER_CHECK: u32 = 16;
/// How long a side that woke its peer keeps spinning before the peer has said it runs: long
/// enough for a wake-up onto another CPU, even an idle virtual one the host must wake first;
/// a peer that has not run by then is waiting for a CPU, quite possibly this side's.
pub const WAKE_GRACE: Duration = Duration::from_micros(20);

/// Spells this process ended because the peer could not be running ([`Spin::again_unless`]):
/// each one a hand-over instead of a spell spun in vain.
pub static HANDED_OVER: AtomicU64 = AtomicU64::new(0);

/// 1 + the CPU the calling thread runs on, 0 if it cannot be told (`sched_getcpu` reads it
/// from the thread's restartable-sequences area: a load, not a system call). What
/// [`Region::publish_cpu`](crate::channel::Region::publish_cpu) publishes.
#[inline]
pub fn current_cpu() -> u32 {
    u32::try_from(crate::sys::sched_getcpu()).map_or(0, |cpu| cpu + 1)
}

/// Whether a peer that published `peer_cpu` (and `peer_sleeping`, its sleep flag) cannot be
/// running now, for a side on `own_cpu` that has spun `elapsed` nanoseconds: it last ran on
/// this side's CPU, where this side runs; or it still says it sleeps though it was woken more
/// than [`WAKE_GRACE`] ago (a side that finds the flag set woke the peer itself).
#[inline]
pub fn peer_off_cpu(own_cpu: u32, peer_cpu: u32, peer_sleeping: bool, elapsed: u64) -> bool {
    (own_cpu != 0 && peer_cpu == own_cpu) || (peer_sleeping && elapsed > nanos(WAKE_GRACE))
}

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

    /// Whether the machine has not been found contended for at least `window`: no hold is in
    /// force and the last one ended that long ago (or there never was one). A stricter test
    /// than [`contended`](Contention::contended), for choices that pay only on a machine with
    /// a CPU to spare and cost much on a busy one: a busy machine's holds come and go as its
    /// threads happen to be preempted, so the gaps between them say nothing.
    pub fn calm_for(&self, window: Duration) -> bool {
        self.calm_at(now_ns(), window)
    }

    fn calm_at(&self, now: u64, window: Duration) -> bool {
        let until = self.until.load(Ordering::Relaxed);
        until == 0 || now >= until.saturating_add(nanos(window))
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
    /// to write: measured faster). Stops as soon as `peer_off_cpu` says the peer cannot be
    /// running (see [`peer_off_cpu`]), asked at poll [`FIRST_PEER_CHECK`] (with 0) and at
    /// every reading of the clock (with the nanoseconds spun): spinning for a peer off its
    /// CPU only keeps it off longer when it waits for this one.
    #[inline]
    pub fn again_unless(&mut self, peer_off_cpu: impl FnOnce(u64) -> bool) -> bool {
        if self.limit == 0 {
            return false;
        }
        self.polls += 1;
        let off = if self.polls == FIRST_PEER_CHECK {
            peer_off_cpu(0)
        } else if self.polls.is_multiple_of(POLLS_PER_CLOCK) {
            let now = now_ns();
            if !self.check(now) {
                return false;
            }
            peer_off_cpu(now - self.start)
        } else {
            false
        };
        if off {
            HANDED_OVER.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        std::hint::spin_loop();
        true
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
    fn calm_means_no_hold_for_a_whole_window() {
        let c = Contention::new();
        let window = Duration::from_secs(1);
        assert!(c.calm_at(5 * MS, window), "never contended: calm");
        c.preempted(10 * MS);
        // In the hold, after it, and until a whole window has passed since it ended: not calm.
        assert!(!c.calm_at(15 * MS, window));
        assert!(!c.contended_at(30 * MS));
        assert!(!c.calm_at(30 * MS, window));
        assert!(!c.calm_at(1019 * MS, window));
        assert!(c.calm_at(1020 * MS, window));
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
        assert!(
            !none.again_unless(|_| false),
            "a sleeping peer on a busy machine: no spin"
        );
    }

    #[test]
    fn a_peer_on_this_cpu_or_woken_and_not_yet_running_is_off_its_cpu() {
        let grace = nanos(WAKE_GRACE);
        // On this side's CPU: off, however soon.
        assert!(peer_off_cpu(3, 3, false, 0));
        // On another CPU and running: on.
        assert!(!peer_off_cpu(3, 2, false, 10 * grace));
        // Not known (0): never taken for this side's CPU.
        assert!(!peer_off_cpu(0, 0, false, 0));
        assert!(!peer_off_cpu(3, 0, false, 0));
        // Woken, still saying it sleeps: given the grace, then off.
        assert!(!peer_off_cpu(3, 2, true, grace));
        assert!(peer_off_cpu(3, 2, true, grace + 1));
    }

    #[test]
    fn a_spell_asks_about_the_peer_first_and_at_every_clock_reading() {
        let idle = Contention::new();
        let mut spin = Spin::new(&idle, Duration::from_secs(1), false);
        let mut polls = 1;
        while spin.again_unless(|elapsed| {
            assert_eq!(elapsed, 0, "asked first before any clock reading");
            true
        }) {
            polls += 1;
        }
        assert_eq!(polls, FIRST_PEER_CHECK);
        // A spell cut short by a preemption (a loaded test machine) proves nothing: tried
        // again on a fresh record until one runs unpreempted.
        let unpreempted = |run: &mut dyn FnMut(&Contention)| {
            for _ in 0..100 {
                let machine = Contention::new();
                run(&machine);
                if !machine.contended() {
                    return true;
                }
            }
            false
        };
        assert!(unpreempted(&mut |machine| {
            let mut spin = Spin::new(machine, Duration::from_secs(1), false);
            let mut asked = Vec::new();
            let mut polls = 0;
            while spin.again_unless(|elapsed| {
                asked.push(elapsed);
                asked.len() == 3
            }) {
                polls += 1;
            }
            if machine.contended() {
                return;
            }
            assert_eq!(asked.len(), 3);
            assert_eq!(asked[0], 0);
            assert_eq!(
                polls,
                2 * POLLS_PER_CLOCK - 1,
                "asked at polls 1, 64 and 128"
            );
            assert!(asked[2] >= asked[1]);
        }));
        // A peer that stays on its CPU is not asked to end the spell: the limit does.
        assert!(unpreempted(&mut |machine| {
            let mut spin = Spin::new(machine, Duration::from_micros(200), false);
            let started = now_ns();
            while spin.again_unless(|_| false) {}
            if !machine.contended() {
                assert!(now_ns() - started >= 200_000);
            }
        }));
    }

    #[test]
    #[allow(unsafe_code)]
    fn the_current_cpu_is_one_this_thread_may_run_on() {
        let cpu = current_cpu();
        assert!(cpu >= 1, "sched_getcpu works on Linux");
        // SAFETY: a zeroed cpu_set_t filled by sched_getaffinity for this thread.
        let allowed = unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            assert_eq!(
                libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set),
                0
            );
            libc::CPU_ISSET(cpu as usize - 1, &set)
        };
        assert!(allowed);
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
