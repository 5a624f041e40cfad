//! The Rust client: a `std::fs`-like API over ring channels.
//!
//! A [`Client`] is one session of the server: every [`File`] it opens is a description in that
//! session's table. It is cheap to clone and usable from many threads at once: each call
//! borrows one of the session's channels (one request in flight per channel), opening another
//! (up to [`MAX_CHANNELS`]) when all are busy.
//!
//! Paths name files from the served root: `/a/b` and `a/b` are the same file. Errors are
//! `std::io::Error`s whose `raw_os_error` is the errno the server answered; a server that is
//! gone gives `ENOTCONN` within [`DEAD_SERVER_CHECK`]. A path whose walk leaves the served
//! tree (an absolute symbolic link, `..` above the root) fails with a [`LeftTree`] error: a
//! `Client` has no namespace of its own to go on in.

#![allow(unsafe_code)]

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use btfuse_core::ring::{
    self, DecodeError, EncodeError, MAX_IO, Request, Response, Target, Whence,
};
use btfuse_core::{AccessMask, Attr, Errno, FileType, RenameMode, StatFs, TimeSet};

use crate::channel::{REGION_LEN, Region};
use crate::contents::{ContentView, TABLE_LEN};
use crate::handshake::{FileIds, Hello, WELCOME_LEN, Welcome};
use crate::kernel_file::{KERNEL_FILE_LEN, KernelFile};
use crate::sys;
use crate::waiting::{self, Spin};

/// Where the client's own descriptors go: 0 leaves them where the kernel puts them.
static PRIVATE_FD_FLOOR: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

/// Puts the descriptors clients open from now on (their sockets) at `floor` or above. An
/// interposer sets this so that the numbers a program chooses itself (`exec 3> file`, `dup2`
/// onto a small number) never land on the client's socket.
pub fn set_private_fd_floor(floor: i32) {
    PRIVATE_FD_FLOOR.store(floor.max(0), Ordering::Relaxed);
}

/// How many times this process's ids have changed, as [`identity_changed`] counts them.
static IDENTITY_EPOCH: AtomicU64 = AtomicU64::new(0);

/// Says that this process's user or group ids (real, effective, saved, filesystem or
/// supplementary) may have changed. The server takes a channel's identity from the kernel
/// when the channel connects (`SO_PEERCRED`, `/proc`), never from the client; so from now on
/// every client of this process leaves the channels it has and connects new ones, joining the
/// same session, before its next request. Descriptions opened before keep the access they were
/// granted, as the kernel's do. An interposer calls this after every `set*id`, `setgroups`
/// and `setfs*id`; a Rust program that changes its ids calls it itself.
pub fn identity_changed() {
    IDENTITY_EPOCH.fetch_add(1, Ordering::SeqCst);
}

/// The identity epoch now: an answer received while it read `e`, before and after the
/// request, was checked with the ids the process had at epoch `e`.
pub fn identity_epoch() -> u64 {
    IDENTITY_EPOCH.load(Ordering::Acquire)
}

/// Most channels one client opens.
pub const MAX_CHANNELS: usize = 16;
/// How long a waiting call sleeps before it checks that the server is still there.
pub const DEAD_SERVER_CHECK: Duration = Duration::from_millis(100);
/// How long a call polls for its response before it sleeps on the futex, on a machine with
/// cores to spare (see [`waiting`](crate::waiting)).
const SPIN: Duration = Duration::from_micros(50);
/// How long connecting may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

fn errno(e: Errno) -> io::Error {
    io::Error::from_raw_os_error(e.code())
}

fn protocol_error(what: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("ring protocol: {what}"))
}

/// What a request the client was asked to send cannot carry, as the errno the kernel would
/// give for the same argument.
fn encode_error(e: EncodeError) -> io::Error {
    let code = match e {
        EncodeError::Invalid(DecodeError::EmptyString) => libc::ENOENT,
        EncodeError::Invalid(DecodeError::TooLong) => libc::ENAMETOOLONG,
        _ => libc::EINVAL,
    };
    io::Error::from_raw_os_error(code)
}

/// A request [`Client::send`] published, whose answer is still to come.
pub struct Sent<'a> {
    client: &'a Client,
    channel: Option<Box<Channel>>,
    seq: u32,
    tag: u64,
}

impl Sent<'_> {
    /// Waits for the answer and hands it to `read` (an error answer as `Response::Err`).
    pub fn finish<T>(mut self, read: impl FnOnce(Response<'_>) -> io::Result<T>) -> io::Result<T> {
        let Some(mut channel) = self.channel.take() else {
            return Err(protocol_error("answer already taken"));
        };
        let result = channel.receive(self.seq, self.tag, read);
        self.client.give_back(channel, &result);
        result
    }
}

impl Drop for Sent<'_> {
    /// An answer not waited for is collected, and dropped, by the channel's next use.
    fn drop(&mut self) {
        if let Some(mut channel) = self.channel.take() {
            channel.posted = Some((self.seq, self.tag));
            self.client.give_back(channel, &Ok(()));
        }
    }
}

impl std::fmt::Debug for Sent<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sent")
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

/// One channel: a connection and its region.
pub(crate) struct Channel {
    pub(crate) stream: UnixStream,
    /// What the socket's number named when connected: a program that puts another file on
    /// that number (`dup2` onto it) has broken the channel.
    identity: Option<(u64, u64)>,
    pub(crate) region: Region,
    pub(crate) seq: u32,
    /// A request sent without waiting for its answer ([`Client::post`], or a [`Sent`] dropped
    /// unfinished): its sequence number and tag. The next use of the channel collects the
    /// answer first.
    posted: Option<(u32, u64)>,
    /// A request in the region's post area that no later response has yet shown taken: the
    /// area is not free until one does.
    post_pending: bool,
    /// A request was published and the server not yet woken if it sleeps
    /// ([`Region::wake_server`]): done before waiting or letting go of the channel.
    unwoken: bool,
    /// The server slept when it was last woken: it is not on a CPU yet, and a busy machine
    /// may keep it off one for a while.
    server_slept: bool,
    /// The identity epoch when it connected: the server checks its requests with the ids the
    /// process had then, so it serves no request made after they changed.
    epoch: u64,
}

impl Channel {
    /// Connects a channel; returns it, the server's welcome (the session's join token, the
    /// mount's device) and the server's content table (to map, or to drop when the client
    /// has it already).
    pub(crate) fn connect(socket: &Path, hello: Hello) -> io::Result<(Channel, Welcome, OwnedFd)> {
        // Read before connecting: ids changed during the handshake make the channel stale.
        let epoch = identity_epoch();
        let mut stream = UnixStream::connect(socket)?;
        let floor = PRIVATE_FD_FLOOR.load(Ordering::Relaxed);
        if floor > 0 {
            stream = UnixStream::from(sys::move_fd_above(OwnedFd::from(stream), floor)?);
        }
        let identity = sys::fd_identity(stream.as_raw_fd());
        // A new socket's buffer is empty, so the hello goes in one non-blocking send; then
        // one poll waits, bounded, for the welcome. (Timeouts on the socket cost three
        // system calls more on every connection: two to set, one to clear.)
        sys::send_all_now(&stream, &hello.encode(FileIds::of_this_process()))?;
        sys::wait_readable(&stream, HANDSHAKE_TIMEOUT)?;
        let mut buf = [0u8; WELCOME_LEN];
        let mut fds = sys::recv_with_fds(&stream, &mut buf)?.into_iter();
        let welcome = Welcome::decode(&buf).map_err(protocol_error)?;
        if welcome.status != 0 {
            return Err(io::Error::from_raw_os_error(i32::from(welcome.status)));
        }
        let (Some(fd), Some(table)) = (fds.next(), fds.next()) else {
            return Err(protocol_error(
                "no region and content table came with the welcome",
            ));
        };
        if welcome.table_len != TABLE_LEN as u64 {
            return Err(protocol_error("a content table of another size"));
        }
        if welcome.region_len != REGION_LEN as u64 || !sys::is_sealed_memfd(&fd, welcome.region_len)
        {
            return Err(protocol_error(
                "the region is not a sealed memfd of the expected size",
            ));
        }
        // SAFETY: checked just above: a memfd of REGION_LEN bytes sealed against shrinking.
        let region = unsafe { Region::map(&fd)? };
        if !region.is_valid() {
            return Err(protocol_error("unknown region layout"));
        }
        // Said at once: until then the worker, polling for the first request, takes this
        // client for one still waiting for a CPU (see the server's worker).
        Region::publish_cpu(region.client_cpu(), waiting::current_cpu());
        let seq = region.req_seq().load(Ordering::Relaxed);
        Ok((
            Channel {
                stream,
                identity,
                region,
                seq,
                posted: None,
                post_pending: false,
                unwoken: false,
                server_slept: false,
                epoch,
            },
            welcome,
            table,
        ))
    }

    /// Sends `request` and hands its response to `read`.
    pub(crate) fn call<T>(
        &mut self,
        tag: u64,
        request: &Request<'_>,
        read: impl FnOnce(Response<'_>) -> io::Result<T>,
    ) -> io::Result<T> {
        let seq = self.send(tag, request)?;
        self.receive(seq, tag, read)
    }

    /// Waits for the answer to request `seq` (tagged `tag`) and hands it to `read`.
    fn receive<T>(
        &mut self,
        seq: u32,
        tag: u64,
        read: impl FnOnce(Response<'_>) -> io::Result<T>,
    ) -> io::Result<T> {
        self.wake();
        self.wait(seq)?;
        self.post_pending = false;
        // SAFETY: the view is dropped before this channel publishes another request.
        let bytes = unsafe { self.region.response(seq) }
            .ok_or_else(|| protocol_error("response vanished"))?;
        let (answered, response) = ring::decode_response(bytes).map_err(protocol_error)?;
        if answered != tag {
            return Err(protocol_error("response to another request"));
        }
        read(response)
    }

    /// Publishes `request` (after collecting the answer to a posted one); its sequence number.
    fn send(&mut self, tag: u64, request: &Request<'_>) -> io::Result<u32> {
        self.collect_posted()?;
        // SAFETY: this thread holds the channel exclusively (it was taken from the pool).
        let area = unsafe { self.region.request_area() };
        let len = ring::encode_request(tag, request, area).map_err(encode_error)?;
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        Region::publish_cpu(self.region.client_cpu(), waiting::current_cpu());
        self.region.publish_request(seq, len);
        self.unwoken = true;
        Ok(seq)
    }

    /// Publishes `request`, whose answer nobody will read, in the post area: the next
    /// request need not wait for it. Returns false, having sent nothing, when the area is
    /// still taken or the record does not fit there.
    fn post(&mut self, tag: u64, request: &Request<'_>) -> io::Result<bool> {
        if self.post_pending {
            return Ok(false);
        }
        // Served in the order published, so the request area's unanswered one goes first.
        self.collect_posted()?;
        // SAFETY: this thread holds the channel exclusively, and no posted request is pending.
        let area = unsafe { self.region.post_area() };
        let Ok(len) = ring::encode_request(tag, request, area) else {
            return Ok(false);
        };
        self.seq = self.seq.wrapping_add(1);
        Region::publish_cpu(self.region.client_cpu(), waiting::current_cpu());
        self.region.publish_post(self.seq, len);
        self.post_pending = true;
        self.unwoken = true;
        Ok(true)
    }

    /// Wakes the server for what was published, if it sleeps and that is still to be done.
    fn wake(&mut self) {
        if self.unwoken {
            self.unwoken = false;
            self.server_slept = self.region.wake_server();
        }
    }

    /// Waits for the answer to the posted request, if any, and checks that it is one.
    fn collect_posted(&mut self) -> io::Result<()> {
        match self.posted.take() {
            Some((seq, tag)) => self.receive(seq, tag, |_| Ok(())),
            None => Ok(()),
        }
    }

    /// Takes the descriptor the server sent for `Handoff` or `MapFile` request `tag` of
    /// description `fd`, which the server queued on the socket before it answered.
    pub(crate) fn receive_kernel_file(&self, tag: u64, fd: u32) -> io::Result<OwnedFd> {
        let mut buf = [0u8; KERNEL_FILE_LEN];
        let received = sys::recv_waiting_with_fd(&self.stream, &mut buf)
            .map_err(|e| protocol_error(format!("no descriptor after Handoff or MapFile: {e}")))?;
        let message = KernelFile::decode(&buf).map_err(protocol_error)?;
        if message != (KernelFile { tag, fd }) {
            return Err(protocol_error("a kernel file for another request"));
        }
        received.ok_or_else(|| protocol_error("no descriptor came with the kernel file"))
    }

    /// Waits for response `seq`: polls for a moment, then sleeps on the futex, checking that
    /// the server is alive every [`DEAD_SERVER_CHECK`].
    pub(crate) fn wait(&self, seq: u32) -> io::Result<()> {
        let region = &self.region;
        // Beyond one spinner per spare CPU, a thread sleeps at once: see `waiting`.
        let place = waiting::CLIENT_SPINNERS.enter(waiting::client_spinners_allowed());
        let limit = if place.is_some() {
            SPIN
        } else {
            Duration::ZERO
        };
        let cpu = region.client_cpu().load(Ordering::Relaxed);
        let mut spin = Spin::new(&waiting::MACHINE, limit, self.server_slept);
        loop {
            if region.resp_seq().load(Ordering::Acquire) == seq {
                return Ok(());
            }
            let server_off_cpu = |elapsed| {
                waiting::peer_off_cpu(
                    cpu,
                    region.server_cpu().load(Ordering::Relaxed),
                    self.server_slept && region.server_sleeping().load(Ordering::Relaxed) != 0,
                    elapsed,
                )
            };
            if !spin.again_unless(server_off_cpu) {
                break;
            }
        }
        drop(place);
        loop {
            let seen = region.resp_seq().load(Ordering::Acquire);
            if seen == seq {
                return Ok(());
            }
            if region.announce_sleep(region.client_sleeping(), region.resp_seq(), seen) {
                sys::futex_wait(region.resp_seq(), seen, DEAD_SERVER_CHECK);
            }
            // Where it woke up, before it says it runs: the server reads both.
            Region::publish_cpu(region.client_cpu(), waiting::current_cpu());
            region.client_sleeping().store(0, Ordering::Relaxed);
            if region.resp_seq().load(Ordering::Acquire) == seq {
                return Ok(());
            }
            if sys::peer_hung_up(&self.stream)
                || sys::fd_identity(self.stream.as_raw_fd()) != self.identity
            {
                return Err(io::Error::from_raw_os_error(libc::ENOTCONN));
            }
        }
    }
}

/// The error of a call that found no channel free and could not join its session on a new
/// one. A server that is gone (socket removed: `ENOENT`; nobody listening: `ECONNREFUSED`;
/// hung up during the hello) or that no longer knows the session (`ENOENT` from the server)
/// means the session is over: `ENOTCONN`, as on a channel whose server went, and never an
/// errno that would read as the answer about the path the caller asked for. Local trouble
/// (`EMFILE`, `EACCES`, a timeout) is passed on as it is.
fn join_error(e: io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(libc::ENOENT | libc::ECONNREFUSED | libc::ECONNRESET | libc::EPIPE) => {
            io::Error::from_raw_os_error(libc::ENOTCONN)
        }
        _ if e.kind() == io::ErrorKind::UnexpectedEof => {
            io::Error::from_raw_os_error(libc::ENOTCONN)
        }
        _ => e,
    }
}

struct Inner {
    socket: PathBuf,
    session: u64,
    /// The device number of the kernel mount the server serves too, 0 if none (see
    /// [`Client::mount_device`]).
    mount_dev: u64,
    /// The server's content table, read-only.
    contents: ContentView,
    /// The channel given back last while no thread waited for one, as a leaked `Box` (or
    /// null): a thread's next call takes it with one swap and gives it back with one
    /// compare-exchange, without the pool's lock.
    hot: AtomicPtr<Channel>,
    /// Channels no call is using (besides `hot`). Boxed: a channel moves between here and
    /// `hot`, a pointer, without being moved or allocated again.
    #[allow(clippy::vec_box)]
    idle: Mutex<Vec<Box<Channel>>>,
    /// Signalled when a channel comes back (or one may be opened) and a thread waits.
    returned: Condvar,
    /// Threads waiting on `returned` (notifying costs a system call; only done for them).
    waiters: AtomicUsize,
    open: AtomicUsize,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let hot = *self.hot.get_mut();
        if !hot.is_null() {
            // SAFETY: a Box leaked by `give_back`; with `&mut self` nobody else can take it.
            drop(unsafe { Box::from_raw(hot) });
        }
    }
}

/// A session with a `btfuse-shm` server. Clones share the session.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("socket", &self.inner.socket)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// The device number (`st_dev`) of the kernel mount of the filesystem this client's
    /// server serves, as the server told it; 0 if it serves none (or could not tell yet).
    /// A client that found the server by a mount point compares it with that mount point's
    /// device before using the connection.
    pub fn mount_device(&self) -> u64 {
        self.inner.mount_dev
    }

    /// Connects to the server listening on `socket` and starts a session.
    pub fn connect(socket: impl AsRef<Path>) -> io::Result<Client> {
        let socket = socket.as_ref().to_path_buf();
        let (channel, welcome, table) = Channel::connect(&socket, Hello::NewSession)?;
        let contents = ContentView::map(&table)?;
        // The server checked the ring's record version in the hello: no request is spent on it.
        Ok(Client {
            inner: Arc::new(Inner {
                socket,
                session: welcome.session,
                mount_dev: welcome.mount_dev,
                contents,
                hot: AtomicPtr::new(std::ptr::null_mut()),
                idle: Mutex::new(vec![Box::new(channel)]),
                returned: Condvar::new(),
                waiters: AtomicUsize::new(0),
                open: AtomicUsize::new(1),
            }),
        })
    }

    /// Sends one request on a free channel and hands the response to `read`.
    fn call<T>(
        &self,
        request: &Request<'_>,
        read: impl FnOnce(Response<'_>) -> io::Result<T>,
    ) -> io::Result<T> {
        self.with_channel(|channel| {
            // Tags need only tell this channel's requests apart.
            let tag = u64::from(channel.seq.wrapping_add(1));
            channel.call(tag, request, read)
        })
    }

    /// Runs `f` on a free channel, which goes back to the pool unless `f` found it broken.
    fn with_channel<T>(&self, f: impl FnOnce(&mut Channel) -> io::Result<T>) -> io::Result<T> {
        let mut channel = self.take_channel()?;
        let result = f(&mut channel);
        self.give_back(channel, &result);
        result
    }

    /// Returns a channel to the pool after a use that ended with `result`, unless that found
    /// it broken.
    fn give_back<T>(&self, mut channel: Box<Channel>, result: &io::Result<T>) {
        channel.wake();
        let broken = matches!(result, Err(e) if e.raw_os_error() == Some(libc::ENOTCONN)
            || e.kind() == io::ErrorKind::InvalidData);
        let inner = &self.inner;
        if !broken {
            let hot = Box::into_raw(channel);
            // SeqCst, with the load of `waiters` after it: the Dekker pair with a waiting
            // thread's increment of `waiters` and its swap of `hot` in `take_channel`. Either
            // that thread finds the channel, or this one finds the thread and hands the
            // channel over through the pool, under its lock.
            match inner.hot.compare_exchange(
                std::ptr::null_mut(),
                hot,
                Ordering::SeqCst,
                Ordering::Relaxed,
            ) {
                Ok(_) if inner.waiters.load(Ordering::SeqCst) == 0 => return,
                Ok(_) => {
                    let mut idle = inner.idle.lock().unwrap_or_else(|p| p.into_inner());
                    idle.extend(self.take_hot());
                    drop(idle);
                    inner.returned.notify_one();
                    return;
                }
                // SAFETY: `hot` came from `Box::into_raw` above and was not published.
                Err(_) => channel = unsafe { Box::from_raw(hot) },
            }
        }
        let mut idle = inner.idle.lock().unwrap_or_else(|p| p.into_inner());
        if broken {
            // A broken channel is not reused; its place may be taken by a new one.
            inner.open.fetch_sub(1, Ordering::Relaxed);
        } else {
            idle.push(channel);
        }
        // Waiters register under this lock, so none is missed; notifying is a system call,
        // made only for them.
        let waiting = inner.waiters.load(Ordering::Relaxed) > 0;
        drop(idle);
        if waiting {
            inner.returned.notify_one();
        }
    }

    /// Sends `request` and returns before its answer, which [`Sent::finish`] waits for: the
    /// caller does its own work (a system call, say) while the server does the request's.
    /// The channel stays the caller's until then.
    pub fn send(&self, request: &Request<'_>) -> io::Result<Sent<'_>> {
        let mut channel = self.take_channel()?;
        let tag = u64::from(channel.seq.wrapping_add(1));
        match channel.send(tag, request) {
            Ok(seq) => Ok(Sent {
                client: self,
                channel: Some(channel),
                seq,
                tag,
            }),
            Err(e) => {
                let result = Err(e);
                self.give_back(channel, &result);
                result
            }
        }
    }

    /// The channel in `hot`, if there is one.
    fn take_hot(&self) -> Option<Box<Channel>> {
        let hot = self.inner.hot.swap(std::ptr::null_mut(), Ordering::SeqCst);
        // SAFETY: a non-null `hot` is a Box leaked by `give_back`, and the swap made this
        // thread its only owner.
        (!hot.is_null()).then(|| unsafe { Box::from_raw(hot) })
    }

    fn take_channel(&self) -> io::Result<Box<Channel>> {
        let channel = self.take_any_channel()?;
        if channel.epoch == identity_epoch() {
            return Ok(channel);
        }
        // Its successor connects first: the server keeps a session only while it has a
        // channel, and this may be the only one.
        let fresh = Channel::connect(&self.inner.socket, Hello::Join(self.inner.session));
        self.retire(channel, fresh.is_ok());
        match fresh {
            Ok((channel, _, _)) => Ok(Box::new(channel)),
            Err(e) => Err(join_error(e)),
        }
    }

    /// Lets go of a channel connected under ids the process no longer has (`replaced`: by a
    /// new one, which takes its place in the count). The answer to a request it posted is
    /// collected first, so the server has served it before the hang-up.
    fn retire(&self, mut channel: Box<Channel>, replaced: bool) {
        // Any answer shows every request published before it served (they are served in
        // order): a `Close` in the post area is never lost with the channel.
        let settled = if channel.post_pending {
            let tag = u64::from(channel.seq.wrapping_add(1));
            let hello = Request::Hello {
                version: ring::VERSION,
            };
            channel.call(tag, &hello, |_| Ok(()))
        } else {
            channel.collect_posted()
        };
        if let Err(e) = settled {
            log::debug!("retiring a channel: {e}");
        }
        channel.wake();
        drop(channel);
        if replaced {
            return;
        }
        let inner = &self.inner;
        let idle = inner.idle.lock().unwrap_or_else(|p| p.into_inner());
        inner.open.fetch_sub(1, Ordering::Relaxed);
        let waiting = inner.waiters.load(Ordering::Relaxed) > 0;
        drop(idle);
        if waiting {
            inner.returned.notify_one();
        }
    }

    /// A free channel, of any epoch.
    fn take_any_channel(&self) -> io::Result<Box<Channel>> {
        if let Some(channel) = self.take_hot() {
            return Ok(channel);
        }
        let inner = &self.inner;
        let mut idle = inner.idle.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(channel) = idle.pop() {
                return Ok(channel);
            }
            if inner.open.load(Ordering::Relaxed) < MAX_CHANNELS {
                inner.open.fetch_add(1, Ordering::Relaxed);
                drop(idle);
                return match Channel::connect(&inner.socket, Hello::Join(inner.session)) {
                    Ok((channel, _, _)) => Ok(Box::new(channel)),
                    Err(e) => {
                        inner.open.fetch_sub(1, Ordering::Relaxed);
                        Err(join_error(e))
                    }
                };
            }
            // Registered before looking at `hot` once more (see `give_back`), and under the
            // lock, which the wait gives up only once it waits: a channel given back meanwhile
            // is either found here or handed over with a notification that finds this thread
            // waiting.
            inner.waiters.fetch_add(1, Ordering::SeqCst);
            if let Some(channel) = self.take_hot() {
                inner.waiters.fetch_sub(1, Ordering::Relaxed);
                return Ok(channel);
            }
            idle = inner.returned.wait(idle).unwrap_or_else(|p| p.into_inner());
            inner.waiters.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Sends `request` and returns at once, without its answer (which is dropped): for a
    /// request whose answer the caller would ignore, such as `Close`. It goes in the channel's
    /// post area when that is free, so the channel's next request is sent at once rather than
    /// after the answer. Requests on one channel are served in order, so a later call from the
    /// same thread normally follows it; one from another thread may be served first.
    pub fn post(&self, request: &Request<'_>) -> io::Result<()> {
        self.post_then(request, || ()).0
    }

    /// Like [`post`](Client::post), running `then` (a system call of the caller's, say) before
    /// the server is woken if it sleeps: the time the request takes to reach the server's core
    /// is then spent on `then` rather than waited for.
    pub fn post_then<T>(
        &self,
        request: &Request<'_>,
        then: impl FnOnce() -> T,
    ) -> (io::Result<()>, T) {
        let mut channel = match self.take_channel() {
            Ok(channel) => channel,
            Err(e) => return (Err(e), then()),
        };
        let tag = u64::from(channel.seq.wrapping_add(1));
        let result = match channel.post(tag, request) {
            Ok(true) => Ok(()),
            // The post area is busy: a request whose answer the channel's next use collects.
            Ok(false) => channel
                .send(tag, request)
                .map(|seq| channel.posted = Some((seq, tag))),
            Err(e) => Err(e),
        };
        let value = then();
        self.give_back(channel, &result);
        (result, value)
    }

    /// Sends any ring request and hands its response to `read`: the descriptor-level API the
    /// interceptor builds on. An error answer reaches `read` as `Response::Err`.
    pub fn request<T>(
        &self,
        request: &Request<'_>,
        read: impl FnOnce(Response<'_>) -> io::Result<T>,
    ) -> io::Result<T> {
        self.call(request, read)
    }

    /// Asks the server to keep a copy of this session's descriptions for a child process;
    /// returns the token the child passes to [`Client::attach`]. Call it before `fork` (or
    /// `exec`): the copy shares every description, offsets included.
    pub fn prepare_fork(&self) -> io::Result<u64> {
        self.call(&Request::Fork, |r| match r {
            Response::Token(token) => Ok(token),
            other => unexpected(other),
        })
    }

    /// Hands description `fd` to the kernel: the server opens its file through the FUSE mount
    /// it serves, at the description's offset and with its access mode and `O_APPEND`, and
    /// sends the kernel descriptor (close-on-exec) back. The description and the kernel's
    /// share one offset from then on. `EOPNOTSUPP` from a server with no mount, `EISDIR` for
    /// a directory, `EBUSY` while a descriptor sent earlier on the channel waits unread.
    pub fn handoff(&self, fd: u32) -> io::Result<OwnedFd> {
        self.with_channel(|channel| {
            let tag = u64::from(channel.seq.wrapping_add(1));
            channel.call(tag, &Request::Handoff { fd }, expect_ok)?;
            channel.receive_kernel_file(tag, fd)
        })
    }

    /// Shows the regular file description `fd` reads in a mapping of this process's own
    /// (`MapFile`): reads of it need no round trip. `EBADF` for a description not open for
    /// reading, `EOPNOTSUPP` from a server that shows no file, `ENOSPC` when it shows as many
    /// as it may, `EAGAIN` while it is still moving a large file in (ask again later),
    /// `EBUSY` while a descriptor sent earlier on the channel waits unread.
    pub fn map_file(&self, fd: u32) -> io::Result<crate::mapped::MappedFile> {
        let file = self.with_channel(|channel| {
            let tag = u64::from(channel.seq.wrapping_add(1));
            channel.call(tag, &Request::MapFile { fd }, expect_ok)?;
            channel.receive_kernel_file(tag, fd)
        })?;
        crate::mapped::MappedFile::new(&std::fs::File::from(file))
    }

    /// Whether content the server sent with `version` and content table slot `slot`
    /// ([`Response::Prefetched`]) is still the file's: no change to it has begun since. One
    /// load from the server's content table; no round trip.
    pub fn content_is_current(&self, slot: u32, version: u64) -> bool {
        crate::contents::is_settled(version) && self.inner.contents.version(slot) == version
    }

    /// The version content table slot `slot` shows now, if no change is under way there:
    /// read before a directory is listed ([`Response::OpenedDir`]), it vouches for the listing
    /// if [`content_is_current`](Client::content_is_current) still holds after the last batch.
    pub fn settled_version(&self, slot: u32) -> Option<u64> {
        let version = self.inner.contents.version(slot);
        crate::contents::is_settled(version).then_some(version)
    }

    /// Whether an answer the server stamped with attribute version `version` in content table
    /// slot `slot` ([`Response::Stamped`]) still holds there: no change to the attributes or
    /// content of an inode of that slot has begun since. One load; no round trip.
    pub fn attributes_are_current(&self, slot: u32, version: u64) -> bool {
        crate::contents::is_settled(version) && self.inner.contents.attributes(slot) == version
    }

    /// Names the server's content table, unique among all servers ever started: content
    /// kept from one server is never to be checked against another's table.
    pub fn content_source(&self) -> u64 {
        self.inner.contents.identity()
    }

    /// Continues with the descriptions a parent kept under `token`. Only a fresh client (one
    /// channel, nothing opened yet) may attach.
    pub fn attach(&self, token: u64) -> io::Result<()> {
        self.call(&Request::Attach { token }, expect_ok)
    }

    /// The descriptors this client keeps for itself (its idle channels' sockets), so that an
    /// interposer closing a range of descriptors for a program can leave them open.
    pub fn private_fds(&self) -> Vec<std::os::fd::RawFd> {
        let mut idle = self.inner.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.extend(self.take_hot());
        idle.iter().map(|c| c.stream.as_raw_fd()).collect()
    }

    /// One round trip that does no filesystem work: the transport's own cost.
    pub fn ping(&self) -> io::Result<()> {
        self.call(
            &Request::Hello {
                version: ring::VERSION,
            },
            expect_ok,
        )
    }

    /// Opens `path` as `options` say.
    pub fn open_with(&self, path: impl AsRef<Path>, options: &OpenOptions) -> io::Result<File> {
        let path = wire_path(path.as_ref())?;
        let request = Request::Open {
            at: None,
            path,
            flags: options.flags,
            mode: options.mode,
            prefetch: 0,
            known_ino: 0,
            known_version: 0,
        };
        self.call(&request, |r| match r {
            Response::Opened { fd, attr } => Ok(File {
                client: self.clone(),
                fd,
                kind: attr.kind,
            }),
            other => unexpected(other),
        })
    }

    /// Opens a file for reading.
    pub fn open(&self, path: impl AsRef<Path>) -> io::Result<File> {
        self.open_with(path, OpenOptions::new().read(true))
    }

    /// Creates (or truncates) a file for writing.
    pub fn create(&self, path: impl AsRef<Path>) -> io::Result<File> {
        self.open_with(
            path,
            OpenOptions::new().write(true).create(true).truncate(true),
        )
    }

    /// The attributes of `path`, following a final symbolic link.
    pub fn metadata(&self, path: impl AsRef<Path>) -> io::Result<Metadata> {
        let path = wire_path(path.as_ref())?;
        self.stat(target(path, true))
    }

    /// The attributes of `path` itself, even if it is a symbolic link.
    pub fn symlink_metadata(&self, path: impl AsRef<Path>) -> io::Result<Metadata> {
        let path = wire_path(path.as_ref())?;
        self.stat(target(path, false))
    }

    fn stat(&self, target: Target<'_>) -> io::Result<Metadata> {
        self.call(&Request::Stat { target }, |r| match r {
            Response::Attr(attr) => Ok(Metadata { attr }),
            other => unexpected(other),
        })
    }

    /// Checks `mask` access to `path` (`access(2)`).
    pub fn access(&self, path: impl AsRef<Path>, mask: AccessMask) -> io::Result<()> {
        let path = wire_path(path.as_ref())?;
        let request = Request::Access {
            target: target(path, true),
            mask,
            effective: false,
        };
        self.call(&request, expect_ok)
    }

    /// Creates a directory with permission bits 0o777 (the server applies no umask).
    pub fn create_dir(&self, path: impl AsRef<Path>) -> io::Result<()> {
        self.create_dir_mode(path, 0o777)
    }

    /// Creates a directory with the given permission bits.
    pub fn create_dir_mode(&self, path: impl AsRef<Path>, mode: u32) -> io::Result<()> {
        let path = wire_path(path.as_ref())?;
        self.call(
            &Request::Mkdir {
                at: None,
                path,
                mode,
            },
            expect_ok,
        )
    }

    /// Creates a directory and every missing parent.
    pub fn create_dir_all(&self, path: impl AsRef<Path>) -> io::Result<()> {
        let path = path.as_ref();
        let mut built = PathBuf::from("/");
        for component in path.components() {
            use std::path::Component;
            match component {
                Component::RootDir | Component::CurDir => continue,
                Component::Normal(name) => built.push(name),
                Component::ParentDir => {
                    built.pop();
                    continue;
                }
                Component::Prefix(_) => return Err(io::Error::from_raw_os_error(libc::EINVAL)),
            }
            match self.create_dir(&built) {
                Ok(()) => {}
                Err(e)
                    if e.raw_os_error() == Some(libc::EEXIST)
                        && self.metadata(&built)?.is_dir() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Removes a file (or symbolic link).
    pub fn remove_file(&self, path: impl AsRef<Path>) -> io::Result<()> {
        let path = wire_path(path.as_ref())?;
        self.call(&Request::Unlink { at: None, path }, expect_ok)
    }

    /// Removes an empty directory.
    pub fn remove_dir(&self, path: impl AsRef<Path>) -> io::Result<()> {
        let path = wire_path(path.as_ref())?;
        self.call(&Request::Rmdir { at: None, path }, expect_ok)
    }

    /// Renames `from` to `to`, replacing `to` as `rename(2)` does.
    pub fn rename(&self, from: impl AsRef<Path>, to: impl AsRef<Path>) -> io::Result<()> {
        self.rename_with(from, to, RenameMode::Replace)
    }

    /// Renames with `renameat2` flags (`RenameMode::NoReplace`, `RenameMode::Exchange`).
    pub fn rename_with(
        &self,
        from: impl AsRef<Path>,
        to: impl AsRef<Path>,
        mode: RenameMode,
    ) -> io::Result<()> {
        let (old_path, new_path) = (wire_path(from.as_ref())?, wire_path(to.as_ref())?);
        let request = Request::Rename {
            old_at: None,
            old_path,
            new_at: None,
            new_path,
            mode,
        };
        self.call(&request, expect_ok)
    }

    /// Makes `link` a new name of `original` (not following a final symlink, as `link(2)`).
    pub fn hard_link(&self, original: impl AsRef<Path>, link: impl AsRef<Path>) -> io::Result<()> {
        let (old, new_path) = (wire_path(original.as_ref())?, wire_path(link.as_ref())?);
        let request = Request::Link {
            old: target(old, false),
            new_at: None,
            new_path,
        };
        self.call(&request, expect_ok)
    }

    /// Creates a symbolic link at `link` holding `original`.
    pub fn symlink(&self, original: impl AsRef<Path>, link: impl AsRef<Path>) -> io::Result<()> {
        let content = original.as_ref().as_os_str().as_bytes();
        let link = wire_path(link.as_ref())?;
        let request = Request::Symlink {
            target: content,
            at: None,
            path: link,
        };
        self.call(&request, expect_ok)
    }

    /// The content of a symbolic link.
    pub fn read_link(&self, path: impl AsRef<Path>) -> io::Result<PathBuf> {
        let path = wire_path(path.as_ref())?;
        let request = Request::Readlink {
            at: None,
            path,
            max: btfuse_core::PATH_MAX as u32,
        };
        self.call(&request, |r| match r {
            Response::Data(bytes) => Ok(PathBuf::from(std::ffi::OsStr::from_bytes(bytes))),
            other => unexpected(other),
        })
    }

    /// Sets the permission bits of `path`.
    pub fn set_permissions(&self, path: impl AsRef<Path>, mode: u32) -> io::Result<()> {
        let path = wire_path(path.as_ref())?;
        self.call(
            &Request::Chmod {
                target: target(path, true),
                mode,
            },
            expect_ok,
        )
    }

    /// Changes the owner and/or group of `path` (`None` leaves one unchanged).
    pub fn chown(
        &self,
        path: impl AsRef<Path>,
        uid: Option<u32>,
        gid: Option<u32>,
    ) -> io::Result<()> {
        let path = wire_path(path.as_ref())?;
        self.call(
            &Request::Chown {
                target: target(path, true),
                uid,
                gid,
            },
            expect_ok,
        )
    }

    /// Sets the access and modification times of `path`.
    pub fn set_times(
        &self,
        path: impl AsRef<Path>,
        atime: TimeSet,
        mtime: TimeSet,
    ) -> io::Result<()> {
        let path = wire_path(path.as_ref())?;
        self.call(
            &Request::Utimens {
                target: target(path, true),
                atime,
                mtime,
            },
            expect_ok,
        )
    }

    /// Truncates or extends `path` to `size` bytes.
    pub fn truncate(&self, path: impl AsRef<Path>, size: u64) -> io::Result<()> {
        let path = wire_path(path.as_ref())?;
        self.call(
            &Request::Truncate {
                target: target(path, true),
                size,
            },
            expect_ok,
        )
    }

    /// Filesystem statistics.
    pub fn statfs(&self) -> io::Result<StatFs> {
        self.call(
            &Request::Statfs {
                target: target(b"/", true),
            },
            |r| match r {
                Response::StatFs(s) => Ok(s),
                other => unexpected(other),
            },
        )
    }

    /// Every entry of a directory but `.` and `..`, in the server's order.
    pub fn read_dir(&self, path: impl AsRef<Path>) -> io::Result<Vec<DirEntry>> {
        let dir = self.open_with(path, OpenOptions::new().read(true).directory(true))?;
        let mut entries = Vec::new();
        loop {
            let before = entries.len();
            let done = self.call(
                &Request::Getdents {
                    fd: dir.fd,
                    max: 64 * 1024,
                },
                |r| match r {
                    Response::Dirents(list) => {
                        for entry in list.iter() {
                            if entry.name != b"." && entry.name != b".." {
                                entries.push(DirEntry {
                                    name: std::ffi::OsStr::from_bytes(entry.name).to_os_string(),
                                    ino: entry.ino.0,
                                    kind: entry.kind,
                                });
                            }
                        }
                        Ok(list.iter().next().is_none())
                    }
                    other => unexpected(other),
                },
            )?;
            if done && entries.len() == before {
                return Ok(entries);
            }
        }
    }

    /// Reads a whole file.
    pub fn read(&self, path: impl AsRef<Path>) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        self.open(path)?.read_to_end(&mut out)?;
        Ok(out)
    }

    /// Creates or truncates a file and writes `data` to it.
    pub fn write(&self, path: impl AsRef<Path>, data: impl AsRef<[u8]>) -> io::Result<()> {
        self.create(path)?.write_all(data.as_ref())
    }
}

fn expect_ok(response: Response<'_>) -> io::Result<()> {
    match response {
        Response::Ok => Ok(()),
        other => unexpected(other),
    }
}

/// The error of a call whose path leads out of the served tree: the server did nothing, and
/// the walk would go on at `path`. Carried by an `io::Error` of kind `Other`
/// (`error.get_ref()` and `downcast_ref::<LeftTree>()`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeftTree {
    /// Where the walk would go on: absolute, or relative to the place the served root appears
    /// at (then it starts with `..`).
    pub path: PathBuf,
    /// Symbolic links followed before leaving.
    pub links: u32,
}

impl std::fmt::Display for LeftTree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the path leaves the btfuse tree (after {} symbolic links) and goes on at {}",
            self.links,
            self.path.display()
        )
    }
}

impl std::error::Error for LeftTree {}

/// An error answer as its errno, a walk that left the tree as [`LeftTree`]; any other
/// unexpected answer as a protocol error.
pub(crate) fn unexpected<T>(response: Response<'_>) -> io::Result<T> {
    match response {
        Response::Err(e) => Err(errno(e)),
        Response::Outside { path, links, .. } => Err(io::Error::other(LeftTree {
            path: PathBuf::from(std::ffi::OsStr::from_bytes(path)),
            links,
        })),
        other => Err(protocol_error(format_args!(
            "unexpected response {other:?}"
        ))),
    }
}

fn wire_path(path: &Path) -> io::Result<&[u8]> {
    let bytes = path.as_os_str().as_bytes();
    if bytes.is_empty() {
        return Err(io::Error::from_raw_os_error(libc::ENOENT));
    }
    Ok(bytes)
}

fn target(path: &[u8], follow: bool) -> Target<'_> {
    Target::Path {
        at: None,
        path,
        follow,
    }
}

/// Options for [`Client::open_with`], as `std::fs::OpenOptions` has them.
#[derive(Clone, Debug)]
pub struct OpenOptions {
    flags: ring::OpenOptions,
    mode: u32,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions::new()
    }
}

macro_rules! flag_setters {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        $(
            $(#[$doc])*
            pub fn $name(&mut self, on: bool) -> &mut Self {
                self.flags.$name = on;
                self
            }
        )*
    };
}

impl OpenOptions {
    /// No access, mode 0o666.
    pub fn new() -> OpenOptions {
        OpenOptions {
            flags: ring::OpenOptions::default(),
            mode: 0o666,
        }
    }

    flag_setters! {
        /// Open for reading.
        read,
        /// Open for writing.
        write,
        /// Truncate to 0 bytes (`O_TRUNC`).
        truncate,
        /// Create the file if it is missing (`O_CREAT`).
        create,
        /// With `create`: fail with `EEXIST` if it exists (`O_EXCL`).
        exclusive,
        /// Fail unless it is a directory (`O_DIRECTORY`).
        directory,
        /// Fail with `ELOOP` on a final symbolic link (`O_NOFOLLOW`).
        nofollow,
    }

    /// Every write goes to the end of the file (`O_APPEND`); implies `write`, as in
    /// `std::fs::OpenOptions`.
    pub fn append(&mut self, on: bool) -> &mut Self {
        self.flags.append = on;
        if on {
            self.flags.write = true;
        }
        self
    }

    /// Create and fail if the file exists: `create(true)` plus `exclusive(true)`.
    pub fn create_new(&mut self, on: bool) -> &mut Self {
        self.flags.create = on;
        self.flags.exclusive = on;
        self
    }

    /// Permission bits of a created file (the server applies no umask).
    pub fn mode(&mut self, mode: u32) -> &mut Self {
        self.mode = mode;
        self
    }

    /// Opens `path` through `client`.
    pub fn open(&self, client: &Client, path: impl AsRef<Path>) -> io::Result<File> {
        client.open_with(path, self)
    }
}

/// An open description in the server. Closed when dropped.
#[derive(Debug)]
pub struct File {
    client: Client,
    fd: u32,
    kind: FileType,
}

impl File {
    /// The attributes of the open file.
    pub fn metadata(&self) -> io::Result<Metadata> {
        self.client.stat(Target::Fd(self.fd))
    }

    /// Truncates or extends the file to `size` bytes.
    pub fn set_len(&self, size: u64) -> io::Result<()> {
        self.client.call(
            &Request::Truncate {
                target: Target::Fd(self.fd),
                size,
            },
            expect_ok,
        )
    }

    /// `fsync`: a no-op for memory, kept for the errors it checks.
    pub fn sync_all(&self) -> io::Result<()> {
        self.client.call(
            &Request::Fsync {
                fd: self.fd,
                datasync: false,
            },
            expect_ok,
        )
    }

    /// A second `File` sharing this description (offset and flags), as `dup(2)`.
    pub fn try_clone(&self) -> io::Result<File> {
        self.client
            .call(&Request::Dup { fd: self.fd }, |r| match r {
                Response::Fd(fd) => Ok(File {
                    client: self.client.clone(),
                    fd,
                    kind: self.kind,
                }),
                other => unexpected(other),
            })
    }

    /// Reads at `offset` without moving the file offset (`pread`).
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let len = buf.len().min(MAX_IO) as u32;
        self.client.call(
            &Request::Pread {
                fd: self.fd,
                offset,
                len,
            },
            |r| copy_data(r, buf),
        )
    }

    /// Writes at `offset` without moving the file offset (`pwrite`).
    pub fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        let data = &buf[..buf.len().min(MAX_IO)];
        self.client.call(
            &Request::Pwrite {
                fd: self.fd,
                offset,
                data,
            },
            expect_size,
        )
    }

    /// The description's number in the session.
    pub fn description(&self) -> u32 {
        self.fd
    }

    /// The same open file as a kernel file of the FUSE mount, sharing this one's offset
    /// (see [`Client::handoff`]).
    pub fn handoff(&self) -> io::Result<std::fs::File> {
        self.client.handoff(self.fd).map(std::fs::File::from)
    }
}

fn copy_data(response: Response<'_>, buf: &mut [u8]) -> io::Result<usize> {
    match response {
        Response::Data(bytes) if bytes.len() <= buf.len() => {
            buf[..bytes.len()].copy_from_slice(bytes);
            Ok(bytes.len())
        }
        other => unexpected(other),
    }
}

fn expect_size(response: Response<'_>) -> io::Result<usize> {
    match response {
        Response::Size(n) => usize::try_from(n).map_err(|_| protocol_error("size overflow")),
        other => unexpected(other),
    }
}

impl Read for File {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self).read(buf)
    }
}

impl Read for &File {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let len = buf.len().min(MAX_IO) as u32;
        self.client
            .call(&Request::Read { fd: self.fd, len }, |r| copy_data(r, buf))
    }
}

impl Write for File {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self).write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Write for &File {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let data = &buf[..buf.len().min(MAX_IO)];
        self.client
            .call(&Request::Write { fd: self.fd, data }, expect_size)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for File {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        (&*self).seek(pos)
    }
}

impl Seek for &File {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let (offset, whence) = match pos {
            SeekFrom::Start(n) => (
                i64::try_from(n).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?,
                Whence::Set,
            ),
            SeekFrom::Current(n) => (n, Whence::Cur),
            SeekFrom::End(n) => (n, Whence::End),
        };
        self.client.call(
            &Request::Lseek {
                fd: self.fd,
                offset,
                whence,
            },
            |r| match r {
                Response::Offset(n) => Ok(n),
                other => unexpected(other),
            },
        )
    }
}

impl Drop for File {
    fn drop(&mut self) {
        // A close that fails (server gone) has nothing left to release; its answer is not
        // waited for.
        let _ = self.client.post(&Request::Close { fd: self.fd });
    }
}

/// Attributes of a file, from [`Client::metadata`] or [`File::metadata`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Metadata {
    /// Everything the engine reports.
    pub attr: Attr,
}

impl Metadata {
    /// The file's type.
    pub fn file_type(&self) -> FileType {
        self.attr.kind
    }
    /// Whether it is a directory.
    pub fn is_dir(&self) -> bool {
        self.attr.kind == FileType::Directory
    }
    /// Whether it is a regular file.
    pub fn is_file(&self) -> bool {
        self.attr.kind == FileType::RegularFile
    }
    /// Whether it is a symbolic link.
    pub fn is_symlink(&self) -> bool {
        self.attr.kind == FileType::Symlink
    }
    /// Size in bytes.
    pub fn len(&self) -> u64 {
        self.attr.size
    }
    /// Whether the size is 0.
    pub fn is_empty(&self) -> bool {
        self.attr.size == 0
    }
    /// Permission bits (and set-ID and sticky bits).
    pub fn mode(&self) -> u32 {
        self.attr.perm
    }
}

/// One entry of [`Client::read_dir`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    /// The entry's name.
    pub name: std::ffi::OsString,
    /// Its inode number.
    pub ino: u64,
    /// Its type.
    pub kind: FileType,
}
