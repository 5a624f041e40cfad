//! perm(I, mask), the sticky rule and the set-ID rules of the semantics page, for the model.

use btfuse_core::{AccessMask, Credentials, FileType, S_ISGID, S_ISUID, S_ISVTX};

use super::{Node, S_IXGRP};

/// perm(I, mask) of the semantics page.
pub(super) fn permits(node: &Node, cred: &Credentials, mask: AccessMask) -> bool {
    if cred.is_root() {
        return !mask.execute || node.kind == FileType::Directory || node.perm & 0o111 != 0;
    }
    let class = if cred.uid == node.uid {
        node.perm >> 6
    } else if cred.in_group(node.gid) {
        node.perm >> 3
    } else {
        node.perm
    } & 7;
    let wanted = u32::from(mask.read) << 2 | u32::from(mask.write) << 1 | u32::from(mask.execute);
    class & wanted == wanted
}

/// Clears the set-ID bits that a write, a truncation or a chown by `cred` removes: set-user-ID
/// always; set-group-ID when group-execute is set, or when the caller is neither root nor in the
/// file's group. The page names only the first case for set-group-ID; the second is Linux 6.x's
/// `setattr_should_drop_sgid`, which tmpfs applies through `file_remove_privs` and
/// `chown_common`. Callers leave root alone where the page says so.
pub(super) fn kill_setid(node: &mut Node, cred: &Credentials) {
    node.perm &= !setid_bits_killed(node, cred);
}

/// The set-ID bits of `node` that [`kill_setid`] clears for `cred`: none when it would change
/// nothing.
pub(super) fn setid_bits_killed(node: &Node, cred: &Credentials) -> u32 {
    let mut bits = node.perm & S_ISUID;
    if node.perm & S_IXGRP != 0 || !(cred.is_root() || cred.in_group(node.gid)) {
        bits |= node.perm & S_ISGID;
    }
    bits
}

/// sticky(P, I): whether the caller may remove or rename `child` out of `dir`.
pub(super) fn sticky_allows(dir: &Node, child: &Node, cred: &Credentials) -> bool {
    dir.perm & S_ISVTX == 0 || cred.is_root() || cred.uid == child.uid || cred.uid == dir.uid
}
