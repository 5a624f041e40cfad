//! btfuse-ring-server: the server half of btfuse's shared-memory fast path, a Unix socket
//! listener that sets up channels, and worker threads that serve them.
//!
//! A client (`btfuse-ring-client`, which this crate takes the wire layouts from: the region,
//! the handshake, the kernel-file message, the content table) connects once, receives a shared
//! region (a sealed memfd), and from then on writes requests into it in the record format of
//! [`btfuse_core::ring`].
//!
//! - The **acceptor** thread takes connections. It reads the client's hello, takes its
//!   identity from `SO_PEERCRED`, sends it a sealed memfd region with `SCM_RIGHTS`, and hands
//!   the channel to the worker with the fewest channels. Regions are made ahead of
//!   connections (a few wait ready, each handed to one connection only and never reused), and
//!   a connection whose hello has already arrived is set up on the acceptor itself; one whose
//!   hello has not gets a short-lived thread of its own, so a client that connects and says
//!   nothing delays no one.
//! - Each **worker** owns a set of channels and serves them in turn (see `worker`): it spins
//!   while requests keep coming and otherwise sleeps in one `io_uring` wait on the futexes of
//!   all its channels, the hang-ups of their sockets and its own control eventfd.
//! - A **session** is one client's descriptor table, shared by all of its channels (one per
//!   client thread); it closes, releasing every description it alone held, when its last
//!   channel goes. Open file descriptions (offset, status flags, the engine handle) live in it,
//!   so `dup` and `fork` share them as the kernel's do.
//! - The **executor** (`exec`) serves one request against the engine; [`handoff`] hands a
//!   description to the kernel through a mount of the same filesystem.
//! - The **content table** (`contents`) counts changes to files' content and to directories'
//!   listings, so a client may keep the first bytes of a file it opened for reading, sent
//!   with the open, or a listing it read whole, for as long as the table (mapped read-only by
//!   every client) says they are current.
//!
//! With the feature `fuzzing`, the module `fuzzing` serves requests through the same executor
//! without a ring, for fuzz targets.

#![deny(unsafe_code)]
#![warn(missing_docs)]

mod contents;
pub(crate) mod exec;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod handoff;
mod locks;
pub mod mapped;
pub(crate) mod session;
mod sys;
mod worker;

use std::collections::HashMap;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use btfuse_core::{ContentWatch, Credentials, Filesystem};
use btfuse_daemon::creds::{self, PeerCred};
use btfuse_daemon::metrics::RingGauges;
use btfuse_ring_client::channel::{REGION_LEN, Region};
use btfuse_ring_client::contents::TABLE_LEN;
use btfuse_ring_client::handshake::{FileIds, HELLO_LEN, Hello, Welcome};
use btfuse_ring_client::socket::send_with_fds;

use crate::contents::ContentTable;
use handoff::KernelOpener;
use mapped::FileShower;
use session::{ForkTable, Session};

/// How long a connecting client has to send its hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(2);

/// Most channels one session may have (one per client thread is the intent).
const MAX_CHANNELS_PER_SESSION: usize = 256;

/// How often forks that no child attached to are looked for and released.
const FORK_SWEEP: Duration = Duration::from_secs(1);

/// How a [`Server`] runs.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Path of the Unix socket to listen on.
    pub socket: PathBuf,
    /// Worker threads serving channels.
    pub threads: usize,
    /// Permission bits of the socket: 0o600 lets only its owner connect; a server of a
    /// mount with `allow_other` opens it to everyone (each request is still checked with
    /// the caller's identity).
    pub socket_mode: u32,
    /// Most connections (channels, and connections still saying hello) one user may have
    /// at once; more are refused with `EMFILE` and a log line. Each costs the server a
    /// descriptor and a shared region, so this keeps one user from using up the server's
    /// descriptors ([`DEFAULT_MAX_CONNECTIONS_PER_USER`] is a good value).
    pub max_connections_per_user: usize,
}

/// The default of [`ServerConfig::max_connections_per_user`]: room for a few hundred
/// processes of 16 threads each.
pub const DEFAULT_MAX_CONNECTIONS_PER_USER: usize = 4096;

/// Live connections per user, and the cap on them.
struct UserConnections {
    counts: Mutex<HashMap<u32, usize>>,
    max: usize,
    /// When a refusal was last logged, in seconds since the server started (so a flood of
    /// refused connections writes one line a second, not one per connection).
    logged: std::sync::atomic::AtomicU64,
    started: std::time::Instant,
}

/// One connection's place in its user's count, given back when it drops.
pub(crate) struct UserSlot {
    users: Arc<UserConnections>,
    uid: u32,
}

impl UserConnections {
    /// A place for a connection of `uid`, or `None` when it has as many as it may.
    fn take(self: &Arc<Self>, uid: u32, pid: u32) -> Option<UserSlot> {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let count = counts.entry(uid).or_insert(0);
        if *count >= self.max {
            drop(counts);
            let now = self.started.elapsed().as_secs() + 1;
            if self.logged.swap(now, Ordering::Relaxed) != now {
                log::warn!(
                    "uid {uid} (pid {pid}) has {} connections, the most one user may have \
                     (--max-connections-per-user): refusing more",
                    self.max
                );
            }
            return None;
        }
        *count += 1;
        Some(UserSlot {
            users: Arc::clone(self),
            uid,
        })
    }
}

impl Drop for UserSlot {
    fn drop(&mut self) {
        let mut counts = self.users.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = counts.get_mut(&self.uid) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.uid);
            }
        }
    }
}

/// State the acceptor, the set-up threads and the workers share.
struct Shared<F: Filesystem> {
    fs: Arc<F>,
    /// Opens inodes through a kernel mount, for `Handoff`; `None` without a mount.
    opener: Option<Arc<dyn KernelOpener>>,
    /// Shows files in clients' mappings, for `MapFile`; `None`: it is `EOPNOTSUPP`.
    shower: Option<Arc<dyn FileShower>>,
    /// The content table every client maps.
    contents: Arc<ContentTable>,
    /// Whether `fs` reports its content changes to `contents`: only then are opens answered
    /// with content (`Prefetched`).
    prefetch: bool,
    forks: ForkTable<F>,
    /// Live sessions by join token.
    sessions: Mutex<HashMap<u64, Weak<Session<F>>>>,
    workers: Vec<worker::Inbox<F>>,
    stop: AtomicBool,
    /// Channels served and requests waiting, for monitoring.
    counters: Arc<RingCounters>,
    users: Arc<UserConnections>,
    /// Descriptor numbers per user, across its sessions.
    budgets: session::Budgets,
    /// Regions made ahead of connections (see [`take_region`]).
    prepared: Mutex<Vec<PreparedRegion>>,
    /// Wakes the thread that makes regions ahead ([`make_regions_ahead`]).
    regions_wanted: Condvar,
}

/// A fresh region, ready to send: its memfd and this side's mapping, header written.
struct PreparedRegion {
    memfd: std::os::fd::OwnedFd,
    region: Region,
}

/// Regions kept ready: enough for a burst of short processes (a shell pipeline, a `make -j`)
/// to connect without waiting for one to be made.
const PREPARED_REGIONS: usize = 4;

/// A new region: a sealed memfd, mapped, with its header written and the pages a short
/// exchange touches given memory.
fn make_region() -> io::Result<PreparedRegion> {
    let memfd = sys::sealed_memfd(c"btfuse-ring", REGION_LEN as u64)?;
    // SAFETY: a memfd of REGION_LEN bytes made just above, sealed against shrinking.
    #[allow(unsafe_code)]
    let region = unsafe { Region::map(&memfd)? };
    region.initialise();
    if let Err(e) = region.prefault() {
        // Before Linux 5.14: the pages come at first touch instead.
        log::debug!("cannot prefault a region: {e}");
    }
    Ok(PreparedRegion { memfd, region })
}

fn prepared<F: Filesystem>(shared: &Shared<F>) -> MutexGuard<'_, Vec<PreparedRegion>> {
    shared.prepared.lock().unwrap_or_else(|p| p.into_inner())
}

/// A region for a new connection: one made ahead if any is left, else a new one. Each is
/// given to one connection only: no two clients ever share a memfd.
fn take_region<F: Filesystem>(shared: &Shared<F>) -> io::Result<PreparedRegion> {
    let ready = prepared(shared).pop();
    ready.map_or_else(make_region, Ok)
}

/// Keeps [`PREPARED_REGIONS`] regions made ahead of connections, on a thread of its own that
/// runs only when a CPU has nothing else to do: making one (a memfd, its seals, a mapping, its first pages) takes longer
/// than the rest of a connection's set-up, and done by the thread that answers connections
/// it held up the next client, or the one just answered when both ran on one CPU.
fn make_regions_ahead<F: Filesystem>(shared: &Shared<F>) {
    sys::idle_thread_priority();
    let mut ready = prepared(shared);
    while !shared.stop.load(Ordering::SeqCst) {
        if ready.len() >= PREPARED_REGIONS {
            ready = shared
                .regions_wanted
                .wait(ready)
                .unwrap_or_else(|p| p.into_inner());
            continue;
        }
        drop(ready);
        match make_region() {
            Ok(region) => {
                ready = prepared(shared);
                ready.push(region);
            }
            Err(e) => {
                log::warn!("cannot make a region ahead of connections: {e}");
                ready = prepared(shared);
                ready = shared
                    .regions_wanted
                    .wait_timeout(ready, Duration::from_secs(1))
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
        }
    }
}

/// Most connections whose hello the accept thread waits for at once; beyond, each waits on a
/// thread of its own.
const MAX_PENDING_HELLOS: usize = 256;

/// A connection accepted whose hello has not come yet.
struct PendingHello {
    stream: UnixStream,
    peer: PeerCred,
    slot: UserSlot,
    deadline: Instant,
}

/// Live figures of a running server, readable from any thread (the metrics exporter's
/// gauges).
#[derive(Debug, Default)]
pub struct RingCounters {
    channels: AtomicUsize,
    /// Per worker: requests its latest pass over its channels found waiting.
    waiting: Vec<AtomicUsize>,
}

impl RingGauges for RingCounters {
    fn channels(&self) -> usize {
        self.channels.load(Ordering::Relaxed)
    }

    fn requests_waiting(&self) -> usize {
        self.waiting.iter().map(|w| w.load(Ordering::Relaxed)).sum()
    }
}

/// A running ring server. Dropping it without [`Server::shutdown`] also stops it.
pub struct Server<F: Filesystem + Send + Sync + 'static> {
    shared: Arc<Shared<F>>,
    socket: PathBuf,
    listener: Option<UnixListener>,
    threads: Vec<JoinHandle<()>>,
}

impl<F: Filesystem + Send + Sync + 'static> Server<F> {
    /// Binds the socket and starts serving `fs`. `Handoff` is answered `EOPNOTSUPP`.
    ///
    /// The socket is created private to its owner (mode 0600). A socket file left by a server
    /// that is gone is replaced; one that a live server answers on is `AddrInUse`.
    pub fn start(fs: Arc<F>, config: &ServerConfig) -> io::Result<Server<F>> {
        Self::start_with(fs, config, None, None)
    }

    /// Like [`Server::start`], for a filesystem the kernel also mounts: `opener` opens its
    /// inodes through that mount, which serves `Handoff` (see [`handoff`]).
    pub fn start_with_kernel(
        fs: Arc<F>,
        config: &ServerConfig,
        opener: Arc<dyn KernelOpener>,
    ) -> io::Result<Server<F>> {
        Self::start_with(fs, config, Some(opener), None)
    }

    /// Like [`Server::start`], with what serves `Handoff` (`opener`, as for
    /// [`Server::start_with_kernel`]) and `MapFile` (`shower`: the store behind `fs`, which
    /// shows the files it places; see [`mapped`]), each optional.
    pub fn start_with(
        fs: Arc<F>,
        config: &ServerConfig,
        opener: Option<Arc<dyn KernelOpener>>,
        shower: Option<Arc<dyn FileShower>>,
    ) -> io::Result<Server<F>> {
        let listener = bind_private(&config.socket)?;
        if config.socket_mode & 0o777 != 0o600 {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::Permissions::from_mode(config.socket_mode & 0o777);
            if let Err(e) = std::fs::set_permissions(&config.socket, mode) {
                let _ = std::fs::remove_file(&config.socket);
                return Err(e);
            }
        }
        let mut inboxes = Vec::new();
        for _ in 0..config.threads.max(1) {
            inboxes.push(worker::Inbox::new()?);
        }
        let contents = Arc::new(ContentTable::new()?);
        let prefetch = fs.watch_content(Arc::clone(&contents) as Arc<dyn ContentWatch>);
        let shared = Arc::new(Shared {
            fs,
            opener,
            shower,
            contents,
            prefetch,
            forks: ForkTable::default(),
            sessions: Mutex::new(HashMap::new()),
            workers: inboxes,
            stop: AtomicBool::new(false),
            budgets: session::Budgets::default(),
            prepared: Mutex::new(Vec::new()),
            regions_wanted: Condvar::new(),
            users: Arc::new(UserConnections {
                counts: Mutex::new(HashMap::new()),
                max: config.max_connections_per_user,
                logged: std::sync::atomic::AtomicU64::new(0),
                started: std::time::Instant::now(),
            }),
            counters: Arc::new(RingCounters {
                channels: AtomicUsize::new(0),
                waiting: (0..config.threads.max(1))
                    .map(|_| AtomicUsize::new(0))
                    .collect(),
            }),
        });
        let mut threads = Vec::new();
        for index in 0..shared.workers.len() {
            let shared = Arc::clone(&shared);
            threads.push(
                std::thread::Builder::new()
                    .name(format!("ring-{index}"))
                    .spawn(move || worker::run(&shared, index))?,
            );
        }
        let for_sweeper = Arc::clone(&shared);
        threads.push(
            std::thread::Builder::new()
                .name("ring-forks".into())
                .spawn(move || for_sweeper.forks.run_sweeper(FORK_SWEEP))?,
        );
        let for_maker = Arc::clone(&shared);
        threads.push(
            std::thread::Builder::new()
                .name("ring-regions".into())
                .spawn(move || make_regions_ahead(&for_maker))?,
        );
        let accepting = listener.try_clone()?;
        let for_acceptor = Arc::clone(&shared);
        threads.push(
            std::thread::Builder::new()
                .name("ring-accept".into())
                .spawn(move || accept_loop(&for_acceptor, &accepting))?,
        );
        Ok(Server {
            shared,
            socket: config.socket.clone(),
            listener: Some(listener),
            threads,
        })
    }

    /// Channels being served right now.
    pub fn channels(&self) -> usize {
        self.shared.counters.channels()
    }

    /// The server's live figures, to read while it runs.
    pub fn counters(&self) -> Arc<RingCounters> {
        Arc::clone(&self.shared.counters)
    }

    /// Stops accepting, disconnects every client (their calls fail with `ENOTCONN`), releases
    /// every description and removes the socket file.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let Some(listener) = self.listener.take() else {
            return;
        };
        self.shared.stop.store(true, Ordering::SeqCst);
        sys::shutdown_socket(listener.as_raw_fd());
        for inbox in &self.shared.workers {
            inbox.wake();
        }
        self.shared.forks.close();
        // Under the lock the region maker checks `stop` under: it cannot miss this.
        drop(prepared(&self.shared));
        self.shared.regions_wanted.notify_all();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        self.shared.forks.clear();
        let _ = std::fs::remove_file(&self.socket);
    }
}

impl<F: Filesystem + Send + Sync + 'static> Drop for Server<F> {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Binds `path` as a socket only its owner can connect to, replacing a stale socket file.
fn bind_private(path: &Path) -> io::Result<UnixListener> {
    match UnixStream::connect(path) {
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("{} is in use by a running server", path.display()),
            ));
        }
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            use std::os::unix::fs::FileTypeExt;
            // Only a socket is ever removed: any other file at the path is an error below.
            if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
                std::fs::remove_file(path)?;
            }
        }
        Err(_) => {}
    }
    sys::with_umask(0o177, || UnixListener::bind(path))
}

/// Accepts connections and sets each up on this thread once its hello is there. A client
/// writes its hello right after connecting, but when it was preempted in between (the wake-up
/// of this thread does that when both share a CPU) the hello comes a moment later: the
/// connection then waits in a poll set beside the listener, up to [`HELLO_TIMEOUT`], instead
/// of costing a thread. Setting up cannot block once the hello is read: the reply goes into
/// an empty socket buffer.
fn accept_loop<F: Filesystem + Send + Sync + 'static>(
    shared: &Arc<Shared<F>>,
    listener: &UnixListener,
) {
    if let Err(e) = listener.set_nonblocking(true) {
        log::error!("the ring's listener cannot be made non-blocking: {e}");
        return;
    }
    let mut pending: Vec<PendingHello> = Vec::new();
    let mut polled: Vec<libc::pollfd> = Vec::new();
    while !shared.stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        let timeout = pending
            .iter()
            .map(|p| p.deadline.saturating_duration_since(now))
            .min()
            .map_or(-1, |d| {
                libc::c_int::try_from(d.as_millis() + 1).unwrap_or(libc::c_int::MAX)
            });
        polled.clear();
        polled.push(libc::pollfd {
            fd: listener.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        });
        polled.extend(pending.iter().map(|p| libc::pollfd {
            fd: p.stream.as_raw_fd(),
            events: libc::POLLIN | libc::POLLRDHUP,
            revents: 0,
        }));
        if let Err(e) = sys::poll(&mut polled, timeout) {
            if e.kind() != io::ErrorKind::Interrupted {
                log::warn!("poll on the ring's listener: {e}");
                std::thread::sleep(Duration::from_millis(10));
            }
            continue;
        }
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        // Connections waiting for their hello, from the last, so that removing one keeps the
        // indices of those before it.
        let now = Instant::now();
        for i in (0..pending.len()).rev() {
            if polled[i + 1].revents == 0 {
                if now >= pending[i].deadline {
                    // Said nothing in time: closed, its slot given back.
                    pending.swap_remove(i);
                }
                continue;
            }
            let waiting = pending.swap_remove(i);
            hello_arrived(shared, waiting);
        }
        if polled[0].revents != 0 {
            accept_ready(shared, listener, &mut pending);
        }
    }
}

/// Accepts every connection waiting on the listener.
fn accept_ready<F: Filesystem + Send + Sync + 'static>(
    shared: &Arc<Shared<F>>,
    listener: &UnixListener,
    pending: &mut Vec<PendingHello>,
) {
    loop {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(_) if shared.stop.load(Ordering::SeqCst) => return,
            Err(e) => {
                log::warn!("accept: {e}");
                return;
            }
        };
        // Counted before anything is spent on it: a user over the cap costs one refusal.
        let peer = match sys::peer_cred(&stream) {
            Ok(peer) => peer,
            Err(e) => {
                log::debug!("SO_PEERCRED: {e}");
                continue;
            }
        };
        let Some(slot) = shared.users.take(peer.uid, peer.pid) else {
            refuse(&stream, libc::EMFILE);
            continue;
        };
        if sys::readable_bytes(&stream).is_ok_and(|n| n >= HELLO_LEN) {
            if let Err(e) = set_up(shared, stream, peer, slot, None) {
                log::debug!("channel set-up failed: {e}");
            }
        } else if pending.len() < MAX_PENDING_HELLOS {
            pending.push(PendingHello {
                stream,
                peer,
                slot,
                deadline: Instant::now() + HELLO_TIMEOUT,
            });
        } else {
            set_up_on_a_thread(shared, stream, peer, slot, HELLO_TIMEOUT);
        }
    }
}

/// A waiting connection became readable (or hung up): set up when the whole hello is there.
fn hello_arrived<F: Filesystem + Send + Sync + 'static>(
    shared: &Arc<Shared<F>>,
    waiting: PendingHello,
) {
    let PendingHello {
        stream,
        peer,
        slot,
        deadline,
    } = waiting;
    match sys::readable_bytes(&stream) {
        Ok(n) if n >= HELLO_LEN => {
            if let Err(e) = set_up(shared, stream, peer, slot, None) {
                log::debug!("channel set-up failed: {e}");
            }
        }
        // A hello cut in two (no client of ours writes one so): the rest is waited for on a
        // thread of its own, within what is left of the time allowed.
        Ok(n) if n > 0 => {
            let left = deadline.saturating_duration_since(Instant::now());
            set_up_on_a_thread(
                shared,
                stream,
                peer,
                slot,
                left.max(Duration::from_millis(1)),
            );
        }
        // Hung up before saying anything: dropped, its slot given back.
        _ => {}
    }
}

/// Sets a connection up on a thread of its own, which waits up to `timeout` for its hello.
fn set_up_on_a_thread<F: Filesystem + Send + Sync + 'static>(
    shared: &Arc<Shared<F>>,
    stream: UnixStream,
    peer: PeerCred,
    slot: UserSlot,
    timeout: Duration,
) {
    let shared = Arc::clone(shared);
    let spawned = std::thread::Builder::new()
        .name("ring-setup".into())
        .spawn(move || {
            if let Err(e) = set_up(&shared, stream, peer, slot, Some(timeout)) {
                log::debug!("channel set-up failed: {e}");
            }
        });
    if let Err(e) = spawned {
        log::warn!("cannot start a set-up thread: {e}");
    }
}

/// Reads the hello, decides the session, hands the channel to a worker and sends the region.
/// With `hello_timeout` it waits up to that long for the hello; without, the whole hello is
/// known to be waiting (the accept thread saw it), and no timeout is set: two system calls
/// fewer on every connection's way to its welcome.
fn set_up<F: Filesystem + Send + Sync + 'static>(
    shared: &Arc<Shared<F>>,
    stream: UnixStream,
    peer: PeerCred,
    slot: UserSlot,
    hello_timeout: Option<Duration>,
) -> io::Result<()> {
    let mut hello = [0u8; HELLO_LEN];
    if hello_timeout.is_some() {
        stream.set_read_timeout(hello_timeout)?;
        (&stream).read_exact(&mut hello)?;
        stream.set_read_timeout(None)?;
    } else {
        (&stream).read_exact(&mut hello)?;
    }
    let (hello, file_ids) =
        Hello::decode(&hello).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    let cred = match file_ids {
        // As the kernel had them at `connect`, like the ids (see `FileIds`); with no
        // supplementary group if they cannot be read: never more than the kernel said.
        FileIds::Effective => Credentials {
            uid: peer.uid,
            gid: peer.gid,
            groups: sys::peer_groups(&stream).unwrap_or_default(),
            pid: peer.pid,
        },
        FileIds::Own => creds::credentials_of(peer),
    };
    let session = match find_session(shared, hello, &cred) {
        Ok(session) => session,
        Err(errno) => {
            refuse(&stream, errno);
            return Ok(());
        }
    };
    let PreparedRegion { memfd, region } = take_region(shared)?;
    if shared.stop.load(Ordering::SeqCst) {
        return Ok(());
    }
    // The worker gets the channel before the client gets the region: its wake-up overlaps
    // the client's, and it is ready when the first request comes.
    let index = (0..shared.workers.len())
        .min_by_key(|&i| shared.workers[i].load())
        .unwrap_or(0);
    shared.counters.channels.fetch_add(1, Ordering::Relaxed);
    let stream = Arc::new(stream);
    session.add_channel(&stream);
    let join_token = session.join_token;
    shared.workers[index].push(worker::NewChannel {
        region,
        stream: Arc::clone(&stream),
        session,
        cred,
        slot,
        // Woken by the client's connect, this thread most likely runs where the client does.
        cpu_hint: btfuse_ring_client::waiting::current_cpu(),
    });
    let welcome = Welcome {
        status: 0,
        session: join_token,
        region_len: REGION_LEN as u64,
        table_len: TABLE_LEN as u64,
        mount_dev: shared
            .opener
            .as_ref()
            .and_then(|opener| opener.mount_device())
            .unwrap_or(0),
    };
    let table = shared.contents.fd().as_raw_fd();
    let sent = send_with_fds(&stream, &welcome.encode(), &[memfd.as_raw_fd(), table]);
    // Only now: the client runs before another region is made.
    shared.regions_wanted.notify_one();
    if let Err(e) = sent {
        // The worker sees the hang-up and retires the channel.
        sys::shutdown_socket(stream.as_raw_fd());
        return Err(e);
    }
    Ok(())
}

/// Answers a connection with a welcome that refuses it with `errno`, without waiting.
fn refuse(stream: &UnixStream, errno: i32) {
    let refusal = Welcome {
        status: errno as u16,
        session: 0,
        region_len: 0,
        table_len: 0,
        mount_dev: 0,
    };
    let _ = stream.set_nonblocking(true);
    use std::io::Write;
    if let Err(e) = (&*stream).write_all(&refusal.encode()) {
        log::debug!("refusing a connection: {e}");
    }
}

/// The session a hello asks for, as an errno when it may not have it.
fn find_session<F: Filesystem + 'static>(
    shared: &Shared<F>,
    hello: Hello,
    cred: &Credentials,
) -> Result<Arc<Session<F>>, i32> {
    let mut sessions = shared.sessions.lock().unwrap_or_else(|p| p.into_inner());
    sessions.retain(|_, s| s.strong_count() > 0);
    match hello {
        Hello::NewSession => {
            let token = loop {
                let t = sys::random_u64().map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
                if t != 0 && !sessions.contains_key(&t) {
                    break t;
                }
            };
            let session = Arc::new(Session::new(token, cred, shared.budgets.of(cred.uid)));
            sessions.insert(token, Arc::downgrade(&session));
            locks::register_holder(cred.pid, &session);
            Ok(session)
        }
        Hello::Join(token) => {
            let session = sessions
                .get(&token)
                .and_then(Weak::upgrade)
                .ok_or(libc::ENOENT)?;
            if !session.may_join(cred) {
                return Err(libc::EACCES);
            }
            if Arc::strong_count(&session) > MAX_CHANNELS_PER_SESSION {
                return Err(libc::EMFILE);
            }
            Ok(session)
        }
    }
}

#[cfg(test)]
#[allow(unsafe_code)]
mod tests {
    //! Hostile clients against an in-process server: garbage records, lying lengths, records
    //! rewritten while the server reads them, and a failed hello.

    use std::io::Write;
    use std::sync::atomic::AtomicBool;

    use btfuse_core::ring::{self, Request, Response};
    use btfuse_core::{Config, MemFs, MemPool, ZeroClock};

    use btfuse_ring_client::Client;
    use btfuse_ring_client::raw::RawChannel;

    use super::*;

    fn server(dir: &Path) -> (Server<MemFs<MemPool>>, PathBuf) {
        let fs = Arc::new(MemFs::new(
            MemPool::new(16 << 20),
            Config::default(),
            ZeroClock,
        ));
        let socket = dir.join("s.sock");
        let server = Server::start(
            fs,
            &ServerConfig {
                socket: socket.clone(),
                threads: 2,
                socket_mode: 0o600,
                max_connections_per_user: DEFAULT_MAX_CONNECTIONS_PER_USER,
            },
        )
        .unwrap();
        (server, socket)
    }

    /// Pins the calling thread (and the threads it starts afterwards) to `cpu`.
    #[allow(unsafe_code)]
    fn pin_to(cpu: usize) {
        // SAFETY: a zeroed cpu_set_t with one bit set, read by sched_setaffinity.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            assert_eq!(
                libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set),
                0
            );
        }
    }

    /// Runs `test` with a new channel on its own thread, pinned with everything it starts: the
    /// server's workers and the client share one CPU (given to `test` as published, 1 + its
    /// number), as the scheduler sometimes places them on a busy machine.
    fn on_one_cpu(test: impl FnOnce(RawChannel, u32) + Send + 'static) {
        std::thread::spawn(|| {
            let cpu = btfuse_ring_client::waiting::current_cpu() as usize - 1;
            pin_to(cpu);
            let dir = tempfile::tempdir().unwrap();
            let (server, socket) = server(dir.path());
            let (channel, _, _) = RawChannel::connect(&socket, Hello::NewSession).unwrap();
            test(channel, (cpu + 1) as u32);
            server.shutdown();
        })
        .join()
        .unwrap();
    }

    #[test]
    fn sides_on_one_cpu_hand_it_over_instead_of_spinning() {
        use btfuse_ring_client::waiting::HANDED_OVER;
        on_one_cpu(|mut channel, mine| {
            let stat = Request::Stat {
                target: ring::Target::Path {
                    at: None,
                    path: b"/",
                    follow: true,
                },
            };
            let before = HANDED_OVER.load(Ordering::Relaxed);
            const CALLS: u64 = 200;
            for tag in 1..=CALLS {
                channel
                    .call(tag, &stat, |response| {
                        assert!(matches!(response, Response::Attr(_)), "{response:?}");
                        Ok(())
                    })
                    .unwrap();
            }
            let region = channel.region();
            assert_eq!(region.client_cpu().load(Ordering::Relaxed), mine);
            assert_eq!(region.server_cpu().load(Ordering::Relaxed), mine);
            // Each call found the server's CPU to be its own and slept at once, where it
            // used to spin 50 µs; the server likewise (its hand-overs count here too, since
            // it runs in this process).
            let handed = HANDED_OVER.load(Ordering::Relaxed) - before;
            assert!(handed >= CALLS, "{handed} hand-overs for {CALLS} calls");
        });
    }

    #[test]
    fn both_sides_of_a_new_channel_say_where_they_run_before_the_first_request() {
        // The worker polling for a first request stops for a client that has not said where
        // it runs (it may be queued on the worker's CPU), so the client says so at once; the
        // worker says so when it adopts the channel, so that the first request already knows
        // whether to spin.
        on_one_cpu(|channel, mine| {
            let region = channel.region();
            assert_eq!(region.client_cpu().load(Ordering::Relaxed), mine);
            let deadline = Instant::now() + Duration::from_secs(5);
            while region.server_cpu().load(Ordering::Relaxed) == 0 {
                assert!(
                    Instant::now() < deadline,
                    "the worker never said where it runs"
                );
                std::thread::sleep(Duration::from_millis(1));
            }
            // Pinned with everything it starts: the worker too.
            assert_eq!(region.server_cpu().load(Ordering::Relaxed), mine);
            assert_eq!(
                region.req_seq().load(Ordering::Relaxed),
                0,
                "no request was sent"
            );
        });
    }

    #[test]
    fn every_call_after_shutdown_is_enotconn() {
        let dir = tempfile::tempdir().unwrap();
        let (first, socket) = server(dir.path());
        let client = Client::connect(&socket).unwrap();
        client.write("/f", b"x").unwrap();
        first.shutdown();
        // The first call fails on the channel the client had; the next ones find none and
        // try to join the session on a new one, at a socket that is gone.
        for call in 0..3 {
            let err = client.metadata("/f").unwrap_err();
            assert_eq!(
                err.raw_os_error(),
                Some(libc::ENOTCONN),
                "call {call}: {err}"
            );
        }
        // A new server at the same place does not know the session.
        let (again, _) = server(dir.path());
        let err = client.metadata("/f").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOTCONN), "{err}");
        again.shutdown();
    }

    #[test]
    fn malformed_records_disconnect_only_their_sender() {
        let dir = tempfile::tempdir().unwrap();
        let (server, socket) = server(dir.path());
        let good = Client::connect(&socket).unwrap();
        good.write("/keep", b"kept").unwrap();
        let garbage: [&[u8]; 3] = [b"", b"not a record at all", &[0xff; 64]];
        for bytes in garbage {
            let (mut bad, _, _) = RawChannel::connect(&socket, Hello::NewSession).unwrap();
            let err = bad.publish_bytes(bytes, bytes.len()).unwrap_err();
            assert_eq!(err.raw_os_error(), Some(libc::ENOTCONN), "{bytes:?}");
        }
        // A length beyond the area.
        let (mut liar, _, _) = RawChannel::connect(&socket, Hello::NewSession).unwrap();
        let err = liar.publish_bytes(b"", usize::MAX >> 1).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOTCONN));
        // A valid record whose header lies about its length.
        let mut record = vec![0u8; 256];
        let n = ring::encode_request(9, &Request::Fork, &mut record).unwrap();
        record[4] ^= 0x40;
        let (mut liar, _, _) = RawChannel::connect(&socket, Hello::NewSession).unwrap();
        assert!(liar.publish_bytes(&record[..n], n).is_err());
        // The well-behaved client never noticed.
        assert_eq!(good.read("/keep").unwrap(), b"kept");
        server.shutdown();
    }

    #[test]
    fn a_record_rewritten_while_served_changes_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let (server, socket) = server(dir.path());
        let good = Client::connect(&socket).unwrap();
        let (mut racer, _, _) = RawChannel::connect(&socket, Hello::NewSession).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let region_ptr = {
            // SAFETY: the scribbler below writes the request area the test's channel owns,
            // exactly the race a hostile client creates; it touches no Rust object.
            unsafe { racer.region().request_area() }.as_mut_ptr() as usize
        };
        let scribbler = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut x = 0u8;
                while !stop.load(Ordering::Relaxed) {
                    x = x.wrapping_add(37);
                    // SAFETY: a byte inside the mapped request area (offset < 64).
                    unsafe {
                        std::ptr::write_volatile((region_ptr + (x as usize % 64)) as *mut u8, x)
                    };
                }
            })
        };
        let mut outcomes = (0, 0);
        for i in 0..2000u64 {
            let path = b"/racy-name".to_vec();
            let request = Request::Mkdir {
                at: None,
                path: &path,
                mode: 0o755,
            };
            match racer.call(i, &request, |r| {
                Ok(matches!(r, Response::Ok | Response::Err(_)))
            }) {
                Ok(_) => outcomes.0 += 1,
                Err(_) => {
                    outcomes.1 += 1;
                    break;
                }
            }
        }
        stop.store(true, Ordering::Relaxed);
        scribbler.join().unwrap();
        assert!(outcomes.0 + outcomes.1 > 0);
        // Whatever the race did, the server and the other client are fine.
        good.write("/after", b"ok").unwrap();
        assert_eq!(good.read("/after").unwrap(), b"ok");
        server.shutdown();
    }

    /// Opens one file of the test's own for every inode: stands for a kernel mount, so that
    /// what goes through the kernel file shows in that file.
    struct FileOpener(PathBuf);

    impl KernelOpener for FileOpener {
        fn open(
            &self,
            _ino: btfuse_core::Ino,
            access: handoff::KernelAccess,
        ) -> io::Result<std::os::fd::OwnedFd> {
            use std::os::unix::fs::OpenOptionsExt;
            let flags = access.open_flags();
            std::fs::OpenOptions::new()
                .read(access.read)
                .write(access.write && flags & libc::O_APPEND == 0)
                .append(flags & libc::O_APPEND != 0)
                .custom_flags(flags & libc::O_CLOEXEC)
                .open(&self.0)
                .map(Into::into)
        }
    }

    fn server_with_opener(dir: &Path) -> (Server<MemFs<MemPool>>, PathBuf, PathBuf) {
        let fs = Arc::new(MemFs::new(
            MemPool::new(16 << 20),
            Config::default(),
            ZeroClock,
        ));
        let socket = dir.join("s.sock");
        let kernel = dir.join("kernel-file");
        std::fs::write(&kernel, b"").unwrap();
        let server = Server::start_with_kernel(
            fs,
            &ServerConfig {
                socket: socket.clone(),
                threads: 2,
                socket_mode: 0o600,
                max_connections_per_user: DEFAULT_MAX_CONNECTIONS_PER_USER,
            },
            Arc::new(FileOpener(kernel.clone())),
        )
        .unwrap();
        (server, socket, kernel)
    }

    fn handoff_on(channel: &mut RawChannel, tag: u64, fd: u32) -> Response<'static> {
        channel
            .call(tag, &Request::Handoff { fd }, |r| {
                Ok(match r {
                    Response::Ok => Response::Ok,
                    Response::Err(e) => Response::Err(e),
                    other => panic!("unexpected {other:?}"),
                })
            })
            .unwrap()
    }

    #[test]
    fn handoff_without_a_mount_is_eopnotsupp() {
        let dir = tempfile::tempdir().unwrap();
        let (server, socket) = server(dir.path());
        let client = Client::connect(&socket).unwrap();
        let file = btfuse_ring_client::OpenOptions::new()
            .write(true)
            .create(true)
            .open(&client, "/f")
            .unwrap();
        let err = file.handoff().unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EOPNOTSUPP), "{err}");
        // Nothing changed: the description still writes into the engine.
        (&file).write_all(b"x").unwrap();
        assert_eq!(client.read("/f").unwrap(), b"x");
        server.shutdown();
    }

    #[test]
    fn a_handed_off_description_moves_with_the_kernel_file() {
        let dir = tempfile::tempdir().unwrap();
        let (server, socket, kernel) = server_with_opener(dir.path());
        let client = Client::connect(&socket).unwrap();
        let file = btfuse_ring_client::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .open(&client, "/f")
            .unwrap();
        (&file).write_all(b"ab").unwrap();
        let dup = file.try_clone().unwrap();
        let mut handed = file.handoff().unwrap();
        // The kernel file starts at the description's offset, close-on-exec.
        use std::io::Seek;
        assert_eq!(handed.stream_position().unwrap(), 2);
        let flags = crate::sys::status_flags(std::os::fd::AsRawFd::as_raw_fd(&handed)).unwrap();
        assert_eq!(flags & libc::O_ACCMODE, libc::O_RDWR);
        handed.write_all(b"k").unwrap();
        // Every number of the description writes where the kernel file left off.
        (&dup).write_all(b"r").unwrap();
        assert_eq!(handed.stream_position().unwrap(), 4);
        assert_eq!(std::fs::read(&kernel).unwrap(), b"\0\0kr");
        assert_eq!((&file).seek(std::io::SeekFrom::Start(2)).unwrap(), 2);
        assert_eq!(handed.stream_position().unwrap(), 2);
        let mut back = [0u8; 2];
        std::io::Read::read_exact(&mut &file, &mut back).unwrap();
        assert_eq!(&back, b"kr");
        // A second handoff of the same description shares the same kernel file.
        let again = dup.handoff().unwrap();
        let position =
            crate::sys::lseek(std::os::fd::AsRawFd::as_raw_fd(&again), 0, libc::SEEK_CUR);
        assert_eq!(position.unwrap(), 4);
        // Directories are not handed off.
        let root = client.open("/").unwrap();
        let err = root.handoff().unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EISDIR));
        server.shutdown();
    }

    #[test]
    fn a_client_that_never_takes_its_descriptor_cannot_hold_the_server() {
        let dir = tempfile::tempdir().unwrap();
        let (server, socket, _kernel) = server_with_opener(dir.path());
        let good = Client::connect(&socket).unwrap();
        let (mut hostile, _, _) = RawChannel::connect(&socket, Hello::NewSession).unwrap();
        let path = b"/h".to_vec();
        let open = Request::Open {
            at: None,
            path: &path,
            flags: ring::OpenOptions {
                write: true,
                create: true,
                ..ring::OpenOptions::default()
            },
            mode: 0o644,
            prefetch: 0,
            known_ino: 0,
            known_version: 0,
        };
        let fd = hostile
            .call(1, &open, |r| match r {
                Response::Opened { fd, .. } => Ok(fd),
                other => panic!("unexpected {other:?}"),
            })
            .unwrap();
        // The first descriptor is sent; every later one is refused at once while it waits.
        assert_eq!(handoff_on(&mut hostile, 2, fd), Response::Ok);
        let started = std::time::Instant::now();
        for tag in 3..1000 {
            assert_eq!(
                handoff_on(&mut hostile, tag, fd),
                Response::Err(btfuse_core::Errno::Busy)
            );
        }
        assert!(started.elapsed() < Duration::from_secs(20));
        // Others are served meanwhile.
        good.write("/ok", b"fine").unwrap();
        assert_eq!(good.read("/ok").unwrap(), b"fine");
        // Once the waiting descriptor is taken, the next one goes.
        hostile.receive_kernel_file(2, fd).unwrap();
        assert_eq!(handoff_on(&mut hostile, 1000, fd), Response::Ok);
        drop(hostile);
        server.shutdown();
    }

    #[test]
    fn a_bad_hello_is_refused_and_a_join_needs_a_live_session() {
        let dir = tempfile::tempdir().unwrap();
        let (server, socket) = server(dir.path());
        let mut raw = UnixStream::connect(&socket).unwrap();
        raw.write_all(&[0u8; HELLO_LEN]).unwrap();
        let mut buf = [0u8; 8];
        // The server closes the connection without a region.
        assert_eq!(std::io::Read::read(&mut raw, &mut buf).unwrap(), 0);
        let err = RawChannel::connect(&socket, Hello::Join(12345))
            .err()
            .unwrap();
        assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
        assert_eq!(server.channels(), 0);
        server.shutdown();
        assert!(!socket.exists());
    }

    /// Connects, then sends its hello in pieces ending at `ends`, `pause` apart, and reads the
    /// answer.
    fn welcome_after_a_slow_hello(socket: &Path, ends: &[usize], pause: Duration) -> Welcome {
        use btfuse_ring_client::handshake::WELCOME_LEN;
        let mut stream = UnixStream::connect(socket).unwrap();
        let hello = Hello::NewSession.encode(FileIds::Effective);
        let mut start = 0;
        for &end in ends {
            std::thread::sleep(pause);
            stream.write_all(&hello[start..end]).unwrap();
            start = end;
        }
        let mut welcome = [0u8; WELCOME_LEN];
        std::io::Read::read_exact(&mut stream, &mut welcome).unwrap();
        Welcome::decode(&welcome).unwrap()
    }

    #[test]
    fn a_hello_that_comes_late_or_in_pieces_is_answered_and_others_are_not_held_up() {
        let dir = tempfile::tempdir().unwrap();
        let (server, socket) = server(dir.path());
        // One that waits, then says its hello: answered from the accept thread's poll set.
        let late = welcome_after_a_slow_hello(&socket, &[HELLO_LEN], Duration::from_millis(100));
        assert_eq!(late.status, 0);
        // One cut in two: answered too.
        let cut = welcome_after_a_slow_hello(&socket, &[10, HELLO_LEN], Duration::from_millis(50));
        assert_eq!(cut.status, 0);
        // While a silent one waits for its hello, another client is set up at once.
        let _silent = UnixStream::connect(&socket).unwrap();
        let started = std::time::Instant::now();
        let (_channel, _, _) = RawChannel::connect(&socket, Hello::NewSession).unwrap();
        assert!(
            started.elapsed() < HELLO_TIMEOUT / 2,
            "{:?}",
            started.elapsed()
        );
        server.shutdown();
    }

    #[test]
    fn a_client_that_says_nothing_is_let_go_after_the_hello_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let (server, socket) = server(dir.path());
        let mut silent = UnixStream::connect(&socket).unwrap();
        let started = std::time::Instant::now();
        let mut buf = [0u8; 8];
        assert_eq!(std::io::Read::read(&mut silent, &mut buf).unwrap(), 0);
        let waited = started.elapsed();
        assert!(
            waited >= HELLO_TIMEOUT - Duration::from_millis(100),
            "{waited:?}"
        );
        assert!(waited < HELLO_TIMEOUT * 3, "{waited:?}");
        server.shutdown();
    }

    #[test]
    fn a_session_has_a_bounded_number_of_channels() {
        let dir = tempfile::tempdir().unwrap();
        let (server, socket) = server(dir.path());
        let (first, token, _) = RawChannel::connect(&socket, Hello::NewSession).unwrap();
        let mut channels = vec![first];
        let refused = loop {
            match RawChannel::connect(&socket, Hello::Join(token)) {
                Ok((channel, _, _)) => channels.push(channel),
                Err(e) => break e,
            }
            assert!(channels.len() <= MAX_CHANNELS_PER_SESSION + 1, "no bound");
        };
        assert_eq!(refused.raw_os_error(), Some(libc::EMFILE));
        assert!(channels.len() >= MAX_CHANNELS_PER_SESSION);
        drop(channels);
        server.shutdown();
    }

    /// Regions made ahead of connections are each given to one connection only: in this
    /// process (server and clients both), every region memfd is mapped at most twice, once
    /// by the server and once by the one client it was sent to, however many connect.
    #[test]
    fn every_connection_gets_a_region_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let (server, socket) = server(dir.path());
        let clients: Vec<Client> = (0..3 * PREPARED_REGIONS)
            .map(|i| {
                let client = Client::connect(&socket).unwrap();
                client.write(format!("/f{i}"), format!("{i}")).unwrap();
                client
            })
            .collect();
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let mut mapped: HashMap<u64, usize> = HashMap::new();
        for line in maps.lines().filter(|l| l.contains("/memfd:btfuse-ring")) {
            let inode = line.split_whitespace().nth(4).unwrap().parse().unwrap();
            *mapped.entry(inode).or_default() += 1;
        }
        assert!(mapped.len() >= clients.len(), "{mapped:?}");
        assert!(mapped.values().all(|&n| n <= 2), "{mapped:?}");
        for (i, client) in clients.iter().enumerate() {
            assert_eq!(
                client.read(format!("/f{i}")).unwrap(),
                format!("{i}").as_bytes()
            );
        }
        drop(clients);
        server.shutdown();
    }
}
