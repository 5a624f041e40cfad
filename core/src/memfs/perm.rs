//! Permissions: the mode-bit check (Linux `generic_permission`), the sticky-directory rule, and
//! the set-ID rules: which bits a write or a `chown` clears, and what a new inode inherits.

use super::{Body, MemFs, Placement, State};
use crate::block::BlockStore;
use crate::error::{Errno, Result};
use crate::types::*;

/// Checks `mask` against `st` for `cred` (Linux `generic_permission`).
pub(super) fn permitted(cred: &Credentials, kind: FileType, st: &State, mask: AccessMask) -> bool {
    if cred.is_root() {
        return !mask.execute || kind == FileType::Directory || st.perm & 0o111 != 0;
    }
    let class = if cred.uid == st.uid {
        st.perm >> 6
    } else if cred.in_group(st.gid) {
        st.perm >> 3
    } else {
        st.perm
    } & 7;
    (!mask.read || class & 4 != 0)
        && (!mask.write || class & 2 != 0)
        && (!mask.execute || class & 1 != 0)
}

pub(super) fn check(
    cred: &Credentials,
    kind: FileType,
    st: &State,
    mask: AccessMask,
) -> Result<()> {
    if permitted(cred, kind, st, mask) {
        Ok(())
    } else {
        Err(Errno::PermissionDenied)
    }
}

/// The sticky-directory rule: in a sticky directory only root or the owner of the entry or
/// of the directory may remove or replace it.
pub(super) fn check_sticky(cred: &Credentials, dir: &State, victim_uid: u32) -> Result<()> {
    if dir.perm & S_ISVTX != 0 && !cred.is_root() && cred.uid != victim_uid && cred.uid != dir.uid {
        Err(Errno::NotPermitted)
    } else {
        Ok(())
    }
}

impl State {
    /// The set-ID bits a `chown` by `cred` clears ([`Credentials::setid_bits_chown_clears`]).
    pub(super) fn setid_bits_chown_clears(&self, cred: &Credentials) -> u32 {
        cred.setid_bits_chown_clears(self.perm, self.gid)
    }

    /// Clears the set-ID bits a `chown` by `cred` clears ([`setid_bits_chown_clears`]).
    ///
    /// [`setid_bits_chown_clears`]: State::setid_bits_chown_clears
    pub(super) fn drop_privileges_on_chown(&mut self, cred: &Credentials) {
        self.perm &= !self.setid_bits_chown_clears(cred);
    }

    /// Clears set-ID bits as a write or truncation by `cred` does (Linux
    /// `setattr_should_drop_suidgid`): root keeps them; others lose set-user-ID, and
    /// set-group-ID when group-execute is set or they are not in the file's group.
    pub(super) fn drop_privileges_on_write(&mut self, cred: &Credentials) -> bool {
        if cred.is_root() {
            return false;
        }
        let mut kill = self.perm & S_ISUID;
        if self.perm & S_ISGID != 0 && (self.perm & 0o010 != 0 || !cred.in_group(self.gid)) {
            kill |= S_ISGID;
        }
        self.perm &= !kill;
        kill != 0
    }
}

impl<B: BlockStore> MemFs<B> {
    /// The state of a new inode created by `cred` in directory `parent` (state `pst`):
    /// ownership and set-group-ID inheritance as Linux's `inode_init_owner`.
    pub(super) fn initial_state(
        &self,
        cred: &Credentials,
        pst: &State,
        kind: FileType,
        mut perm: u32,
        body: Body,
        now: Timestamp,
    ) -> State {
        perm &= PERM_MASK;
        let gid = if pst.perm & S_ISGID != 0 {
            if kind == FileType::Directory {
                perm |= S_ISGID;
            } else if perm & (S_ISGID | 0o010) == (S_ISGID | 0o010)
                && !cred.is_root()
                && !cred.in_group(pst.gid)
            {
                perm &= !S_ISGID;
            }
            pst.gid
        } else {
            cred.gid
        };
        State {
            perm,
            uid: cred.uid,
            gid,
            nlink: if kind == FileType::Directory { 2 } else { 1 },
            freed: false,
            executing: 0,
            placement: Placement::Not,
            atime: now.into(),
            mtime: now.into(),
            ctime: now.into(),
            body,
            xattrs: None,
        }
    }
}
