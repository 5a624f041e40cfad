//! The descriptor table: which of this process's descriptor numbers stand for server
//! descriptions ([`Entry`]). Every intercepted descriptor call asks it first, with one load and
//! no lock for the numbers programs use. The numbers themselves are kernel descriptors this
//! library holds ([`placeholder()`]), beside its own private ones ([`private`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};

use libc::c_int;

use crate::hot::HOT;

mod placeholder;
mod private;

pub(crate) use placeholder::{move_to_private, placeholder, placeholder_base_gone};
pub(crate) use private::{is_private, private_fds};

/// One of this process's descriptors that stands for a server description. The number is a
/// real kernel descriptor (an `O_PATH` one) that this library holds, so the kernel never
/// hands the number to anything else and `dup2`, `close` and `exec` treat it as they treat
/// every descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    /// The server's description.
    pub(crate) desc: u32,
    /// A directory (listing state lives in the server's description).
    pub(crate) dir: bool,
}

/// Descriptor numbers below this are kept in [`SLOTS`], one atomic word each, so that the
/// question every intercepted descriptor call asks first ("is this one btfuse's?") is one
/// load with no lock, whichever thread asks.
const DIRECT: usize = 4096;

/// Slot encoding: 0 for none, else `1 | dir << 1 | desc << 32`.
static SLOTS: [AtomicU64; DIRECT] = [const { AtomicU64::new(0) }; DIRECT];

/// Btfuse descriptors numbered `DIRECT` and above (rare), under a lock.
static HIGH: RwLock<Option<HashMap<c_int, Entry>>> = RwLock::new(None);

/// Serialises changes to the table (and is held across `fork`), so that a child never
/// inherits it half-changed. Lookups do not take it.
pub(crate) static TABLE_LOCK: &Mutex<()> = &HOT.table_lock;

fn encode(entry: Entry) -> u64 {
    1 | (u64::from(entry.dir) << 1) | (u64::from(entry.desc) << 32)
}

fn decode(word: u64) -> Option<Entry> {
    (word & 1 != 0).then_some(Entry {
        desc: (word >> 32) as u32,
        dir: word & 2 != 0,
    })
}

/// Whether this process never numbered a btfuse descriptor: one load of a flag that shares its
/// page with the library's other flags, so that until then the table's pages stay untouched
/// (each costs a page fault).
#[inline]
fn never_used() -> bool {
    // Acquire: pairs with the Release store in `insert`, made before the entry's.
    !HOT.descriptors_used.load(Ordering::Acquire)
}

/// The entry of `fd`, if it is btfuse's.
#[unsafe(link_section = ".text.hot.btfuse")]
pub(crate) fn lookup(fd: c_int) -> Option<Entry> {
    if never_used() {
        return None;
    }
    let index = usize::try_from(fd).ok()?;
    if let Some(slot) = SLOTS.get(index) {
        return decode(slot.load(Ordering::Acquire));
    }
    HIGH.read()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()?
        .get(&fd)
        .copied()
}

/// The table's generation (`HOT.generation`), which counts its changes: a value read twice
/// tells whether it changed in between.
pub(crate) fn generation() -> u64 {
    HOT.generation.load(Ordering::Acquire)
}

pub(crate) fn insert(fd: c_int, entry: Entry) -> Option<Entry> {
    let _changing = TABLE_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    HOT.generation.fetch_add(1, Ordering::AcqRel);
    HOT.descriptors_used.store(true, Ordering::Release);
    let index = usize::try_from(fd).ok()?;
    if let Some(slot) = SLOTS.get(index) {
        return decode(slot.swap(encode(entry), Ordering::AcqRel));
    }
    HIGH.write()
        .unwrap_or_else(|p| p.into_inner())
        .get_or_insert_with(HashMap::new)
        .insert(fd, entry)
}

#[unsafe(link_section = ".text.hot.btfuse")]
pub(crate) fn remove(fd: c_int) -> Option<Entry> {
    if never_used() {
        return None;
    }
    let _changing = TABLE_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    HOT.generation.fetch_add(1, Ordering::AcqRel);
    let index = usize::try_from(fd).ok()?;
    if let Some(slot) = SLOTS.get(index) {
        return decode(slot.swap(0, Ordering::AcqRel));
    }
    HIGH.write()
        .unwrap_or_else(|p| p.into_inner())
        .as_mut()?
        .remove(&fd)
}

/// Forgets every btfuse descriptor (a child that could not reattach). Only the slots in use
/// are written: this runs in every fork child, whose copy of a page is made when it is first
/// written, and a table written whole would cost each child all its pages.
pub(crate) fn clear() {
    HOT.generation.fetch_add(1, Ordering::AcqRel);
    if never_used() {
        return;
    }
    for slot in &SLOTS {
        if slot.load(Ordering::Relaxed) != 0 {
            slot.store(0, Ordering::Release);
        }
    }
    let mut high = HIGH.write().unwrap_or_else(|p| p.into_inner());
    if high.is_some() {
        *high = None;
    }
}

pub(crate) fn entries() -> Vec<(c_int, Entry)> {
    if never_used() {
        return Vec::new();
    }
    let mut out: Vec<(c_int, Entry)> = SLOTS
        .iter()
        .enumerate()
        .filter_map(|(fd, slot)| Some((fd as c_int, decode(slot.load(Ordering::Acquire))?)))
        .collect();
    if let Some(high) = HIGH.read().unwrap_or_else(|p| p.into_inner()).as_ref() {
        out.extend(high.iter().map(|(&fd, &e)| (fd, e)));
    }
    out
}
