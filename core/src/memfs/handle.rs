//! Open file descriptions: the handle table, and `open` on an inode already found.

use alloc::boxed::Box;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicU64, Ordering};

use hashbrown::HashMap;
use spin::{Mutex, RwLock};

use super::perm::check;
use super::{Inode, MemFs, SHARDS, State};
use crate::block::BlockStore;
use crate::error::{Errno, Result};
use crate::rbtree::NodeId;
use crate::types::*;

/// A sharded table from a number to a shared value.
pub(super) type Sharded<T> = Box<[RwLock<HashMap<u64, Arc<T>>>]>;

/// An open file description as the engine knows it.
pub(super) struct Handle {
    pub(super) inode: Arc<Inode>,
    pub(super) read: bool,
    pub(super) write: bool,
    pub(super) append: bool,
    /// Open to run the file (see `State::executing`).
    pub(super) exec: bool,
    /// Directories: the cookie and tree node of the last entry the previous `readdir` handed
    /// out, so the next page continues from that node instead of searching from the root. Only
    /// a hint: it is used when the node still holds that cookie (cookies are never reused).
    pub(super) cursor: Mutex<Option<(u64, NodeId)>>,
    /// Directories: entries with this cookie or above were created after the handle was
    /// opened (or last read from cookie 0) and are not listed, so a program that creates files
    /// while it lists a directory cannot chase its own entries forever (tmpfs behaves alike).
    pub(super) horizon: AtomicU64,
}

impl<B: BlockStore> MemFs<B> {
    pub(super) fn handle(&self, fh: Fh) -> Result<Arc<Handle>> {
        self.handles[(fh.0 as usize) % SHARDS]
            .read()
            .get(&fh.0)
            .cloned()
            .ok_or(Errno::BadHandle)
    }

    pub(super) fn open_handle(&self, inode: Arc<Inode>, flags: OpenFlags, horizon: u64) -> Fh {
        let fh = Fh(self.next_fh.fetch_add(1, Ordering::Relaxed));
        let handle = Handle {
            inode,
            read: flags.read,
            write: flags.write,
            append: flags.append,
            exec: flags.exec,
            cursor: Mutex::new(None),
            horizon: AtomicU64::new(horizon),
        };
        self.handles[(fh.0 as usize) % SHARDS]
            .write()
            .insert(fh.0, Arc::new(handle));
        self.open_handles.fetch_add(1, Ordering::Relaxed);
        fh
    }

    /// `open` on an inode whose state the caller has locked for writing.
    pub(super) fn open_locked(
        &self,
        cred: &Credentials,
        inode: &Arc<Inode>,
        st: &mut State,
        flags: OpenFlags,
    ) -> Result<Fh> {
        if st.freed {
            return Err(Errno::NotFound);
        }
        // O_TRUNC asks for write permission and truncates even on a read-only open (Linux).
        let writes = flags.write || flags.truncate;
        match inode.kind {
            FileType::Symlink => return Err(Errno::TooManySymlinks),
            FileType::Directory if writes => return Err(Errno::IsADirectory),
            FileType::Directory => {}
            _ if flags.directory => return Err(Errno::NotADirectory),
            _ => {}
        }
        let mask = AccessMask {
            read: flags.read,
            write: writes,
            execute: false,
        };
        check(cred, inode.kind, st, mask)?;
        // Linux `get_write_access`, after the permission check: a running program's file.
        if writes && st.executing > 0 {
            return Err(Errno::TextBusy);
        }
        match inode.kind {
            FileType::Socket => return Err(Errno::NoSuchDeviceOrAddress),
            FileType::NamedPipe | FileType::CharDevice | FileType::BlockDevice => {
                return Err(Errno::NotSupported);
            }
            _ => {}
        }
        let owner = st.placed_as(inode.ino);
        if flags.truncate
            && let Some(file) = st.file_mut()
        {
            {
                let _change = self.content_change(inode.ino);
                self.set_size(owner, file, 0)?;
                st.drop_privileges_on_write(cred);
                st.touch_modified(self.now());
            }
        }
        inode.opens.fetch_add(1, Ordering::AcqRel);
        if flags.exec {
            st.executing = st.executing.saturating_add(1);
        }
        let horizon = st.dir().map_or(u64::MAX, |d| d.next_cookie);
        Ok(self.open_handle(inode.clone(), flags, horizon))
    }

    pub(super) fn dir_handle(&self, fh: Fh) -> Result<Arc<Handle>> {
        let h = self.handle(fh)?;
        if h.inode.kind != FileType::Directory {
            return Err(Errno::NotADirectory);
        }
        Ok(h)
    }
}
