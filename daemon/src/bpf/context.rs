//! What a program is told about an operation: the kinds of operation and the context's layout,
//! version 1, as `examples/bpf/btfuse_bpf.h` writes them for C (a test below reads the header
//! and proves the two agree).

use btfuse_core::{Credentials, Ino};

use crate::metrics::Frontend;

/// The layout version programs are built against (`BTFUSE_BPF_VERSION`).
pub const VERSION: u32 = 1;

/// Bytes of a name in the context (`BTFUSE_NAME_MAX`).
pub const NAME_MAX: usize = 256;

/// Byte offsets of the context's fields (`struct btfuse_ctx`).
pub(crate) mod offset {
    pub(crate) const VERSION: usize = 0;
    pub(crate) const OP: usize = 4;
    pub(crate) const FRONTEND: usize = 8;
    pub(crate) const UID: usize = 12;
    pub(crate) const GID: usize = 16;
    pub(crate) const PID: usize = 20;
    pub(crate) const MODE: usize = 24;
    pub(crate) const FLAGS: usize = 28;
    pub(crate) const INO: usize = 32;
    pub(crate) const PARENT: usize = 40;
    pub(crate) const NEW_PARENT: usize = 48;
    pub(crate) const OFFSET: usize = 56;
    pub(crate) const LENGTH: usize = 64;
    pub(crate) const NAME_LEN: usize = 72;
    pub(crate) const NEW_NAME_LEN: usize = 76;
    pub(crate) const NAME: usize = 80;
    pub(crate) const NEW_NAME: usize = NAME + super::NAME_MAX;
    pub(crate) const SIZE: usize = NEW_NAME + super::NAME_MAX;
}

/// Size of the context in bytes (`sizeof(struct btfuse_ctx)`).
pub const CONTEXT_SIZE: usize = offset::SIZE;

macro_rules! operations {
    ($($name:ident = $n:literal, $label:literal;)*) => {
        /// An operation kind, numbered as `BTFUSE_OP_*` (numbers never change meaning).
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[allow(missing_docs)]
        pub enum Op { $($name = $n,)* }

        impl Op {
            /// Every kind, in number order.
            pub const ALL: &'static [Op] = &[$(Op::$name,)*];

            /// The kind's name in lower case, as its `BTFUSE_OP_` constant ends.
            pub const fn label(self) -> &'static str {
                match self { $(Op::$name => $label,)* }
            }
        }
    };
}

operations! {
    Lookup = 1, "lookup";
    Getattr = 2, "getattr";
    Setattr = 3, "setattr";
    Mknod = 4, "mknod";
    Mkdir = 5, "mkdir";
    Create = 6, "create";
    Unlink = 7, "unlink";
    Rmdir = 8, "rmdir";
    Rename = 9, "rename";
    Link = 10, "link";
    Symlink = 11, "symlink";
    Readlink = 12, "readlink";
    Open = 13, "open";
    Read = 14, "read";
    Write = 15, "write";
    Fallocate = 16, "fallocate";
    Lseek = 17, "lseek";
    Readdir = 18, "readdir";
    Statfs = 19, "statfs";
    Getxattr = 20, "getxattr";
    Setxattr = 21, "setxattr";
    Listxattr = 22, "listxattr";
    Removexattr = 23, "removexattr";
    Access = 24, "access";
    Fsync = 25, "fsync";
}

/// The number a frontend has in the context (`BTFUSE_FRONTEND_*`).
pub const fn frontend_number(frontend: Frontend) -> u32 {
    match frontend {
        Frontend::Fuse => 1,
        Frontend::Shm => 2,
    }
}

/// One operation's context, as the program reads it: zeroed, then filled field by field.
#[derive(Clone)]
pub struct Context {
    bytes: [u8; CONTEXT_SIZE],
}

impl Context {
    /// The context of `op` by `cred` through `frontend`, every other field 0.
    #[inline]
    pub fn new(op: Op, frontend: Frontend, cred: &Credentials) -> Context {
        let mut ctx = Context {
            bytes: [0; CONTEXT_SIZE],
        };
        ctx.put_u32(offset::VERSION, VERSION);
        ctx.put_u32(offset::OP, op as u32);
        ctx.put_u32(offset::FRONTEND, frontend_number(frontend));
        ctx.put_u32(offset::UID, cred.uid);
        ctx.put_u32(offset::GID, cred.gid);
        ctx.put_u32(offset::PID, cred.pid);
        ctx
    }

    #[inline]
    fn put_u32(&mut self, at: usize, value: u32) {
        self.bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
    }

    #[inline]
    fn put_u64(&mut self, at: usize, value: u64) {
        self.bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
    }

    /// Sets `mode`.
    #[inline]
    pub fn mode(&mut self, mode: u32) -> &mut Context {
        self.put_u32(offset::MODE, mode);
        self
    }

    /// Sets `flags`.
    #[inline]
    pub fn flags(&mut self, flags: u32) -> &mut Context {
        self.put_u32(offset::FLAGS, flags);
        self
    }

    /// Sets `ino`.
    #[inline]
    pub fn ino(&mut self, ino: Ino) -> &mut Context {
        self.put_u64(offset::INO, ino.0);
        self
    }

    /// Sets `parent` and `name` (cut to [`NAME_MAX`] bytes; `name_len` is what was kept).
    #[inline]
    pub fn name(&mut self, parent: Ino, name: &[u8]) -> &mut Context {
        self.put_u64(offset::PARENT, parent.0);
        let kept = &name[..name.len().min(NAME_MAX)];
        self.put_u32(offset::NAME_LEN, kept.len() as u32);
        self.bytes[offset::NAME..offset::NAME + kept.len()].copy_from_slice(kept);
        self
    }

    /// Sets `new_parent` and `new_name` (cut to [`NAME_MAX`] bytes).
    #[inline]
    pub fn new_name(&mut self, parent: Ino, name: &[u8]) -> &mut Context {
        self.put_u64(offset::NEW_PARENT, parent.0);
        let kept = &name[..name.len().min(NAME_MAX)];
        self.put_u32(offset::NEW_NAME_LEN, kept.len() as u32);
        self.bytes[offset::NEW_NAME..offset::NEW_NAME + kept.len()].copy_from_slice(kept);
        self
    }

    /// Sets `offset` and `length`.
    #[inline]
    pub fn range(&mut self, start: u64, length: u64) -> &mut Context {
        self.put_u64(offset::OFFSET, start);
        self.put_u64(offset::LENGTH, length);
        self
    }

    /// The bytes a program reads.
    pub fn bytes(&self) -> &[u8; CONTEXT_SIZE] {
        &self.bytes
    }

    /// The bytes a program reads and may scribble on.
    pub(crate) fn bytes_mut(&mut self) -> &mut [u8; CONTEXT_SIZE] {
        &mut self.bytes
    }

    /// The operation kind's number.
    pub fn op_number(&self) -> u32 {
        u32::from_le_bytes(
            self.bytes[offset::OP..offset::OP + 4]
                .try_into()
                .unwrap_or([0; 4]),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = include_str!("../../../examples/bpf/btfuse_bpf.h");

    fn defined(name: &str) -> u64 {
        let line = HEADER
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(name) && l.starts_with("#define"))
            .unwrap_or_else(|| panic!("{name} is not in the header"));
        let value = line.split_whitespace().nth(2).unwrap();
        if let Some(octal) = value.strip_prefix('0').filter(|v| !v.is_empty()) {
            u64::from_str_radix(octal, 8).unwrap()
        } else {
            value.parse().unwrap()
        }
    }

    #[test]
    fn the_header_numbers_operations_as_the_daemon_does() {
        for &op in Op::ALL {
            let name = format!("BTFUSE_OP_{}", op.label().to_ascii_uppercase());
            assert_eq!(defined(&name), op as u64, "{name}");
        }
        let in_header = HEADER.matches("#define BTFUSE_OP_").count();
        assert_eq!(
            in_header,
            Op::ALL.len(),
            "an operation the daemon does not know"
        );
        assert_eq!(defined("BTFUSE_BPF_VERSION"), u64::from(VERSION));
        assert_eq!(defined("BTFUSE_NAME_MAX"), NAME_MAX as u64);
        assert_eq!(
            defined("BTFUSE_FRONTEND_FUSE"),
            u64::from(frontend_number(Frontend::Fuse))
        );
        assert_eq!(
            defined("BTFUSE_FRONTEND_SHM"),
            u64::from(frontend_number(Frontend::Shm))
        );
        assert_eq!(defined("BTFUSE_EIO"), btfuse_core::Errno::Io.code() as u64);
        assert_eq!(
            defined("BTFUSE_EROFS"),
            btfuse_core::Errno::ReadOnlyFilesystem.code() as u64
        );
        assert_eq!(
            defined("BTFUSE_MAX_INSNS"),
            super::super::verify::MAX_INSNS as u64
        );
        assert_eq!(defined("BTFUSE_O_TRUNC"), libc::O_TRUNC as u64);
        assert_eq!(defined("BTFUSE_O_CREAT"), libc::O_CREAT as u64);
        assert_eq!(defined("BTFUSE_O_DIRECTORY"), libc::O_DIRECTORY as u64);
    }

    /// The header's `_Static_assert` lines (which clang checks on the C side) give the same
    /// offsets as this module.
    #[test]
    fn the_header_lays_the_context_out_as_the_daemon_does() {
        let expected = [
            ("op", offset::OP),
            ("frontend", offset::FRONTEND),
            ("uid", offset::UID),
            ("gid", offset::GID),
            ("pid", offset::PID),
            ("mode", offset::MODE),
            ("flags", offset::FLAGS),
            ("ino", offset::INO),
            ("parent", offset::PARENT),
            ("new_parent", offset::NEW_PARENT),
            ("offset", offset::OFFSET),
            ("length", offset::LENGTH),
            ("name_len", offset::NAME_LEN),
            ("new_name_len", offset::NEW_NAME_LEN),
            ("name", offset::NAME),
            ("new_name", offset::NEW_NAME),
        ];
        for (field, at) in expected {
            let line = format!("struct btfuse_ctx, {field}) == {at}, ");
            assert!(HEADER.contains(&line), "{field} at {at}");
        }
        assert!(HEADER.contains(&format!("sizeof(struct btfuse_ctx) == {CONTEXT_SIZE}, ")));
        assert_eq!(
            HEADER.matches("_Static_assert(__builtin_offsetof").count(),
            16
        );
    }

    #[test]
    fn names_are_cut_to_the_field_and_zero_padded() {
        let cred = Credentials {
            uid: 4001,
            gid: 4002,
            groups: vec![],
            pid: 77,
        };
        let long = [b'x'; 300];
        let mut ctx = Context::new(Op::Rename, Frontend::Shm, &cred);
        ctx.name(Ino(5), b"abc").new_name(Ino(6), &long);
        let b = ctx.bytes();
        assert_eq!(ctx.op_number(), 9);
        assert_eq!(&b[offset::UID..offset::UID + 4], &4001u32.to_le_bytes());
        assert_eq!(&b[offset::PID..offset::PID + 4], &77u32.to_le_bytes());
        assert_eq!(
            &b[offset::FRONTEND..offset::FRONTEND + 4],
            &2u32.to_le_bytes()
        );
        assert_eq!(
            &b[offset::NAME_LEN..offset::NAME_LEN + 4],
            &3u32.to_le_bytes()
        );
        assert_eq!(&b[offset::NAME..offset::NAME + 4], b"abc\0");
        assert!(
            b[offset::NAME + 3..offset::NEW_NAME]
                .iter()
                .all(|&c| c == 0)
        );
        assert_eq!(
            &b[offset::NEW_NAME_LEN..offset::NEW_NAME_LEN + 4],
            &256u32.to_le_bytes()
        );
        assert!(b[offset::NEW_NAME..].iter().all(|&c| c == b'x'));
        assert_eq!(
            &b[offset::NEW_PARENT..offset::NEW_PARENT + 8],
            &6u64.to_le_bytes()
        );
    }
}
