//! Who a caller is, as the kernel says. For a ring client, `SO_PEERCRED` gives the pid and the
//! effective uid and gid at connect time; `/proc/PID/status` gives the filesystem ids (what
//! Linux checks file access with) and the supplementary groups, read while the client waits for
//! its welcome. For a FUSE request, the kernel gives the ids and `/proc` the groups.

use btfuse_core::Credentials;

/// The identity of the process at the other end of a Unix socket, as the kernel recorded it
/// when the connection was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerCred {
    /// Process id.
    pub pid: u32,
    /// Effective user id.
    pub uid: u32,
    /// Effective group id.
    pub gid: u32,
}

/// The credentials requests on a channel from `peer` are checked with.
///
/// The filesystem uid and gid are taken from `/proc` when the effective ids there are still
/// the ones `SO_PEERCRED` reported. If they are not (the client changed its ids between
/// `connect` and now, and will connect again for that), or `/proc` cannot be read, the
/// effective ids are used with no supplementary group: never more than the kernel said.
pub fn credentials_of(peer: PeerCred) -> Credentials {
    let status = std::fs::read_to_string(format!("/proc/{}/status", peer.pid)).ok();
    match status.as_deref().and_then(|s| parse_status(s, peer)) {
        Some(cred) => cred,
        None => Credentials {
            uid: peer.uid,
            gid: peer.gid,
            groups: Vec::new(),
            pid: peer.pid,
        },
    }
}

/// The credentials in a `/proc/PID/status` text whose effective ids are `peer`'s.
fn parse_status(status: &str, peer: PeerCred) -> Option<Credentials> {
    // "Uid:\treal\teffective\tsaved\tfilesystem"
    let ids = |prefix: &str| -> Option<[u32; 4]> {
        let line = status.lines().find_map(|l| l.strip_prefix(prefix))?;
        let mut fields = line.split_whitespace().map(|f| f.parse::<u32>().ok());
        Some([
            fields.next()??,
            fields.next()??,
            fields.next()??,
            fields.next()??,
        ])
    };
    let [_, euid, _, fsuid] = ids("Uid:")?;
    let [_, egid, _, fsgid] = ids("Gid:")?;
    if euid != peer.uid || egid != peer.gid {
        return None;
    }
    let groups = groups(status)?;
    Some(Credentials {
        uid: fsuid,
        gid: fsgid,
        groups,
        pid: peer.pid,
    })
}

/// The `Groups:` line of a `/proc/PID/status` text.
fn groups(status: &str) -> Option<Vec<u32>> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Groups:"))?
        .split_whitespace()
        .map(|g| g.parse().ok())
        .collect()
}

/// The `Groups:` line of `/proc/PID/status`; `None` if the process is gone.
pub fn supplementary_groups(pid: u32) -> Option<Vec<u32>> {
    groups(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\tx\nUmask:\t0022\nState:\tS (sleeping)\nPid:\t42\n\
        Uid:\t1000\t1000\t1000\t1000\nGid:\t100\t100\t100\t100\nGroups:\t100 27 \n";

    fn peer(uid: u32, gid: u32) -> PeerCred {
        PeerCred { pid: 42, uid, gid }
    }

    #[test]
    fn filesystem_ids_and_groups_come_from_proc() {
        let cred = parse_status(STATUS, peer(1000, 100)).unwrap();
        assert_eq!((cred.uid, cred.gid, cred.pid), (1000, 100, 42));
        assert_eq!(cred.groups, [100, 27]);
        let fs_ids = STATUS
            .replace("Uid:\t1000\t1000\t1000\t1000", "Uid:\t0\t0\t0\t1000")
            .replace("Gid:\t100\t100\t100\t100", "Gid:\t0\t0\t0\t100");
        // setfsuid(1000) by root: files are checked as 1000.
        let cred = parse_status(&fs_ids, peer(0, 0)).unwrap();
        assert_eq!((cred.uid, cred.gid), (1000, 100));
    }

    #[test]
    fn ids_changed_since_connect_are_not_trusted() {
        // The kernel said root at connect; /proc says 1000 now: neither is taken from /proc.
        assert_eq!(parse_status(STATUS, peer(0, 0)), None);
        assert_eq!(parse_status(STATUS, peer(1000, 0)), None);
        assert_eq!(parse_status("Uid:\t1\t2\n", peer(2, 0)), None);
        assert_eq!(parse_status("", peer(0, 0)), None);
    }
}
