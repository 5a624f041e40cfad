//! One channel driven record by record, bytes included: for tests of how the server meets a
//! client that does not keep to the protocol (records that are garbage or lie about their
//! length, a request rewritten while it is served, a kernel file never taken). Behind the
//! feature `raw`; nothing a program needs.

#![allow(unsafe_code)]

use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;

use btfuse_core::ring::{Request, Response};

use crate::channel::Region;
use crate::client::Channel;
use crate::handshake::Hello;

/// A channel of its own, outside any [`Client`](crate::Client).
pub struct RawChannel(Channel);

impl RawChannel {
    /// Connects a channel with `hello`; returns it, the session's join token and the server's
    /// content table.
    pub fn connect(socket: &Path, hello: Hello) -> io::Result<(RawChannel, u64, OwnedFd)> {
        let (channel, welcome, table) = Channel::connect(socket, hello)?;
        Ok((RawChannel(channel), welcome.session, table))
    }

    /// Sends `request` tagged `tag` and hands its response to `read`.
    pub fn call<T>(
        &mut self,
        tag: u64,
        request: &Request<'_>,
        read: impl FnOnce(Response<'_>) -> io::Result<T>,
    ) -> io::Result<T> {
        self.0.call(tag, request, read)
    }

    /// Publishes `bytes` as the next request, saying it is `len` bytes long (which may be a
    /// lie), and waits for the server's verdict: an answer, or `ENOTCONN` when it hangs up.
    pub fn publish_bytes(&mut self, bytes: &[u8], len: usize) -> io::Result<()> {
        let channel = &mut self.0;
        // SAFETY: this channel is owned here and has no request in flight.
        let area = unsafe { channel.region.request_area() };
        area[..bytes.len()].copy_from_slice(bytes);
        channel.seq = channel.seq.wrapping_add(1);
        channel.region.publish_request(channel.seq, len);
        channel.region.wake_server();
        channel.wait(channel.seq)
    }

    /// The channel's region.
    pub fn region(&self) -> &Region {
        &self.0.region
    }

    /// Takes the kernel descriptor the server queued for `Handoff` request `tag` of
    /// description `fd`.
    pub fn receive_kernel_file(&self, tag: u64, fd: u32) -> io::Result<OwnedFd> {
        self.0.receive_kernel_file(tag, fd)
    }
}
