//! A worker thread: serves the channels it owns, spinning while they are busy and sleeping in
//! one `io_uring` wait when they are not.
//!
//! Sleeping arms, for every channel, a futex wait on its `req_seq` (with the value last served,
//! so a request published meanwhile completes the wait at once) and a poll for its socket's
//! hang-up, plus a poll on the worker's control eventfd (new channels, shutdown). Armed
//! operations stay armed across wake-ups, so a busy worker makes no system call at all; a
//! completion is read from the ring's shared completion queue.

#![allow(unsafe_code)]

use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use btfuse_core::ring::{self, Request, Response};
use btfuse_core::{Credentials, Errno, Filesystem};
use btfuse_daemon::metrics::{self, Frontend};
use btfuse_ring_client::channel::{AREA, Region};
use btfuse_ring_client::socket::discard_received;
use btfuse_ring_client::waiting::{self, Spin};
use io_uring::{IoUring, opcode, squeue, types};

use super::handoff::Courier;
use super::session::Session;
use super::{Shared, exec};
use crate::sys;

/// How long a worker keeps polling its channels after the last request before it sleeps, on
/// a machine with cores to spare; on a busy one, much less or not at all (see
/// [`waiting`](btfuse_ring_client::waiting)).
const SPIN: Duration = Duration::from_micros(50);
/// How long a worker that was just given a channel polls for its first request, on a machine
/// with cores to spare: the client is mapping its region at the same moment, which takes
/// longer than a request's turn, and a worker asleep when the request comes costs the client
/// a wake-up. Only while the client runs elsewhere: a client that has not said where it
/// runs within [`waiting::WAKE_GRACE`] of its welcome is taken for one waiting for a CPU,
/// quite possibly this one (see `no_client_on_a_cpu`).
const FIRST_REQUEST_SPIN: Duration = Duration::from_micros(250);
/// How long the machine must have shown no contention before a worker moves off its
/// clients' CPU (see `move_off_the_clients_cpu`).
const MOVE_CALM: Duration = Duration::from_secs(1);
/// The most CPU pressure (the share of the recent past in which some thread waited for a CPU,
/// see [`sys::CpuPressure`]) under which a worker still moves off its clients' CPU: above it,
/// no CPU is to spare. Measured over 100 ms at a time, a loop of preloaded `cat`s on an idle
/// machine stayed near 16% (90th percentile 21%); `btfuse-bench`'s build script beside two CPU
/// hogs near 75% (10th percentile 13%).
const MOVE_MOST_PRESSURE: f32 = 40.0;
/// Submission queue entries: two per channel would need resizing; the queue is flushed
/// whenever it fills, so this only bounds a batch.
const RING_ENTRIES: u32 = 256;
/// `FUTEX2_SIZE_U32`: the futex word is 32 bits (and, without `FUTEX2_PRIVATE`, shared).
const FUTEX2_SIZE_U32: u32 = 0x02;
/// Match any waker.
const FUTEX_BITSET_MATCH_ANY: u64 = 0xffff_ffff;

const KIND_CONTROL: u64 = 0;
const KIND_FUTEX: u64 = 1;
const KIND_HANGUP: u64 = 2;
const KIND_CANCEL: u64 = 3;

/// A channel the set-up thread hands to a worker.
pub(crate) struct NewChannel<F: Filesystem> {
    pub(crate) region: Region,
    pub(crate) stream: Arc<UnixStream>,
    pub(crate) session: Arc<Session<F>>,
    pub(crate) cred: Credentials,
    /// Its place in its user's connection count.
    pub(crate) slot: super::UserSlot,
    /// Where its client probably runs (1 + the CPU, 0 if unknown) until it says so itself.
    pub(crate) cpu_hint: u32,
}

/// Where a worker receives new channels and wake-ups.
pub(crate) struct Inbox<F: Filesystem> {
    eventfd: std::os::fd::OwnedFd,
    pending: Mutex<Vec<NewChannel<F>>>,
    /// Channels in `pending`, read without the lock by the polling worker.
    waiting: AtomicUsize,
    load: AtomicUsize,
}

impl<F: Filesystem> Inbox<F> {
    pub(crate) fn new() -> std::io::Result<Self> {
        Ok(Inbox {
            eventfd: sys::eventfd()?,
            pending: Mutex::new(Vec::new()),
            waiting: AtomicUsize::new(0),
            load: AtomicUsize::new(0),
        })
    }

    /// Channels the worker serves or is about to.
    pub(crate) fn load(&self) -> usize {
        self.load.load(Ordering::Relaxed)
    }

    pub(crate) fn push(&self, channel: NewChannel<F>) {
        self.load.fetch_add(1, Ordering::Relaxed);
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(channel);
        self.waiting.fetch_add(1, Ordering::Release);
        self.wake();
    }

    pub(crate) fn wake(&self) {
        sys::eventfd_signal(&self.eventfd);
    }
}

/// A channel as its worker keeps it.
struct Channel<F: Filesystem> {
    region: Region,
    stream: Arc<UnixStream>,
    session: Arc<Session<F>>,
    cred: Credentials,
    /// Its place in its user's connection count, given back when it goes.
    _slot: super::UserSlot,
    /// Sequence number of the last request served.
    last_seen: u32,
    /// A futex wait on `req_seq` is in flight: the region must outlive it.
    futex_armed: bool,
    /// A hang-up poll on the socket is in flight.
    hangup_armed: bool,
    /// The client hung up or broke the protocol: retire once nothing is in flight.
    closing: bool,
    /// [`NewChannel::cpu_hint`].
    cpu_hint: u32,
}

fn user_data(kind: u64, slot: usize, generation: u32) -> u64 {
    (u64::from(generation) << 32) | ((slot as u64) << 2) | kind
}

fn split_user_data(data: u64) -> (u64, usize, u32) {
    (
        data & 3,
        ((data & 0xffff_ffff) >> 2) as usize,
        (data >> 32) as u32,
    )
}

struct Worker<'a, F: Filesystem + Send + Sync + 'static> {
    shared: &'a Shared<F>,
    index: usize,
    inbox: &'a Inbox<F>,
    ring: IoUring,
    slots: Vec<Option<Channel<F>>>,
    generations: Vec<u32>,
    control_armed: bool,
    /// Some channel is closing: `retire_closed` has work.
    any_closing: bool,
    /// Completions read from the ring, kept to reuse the allocation.
    events: Vec<u64>,
    /// The CPUs this worker may run on, as it started (`None`: unknown, it never moves).
    allowed: Option<libc::cpu_set_t>,
    /// It left its clients' CPU (see [`Worker::move_off_the_clients_cpu`]) and has not slept
    /// since: it runs on `allowed` without that CPU.
    moved_off: bool,
    /// The kernel's CPU pressure, read before a move.
    pressure: sys::CpuPressure,
}

pub(super) fn run<F: Filesystem + Send + Sync + 'static>(shared: &Shared<F>, index: usize) {
    let ring = match IoUring::new(RING_ENTRIES) {
        Ok(ring) => ring,
        Err(e) => {
            log::error!("worker {index}: cannot create an io_uring: {e}");
            return;
        }
    };
    let mut worker = Worker {
        shared,
        index,
        inbox: &shared.workers[index],
        ring,
        slots: Vec::new(),
        generations: Vec::new(),
        control_armed: false,
        any_closing: false,
        events: Vec::new(),
        allowed: sys::thread_affinity(),
        moved_off: false,
        pressure: sys::CpuPressure::open(),
    };
    worker.serve_until_stopped();
    worker.disconnect_all();
}

impl<F: Filesystem + Send + Sync + 'static> Worker<'_, F> {
    fn serve_until_stopped(&mut self) {
        let mut request = Vec::with_capacity(AREA);
        let mut scratch = exec::Scratch::default();
        let mut spin: Option<Spin<'static>> = None;
        // Whether the last response went to a client that slept (not on a CPU).
        let mut client_slept = false;
        let mut waiting_seen = 0;
        // A channel adopted has not sent its first request yet.
        let mut fresh = false;
        while !self.shared.stop.load(Ordering::Relaxed) {
            if (!self.control_armed || self.inbox.waiting.load(Ordering::Acquire) > 0)
                && self.adopt_new_channels()
            {
                fresh = true;
                // Its client was asleep, waiting for the welcome: on a busy machine the
                // worker then sleeps at once, and the first request wakes it.
                client_slept = true;
                spin = None;
                self.move_off_the_clients_cpu();
            }
            self.reap_completions();
            if self.any_closing {
                self.retire_closed();
            }
            let mut served = 0;
            for slot in 0..self.slots.len() {
                if let Some(woke) = self.serve_slot(slot, &mut request, &mut scratch) {
                    served += 1;
                    client_slept = woke;
                }
            }
            if served != waiting_seen {
                waiting_seen = served;
                self.shared.counters.waiting[self.index].store(served, Ordering::Relaxed);
            }
            if served > 0 {
                // The clock is read at the next check, not now: the client's next request
                // may already be on its way.
                spin = None;
                fresh = false;
                continue;
            }
            // Spinning for the next request pays only while a client is on a CPU to send it.
            let limit = if fresh { FIRST_REQUEST_SPIN } else { SPIN };
            let spell =
                spin.get_or_insert_with(|| Spin::new(&waiting::MACHINE, limit, client_slept));
            if spell.again_unless(|elapsed| self.no_client_on_a_cpu(elapsed)) {
                continue;
            }
            if self.move_off_the_clients_cpu() {
                // A new spell, on the CPU it moved to.
                spin = None;
                continue;
            }
            self.sleep();
            spin = None;
            fresh = false;
            client_slept = false;
        }
    }

    /// Publishes the CPU this worker runs on to every channel's client.
    fn publish_cpu(&self) {
        let cpu = waiting::current_cpu();
        for channel in self.slots.iter().flatten() {
            Region::publish_cpu(channel.region.server_cpu(), cpu);
        }
    }

    /// Whether no client of this worker's channels can be sending now (see
    /// [`waiting::peer_off_cpu`]): each runs on this worker's CPU, or was woken and has not run
    /// for `elapsed` nanoseconds of spinning. Then spinning only keeps them waiting. A client
    /// that has not yet said where it runs (it publishes that as soon as it has its welcome)
    /// counts as one woken and not yet running.
    fn no_client_on_a_cpu(&self, elapsed: u64) -> bool {
        let cpu = waiting::current_cpu();
        self.slots.iter().flatten().all(|channel| {
            let region = &channel.region;
            let client_cpu = region.client_cpu().load(Ordering::Relaxed);
            channel.closing
                || waiting::peer_off_cpu(
                    cpu,
                    client_cpu,
                    client_cpu == 0 || region.client_sleeping().load(Ordering::Relaxed) != 0,
                    elapsed,
                )
        })
    }

    /// On a machine not found contended for [`MOVE_CALM`], a worker whose clients all run on its
    /// own CPU, awake (so each is waiting for that CPU, which this worker holds), moves to
    /// another CPU it may use, and its spell goes on there; it may use them all again once it
    /// sleeps. A new channel's client counts as where the accept thread ran until it says
    /// where it runs.
    ///
    /// The scheduler puts a woken thread beside its waker: a new process, the accept thread
    /// it woke and the worker that thread woke end up on one CPU while another idles, and
    /// every request is then a hand-over of that CPU instead of a cache-line transfer. With
    /// the workers pinned to the CPU the `cat`s were not on, one preloaded `cat` of a btfuse
    /// file took about 130 µs less; this rule, which moves a worker only once it finds itself
    /// there, took 26 to 56 µs off (1,000 processes per daemon, both orders, four runs). On a
    /// contended machine the CPU moved to is taken too, and a hand-over is what pays: with
    /// two CPU hogs, a worker that moved whenever the last hold had run out (a busy machine's
    /// holds come and go) made `btfuse-bench`'s build script take 1.47–1.66 s against
    /// 1.02–1.15 s without the rule, so a worker moves only after a whole [`MOVE_CALM`]
    /// without a sign of contention, and only while the kernel's CPU pressure says a CPU is
    /// to spare ([`MOVE_MOST_PRESSURE`]): a worker that spins sees no contention while it
    /// sleeps, and the holds lapse while the hogs stay. Whether it moved.
    fn move_off_the_clients_cpu(&mut self) -> bool {
        if self.moved_off || !waiting::MACHINE.calm_for(MOVE_CALM) {
            return false;
        }
        let Some(allowed) = self.allowed.as_ref() else {
            return false;
        };
        let cpu = waiting::current_cpu();
        let mut active = self
            .slots
            .iter()
            .flatten()
            .filter(|channel| !channel.closing)
            .peekable();
        if cpu == 0 || active.peek().is_none() {
            return false;
        }
        let all_here = active.all(|channel| {
            let region = &channel.region;
            match region.client_cpu().load(Ordering::Relaxed) {
                // Not said yet: waking up where it slept, probably.
                0 => channel.cpu_hint == cpu,
                client => client == cpu && region.client_sleeping().load(Ordering::Relaxed) == 0,
            }
        });
        let Some(elsewhere) = all_here
            .then(|| sys::affinity_without(allowed, (cpu - 1) as usize))
            .flatten()
        else {
            return false;
        };
        if self
            .pressure
            .recent_wait()
            .is_some_and(|share| share > MOVE_MOST_PRESSURE)
        {
            return false;
        }
        if !sys::set_thread_affinity(&elsewhere) {
            return false;
        }
        self.moved_off = true;
        // Where it runs now, for the clients' spin rules.
        self.publish_cpu();
        true
    }

    /// Queues `entry`, flushing the submission queue if it is full.
    fn push(&mut self, entry: squeue::Entry) {
        loop {
            // SAFETY: every entry refers to memory that outlives its operation: futex words in
            // regions kept until their wait completes (see `retire_closed`), or no memory.
            if unsafe { self.ring.submission().push(&entry) }.is_ok() {
                return;
            }
            if let Err(e) = self.ring.submit() {
                log::warn!("io_uring submit: {e}");
            }
        }
    }

    /// Arms the poll on the control eventfd (new channels, shutdown) unless it is armed.
    fn arm_control(&mut self) {
        if !self.control_armed {
            let poll = opcode::PollAdd::new(
                types::Fd(self.inbox.eventfd.as_raw_fd()),
                libc::POLLIN as u32,
            )
            .build()
            .user_data(user_data(KIND_CONTROL, 0, 0));
            self.push(poll);
            self.control_armed = true;
            let _ = self.ring.submit();
        }
    }

    /// Takes the channels the set-up handed over; whether there were any.
    fn adopt_new_channels(&mut self) -> bool {
        self.arm_control();
        let new: Vec<NewChannel<F>> = {
            let mut pending = self.inbox.pending.lock().unwrap_or_else(|p| p.into_inner());
            self.inbox.waiting.store(0, Ordering::Relaxed);
            std::mem::take(&mut *pending)
        };
        if new.is_empty() {
            return false;
        }
        for channel in new {
            let slot = match self.slots.iter().position(Option::is_none) {
                Some(slot) => slot,
                None => {
                    self.slots.push(None);
                    self.generations.push(0);
                    self.slots.len() - 1
                }
            };
            self.generations[slot] = self.generations[slot].wrapping_add(1);
            let hangup = opcode::PollAdd::new(
                types::Fd(channel.stream.as_raw_fd()),
                // POLLIN too: a client never writes after its hello, so anything it sends
                // (descriptors that would keep its own socket alive, say) ends the channel.
                (libc::POLLIN | libc::POLLRDHUP | libc::POLLHUP) as u32,
            )
            .build()
            .user_data(user_data(KIND_HANGUP, slot, self.generations[slot]));
            self.slots[slot] = Some(Channel {
                region: channel.region,
                stream: channel.stream,
                session: channel.session,
                cred: channel.cred,
                _slot: channel.slot,
                // A fresh region starts at 0; the client may already have published request 1
                // before the channel got here.
                last_seen: 0,
                futex_armed: false,
                hangup_armed: true,
                closing: false,
                cpu_hint: channel.cpu_hint,
            });
            self.push(hangup);
        }
        let _ = self.ring.submit();
        // The new clients learn where this worker runs before their first request.
        self.publish_cpu();
        true
    }

    fn reap_completions(&mut self) {
        let mut completions = self.ring.completion();
        if completions.is_empty() {
            return;
        }
        let mut events = std::mem::take(&mut self.events);
        events.extend(completions.by_ref().map(|cqe| cqe.user_data()));
        drop(completions);
        for (kind, slot, generation) in events.drain(..).map(split_user_data) {
            if kind == KIND_CONTROL {
                self.control_armed = false;
                sys::eventfd_drain(&self.inbox.eventfd);
                continue;
            }
            if kind == KIND_CANCEL || self.generations.get(slot) != Some(&generation) {
                continue;
            }
            let Some(Some(channel)) = self.slots.get_mut(slot) else {
                continue;
            };
            match kind {
                KIND_FUTEX => channel.futex_armed = false,
                KIND_HANGUP => {
                    let (bytes, fds) = discard_received(&channel.stream);
                    if bytes > 0 {
                        log::warn!(
                            "uid {} (pid {}) wrote on its channel after the hello ({fds} \
                             descriptors among it): closed them and dropped the channel",
                            channel.cred.uid,
                            channel.cred.pid
                        );
                    }
                    channel.hangup_armed = false;
                    channel.closing = true;
                    self.any_closing = true;
                }
                _ => {}
            }
        }
        self.events = events;
    }

    /// Frees the channels that are closing once no operation refers to them; asks the kernel
    /// to cancel a futex wait that still does.
    fn retire_closed(&mut self) {
        self.any_closing = false;
        let mut cancels = Vec::new();
        for slot in 0..self.slots.len() {
            let Some(channel) = &self.slots[slot] else {
                continue;
            };
            if !channel.closing {
                continue;
            }
            if channel.futex_armed || channel.hangup_armed {
                // Still closing: look again after the cancellations complete.
                self.any_closing = true;
                let generation = self.generations[slot];
                if channel.futex_armed {
                    cancels.push(user_data(KIND_FUTEX, slot, generation));
                }
                if channel.hangup_armed {
                    cancels.push(user_data(KIND_HANGUP, slot, generation));
                }
                continue;
            }
            if let Some(channel) = self.slots[slot].take() {
                self.release(channel);
            }
        }
        if cancels.is_empty() {
            return;
        }
        for target in cancels {
            let cancel = opcode::AsyncCancel::new(target)
                .build()
                .user_data(user_data(KIND_CANCEL, 0, 0));
            self.push(cancel);
        }
        let _ = self.ring.submit();
    }

    fn release(&self, channel: Channel<F>) {
        sys::shutdown_socket(channel.stream.as_raw_fd());
        self.inbox.load.fetch_sub(1, Ordering::Relaxed);
        self.shared
            .counters
            .channels
            .fetch_sub(1, Ordering::Relaxed);
        // The session, and the descriptions only it held, go with the last channel.
        drop(channel);
    }

    /// Serves the request waiting on `slot`, if any; returns `None` when there was none, and
    /// otherwise whether its client had to be woken for the answer (it slept).
    fn serve_slot(
        &mut self,
        slot: usize,
        request: &mut Vec<u8>,
        scratch: &mut exec::Scratch,
    ) -> Option<bool> {
        let Some(Some(channel)) = self.slots.get_mut(slot) else {
            return None;
        };
        if channel.closing {
            return None;
        }
        let (seq, posted) = match channel.region.take_request(channel.last_seen, request) {
            None => return None,
            Some(Ok(taken)) => taken,
            Some(Err(())) => {
                log::debug!(
                    "client {}: request length beyond the area",
                    channel.cred.pid
                );
                channel.closing = true;
                self.any_closing = true;
                return Some(false);
            }
        };
        channel.last_seen = seq;
        let started = metrics::start();
        let (tag, decoded) = match ring::decode_request(request) {
            Ok(decoded) => decoded,
            Err(e) => {
                // A client that breaks the format is disconnected: the server never guesses.
                log::debug!("client {}: malformed request: {e}", channel.cred.pid);
                channel.closing = true;
                self.any_closing = true;
                sys::shutdown_socket(channel.stream.as_raw_fd());
                return Some(false);
            }
        };
        let before = Arc::as_ptr(&channel.session);
        let response = if matches!(decoded, Request::Attach { .. })
            && Arc::strong_count(&channel.session) > 1
        {
            // A session's other channels would keep the old table: attach first, then join.
            Response::Err(Errno::Busy)
        } else {
            let shared = self.shared;
            let (session, cred) = (&mut channel.session, &channel.cred);
            let courier = Courier {
                opener: shared.opener.as_deref(),
                stream: &channel.stream,
                tag,
            };
            let outcome = catch_unwind(AssertUnwindSafe(move || {
                // Moved out, so the closure is FnOnce and the response may borrow `scratch`.
                let (session, scratch) = (session, scratch);
                let courier = Some(&courier);
                exec::execute(
                    &shared.fs,
                    &shared.forks,
                    session,
                    cred,
                    &decoded,
                    scratch,
                    exec::Extras {
                        courier,
                        contents: shared.prefetch.then_some(&*shared.contents),
                        shower: shared.shower.as_deref(),
                    },
                )
            }));
            match outcome {
                Ok(response) => response,
                Err(_) => {
                    log::error!("request {decoded:?} panicked; answered EIO");
                    Response::Err(Errno::Io)
                }
            }
        };
        let mut woke = false;
        if !posted {
            // SAFETY: this worker is the channel's only server thread.
            let area = unsafe { channel.region.response_area() };
            let len = ring::encode_response(tag, &response, area)
                .or_else(|_| ring::encode_response(tag, &Response::Err(Errno::Io), area))
                .unwrap_or(0);
            Region::publish_cpu(channel.region.server_cpu(), waiting::current_cpu());
            woke = channel.region.publish_response(seq, len);
        }
        if started.is_some() {
            record_request(&decoded, &response, started);
        }
        if Arc::as_ptr(&channel.session) != before {
            let session = Arc::clone(&channel.session);
            self.shared
                .sessions
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(session.join_token, Arc::downgrade(&session));
        }
        Some(woke)
    }

    /// Announces sleep on every channel, arms what is not armed, and waits for one completion.
    fn sleep(&mut self) {
        // A spell can end before the loop came round to arm the control poll again after its
        // last completion (whose eventfd signal, a shutdown's say, was drained with it): at
        // once on a busy machine with a sleeping client, within a few polls when the clients
        // are on this CPU. So it is armed here, and the stop flag read after arming: a
        // shutdown is either seen now or completes the poll.
        self.arm_control();
        let mut work = self.shared.stop.load(Ordering::SeqCst);
        let cpu = waiting::current_cpu();
        for channel in self.slots.iter().flatten() {
            let region = &channel.region;
            Region::publish_cpu(region.server_cpu(), cpu);
            if !region.announce_sleep(
                region.server_sleeping(),
                region.req_seq(),
                channel.last_seen,
            ) {
                work = true;
            }
        }
        if !work {
            let mut waits = Vec::new();
            for (slot, channel) in self.slots.iter_mut().enumerate() {
                let Some(channel) = channel else { continue };
                if channel.futex_armed || channel.closing {
                    continue;
                }
                channel.futex_armed = true;
                waits.push(
                    opcode::FutexWait::new(
                        channel.region.req_seq().as_ptr(),
                        u64::from(channel.last_seen),
                        FUTEX_BITSET_MATCH_ANY,
                        FUTEX2_SIZE_U32,
                    )
                    .build()
                    .user_data(user_data(
                        KIND_FUTEX,
                        slot,
                        self.generations[slot],
                    )),
                );
            }
            for wait in waits {
                self.push(wait);
            }
            if self.moved_off {
                // Asleep, it may be woken anywhere again.
                if let Some(allowed) = &self.allowed {
                    sys::set_thread_affinity(allowed);
                }
                self.moved_off = false;
            }
            if let Err(e) = self.ring.submit_and_wait(1)
                && e.raw_os_error() != Some(libc::EINTR)
            {
                log::warn!("io_uring wait: {e}");
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        // Where it woke up, before it says it runs: clients read both.
        let cpu = waiting::current_cpu();
        for channel in self.slots.iter().flatten() {
            Region::publish_cpu(channel.region.server_cpu(), cpu);
            channel.region.server_sleeping().store(0, Ordering::Relaxed);
        }
    }

    /// At shutdown: every client is told by a hang-up, and every session is released.
    fn disconnect_all(&mut self) {
        for channel in self.slots.iter().flatten() {
            sys::shutdown_socket(channel.stream.as_raw_fd());
        }
        // Futex waits still in flight are keyed by the memfd page, not by this mapping, and
        // complete (or are cancelled with the ring) without touching the memory: the regions
        // may go first.
        let channels: Vec<Channel<F>> = std::mem::take(&mut self.slots)
            .into_iter()
            .flatten()
            .collect();
        for channel in channels {
            self.release(channel);
        }
        for pending in
            std::mem::take(&mut *self.inbox.pending.lock().unwrap_or_else(|p| p.into_inner()))
        {
            sys::shutdown_socket(pending.stream.as_raw_fd());
            self.shared
                .counters
                .channels
                .fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Counts a served request in the metrics: its operation, outcome, time and bytes.
fn record_request(request: &Request<'_>, response: &Response<'_>, started: Option<metrics::Start>) {
    let errno = match response {
        Response::Err(e) => Some(*e),
        _ => None,
    };
    metrics::record(Frontend::Shm, request.index(), started, errno);
    match (request, response) {
        (Request::Read { .. } | Request::Pread { .. }, Response::Data(data)) => {
            metrics::add_bytes(Frontend::Shm, data.len() as u64, 0);
        }
        (Request::Write { .. } | Request::Pwrite { .. }, Response::Size(n)) => {
            metrics::add_bytes(Frontend::Shm, 0, *n);
        }
        _ => {}
    }
}
