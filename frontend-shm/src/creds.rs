//! Who a client is: the kernel says uid, gid and pid (`SO_PEERCRED`); the supplementary groups
//! are read from `/proc/PID/status` when the channel is set up.

use btfuse_core::Credentials;

use crate::sys::PeerCred;

/// The credentials requests on a channel from `peer` are checked with.
pub(crate) fn credentials_of(peer: PeerCred) -> Credentials {
    let groups = if peer.uid == 0 {
        Vec::new()
    } else {
        supplementary_groups(peer.pid).unwrap_or_default()
    };
    Credentials {
        uid: peer.uid,
        gid: peer.gid,
        groups,
        pid: peer.pid,
    }
}

/// The `Groups:` line of `/proc/PID/status`; `None` if the process is gone.
pub fn supplementary_groups(pid: u32) -> Option<Vec<u32>> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("Groups:"))?;
    Some(
        line.split_whitespace()
            .filter_map(|g| g.parse().ok())
            .collect(),
    )
}
