//! This library's own descriptors: the channels' sockets, the placeholders' base and the
//! watched mount table, which the program did not open and must not close.

use btfuse_ring_client::Client;
use libc::c_int;

use crate::connection::{current_client, lowest_private_fd};

/// Whether `fd` is one of this library's own descriptors (see [`private_fds`]).
#[unsafe(link_section = ".text.hot.btfuse")]
pub(crate) fn is_private(fd: c_int) -> bool {
    fd >= lowest_private_fd() && private_fds(current_client().as_ref()).contains(&fd)
}

/// This library's own descriptors, which a program's `close_range`/`closefrom` leaves open:
/// `client`'s sockets and the placeholders' base.
pub(crate) fn private_fds(client: Option<&Client>) -> Vec<c_int> {
    let mut fds = client.map(Client::private_fds).unwrap_or_default();
    fds.extend(super::placeholder::base());
    fds.extend(crate::paths::mount_watch_fd());
    fds
}
