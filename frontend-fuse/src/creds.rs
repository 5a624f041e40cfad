//! Who sent a request: uid, gid and pid come with it; supplementary groups do not, so they are
//! read from `/proc/PID/status` and kept for a moment.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use btfuse_core::Credentials;
use btfuse_daemon::creds::supplementary_groups;

/// How long a process's groups are trusted before `/proc` is read again.
const GROUPS_TTL: Duration = Duration::from_secs(1);
/// Entries kept before the cache is emptied (it only holds recent senders).
const GROUPS_MAX_ENTRIES: usize = 4096;

/// A sender as the kernel names it: (pid, uid, gid).
type Sender = (u32, u32, u32);

/// Supplementary groups by sender: a process that changes identity gets a new key.
#[derive(Default)]
pub(crate) struct GroupsCache {
    entries: Mutex<HashMap<Sender, (Instant, Vec<u32>)>>,
}

impl GroupsCache {
    /// The credentials of a request from `pid` running as `uid`/`gid`.
    pub(crate) fn credentials(&self, uid: u32, gid: u32, pid: u32) -> Credentials {
        let groups = if pid == 0 || uid == 0 {
            Vec::new()
        } else {
            self.groups(uid, gid, pid)
        };
        Credentials {
            uid,
            gid,
            groups,
            pid,
        }
    }

    fn groups(&self, uid: u32, gid: u32, pid: u32) -> Vec<u32> {
        let key = (pid, uid, gid);
        let now = Instant::now();
        if let Some((at, groups)) = self.entries.lock().expect("groups cache").get(&key)
            && now.duration_since(*at) < GROUPS_TTL
        {
            return groups.clone();
        }
        let groups = supplementary_groups(pid).unwrap_or_default();
        let mut entries = self.entries.lock().expect("groups cache");
        if entries.len() >= GROUPS_MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(key, (now, groups.clone()));
        groups
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process_groups() {
        let pid = std::process::id();
        let groups = supplementary_groups(pid).expect("own status");
        let cache = GroupsCache::default();
        let cred = cache.credentials(1000, 1000, pid);
        assert_eq!(cred.groups, groups);
        assert!(cache.credentials(0, 0, pid).groups.is_empty());
        assert_eq!(supplementary_groups(u32::MAX), None);
    }
}
