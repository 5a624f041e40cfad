//! One channel: a shared region through which one client thread at a time sends a request and
//! the server answers it, without a system call while both sides are busy.
//!
//! # Layout of the region (a sealed memfd, mapped by both sides)
//!
//! | offset | size | written by | field |
//! |---|---|---|---|
//! | 0 | 4 | server, at creation | magic `0x4254_5246` ("BTRF") |
//! | 4 | 4 | server, at creation | layout version, [`LAYOUT_VERSION`] |
//! | 8 | 4 | server, at creation | capacity of each record area, [`AREA`] |
//! | 192 | 4 | server | `server_sleeping`: 1 while the server may be asleep |
//! | 196 | 4 | server | `server_cpu`: 1 + the CPU the server last ran on (0: not known) |
//! | 256 | 4 | client | `client_sleeping`: 1 while the client may be asleep |
//! | 260 | 4 | client | `client_cpu`: 1 + the CPU the client last ran on (0: not known) |
//! | 1024 | 4 | client | `post_seq`: sequence number of the latest posted request |
//! | 1028 | 4 | client | `post_len`: its length in bytes |
//! | 1032 | [`POST_AREA`] | client | posted request record |
//! | 4032 | 4 | client | `req_seq`: sequence number of the latest request |
//! | 4036 | 4 | client | `req_len`: its length in bytes |
//! | 4040 | [`AREA`] | client | request record (the `btfuse_core::ring` format) |
//! | `R` = 4032 + `S` | 4 | server | `resp_seq`: sequence number of the latest response |
//! | `R` + 4 | 4 | server | `resp_len`: its length in bytes |
//! | `R` + 8 | [`AREA`] | server | response record |
//!
//! where `S` is `8 + AREA` rounded up to whole pages. Fields each side writes sit on their own
//! cache lines, so the two sides do not fight over a line they both write; and each sequence
//! number shares its 64-byte line with the first 56 bytes of its record, so the line that tells
//! the other side a small record is there also carries it (one cache-line transfer instead of
//! two, a good part of a round trip's cost).
//!
//! # Posted requests
//!
//! A request whose answer the client will not read (a `Close`, say) may go in the post area
//! instead: the client writes it there, stores `post_len` and `post_seq = n`, and publishes
//! `req_seq = n` as for any request. It may then publish request `n + 1` in the request area
//! at once, without waiting: the server, finding `req_seq` past the last request it served,
//! serves number `last + 1` from the post area when `post_seq` says so, and from the request
//! area otherwise, so the two are served in the order they were published. The server writes
//! no response to a posted request; any later response tells the client the post area is
//! free again. A client never publishes a request in the request area under a number that
//! `post_seq` holds (it moves `post_seq` back first), so a post 2³² requests old is never
//! taken for a new one.
//!
//! # Protocol
//!
//! 1. The client writes a record into the request area, stores `req_len`, then publishes it by
//!    storing `req_seq + 1` (`Release`, pairing with the server's `Acquire` load of
//!    `req_seq`). Before it waits for the answer or lets go of the channel it makes a `SeqCst`
//!    fence and reads `server_sleeping`; only if that is set does it make a system call: a
//!    futex wake on `req_seq`. Work the client does between the two (a system call of its
//!    own) hides the time the store takes to reach the server's core, which a locked
//!    instruction right after the store would have waited for.
//! 2. The server copies the record out of the region (it never decodes shared bytes in place, so
//!    a client rewriting them changes nothing), serves it, writes the response, stores
//!    `resp_len` and publishes `resp_seq = req_seq` the same way, then reads
//!    `client_sleeping` and wakes the client's futex on `resp_seq` only if it is set.
//! 3. A side with nothing to do spins for a while ([`waiting`](crate::waiting) says how long:
//!    on a machine whose cores are taken, not at all when the other side sleeps and only
//!    briefly otherwise), then announces that it sleeps (swaps 1 into its flag, `SeqCst`),
//!    checks once more, and sleeps on the futex with the value it last saw, so a publication
//!    between the check and the sleep makes the sleep return at once. The announcement and
//!    the other side's publication are a Dekker pair of `SeqCst` operations: at least one of
//!    them sees the other, so no wake-up is lost. A side never yields its CPU in a loop
//!    instead of sleeping: see [`waiting`](crate::waiting) for why.
//!
//! Each side's flag also tells the other whether it is running: a publisher that found the
//! flag set (and so made the wake-up call) knows its peer is not on a CPU, and on a busy
//! machine sleeps at once instead of spinning for an answer that needs the peer to be
//! scheduled first.
//!
//! Each side also publishes the CPU it runs on (`server_cpu`, `client_cpu`): when it sends,
//! when it answers, when it wakes up and when it goes to sleep, and only when it changed, so
//! the line stays shared while nobody moves. A side that finds its peer on its own CPU stops
//! spinning (see [`waiting`](crate::waiting)).
//!
//! The region's size is fixed and sealed: neither side can shrink it under the other.

#![allow(unsafe_code)]

use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU32, Ordering};

use btfuse_core::ring::MAX_RECORD;
use memmap2::{MmapMut, MmapOptions};

/// Identifies a btfuse channel region.
pub const MAGIC: u32 = 0x4254_5246;
/// Version of the region layout above; a client refuses any other.
pub const LAYOUT_VERSION: u32 = 3;
/// Bytes of each record area: the largest record, rounded up to whole pages.
pub const AREA: usize = MAX_RECORD.next_multiple_of(4096);
/// Bytes of the post area: room for the small requests that are posted.
pub const POST_AREA: usize = 1024 - 8;
/// Distance between the request's line and the response's line.
const SPAN: usize = (8 + AREA).next_multiple_of(4096);
/// Bytes of the whole region.
pub const REGION_LEN: usize = (OFF_RESP_AREA + AREA).next_multiple_of(4096);

const OFF_MAGIC: usize = 0;
const OFF_VERSION: usize = 4;
const OFF_AREA: usize = 8;
const OFF_SERVER_SLEEPING: usize = 192;
const OFF_SERVER_CPU: usize = 196;
const OFF_CLIENT_SLEEPING: usize = 256;
const OFF_CLIENT_CPU: usize = 260;
const OFF_POST_SEQ: usize = 1024;
const OFF_POST_LEN: usize = OFF_POST_SEQ + 4;
const OFF_POST_AREA: usize = OFF_POST_SEQ + 8;
const OFF_REQ_SEQ: usize = 4096 - 64;
const OFF_REQ_LEN: usize = OFF_REQ_SEQ + 4;
const OFF_REQ_AREA: usize = OFF_REQ_SEQ + 8;
const OFF_RESP_SEQ: usize = OFF_REQ_SEQ + SPAN;
const OFF_RESP_LEN: usize = OFF_RESP_SEQ + 4;
const OFF_RESP_AREA: usize = OFF_RESP_SEQ + 8;
const _: () = assert!(OFF_POST_AREA + POST_AREA <= OFF_REQ_SEQ);

/// A mapped channel region. Both ends use it; which fields each may write is the protocol's.
pub struct Region {
    map: MmapMut,
}

impl Region {
    /// Maps `fd`, a region the server made.
    ///
    /// # Safety
    /// `fd` is a memfd of [`REGION_LEN`] bytes sealed against shrinking (the server makes it
    /// so; a client checks the seals first), so the mapping stays valid while it lives.
    pub unsafe fn map(fd: &OwnedFd) -> io::Result<Region> {
        debug_assert!(crate::sys::is_sealed_memfd(fd, REGION_LEN as u64));
        // SAFETY: the mapping is shared with one peer that may write any byte at any time. This
        // module therefore never forms Rust references to the record areas' bytes while the
        // peer may write them: it reads them with raw copies and touches the header only
        // through atomics. The memfd is sealed against shrinking, so the mapping stays valid.
        let map = unsafe { MmapOptions::new().len(REGION_LEN).map_mut(fd)? };
        Ok(Region { map })
    }

    /// Gives memory now to the pages a short exchange touches (the header, the post area and
    /// the first pages of both record areas), so that neither side's first request waits
    /// for them to be allocated. The server does this for regions it makes ahead.
    pub fn prefault(&self) -> io::Result<()> {
        use memmap2::Advice;
        const FIRST_PAGES: usize = 2 * 4096;
        self.map
            .advise_range(Advice::PopulateWrite, 0, OFF_REQ_SEQ + FIRST_PAGES)?;
        let resp = OFF_RESP_SEQ & !4095;
        self.map.advise_range(
            Advice::PopulateWrite,
            resp,
            FIRST_PAGES.min(REGION_LEN - resp),
        )
    }

    /// Writes the constant header fields of a new region.
    pub fn initialise(&self) {
        self.word(OFF_MAGIC).store(MAGIC, Ordering::Relaxed);
        self.word(OFF_VERSION)
            .store(LAYOUT_VERSION, Ordering::Relaxed);
        self.word(OFF_AREA).store(AREA as u32, Ordering::Relaxed);
    }

    /// Whether the header says this is a region of the layout this code speaks.
    pub fn is_valid(&self) -> bool {
        self.word(OFF_MAGIC).load(Ordering::Relaxed) == MAGIC
            && self.word(OFF_VERSION).load(Ordering::Relaxed) == LAYOUT_VERSION
            && self.word(OFF_AREA).load(Ordering::Relaxed) == AREA as u32
    }

    fn word(&self, offset: usize) -> &AtomicU32 {
        debug_assert!(offset.is_multiple_of(4) && offset + 4 <= REGION_LEN);
        // SAFETY: every caller passes one of the word offsets above: inside the mapping and
        // 4-byte aligned (the mapping is page aligned). Those words are only ever accessed
        // atomically, by both processes.
        unsafe { &*self.map.as_ptr().add(offset).cast::<AtomicU32>() }
    }

    /// The futex word the server sleeps on.
    pub fn req_seq(&self) -> &AtomicU32 {
        self.word(OFF_REQ_SEQ)
    }

    /// The futex word the client sleeps on.
    pub fn resp_seq(&self) -> &AtomicU32 {
        self.word(OFF_RESP_SEQ)
    }

    /// The flag the server sets while it may be asleep.
    pub fn server_sleeping(&self) -> &AtomicU32 {
        self.word(OFF_SERVER_SLEEPING)
    }

    /// The flag the client sets while it may be asleep.
    pub fn client_sleeping(&self) -> &AtomicU32 {
        self.word(OFF_CLIENT_SLEEPING)
    }

    /// The CPU the server last said it runs on (see [`publish_cpu`](Region::publish_cpu)).
    pub fn server_cpu(&self) -> &AtomicU32 {
        self.word(OFF_SERVER_CPU)
    }

    /// The CPU the client last said it runs on.
    pub fn client_cpu(&self) -> &AtomicU32 {
        self.word(OFF_CLIENT_CPU)
    }

    /// Either side, with its own word ([`server_cpu`](Region::server_cpu) or
    /// [`client_cpu`](Region::client_cpu)): stores `cpu` (from
    /// [`waiting::current_cpu`](crate::waiting::current_cpu)) if the word holds another, so a
    /// side that stays on its CPU never writes the line its peer reads.
    pub fn publish_cpu(word: &AtomicU32, cpu: u32) {
        if word.load(Ordering::Relaxed) != cpu {
            word.store(cpu, Ordering::Relaxed);
        }
    }

    fn area(&self, index: usize) -> *mut u8 {
        let offset = match index {
            0 => OFF_REQ_AREA,
            1 => OFF_RESP_AREA,
            _ => OFF_POST_AREA,
        };
        // SAFETY: every area ends within REGION_LEN (OFF_POST_AREA + POST_AREA <= OFF_REQ_SEQ,
        // OFF_REQ_AREA + AREA <= OFF_RESP_SEQ).
        unsafe { self.map.as_ptr().cast_mut().add(offset) }
    }

    /// Client side: the post area, to encode a posted record into. The server only reads it
    /// after `req_seq` moves to a number `post_seq` holds, and then only by copying.
    ///
    /// # Safety
    /// As for [`request_area`](Region::request_area); and the server has taken the previous
    /// posted request (a response to a later request has been seen).
    #[allow(clippy::mut_from_ref)] // as for `request_area`
    pub unsafe fn post_area(&self) -> &mut [u8] {
        // SAFETY: the area is POST_AREA bytes inside the mapping; only the client writes it,
        // and the caller holds the only reference.
        unsafe { std::slice::from_raw_parts_mut(self.area(2), POST_AREA) }
    }

    /// Client side: publishes the posted request of `len` bytes just written, as number `seq`.
    /// As for [`publish_request`](Region::publish_request), [`wake_server`](Region::wake_server)
    /// must follow.
    pub fn publish_post(&self, seq: u32, len: usize) {
        self.word(OFF_POST_LEN).store(len as u32, Ordering::Relaxed);
        // Ordered before the publication by the release store of `publish`.
        self.word(OFF_POST_SEQ).store(seq, Ordering::Relaxed);
        self.publish(seq);
    }

    /// Client side: the request area, to encode a record into. The server only reads it
    /// after `req_seq` moves, and then only by copying.
    ///
    /// # Safety
    /// The caller is the channel's client and holds no other reference into the area.
    #[allow(clippy::mut_from_ref)] // the area is shared memory, owned by protocol, not by `self`
    pub unsafe fn request_area(&self) -> &mut [u8] {
        // SAFETY: the area is AREA bytes inside the mapping; per the protocol only the client
        // writes it, and the caller holds the only reference.
        unsafe { std::slice::from_raw_parts_mut(self.area(0), AREA) }
    }

    /// Client side: publishes the request of `len` bytes just written, as number `seq`. The
    /// client must call [`wake_server`](Region::wake_server) before it waits for the answer or
    /// lets go of the channel, and may do other work first.
    pub fn publish_request(&self, seq: u32, len: usize) {
        self.word(OFF_REQ_LEN).store(len as u32, Ordering::Relaxed);
        let post = self.word(OFF_POST_SEQ);
        if post.load(Ordering::Relaxed) == seq {
            // A post 2³² requests old: not to be taken for this one.
            post.store(seq.wrapping_sub(1), Ordering::Relaxed);
        }
        self.publish(seq);
    }

    fn publish(&self, seq: u32) {
        // Pairs with the server's Acquire load of req_seq in `take_request`.
        self.req_seq().store(seq, Ordering::Release);
    }

    /// Client side, after publishing: wakes the server if it said it sleeps; whether it did
    /// (the server was not running).
    pub fn wake_server(&self) -> bool {
        // The fence orders the publication before the load of the flag: with the server's
        // SeqCst swap of the flag and load of req_seq in `announce_sleep` it forms a Dekker
        // pair (the fence either follows the server's load in the single SeqCst order, and
        // the load below sees the flag, or precedes it, and the server sees the request).
        std::sync::atomic::fence(Ordering::SeqCst);
        let sleeping = self.server_sleeping().load(Ordering::Relaxed) != 0;
        if sleeping {
            crate::sys::futex_wake(self.req_seq());
        }
        sleeping
    }

    /// Server side: if a request newer than `last_seen` was published, copies the next one
    /// into `out` and returns its sequence number and whether it was posted (answered with
    /// no response). A length beyond its area is returned as an error.
    pub fn take_request(
        &self,
        last_seen: u32,
        out: &mut Vec<u8>,
    ) -> Option<Result<(u32, bool), ()>> {
        // Acquire: pairs with the client's Release store in `publish_request`.
        let seq = self.req_seq().load(Ordering::Acquire);
        if seq == last_seen {
            return None;
        }
        let next = last_seen.wrapping_add(1);
        let (area, len, limit, taken) = if self.word(OFF_POST_SEQ).load(Ordering::Relaxed) == next {
            let len = self.word(OFF_POST_LEN).load(Ordering::Relaxed) as usize;
            (2, len, POST_AREA, (next, true))
        } else {
            let len = self.word(OFF_REQ_LEN).load(Ordering::Relaxed) as usize;
            (0, len, AREA, (seq, false))
        };
        if len > limit {
            return Some(Err(()));
        }
        out.clear();
        out.reserve(len);
        // SAFETY: `len` bytes, within the area's bound, into `out`'s spare capacity; a raw
        // copy, so a client writing concurrently changes only the bytes copied, which are then
        // decoded and checked from the private copy.
        unsafe {
            std::ptr::copy_nonoverlapping(self.area(area), out.as_mut_ptr(), len);
            out.set_len(len);
        }
        Some(Ok(taken))
    }

    /// Server side: the response area, to encode a record into.
    ///
    /// # Safety
    /// The caller is the channel's server thread and holds no other reference into the area.
    #[allow(clippy::mut_from_ref)] // as for `request_area`
    pub unsafe fn response_area(&self) -> &mut [u8] {
        // SAFETY: the area is AREA bytes inside the mapping; only the server writes it.
        unsafe { std::slice::from_raw_parts_mut(self.area(1), AREA) }
    }

    /// Server side: publishes the response of `len` bytes to request `seq` and wakes the client
    /// if it said it sleeps; whether it did (the client was not running).
    pub fn publish_response(&self, seq: u32, len: usize) -> bool {
        self.word(OFF_RESP_LEN).store(len as u32, Ordering::Relaxed);
        // A sequentially consistent swap, not a store and a fence: one locked instruction. Its
        // release half pairs with the client's Acquire load in `response`; with the SeqCst
        // load after it, it forms a Dekker pair with the client's `announce_sleep`.
        self.resp_seq().swap(seq, Ordering::SeqCst);
        let sleeping = self.client_sleeping().load(Ordering::SeqCst) != 0;
        if sleeping {
            crate::sys::futex_wake(self.resp_seq());
        }
        sleeping
    }

    /// Client side: the response to request `seq` if it has been published, as a view of the
    /// response area.
    ///
    /// # Safety
    /// The caller is the channel's client, and drops the view before it publishes another
    /// request (the server writes the area only in answer to one).
    pub unsafe fn response(&self, seq: u32) -> Option<&[u8]> {
        // Acquire: pairs with the server's Release store in `publish_response`.
        if self.resp_seq().load(Ordering::Acquire) != seq {
            return None;
        }
        let len = (self.word(OFF_RESP_LEN).load(Ordering::Relaxed) as usize).min(AREA);
        // SAFETY: `len <= AREA` bytes of the response area, which the server does not write
        // again until the client publishes another request.
        Some(unsafe { std::slice::from_raw_parts(self.area(1), len) })
    }

    /// Either side: says it may sleep on its futex, then returns whether the awaited word
    /// still holds `seen` (if not, there is work and the caller must not sleep).
    pub fn announce_sleep(&self, flag: &AtomicU32, word: &AtomicU32, seen: u32) -> bool {
        // Pairs with `wake_server` / `publish_response`: in the single order of SeqCst
        // operations, either this swap comes first and the publisher sees the flag, or the
        // publication comes first and the load below sees it.
        flag.swap(1, Ordering::SeqCst);
        word.load(Ordering::SeqCst) == seen
    }
}

/// The machine's floor for any channel round trip: two threads bouncing one cache line,
/// `rounds` times; nanoseconds per round trip. On a virtual machine it depends on where the
/// host placed the virtual CPUs the two threads ran on, and it changes from one moment to the
/// next, so benchmarks record it beside what they measure.
pub fn cache_line_round_trip(rounds: u32) -> f64 {
    #[repr(align(64))]
    struct Line(AtomicU32);
    let ping = Line(AtomicU32::new(0));
    let pong = Line(AtomicU32::new(0));
    let rounds = rounds.max(1);
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut last = 0;
            while last != rounds {
                let seen = ping.0.load(Ordering::Acquire);
                if seen != last {
                    last = seen;
                    pong.0.store(seen, Ordering::Release);
                }
                std::hint::spin_loop();
            }
        });
        let start = std::time::Instant::now();
        for i in 1..=rounds {
            ping.0.store(i, Ordering::Release);
            while pong.0.load(Ordering::Acquire) != i {
                std::hint::spin_loop();
            }
        }
        start.elapsed().as_nanos() as f64 / f64::from(rounds)
    })
}
