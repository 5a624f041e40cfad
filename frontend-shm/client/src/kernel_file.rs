//! The message that comes with a kernel descriptor the server hands over (`Request::Handoff`,
//! see the server's `handoff`): [`KERNEL_FILE_LEN`] bytes on the socket of the channel that
//! asked, with the descriptor attached (`SCM_RIGHTS`), sent before the ring answers `Ok`, so
//! the client finds it waiting. All fields little-endian:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `0x4254_464b` ("BTFK") |
//! | 4 | 2 | handshake version |
//! | 6 | 2 | zero |
//! | 8 | 8 | the tag of the `Handoff` request it answers |
//! | 16 | 4 | the description number the request named |
//! | 20 | 12 | zero |
//!
//! Nothing else is ever sent on a channel's socket after the welcome, and a client reads the
//! message only after the ring answered `Ok` to the request whose tag and number it carries.

/// Length of the message that carries a kernel descriptor.
pub const KERNEL_FILE_LEN: usize = 32;
const KERNEL_FILE_MAGIC: u32 = 0x4254_464b;

/// The message that comes with a handed-off descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelFile {
    /// The tag of the `Handoff` request.
    pub tag: u64,
    /// The description number it named.
    pub fd: u32,
}

impl KernelFile {
    /// The message's bytes.
    pub fn encode(self) -> [u8; KERNEL_FILE_LEN] {
        let mut out = [0u8; KERNEL_FILE_LEN];
        out[0..4].copy_from_slice(&KERNEL_FILE_MAGIC.to_le_bytes());
        out[4..6].copy_from_slice(&crate::handshake::VERSION.to_le_bytes());
        out[8..16].copy_from_slice(&self.tag.to_le_bytes());
        out[16..20].copy_from_slice(&self.fd.to_le_bytes());
        out
    }

    /// The message in `bytes`, or what is wrong with them.
    pub fn decode(bytes: &[u8; KERNEL_FILE_LEN]) -> Result<KernelFile, &'static str> {
        if bytes[0..4] != KERNEL_FILE_MAGIC.to_le_bytes() {
            return Err("not a kernel file message");
        }
        if bytes[4..6] != crate::handshake::VERSION.to_le_bytes() {
            return Err("unsupported handshake version");
        }
        if bytes[6..8] != [0, 0] || bytes[20..].iter().any(|&b| b != 0) {
            return Err("reserved bytes are not zero");
        }
        let mut tag = [0u8; 8];
        tag.copy_from_slice(&bytes[8..16]);
        let mut fd = [0u8; 4];
        fd.copy_from_slice(&bytes[16..20]);
        Ok(KernelFile {
            tag: u64::from_le_bytes(tag),
            fd: u32::from_le_bytes(fd),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handshake::Welcome;

    #[test]
    fn the_message_round_trips_and_rejects_others() {
        let message = KernelFile { tag: 77, fd: 3 };
        assert_eq!(KernelFile::decode(&message.encode()), Ok(message));
        // A welcome is not a kernel file message.
        let welcome = Welcome {
            status: 0,
            session: 1,
            region_len: 2,
            table_len: 3,
            mount_dev: 4,
        };
        assert!(KernelFile::decode(&welcome.encode()).is_err());
        for at in [4, 6, 20, 31] {
            let mut bad = message.encode();
            bad[at] ^= 1;
            assert!(KernelFile::decode(&bad).is_err(), "byte {at}");
        }
    }
}
