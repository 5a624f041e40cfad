//! Where the filesystem is and how to reach it: the environment's variables (`BTFUSE_SOCKET`,
//! `BTFUSE_PREFIX`) or, without them, the btfuse mounts of `/proc/self/mountinfo`, and the
//! one a process binds to once it touches it.

use std::ffi::{CStr, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::OnceLock;

/// Environment variable naming the server's socket.
pub const SOCKET_VAR: &str = "BTFUSE_SOCKET";
/// Environment variable naming the directory the server's filesystem appears at.
pub const PREFIX_VAR: &str = "BTFUSE_PREFIX";
/// Environment variable an `exec` hands the descriptor table to the next program in.
pub const INHERIT_VAR: &str = "BTFUSE_INHERIT";

/// Where the filesystem is and how to reach it.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    /// Absolute, without a trailing slash (empty for `/`).
    pub(crate) prefix: Vec<u8>,
    pub(crate) socket: PathBuf,
}

fn getenv(name: &str) -> Option<Vec<u8>> {
    let name = std::ffi::CString::new(name).ok()?;
    // SAFETY: getenv reads the environment; the result is copied before anything can change
    // it (the interceptor never runs concurrently with setenv in practice, as libc warns).
    let value = unsafe { libc::getenv(name.as_ptr()) };
    if value.is_null() {
        return None;
    }
    // SAFETY: getenv returned a NUL-terminated string.
    Some(unsafe { CStr::from_ptr(value) }.to_bytes().to_vec())
}

fn trimmed(mut prefix: Vec<u8>) -> Option<Vec<u8>> {
    if prefix.first() != Some(&b'/') {
        return None;
    }
    while prefix.last() == Some(&b'/') {
        prefix.pop();
    }
    Some(prefix)
}

/// The configuration the environment gives (`BTFUSE_SOCKET` and `BTFUSE_PREFIX`), read once.
fn explicit() -> Option<&'static Config> {
    static EXPLICIT: OnceLock<Option<Config>> = OnceLock::new();
    EXPLICIT
        .get_or_init(|| {
            let socket = getenv(SOCKET_VAR)?;
            Some(Config {
                prefix: trimmed(getenv(PREFIX_VAR)?)?,
                socket: PathBuf::from(OsStr::from_bytes(&socket)),
            })
        })
        .as_ref()
}

/// Without the variables: the btfuse mounts of `/proc/self/mountinfo`, each with its ring
/// socket placed by `btfuse_ring_client::discovery`'s rule, read once.
fn discovered() -> &'static [Config] {
    static MOUNTS: OnceLock<Vec<Config>> = OnceLock::new();
    MOUNTS.get_or_init(|| {
        if explicit().is_some() {
            return Vec::new();
        }
        // SAFETY: geteuid cannot fail.
        let euid = unsafe { libc::geteuid() };
        btfuse_ring_client::discovery::read_btfuse_mounts()
            .into_iter()
            .filter_map(|m| {
                let runtime = if m.uid == euid {
                    getenv("XDG_RUNTIME_DIR").map(|d| PathBuf::from(OsStr::from_bytes(&d)))
                } else {
                    Some(PathBuf::from(format!("/run/user/{}", m.uid)))
                };
                let socket = btfuse_ring_client::discovery::socket_for_mount(
                    &m.mountpoint,
                    m.uid,
                    runtime.as_deref(),
                );
                Some(Config {
                    prefix: trimmed(m.mountpoint.as_os_str().as_bytes().to_vec())?,
                    socket,
                })
            })
            .collect()
    })
}

/// The mount this process serves over the ring once it has touched one: a process binds to
/// one btfuse mount; paths under any other still reach theirs, through the kernel.
static CHOSEN: OnceLock<Config> = OnceLock::new();

/// The configuration in force: the environment's, else the discovered mount chosen so far;
/// `None` means everything passes through.
pub(crate) fn config() -> Option<&'static Config> {
    explicit().or_else(|| CHOSEN.get())
}

/// Whether `path` (absolute) is `prefix` or below it.
fn under(path: &[u8], prefix: &[u8]) -> bool {
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest[0] == b'/')
}

/// Whether absolute `path` is spelled from the prefix (whatever `..` follows), so that only
/// this library can walk it: the kernel has nothing at the prefix without a mount.
pub(crate) fn spelled_under_prefix(path: &[u8]) -> bool {
    path.first() == Some(&b'/') && config_for(path).is_some_and(|c| under(path, &c.prefix))
}

/// The configuration for a path about to be used: the one in force, or the discovered mount
/// holding it (the deepest), which the process then binds to.
pub(crate) fn config_for(path: &[u8]) -> Option<&'static Config> {
    if let Some(config) = config() {
        return Some(config);
    }
    let best = discovered()
        .iter()
        .filter(|c| under(path, &c.prefix))
        .max_by_key(|c| c.prefix.len())?;
    Some(CHOSEN.get_or_init(|| best.clone()))
}

/// Whether the kernel also reaches the prefix in force, through a btfuse mount there (always
/// for a discovered one; for one named by the variables, if mountinfo shows a btfuse mount at
/// it). Read once.
pub(crate) fn prefix_is_mounted() -> bool {
    static MOUNTED: OnceLock<bool> = OnceLock::new();
    let Some(config) = config() else {
        return false;
    };
    if explicit().is_none() {
        return true;
    }
    *MOUNTED.get_or_init(|| {
        btfuse_ring_client::discovery::read_btfuse_mounts()
            .iter()
            .any(|m| m.mountpoint.as_os_str().as_bytes() == config.prefix.as_slice())
    })
}

/// The variables a program started by `exec` needs to reach the same mount: set only when
/// the mount was discovered (otherwise the environment already has them).
pub(crate) fn exec_environment() -> Option<(Vec<u8>, Vec<u8>)> {
    if explicit().is_some() {
        return None;
    }
    let chosen = CHOSEN.get()?;
    let prefix = if chosen.prefix.is_empty() {
        b"/".to_vec()
    } else {
        chosen.prefix.clone()
    };
    Some((prefix, chosen.socket.as_os_str().as_bytes().to_vec()))
}

/// Whether absolute `path` is under the prefix of a btfuse mount this process may serve
/// (named by the environment or discovered), whether or not it is bound to it yet.
pub(crate) fn under_a_prefix(path: &[u8]) -> bool {
    discovered()
        .iter()
        .chain(explicit())
        .any(|c| under(path, &c.prefix))
}
