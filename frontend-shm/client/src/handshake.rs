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
//! | 16 | 16 | zero |
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
//! | 16 | 8 | length of the region |
//! | 24 | 8 | length of the content table |

/// Length of the client's message.
pub const HELLO_LEN: usize = 32;
/// Length of the server's message.
pub const WELCOME_LEN: usize = 32;
/// Version of these messages.
pub const VERSION: u16 = 2;

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

impl Hello {
    /// The message's bytes.
    pub fn encode(self) -> [u8; HELLO_LEN] {
        let mut out = [0u8; HELLO_LEN];
        out[0..4].copy_from_slice(&HELLO_MAGIC.to_le_bytes());
        out[4..6].copy_from_slice(&VERSION.to_le_bytes());
        let (kind, token) = match self {
            Hello::NewSession => (0u16, 0u64),
            Hello::Join(token) => (1, token),
        };
        out[6..8].copy_from_slice(&kind.to_le_bytes());
        out[8..16].copy_from_slice(&token.to_le_bytes());
        out
    }

    /// The message in `bytes`, or what is wrong with them.
    pub fn decode(bytes: &[u8; HELLO_LEN]) -> Result<Hello, &'static str> {
        let (head, rest) = bytes.split_at(8);
        if head[0..4] != HELLO_MAGIC.to_le_bytes() {
            return Err("not a btfuse client");
        }
        if head[4..6] != VERSION.to_le_bytes() {
            return Err("unsupported handshake version");
        }
        if rest[8..].iter().any(|&b| b != 0) {
            return Err("reserved bytes are not zero");
        }
        let token = u64::from_le_bytes(rest[0..8].try_into().unwrap_or_default());
        match u16::from_le_bytes([head[6], head[7]]) {
            0 if token == 0 => Ok(Hello::NewSession),
            1 => Ok(Hello::Join(token)),
            _ => Err("unknown request kind"),
        }
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
}

impl Welcome {
    /// The message's bytes.
    pub fn encode(self) -> [u8; WELCOME_LEN] {
        let mut out = [0u8; WELCOME_LEN];
        out[0..4].copy_from_slice(&WELCOME_MAGIC.to_le_bytes());
        out[4..6].copy_from_slice(&VERSION.to_le_bytes());
        out[6..8].copy_from_slice(&self.status.to_le_bytes());
        out[8..16].copy_from_slice(&self.session.to_le_bytes());
        out[16..24].copy_from_slice(&self.region_len.to_le_bytes());
        out[24..32].copy_from_slice(&self.table_len.to_le_bytes());
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
            b.copy_from_slice(&bytes[range]);
            u64::from_le_bytes(b)
        };
        Ok(Welcome {
            status: u16::from_le_bytes([bytes[6], bytes[7]]),
            session: word(8..16),
            region_len: word(16..24),
            table_len: word(24..32),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_reject_garbage() {
        for hello in [Hello::NewSession, Hello::Join(0xdead_beef)] {
            assert_eq!(Hello::decode(&hello.encode()), Ok(hello));
        }
        let mut bad = Hello::NewSession.encode();
        bad[0] ^= 1;
        assert!(Hello::decode(&bad).is_err());
        let mut bad = Hello::NewSession.encode();
        bad[31] = 1;
        assert!(Hello::decode(&bad).is_err());
        let mut bad = Hello::NewSession.encode();
        bad[6] = 7;
        assert!(Hello::decode(&bad).is_err());
        let welcome = Welcome {
            status: 13,
            session: 42,
            region_len: 1 << 21,
            table_len: 1 << 18,
        };
        assert_eq!(Welcome::decode(&welcome.encode()), Ok(welcome));
        let mut bad = welcome.encode();
        bad[4] = 9;
        assert!(Welcome::decode(&bad).is_err());
    }
}
