//! The two fixed-size messages that set up a channel over the Unix socket, before the shared
//! region takes over; the server's side reads and writes them as the client's does. All fields
//! little-endian.
//!
//! Client to server, [`HELLO_LEN`] bytes:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `0x4254_4648` ("BTFH") |
//! | 4 | 2 | handshake version, [`VERSION`] |
//! | 6 | 2 | 0: start a new session; 1: join the session named by the token |
//! | 8 | 8 | join token (0 for a new session) |
//! | 16 | 1 | 0: the client's filesystem ids are its effective ids; 1: they are not (see [`FileIds`]) |
//! | 17 | 1 | the version of the ring's records the client speaks (`btfuse_core::ring::VERSION`) |
//! | 18 | 14 | zero |
//!
//! Server to client, [`WELCOME_LEN`] bytes, with two memfds attached on success: the channel's
//! region, then the server's content table (see `contents`):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `0x4254_4657` ("BTFW") |
//! | 4 | 2 | handshake version |
//! | 6 | 2 | 0, or the errno that refused the connection |
//! | 8 | 8 | the session's join token, for more channels of the same client |
//! | 16 | 4 | length of the region |
//! | 20 | 4 | length of the content table |
//! | 24 | 8 | the device number (`st_dev`) of the kernel mount the server also serves, 0 if none |

/// Length of the client's message.
pub const HELLO_LEN: usize = 32;
/// Length of the server's message.
pub const WELCOME_LEN: usize = 32;
/// Version of these messages.
pub const VERSION: u16 = 3;

const HELLO_MAGIC: u32 = 0x4254_4648;
const WELCOME_MAGIC: u32 = 0x4254_4657;

/// What a connecting client asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hello {
    /// A new session with an empty descriptor table.
    NewSession,
    /// Another channel into the session with this join token.
    Join(u64),
}

/// Whether the server may take the client's filesystem ids for its effective ids.
///
/// The kernel checks file access with the filesystem uid and gid, which are the effective
/// ones unless the process set them apart (`setfsuid`, `setfsgid`). `SO_PEERCRED` gives the
/// server the effective ids and `SO_PEERGROUPS` the supplementary groups, both as they were at
/// `connect`; only `/proc/PID/status` shows filesystem ids, and reading it cost each new
/// connection about a third of its set-up. So the client says which case it is in:
///
/// - [`FileIds::Effective`]: the server checks with the effective ids. A client that says so
///   falsely gains nothing: a process may always make its effective uid and gid its
///   filesystem ones.
/// - [`FileIds::Own`]: the server reads the filesystem ids from `/proc`, as the kernel has
///   them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileIds {
    /// Filesystem uid and gid equal the effective ones.
    Effective,
    /// They differ: the server must read them.
    Own,
}

impl FileIds {
    /// This process's case, asked of the kernel now (`setfsuid(-1)` and `setfsgid(-1)`
    /// change nothing and return the current filesystem ids).
    pub fn of_this_process() -> FileIds {
        if crate::sys::file_ids_are_effective() {
            FileIds::Effective
        } else {
            FileIds::Own
        }
    }
}

impl Hello {
    /// The message's bytes, saying `file_ids`.
    pub fn encode(self, file_ids: FileIds) -> [u8; HELLO_LEN] {
        let mut out = [0u8; HELLO_LEN];
        out[0..4].copy_from_slice(&HELLO_MAGIC.to_le_bytes());
        out[4..6].copy_from_slice(&VERSION.to_le_bytes());
        let (kind, token) = match self {
            Hello::NewSession => (0u16, 0u64),
            Hello::Join(token) => (1, token),
        };
        out[6..8].copy_from_slice(&kind.to_le_bytes());
        out[8..16].copy_from_slice(&token.to_le_bytes());
        out[16] = u8::from(file_ids == FileIds::Own);
        out[17] = btfuse_core::ring::VERSION;
        out
    }

    /// The message in `bytes`, or what is wrong with them (a client speaking other ring
    /// records than this build's among them: that is settled here, before a region is made,
    /// and not by a first request).
    pub fn decode(bytes: &[u8; HELLO_LEN]) -> Result<(Hello, FileIds), &'static str> {
        let (head, rest) = bytes.split_at(8);
        if head[0..4] != HELLO_MAGIC.to_le_bytes() {
            return Err("not a btfuse client");
        }
        if head[4..6] != VERSION.to_le_bytes() {
            return Err("unsupported handshake version");
        }
        if rest[9] != btfuse_core::ring::VERSION {
            return Err("unsupported ring record version");
        }
        if rest[10..].iter().any(|&b| b != 0) {
            return Err("reserved bytes are not zero");
        }
        let file_ids = match rest[8] {
            0 => FileIds::Effective,
            1 => FileIds::Own,
            _ => return Err("unknown file ids"),
        };
        let token = u64::from_le_bytes(rest[0..8].try_into().unwrap_or_default());
        let hello = match u16::from_le_bytes([head[6], head[7]]) {
            0 if token == 0 => Hello::NewSession,
            1 => Hello::Join(token),
            _ => return Err("unknown request kind"),
        };
        Ok((hello, file_ids))
    }
}

/// The server's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Welcome {
    /// 0, or the errno of the refusal.
    pub status: u16,
    /// The session's join token.
    pub session: u64,
    /// Length of the region whose memfd comes with the message.
    pub region_len: u64,
    /// Length of the content table whose memfd comes second.
    pub table_len: u64,
    /// The device number (`st_dev`, as glibc's `makedev` encodes it) of the kernel mount of
    /// the same filesystem, 0 if the server knows of none. A client that found the server
    /// from a mount point checks it there: the socket is then known to serve what the
    /// kernel shows at that path, in this mount namespace.
    pub mount_dev: u64,
}

impl Welcome {
    /// The message's bytes.
    pub fn encode(self) -> [u8; WELCOME_LEN] {
        let mut out = [0u8; WELCOME_LEN];
        out[0..4].copy_from_slice(&WELCOME_MAGIC.to_le_bytes());
        out[4..6].copy_from_slice(&VERSION.to_le_bytes());
        out[6..8].copy_from_slice(&self.status.to_le_bytes());
        out[8..16].copy_from_slice(&self.session.to_le_bytes());
        let length = |len: u64| u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes();
        out[16..20].copy_from_slice(&length(self.region_len));
        out[20..24].copy_from_slice(&length(self.table_len));
        out[24..32].copy_from_slice(&self.mount_dev.to_le_bytes());
        out
    }

    /// The message in `bytes`, or what is wrong with them.
    pub fn decode(bytes: &[u8; WELCOME_LEN]) -> Result<Welcome, &'static str> {
        if bytes[0..4] != WELCOME_MAGIC.to_le_bytes() {
            return Err("not a btfuse server");
        }
        if bytes[4..6] != VERSION.to_le_bytes() {
            return Err("unsupported handshake version");
        }
        let word = |range: std::ops::Range<usize>| {
            let mut b = [0u8; 8];
            b[..range.len()].copy_from_slice(&bytes[range]);
            u64::from_le_bytes(b)
        };
        Ok(Welcome {
            status: u16::from_le_bytes([bytes[6], bytes[7]]),
            session: word(8..16),
            region_len: word(16..20),
            table_len: word(20..24),
            mount_dev: word(24..32),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_reject_garbage() {
        for hello in [Hello::NewSession, Hello::Join(0xdead_beef)] {
            for ids in [FileIds::Effective, FileIds::Own] {
                assert_eq!(Hello::decode(&hello.encode(ids)), Ok((hello, ids)));
            }
        }
        let good = Hello::NewSession.encode(FileIds::Effective);
        let other_ring = btfuse_core::ring::VERSION.wrapping_add(1);
        for (at, value) in [
            (0, good[0] ^ 1),
            (31, 1),
            (6, 7),
            (16, 2),
            (17, other_ring),
            (18, 1),
        ] {
            let mut bad = good;
            bad[at] = value;
            assert!(Hello::decode(&bad).is_err(), "byte {at} = {value}");
        }
        let welcome = Welcome {
            status: 13,
            session: 42,
            region_len: 1 << 21,
            table_len: 1 << 18,
            mount_dev: 0x0000_0000_0000_002b,
        };
        assert_eq!(Welcome::decode(&welcome.encode()), Ok(welcome));
        let mut bad = welcome.encode();
        bad[4] = 9;
        assert!(Welcome::decode(&bad).is_err());
    }
}
