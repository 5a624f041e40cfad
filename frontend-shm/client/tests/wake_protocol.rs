//! The channel's wait/wake protocol (`channel.rs`, "Protocol") cannot lose a wake-up, whatever
//! either side decides about spinning: every interleaving of a model of it is explored.
//!
//! The model has the steps of `Region` and of their callers, each an atomic step of a
//! sequentially consistent machine (the protocol's Dekker pairs are `SeqCst`): the client's
//! publication, fence and look at the server's flag (`wake_server`), its announce-then-check
//! and futex sleep (`announce_sleep`, `Channel::wait`); the worker's serving and look at the
//! client's flag (`publish_response`), its announcement on every channel, futex waits armed one
//! channel at a time (`io_uring` checks each word when it arms it, and armed waits stay armed
//! across sleeps) and its wait for one completion (`Worker::sleep`). How long a side spins
//! before it sleeps (the policy of `waiting`) is left free: at each poll the explorer tries
//! both going on and going to sleep, so any policy, spinning never included, is covered.
//! Futex sleeps have no time-out in the model, so nothing relies on the client's periodic
//! check for a dead server.
//!
//! The property: from every reachable state some step can be taken until every client has its
//! answers (no state where all that remains is asleep). Mutants that break the protocol (a
//! side that sleeps unannounced, the look at the flag before the publication)
//! must be caught, so the explorer is known to find a lost wake-up when there is one.
//! (Skipping the worker's check after announcing is no mutant: `io_uring` compares the word
//! when it arms each wait, which the model keeps, and that check alone suffices.)

use std::collections::HashSet;

/// Largest number of polls of one spell the explorer follows (beyond, a side must sleep).
const MAX_POLLS: u8 = 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum ClientPc {
    /// About to publish request `n + 1`.
    Publish,
    /// Published; about to make the fence and read the server's flag.
    LookAtServerFlag,
    /// Saw the flag set: about to wake the server's futex.
    WakeServer,
    /// (Mutant `FlagBeforePublish`.) Looked at the flag first: about to publish, then to
    /// wake the server if the flag was set.
    PublishLate(bool),
    /// Polling for the answer.
    Poll,
    /// About to announce its sleep (swap 1 into its flag).
    Announce,
    /// Announced: about to check the answer word again.
    Recheck,
    /// Announced, and the word still held `seen`: about to futex-wait on it.
    FutexWait,
    /// In the futex wait until woken.
    Asleep,
    /// About to clear its flag after a sleep (or an announcement that found the answer).
    ClearFlag,
    Done,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum ServerPc {
    /// Top of the loop: reap completions (forget the pending one), then serve a channel.
    Pass,
    /// Served channel `c`'s request: about to read the client's flag.
    LookAtClientFlag(u8),
    /// Saw it set: about to wake channel `c`'s client.
    WakeClient(u8),
    /// About to announce its sleep on channel `c`.
    Announce(u8),
    /// Announced on channel `c`: about to check its request word.
    Recheck(u8),
    /// About to arm the futex wait of channel `c` (if not armed).
    Arm(u8),
    /// Waiting for one completion.
    Asleep,
    /// About to clear its flags after the sleep.
    ClearFlags,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Client {
    pc: ClientPc,
    /// Requests answered so far; the one in flight is `n + 1`.
    n: u8,
    /// The answer word's value when it was last polled.
    seen: u8,
    polls: u8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Channel {
    req_seq: u8,
    resp_seq: u8,
    server_sleeping: bool,
    client_sleeping: bool,
    /// The worker's last request served on it.
    last_seen: u8,
    /// A futex wait on `req_seq` is armed in the worker's ring.
    armed: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct State {
    clients: Vec<Client>,
    channels: Vec<Channel>,
    server: ServerPc,
    server_polls: u8,
    /// A completion is in the worker's queue.
    completion: bool,
    /// The announcement found work on some channel: the worker must not sleep.
    work: bool,
}

/// Ways to break the protocol, each of which must be caught.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mutant {
    None,
    /// The client sleeps without announcing it: the server never wakes it.
    ClientNeverAnnounces,
    /// The client reads the server's flag before it publishes.
    FlagBeforePublish,
    /// The worker sleeps without announcing it: the client never wakes it.
    ServerNeverAnnounces,
}

struct Model {
    requests: u8,
    mutant: Mutant,
}

impl Model {
    /// Every state one step from `s`.
    fn successors(&self, s: &State) -> Vec<State> {
        let mut out = Vec::new();
        for i in 0..s.clients.len() {
            self.client_steps(s, i, &mut out);
        }
        self.server_steps(s, &mut out);
        out
    }

    fn client_steps(&self, s: &State, i: usize, out: &mut Vec<State>) {
        let c = s.clients[i];
        let ch = s.channels[i];
        let mut next = s.clone();
        let (nc, nch) = (&mut next.clients[i], &mut next.channels[i]);
        match c.pc {
            ClientPc::Done | ClientPc::Asleep => return,
            ClientPc::Publish => {
                if c.n == self.requests {
                    nc.pc = ClientPc::Done;
                } else if self.mutant == Mutant::FlagBeforePublish {
                    nc.pc = ClientPc::PublishLate(ch.server_sleeping);
                } else {
                    nch.req_seq = c.n + 1;
                    nc.pc = ClientPc::LookAtServerFlag;
                }
            }
            ClientPc::LookAtServerFlag => {
                nc.pc = if ch.server_sleeping {
                    ClientPc::WakeServer
                } else {
                    ClientPc::Poll
                };
                nc.polls = 0;
            }
            ClientPc::PublishLate(wake) => {
                nch.req_seq = c.n + 1;
                nc.pc = if wake {
                    ClientPc::WakeServer
                } else {
                    ClientPc::Poll
                };
                nc.polls = 0;
            }
            ClientPc::WakeServer => {
                wake_server(&mut next, i);
                let nc = &mut next.clients[i];
                nc.pc = ClientPc::Poll;
                nc.polls = 0;
            }
            ClientPc::Poll => {
                if ch.resp_seq == c.n + 1 {
                    nc.n += 1;
                    nc.pc = ClientPc::Publish;
                    out.push(next);
                    return;
                }
                nc.seen = ch.resp_seq;
                // Either spin on, or go to sleep: both are explored.
                if c.polls < MAX_POLLS {
                    let mut spin = next.clone();
                    spin.clients[i].polls += 1;
                    out.push(spin);
                }
                next.clients[i].pc = ClientPc::Announce;
            }
            ClientPc::Announce => {
                if self.mutant != Mutant::ClientNeverAnnounces {
                    nch.client_sleeping = true;
                }
                nc.pc = ClientPc::Recheck;
            }
            ClientPc::Recheck => {
                nc.pc = if ch.resp_seq == c.seen {
                    ClientPc::FutexWait
                } else {
                    ClientPc::ClearFlag
                };
            }
            ClientPc::FutexWait => {
                // FUTEX_WAIT: sleeps only while the word still holds the value.
                nc.pc = if ch.resp_seq == c.seen {
                    ClientPc::Asleep
                } else {
                    ClientPc::ClearFlag
                };
            }
            ClientPc::ClearFlag => {
                nch.client_sleeping = false;
                nc.pc = ClientPc::Poll;
                nc.polls = 0;
            }
        }
        out.push(next);
    }

    fn server_steps(&self, s: &State, out: &mut Vec<State>) {
        let channels = s.channels.len() as u8;
        let mut next = s.clone();
        match s.server {
            ServerPc::Asleep => {
                if !s.completion {
                    return;
                }
                next.server = ServerPc::ClearFlags;
            }
            ServerPc::Pass => {
                next.completion = false;
                // Serves the first channel with a request (the real worker serves every
                // channel in one pass; serving them one per step only adds interleavings).
                match (0..channels).find(|&c| {
                    let ch = &s.channels[c as usize];
                    ch.req_seq != ch.last_seen
                }) {
                    Some(c) => {
                        let ch = &mut next.channels[c as usize];
                        ch.last_seen = ch.req_seq;
                        ch.resp_seq = ch.req_seq;
                        next.server = ServerPc::LookAtClientFlag(c);
                        next.server_polls = 0;
                    }
                    None => {
                        if s.server_polls < MAX_POLLS {
                            let mut spin = next.clone();
                            spin.server_polls += 1;
                            out.push(spin);
                        }
                        next.server = ServerPc::Announce(0);
                        next.work = false;
                    }
                }
            }
            ServerPc::LookAtClientFlag(c) => {
                next.server = if s.channels[c as usize].client_sleeping {
                    ServerPc::WakeClient(c)
                } else {
                    ServerPc::Pass
                };
            }
            ServerPc::WakeClient(c) => {
                let client = &mut next.clients[c as usize];
                if client.pc == ClientPc::Asleep {
                    client.pc = ClientPc::ClearFlag;
                }
                next.server = ServerPc::Pass;
            }
            ServerPc::Announce(c) => {
                if self.mutant != Mutant::ServerNeverAnnounces {
                    next.channels[c as usize].server_sleeping = true;
                }
                next.server = ServerPc::Recheck(c);
            }
            ServerPc::Recheck(c) => {
                let ch = &next.channels[c as usize];
                if ch.req_seq != ch.last_seen {
                    next.work = true;
                }
                next.server = if c + 1 < channels {
                    ServerPc::Announce(c + 1)
                } else if next.work {
                    ServerPc::ClearFlags
                } else {
                    ServerPc::Arm(0)
                };
            }
            ServerPc::Arm(c) => {
                let ch = &mut next.channels[c as usize];
                if !ch.armed {
                    if ch.req_seq != ch.last_seen {
                        // io_uring's check of the word when it arms the wait: done at once.
                        next.completion = true;
                    } else {
                        ch.armed = true;
                    }
                }
                next.server = if c + 1 < channels {
                    ServerPc::Arm(c + 1)
                } else {
                    ServerPc::Asleep
                };
            }
            ServerPc::ClearFlags => {
                for ch in &mut next.channels {
                    ch.server_sleeping = false;
                }
                next.server = ServerPc::Pass;
            }
        }
        out.push(next);
    }

    fn initial(&self, clients: usize) -> State {
        State {
            clients: vec![
                Client {
                    pc: ClientPc::Publish,
                    n: 0,
                    seen: 0,
                    polls: 0,
                };
                clients
            ],
            channels: vec![
                Channel {
                    req_seq: 0,
                    resp_seq: 0,
                    server_sleeping: false,
                    client_sleeping: false,
                    last_seen: 0,
                    armed: false,
                };
                clients
            ],
            server: ServerPc::Pass,
            server_polls: 0,
            completion: false,
            work: false,
        }
    }

    /// Explores every reachable state; the first stuck one (nothing can move, some client
    /// still waiting for an answer), or the count of states seen.
    fn explore(&self, clients: usize) -> Result<usize, State> {
        let start = self.initial(clients);
        let mut seen = HashSet::new();
        let mut stack = vec![start.clone()];
        seen.insert(start);
        while let Some(s) = stack.pop() {
            let next = self.successors(&s);
            let done = s.clients.iter().all(|c| c.pc == ClientPc::Done);
            let stuck = next.is_empty() || next.iter().all(|n| *n == s);
            if stuck && !done {
                return Err(s);
            }
            for n in next {
                if seen.insert(n.clone()) {
                    stack.push(n);
                }
            }
        }
        Ok(seen.len())
    }
}

/// The client's `futex_wake` on channel `i`'s request word: completes the worker's armed wait.
fn wake_server(s: &mut State, i: usize) {
    let ch = &mut s.channels[i];
    if ch.armed {
        ch.armed = false;
        s.completion = true;
    }
}

#[test]
fn no_wake_up_is_lost_with_one_channel() {
    let model = Model {
        requests: 3,
        mutant: Mutant::None,
    };
    let states = model.explore(1).unwrap_or_else(|s| panic!("stuck: {s:#?}"));
    assert!(
        states > 1_000,
        "{states} states: the model explored too little"
    );
}

#[test]
fn no_wake_up_is_lost_with_two_channels_on_one_worker() {
    let model = Model {
        requests: 2,
        mutant: Mutant::None,
    };
    let states = model.explore(2).unwrap_or_else(|s| panic!("stuck: {s:#?}"));
    assert!(
        states > 100_000,
        "{states} states: the model explored too little"
    );
}

#[test]
fn the_explorer_finds_the_lost_wake_ups_of_broken_protocols() {
    for mutant in [
        Mutant::ClientNeverAnnounces,
        Mutant::FlagBeforePublish,
        Mutant::ServerNeverAnnounces,
    ] {
        let model = Model {
            requests: 2,
            mutant,
        };
        let stuck = model.explore(1);
        assert!(stuck.is_err(), "{mutant:?} was not caught");
    }
}
