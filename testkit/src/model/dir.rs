//! Directories in the model: name(n), dir(P) and search(P) of the semantics page, entries
//! found, added and removed by name, and the ancestry a rename checks.

use btfuse_core::{AccessMask, Credentials, Errno, FileType, NAME_MAX, Result};

use super::perm::permits;
use super::{Body, Node, State};

/// The first cookie a directory has not handed out yet (`u64::MAX` for non-directories).
pub(super) fn dir_horizon(body: &Body) -> u64 {
    match body {
        Body::Dir { next_cookie, .. } => *next_cookie,
        _ => u64::MAX,
    }
}

/// name(n) of the semantics page.
pub(super) fn check_name(name: &[u8]) -> Result<()> {
    if name.is_empty() || name.contains(&b'/') || name.contains(&0) {
        return Err(Errno::InvalidArgument);
    }
    if name.len() > NAME_MAX {
        return Err(Errno::NameTooLong);
    }
    Ok(())
}

pub(super) fn is_dot_or_dotdot(name: &[u8]) -> bool {
    name == b"." || name == b".."
}

/// dir(P) and search(P).
pub(super) fn lookup_dir<'s>(st: &'s State, cred: &Credentials, ino: u64) -> Result<&'s Node> {
    let node = st.nodes.get(&ino).ok_or(Errno::NotFound)?;
    if node.kind != FileType::Directory {
        return Err(Errno::NotADirectory);
    }
    if !permits(node, cred, AccessMask::EXECUTE) {
        return Err(Errno::PermissionDenied);
    }
    Ok(node)
}

/// A removed directory (nlink 0, kept alive by a lookup or a handle) takes no new entries:
/// `ENOENT`, as Linux's `__lookup_hash` answers for a dead directory. The page's dir(P) says only
/// "a live inode"; this is where Linux puts the check, after the name's own checks.
pub(super) fn check_not_removed(dir: &Node) -> Result<()> {
    if dir.nlink == 0 {
        Err(Errno::NotFound)
    } else {
        Ok(())
    }
}

/// The cookie and inode of entry `name` in directory `dir`.
pub(super) fn find_entry(dir: &Node, name: &[u8]) -> Option<(u64, u64)> {
    let Body::Dir { entries, .. } = &dir.body else {
        return None;
    };
    entries
        .iter()
        .find(|(_, (n, _))| n == name)
        .map(|(cookie, (_, ino))| (*cookie, *ino))
}

pub(super) fn insert_entry(dir: &mut Node, name: &[u8], ino: u64) {
    let Body::Dir {
        entries,
        next_cookie,
        ..
    } = &mut dir.body
    else {
        panic!("not a directory")
    };
    entries.insert(*next_cookie, (name.to_vec(), ino));
    *next_cookie += 1;
}

pub(super) fn remove_entry(dir: &mut Node, name: &[u8]) {
    let cookie = find_entry(dir, name).expect("entry checked").0;
    let Body::Dir { entries, .. } = &mut dir.body else {
        panic!("not a directory")
    };
    entries.remove(&cookie);
}

pub(super) fn parent_of(node: &Node) -> u64 {
    match node.body {
        Body::Dir { parent, .. } => parent,
        _ => panic!("not a directory"),
    }
}

pub(super) fn entry_count(node: &Node) -> usize {
    match &node.body {
        Body::Dir { entries, .. } => entries.len(),
        _ => 0,
    }
}

/// Whether `ancestor` is `ino` or one of its ancestors (following `..` up to the root).
pub(super) fn is_ancestor_or_self(st: &State, ancestor: u64, mut ino: u64) -> bool {
    // The bound only guards against a broken parent chain, which would be a model bug.
    for _ in 0..=st.nodes.len() {
        if ino == ancestor {
            return true;
        }
        let Some(node) = st.nodes.get(&ino) else {
            return false;
        };
        let Body::Dir { parent, .. } = node.body else {
            return false;
        };
        if parent == ino {
            return false;
        }
        ino = parent;
    }
    panic!("cycle in the model's parent chain")
}

/// `lookup`'s resolution: dir(P), search(P), name(n), then `.`, `..` or the entry.
pub(super) fn resolve_name(
    st: &State,
    cred: &Credentials,
    parent: u64,
    name: &[u8],
) -> Result<u64> {
    let dir = lookup_dir(st, cred, parent)?;
    check_name(name)?;
    match name {
        b"." => Ok(parent),
        b".." => Ok(parent_of(dir)),
        _ => find_entry(dir, name)
            .map(|(_, ino)| ino)
            .ok_or(Errno::NotFound),
    }
}
