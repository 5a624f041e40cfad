//! Files a client reads in its own mapping: the store behind `MapFile`.
//!
//! A ring read is a round trip: the client publishes the request and waits until a worker
//! has run and answered. On a machine whose cores are all busy the two rarely run at once,
//! and each read waits for the other side's next time slice. A file shown in a mapping is
//! read in the caller's own time slice, as the kernel reads a tmpfs file: no round trip.
//!
//! [`MappedStore`] is a [`BlockStore`]: a [`MemPool`] for every file, and for each file the
//! engine has placed ([`Filesystem::place_file`](btfuse_core::Filesystem::place_file)) a
//! memory file of its own, whose page `1 + i` is the file's block `i` (up to
//! [`MAPPED_SPAN`]). Page 0 holds the file's size and a count of its changes
//! ([`MAPPED_SIZE_AT`], [`MAPPED_CHANGES_AT`]). The engine writes through the store as for
//! any block, so a mapping of the memory file is the file, always current.
//!
//! What a client gets ([`FileShower::show`]) is a read-only descriptor of the memory file,
//! sent only for a description the engine opened for reading. The memory file's mode is
//! 0000 and its owner the server, so a client cannot open it again for writing through
//! `/proc`; a read-only descriptor cannot make a writable shared mapping, change the
//! size or punch holes. So a mapping grants what the description's open checked, reading
//! the file, as an `mmap` of a file a process has open grants on any filesystem, and keeps
//! it as such a mapping does after the descriptor is closed.
//!
//! Limits: at most `max_files` files are shown at once (each costs the server a descriptor
//! and a mapping); blocks in memory files count toward the same capacity as the pool's; the
//! memory file never shrinks while shown (a client may be reading its end), but every freed
//! block is punched out of it, so it holds no more memory than the file's blocks.

// The memory files are mapped and read and written through raw pointers.
#![allow(unsafe_code)]

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use btfuse_core::block::{BlockNo, BlockStore, MemPool, StoreError, block_byte_range};
use btfuse_core::ring::{
    MAPPED_CHANGES_AT, MAPPED_GONE, MAPPED_HEADER, MAPPED_SIZE_AT, MAPPED_SPAN,
};
use btfuse_core::{Errno, Filesystem, Ino};
use memmap2::{MmapOptions, MmapRaw};

/// Block size of a store that shows files: one page, so that block `i` is a page.
const PAGE: usize = 4096;
/// Bits of a shown block's number that give its index in the file.
const INDEX_BITS: u32 = 21;
/// Bits that give the shown file.
const SLOT_BITS: u32 = 10;
/// The bit that marks a shown block's number; pool blocks are below it.
const SHOWN: u32 = 1 << 31;
/// Most files one store shows at once, whatever it is asked for.
pub const MAX_SHOWN_FILES: usize = 1 << SLOT_BITS;
/// How much a memory file grows at a time.
const GROW_STEP: u64 = 64 << 20;
/// The default of [`MappedStore::new`]'s `max_files`.
pub const DEFAULT_SHOWN_FILES: usize = 256;

const _: () = assert!((1u64 << INDEX_BITS) * PAGE as u64 == MAPPED_SPAN);
const _: () = assert!(INDEX_BITS + SLOT_BITS <= 31);
const _: () = assert!(MAPPED_HEADER == PAGE);

/// Shows files to clients: what `MapFile` asks of the server.
pub trait FileShower: Send + Sync {
    /// Shows inode `ino` in a memory file and returns a read-only descriptor of it, once the
    /// engine has placed every block of the file in this store: each call moves at most
    /// [`PLACE_STEP`] of them and answers `EAGAIN` while some are left, so that no call holds
    /// the file, or the thread serving it, for longer than that many copies. `ENOSPC` when
    /// as many files are shown as may be and the engine could move none of them back out.
    fn show(&self, ino: Ino, engine: &dyn Placer) -> Result<File, Errno>;
}

/// What showing a file asks of the engine behind the store: every [`Filesystem`] does it.
pub trait Placer {
    /// [`Filesystem::place_file`].
    fn place(&self, ino: Ino, from: u64, most: u64) -> Result<Option<u64>, Errno>;
    /// [`Filesystem::unplace_file`].
    fn unplace(&self, ino: Ino) -> Result<(), Errno>;
}

impl<F: Filesystem> Placer for F {
    fn place(&self, ino: Ino, from: u64, most: u64) -> Result<Option<u64>, Errno> {
        self.place_file(ino, from, most)
    }
    fn unplace(&self, ino: Ino) -> Result<(), Errno> {
        self.unplace_file(ino)
    }
}

/// Most blocks one `MapFile` has the engine move into a memory file (16 MiB): a larger file
/// takes several, each answered `EAGAIN` until the last.
pub const PLACE_STEP: u64 = 4096;

/// One shown file: its memory file and the server's mapping of it.
struct Shown {
    owner: u64,
    memfd: File,
    map: MmapRaw,
    /// The memory file's length: it only grows, in steps of [`GROW_STEP`], under `growing`.
    length: AtomicU64,
    growing: Mutex<()>,
    /// Which pages hold a block, one bit each.
    live: Box<[AtomicU64]>,
    /// Where the engine goes on placing the file's blocks from; `None` once every block is
    /// placed (from then on every block the file gets is placed as it is allocated).
    placing: Mutex<Option<u64>>,
}

impl Shown {
    fn create(owner: u64) -> io::Result<Shown> {
        let memfd = memfd(c"btfuse-shown")?;
        // Nobody but the server (root bypasses modes anyway) opens it again through /proc.
        // SAFETY: fchmod on a descriptor this function owns.
        if unsafe { libc::fchmod(memfd.as_raw_fd(), 0) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let len = MAPPED_HEADER + MAPPED_SPAN as usize;
        memfd.set_len(MAPPED_HEADER as u64)?;
        let map = MmapOptions::new().len(len).map_raw(&memfd)?;
        let words = (MAPPED_SPAN as usize / PAGE).div_ceil(64);
        Ok(Shown {
            owner,
            memfd,
            map,
            length: AtomicU64::new(MAPPED_HEADER as u64),
            growing: Mutex::new(()),
            live: (0..words).map(|_| AtomicU64::new(0)).collect(),
            placing: Mutex::new(Some(0)),
        })
    }

    /// Grows the memory file to hold `bytes` past its header.
    fn grow_to(&self, bytes: u64) -> Result<(), StoreError> {
        let want = MAPPED_HEADER as u64 + bytes.min(MAPPED_SPAN);
        if self.length.load(Ordering::Acquire) >= want {
            return Ok(());
        }
        let _growing = self.growing.lock().unwrap_or_else(|p| p.into_inner());
        if self.length.load(Ordering::Acquire) >= want {
            return Ok(());
        }
        // Length past the data costs nothing (no page is there): grown a step at a time, a
        // file written from start to end costs one system call per step, not per block.
        let to = (MAPPED_HEADER as u64 + bytes.next_multiple_of(GROW_STEP))
            .min(MAPPED_HEADER as u64 + MAPPED_SPAN);
        self.memfd.set_len(to).map_err(|e| {
            log::warn!("growing a shown file's memory file: {e}");
            StoreError::Io
        })?;
        self.length.store(to, Ordering::Release);
        Ok(())
    }

    fn header(&self, at: usize) -> &AtomicU64 {
        // SAFETY: the header page is mapped for the store's life and 8-byte aligned at `at`;
        // only atomics touch it here.
        unsafe { &*self.map.as_mut_ptr().add(at).cast::<AtomicU64>() }
    }

    fn bit(&self, index: u64) -> (&AtomicU64, u64) {
        (&self.live[(index / 64) as usize], 1 << (index % 64))
    }

    fn is_live(&self, index: u64) -> bool {
        let (word, bit) = self.bit(index);
        word.load(Ordering::Acquire) & bit != 0
    }

    /// The page of block `index`, checked to be live.
    fn page(&self, index: u64) -> Result<*mut u8, StoreError> {
        if !self.is_live(index) {
            return Err(StoreError::NotAllocated);
        }
        // SAFETY: `index` is below the span, so the page is inside the mapping, and the
        // memory file was grown over it when it was allocated.
        Ok(unsafe {
            self.map
                .as_mut_ptr()
                .add(MAPPED_HEADER + index as usize * PAGE)
        })
    }
}

/// A [`MemPool`] that also shows files in memory files of their own (see the module).
pub struct MappedStore {
    pool: MemPool,
    /// Blocks in use, the pool's and the shown files' together.
    used: AtomicU64,
    /// Shown files by inode number: their slot.
    owners: Mutex<HashMap<u64, usize>>,
    slots: Box<[RwLock<Option<Arc<Shown>>>]>,
    /// Blocks one `show` has the engine place: [`PLACE_STEP`].
    place_step: u64,
}

impl MappedStore {
    /// A store of `size` bytes (as [`MemPool::new`]) that shows at most `max_files` files at
    /// once (at most [`MAX_SHOWN_FILES`]).
    pub fn new(size: u64, max_files: usize) -> MappedStore {
        // Pool blocks are numbered below `SHOWN`.
        let size = size.min(u64::from(SHOWN - 1) * PAGE as u64);
        MappedStore {
            pool: MemPool::new(size),
            used: AtomicU64::new(0),
            owners: Mutex::new(HashMap::new()),
            slots: (0..max_files.min(MAX_SHOWN_FILES))
                .map(|_| RwLock::new(None))
                .collect(),
            place_step: PLACE_STEP,
        }
    }

    /// Files shown now.
    pub fn shown_files(&self) -> usize {
        self.owners.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    fn reserve(&self) -> Result<(), StoreError> {
        let capacity = self.pool.capacity_blocks();
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                (u < capacity).then_some(u + 1)
            })
            .map(drop)
            .map_err(|_| StoreError::Full)
    }

    fn unreserve(&self) {
        self.used.fetch_sub(1, Ordering::AcqRel);
    }

    fn shown(&self, slot: usize) -> Option<Arc<Shown>> {
        let slot = self.slots.get(slot)?;
        slot.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn shown_of(&self, owner: u64) -> Option<(usize, Arc<Shown>)> {
        let slot = *self
            .owners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&owner)?;
        Some((slot, self.shown(slot)?))
    }

    /// The shown file and index of a block number of a shown file.
    fn decode(&self, block: BlockNo) -> Result<(Arc<Shown>, u64), StoreError> {
        let slot = ((block.0 & !SHOWN) >> INDEX_BITS) as usize;
        let index = u64::from(block.0 & ((1 << INDEX_BITS) - 1));
        let shown = self.shown(slot).ok_or(StoreError::NotAllocated)?;
        Ok((shown, index))
    }

    /// The shown file of `owner`, registering it in a free slot if it has none.
    fn register(&self, owner: u64) -> Result<Arc<Shown>, Errno> {
        let mut owners = self.owners.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(shown) = owners.get(&owner).and_then(|&slot| self.shown(slot)) {
            return Ok(shown);
        }
        let free = self
            .slots
            .iter()
            .position(|s| s.read().unwrap_or_else(|p| p.into_inner()).is_none());
        let Some(slot) = free else {
            return Err(Errno::NoSpace);
        };
        let shown = Shown::create(owner).map_err(|e| {
            log::warn!("cannot make a memory file to show inode {owner}: {e}");
            Errno::Io
        })?;
        let shown = Arc::new(shown);
        *self.slots[slot].write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::clone(&shown));
        owners.insert(owner, slot);
        Ok(shown)
    }
}

impl BlockStore for MappedStore {
    fn block_size(&self) -> usize {
        self.pool.block_size()
    }

    fn capacity_blocks(&self) -> u64 {
        self.pool.capacity_blocks()
    }

    fn used_blocks(&self) -> u64 {
        self.used.load(Ordering::Acquire)
    }

    fn allocate(&self) -> Result<BlockNo, StoreError> {
        self.reserve()?;
        self.pool.allocate().inspect_err(|_| self.unreserve())
    }

    fn allocate_for(&self, owner: u64, index: u64) -> Result<BlockNo, StoreError> {
        let Some((slot, shown)) = self
            .shown_of(owner)
            .filter(|_| index < MAPPED_SPAN / PAGE as u64)
        else {
            return self.allocate();
        };
        self.reserve()?;
        if let Err(e) = shown.grow_to((index + 1) * PAGE as u64) {
            self.unreserve();
            return Err(e);
        }
        let (word, bit) = shown.bit(index);
        if word.fetch_or(bit, Ordering::AcqRel) & bit != 0 {
            // The engine never asks twice for one index without a free: a caller's bug.
            self.unreserve();
            return Err(StoreError::Io);
        }
        // A page never written or punched out at its free reads as zeros.
        Ok(BlockNo(
            SHOWN | ((slot as u32) << INDEX_BITS) | index as u32,
        ))
    }

    fn placed_at(&self, block: BlockNo, owner: u64, index: u64) -> bool {
        if block.0 & SHOWN == 0 {
            // Past the span a shown file's blocks stay in the pool, where they are.
            return index >= MAPPED_SPAN / PAGE as u64;
        }
        self.decode(block)
            .is_ok_and(|(shown, i)| shown.owner == owner && i == index)
    }

    fn free(&self, block: BlockNo) -> Result<(), StoreError> {
        if block.0 & SHOWN == 0 {
            self.pool.free(block)?;
            self.unreserve();
            return Ok(());
        }
        let (shown, index) = self.decode(block)?;
        let (word, bit) = shown.bit(index);
        if word.fetch_and(!bit, Ordering::AcqRel) & bit == 0 {
            return Err(StoreError::NotAllocated);
        }
        let at = (MAPPED_HEADER + index as usize * PAGE) as libc::off_t;
        let mode = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
        // SAFETY: fallocate on the memory file this store owns.
        if unsafe { libc::fallocate(shown.memfd.as_raw_fd(), mode, at, PAGE as libc::off_t) } != 0 {
            // The page keeps its memory until the file goes; it must still read as zeros
            // when it is handed out again.
            log::warn!("punching a shown page: {}", io::Error::last_os_error());
            // SAFETY: the page is inside the mapping and the memory file covers it.
            unsafe {
                std::ptr::write_bytes(
                    shown
                        .map
                        .as_mut_ptr()
                        .add(MAPPED_HEADER + index as usize * PAGE),
                    0,
                    PAGE,
                );
            }
        }
        self.unreserve();
        Ok(())
    }

    fn read(&self, block: BlockNo, offset: usize, buf: &mut [u8]) -> Result<(), StoreError> {
        if block.0 & SHOWN == 0 {
            return self.pool.read(block, offset, buf);
        }
        let range = block_byte_range(PAGE, offset, buf.len())?;
        let (shown, index) = self.decode(block)?;
        let page = shown.page(index)?;
        // SAFETY: `range` is inside the page, which stays mapped while `shown` lives.
        unsafe {
            std::ptr::copy_nonoverlapping(page.add(range.start), buf.as_mut_ptr(), buf.len())
        };
        Ok(())
    }

    fn write(&self, block: BlockNo, offset: usize, data: &[u8]) -> Result<(), StoreError> {
        if block.0 & SHOWN == 0 {
            return self.pool.write(block, offset, data);
        }
        let range = block_byte_range(PAGE, offset, data.len())?;
        let (shown, index) = self.decode(block)?;
        let page = shown.page(index)?;
        // SAFETY: as in `read`.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), page.add(range.start), data.len()) };
        Ok(())
    }

    fn zero(&self, block: BlockNo, offset: usize, len: usize) -> Result<(), StoreError> {
        if block.0 & SHOWN == 0 {
            return self.pool.zero(block, offset, len);
        }
        let range = block_byte_range(PAGE, offset, len)?;
        let (shown, index) = self.decode(block)?;
        let page = shown.page(index)?;
        // SAFETY: as in `read`.
        unsafe { std::ptr::write_bytes(page.add(range.start), 0, len) };
        Ok(())
    }

    fn file_changed(&self, owner: u64, size: u64) {
        let Some((_, shown)) = self.shown_of(owner) else {
            return;
        };
        // A reader never reads past the memory file's end: it is grown first. If it cannot
        // be, readers are told to read through the server, for good.
        let size = match shown.grow_to(size) {
            Ok(()) if shown.header(MAPPED_SIZE_AT).load(Ordering::Acquire) != MAPPED_GONE => size,
            _ => MAPPED_GONE,
        };
        shown.header(MAPPED_SIZE_AT).store(size, Ordering::Release);
        shown
            .header(MAPPED_CHANGES_AT)
            .fetch_add(1, Ordering::Release);
    }

    fn file_gone(&self, owner: u64) {
        let mut owners = self.owners.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = owners.remove(&owner) {
            // Unmapped and closed here once no store call holds it; clients keep their own.
            self.slots[slot]
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .take();
        }
    }
}

impl FileShower for MappedStore {
    fn show(&self, ino: Ino, engine: &dyn Placer) -> Result<File, Errno> {
        if self.block_size() != PAGE {
            return Err(Errno::NotSupported);
        }
        let shown = match self.register(ino.0) {
            Err(Errno::NoSpace) => {
                // Room is made by files nothing has open: their blocks go back to the pool.
                let shown: Vec<u64> = {
                    let owners = self.owners.lock().unwrap_or_else(|p| p.into_inner());
                    owners.keys().copied().collect()
                };
                for owner in shown {
                    match engine.unplace(Ino(owner)) {
                        Ok(()) => break,
                        // Gone meanwhile: its slot is free already.
                        Err(Errno::NotFound) => break,
                        Err(_) => {}
                    }
                }
                self.register(ino.0)?
            }
            registered => registered?,
        };
        {
            let mut placing = shown.placing.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(from) = *placing {
                // Every block below `from` is placed, and stays so while the file is shown.
                *placing = engine.place(ino, from, self.place_step)?;
                if placing.is_some() {
                    return Err(Errno::TryAgain);
                }
            }
        }
        reopen_read_only(&shown.memfd).map_err(|e| {
            log::warn!("cannot reopen a shown file read-only: {e}");
            Errno::Io
        })
    }
}

/// A memory file, closed on exec, and not executable where the kernel can say so.
fn memfd(name: &std::ffi::CStr) -> io::Result<File> {
    let fd = crate::sys::new_memfd(name, libc::MFD_CLOEXEC | libc::MFD_NOEXEC_SEAL).or_else(
        |e| match e.raw_os_error() {
            // Kernels before 6.3 know no MFD_NOEXEC_SEAL.
            Some(libc::EINVAL) => crate::sys::new_memfd(name, libc::MFD_CLOEXEC),
            _ => Err(e),
        },
    )?;
    Ok(File::from(fd))
}

/// A new read-only open file description of `file`.
fn reopen_read_only(file: &File) -> io::Result<File> {
    let path = format!("/proc/self/fd/{}", file.as_raw_fd());
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use btfuse_core::{Config, MemFs, ZeroClock};
    use btfuse_ring_client::{Client, OpenOptions};

    use super::*;
    use crate::{DEFAULT_MAX_CONNECTIONS_PER_USER, Server, ServerConfig};

    type Fs = MemFs<Arc<MappedStore>>;

    fn server(dir: &Path, max_files: usize) -> (Server<Fs>, PathBuf) {
        let store = Arc::new(MappedStore::new(16 << 20, max_files));
        let fs = Arc::new(MemFs::new(Arc::clone(&store), Config::default(), ZeroClock));
        let socket = dir.join("s.sock");
        let config = ServerConfig {
            socket: socket.clone(),
            threads: 1,
            socket_mode: 0o600,
            max_connections_per_user: DEFAULT_MAX_CONNECTIONS_PER_USER,
        };
        let shower = store as Arc<dyn FileShower>;
        let server = Server::start_with(fs, &config, None, Some(shower)).unwrap();
        (server, socket)
    }

    /// An engine with nothing to place, whose placing and moving back answer as told.
    struct Fake {
        place: Result<(), Errno>,
        unplace: Result<(), Errno>,
    }

    /// Places and moves back whatever it is asked to.
    const EMPTY: Fake = Fake {
        place: Ok(()),
        unplace: Ok(()),
    };

    impl Placer for Fake {
        fn place(&self, _: Ino, _: u64, _: u64) -> Result<Option<u64>, Errno> {
            self.place.map(|()| None)
        }
        fn unplace(&self, _: Ino) -> Result<(), Errno> {
            self.unplace
        }
    }

    /// Shows `ino`, asking again while the engine places it a step at a time.
    fn show_all(store: &MappedStore, ino: Ino, engine: &dyn Placer) -> File {
        loop {
            match store.show(ino, engine) {
                Err(Errno::TryAgain) => {}
                shown => return shown.unwrap(),
            }
        }
    }

    fn read_all(map: &btfuse_ring_client::mapped::MappedFile, offset: u64, len: usize) -> Vec<u8> {
        let mut buf = vec![0xee; len];
        // SAFETY: `buf` holds `len` bytes.
        let n = unsafe { map.read_at(buf.as_mut_ptr(), len, offset) }.unwrap();
        buf.truncate(n);
        buf
    }

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31) ^ seed)
            .collect()
    }

    #[test]
    fn a_shown_file_reads_as_the_engine_holds_it_through_every_change() {
        let dir = tempfile::tempdir().unwrap();
        let (server, socket) = server(dir.path(), 4);
        let client = Client::connect(&socket).unwrap();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .open(&client, "/f")
            .unwrap();
        // The model: what the file holds, as the engine's own reads return it.
        let mut model = pattern(3 * PAGE + 100, 1);
        file.write_at(&model, 0).unwrap();
        let map = client.map_file(file.description()).unwrap();
        let check = |model: &[u8]| {
            assert_eq!(map.size(), model.len() as u64);
            assert_eq!(read_all(&map, 0, model.len() + 50), model);
            let mut engine = vec![0; model.len() + 50];
            let n = file.read_at(&mut engine, 0).unwrap();
            assert_eq!(&engine[..n], model);
            // Reads at every offset stop at the end, as pread does.
            assert_eq!(read_all(&map, model.len() as u64, 10), b"");
            assert_eq!(
                read_all(&map, model.len() as u64 + 5 * PAGE as u64, 10),
                b""
            );
        };
        check(&model);
        let changes = map.changes();
        // A write past the end leaves a hole that reads as zeros.
        file.write_at(b"tail", 10 * PAGE as u64).unwrap();
        model.resize(10 * PAGE, 0);
        model.extend_from_slice(b"tail");
        check(&model);
        assert!(map.changes() > changes);
        // Overwrites inside a page and across two.
        file.write_at(b"XY", 1).unwrap();
        model[1..3].copy_from_slice(b"XY");
        let across = pattern(300, 9);
        file.write_at(&across, PAGE as u64 - 150).unwrap();
        model[PAGE - 150..PAGE + 150].copy_from_slice(&across);
        check(&model);
        // Shrinking, then growing again: the bytes between read as zeros, not as before.
        file.set_len(5000).unwrap();
        model.truncate(5000);
        check(&model);
        file.set_len(3 * PAGE as u64).unwrap();
        model.resize(3 * PAGE, 0);
        check(&model);
        // A description opened after the file was shown sees the same file.
        let again = OpenOptions::new().read(true).open(&client, "/f").unwrap();
        let second = client.map_file(again.description()).unwrap();
        assert_eq!(read_all(&second, 0, model.len()), model);
        drop((file, again, client));
        server.shutdown();
    }

    #[test]
    fn a_file_nothing_has_open_makes_room_and_keeps_its_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let (server, socket) = server(dir.path(), 1);
        let client = Client::connect(&socket).unwrap();
        let (a, b) = (pattern(5 * PAGE + 7, 3), pattern(2 * PAGE, 4));
        client.write("/a", &a).unwrap();
        client.write("/b", &b).unwrap();
        let open = |path| OpenOptions::new().read(true).open(&client, path).unwrap();
        let first = open("/a");
        let shown = client.map_file(first.description()).unwrap();
        assert_eq!(read_all(&shown, 0, a.len()), a);
        // The one place is taken by a file still open: the other is read through the server.
        let second = open("/b");
        let e = client.map_file(second.description()).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOSPC));
        drop(first);
        drop(shown);
        // Closed (the close is posted: a round trip makes sure it was served).
        client.ping().unwrap();
        let map = client.map_file(second.description()).unwrap();
        assert_eq!(read_all(&map, 0, b.len()), b);
        // The file moved back out keeps its bytes.
        assert_eq!(client.read("/a").unwrap(), a);
        drop((second, client));
        server.shutdown();
    }

    /// One step of [`placed_files_read_as_the_model_through_every_change`].
    #[derive(Clone, Debug)]
    enum Step {
        Write(u64, usize, u8),
        Truncate(u64),
        Punch(u64, u64),
        Allocate(u64, u64, bool),
        /// Shown (placed) again: a no-op while it is shown.
        Show,
        /// Every handle closed, the file moved back to the pool, a handle opened again.
        Unshow,
    }

    fn step() -> impl proptest::strategy::Strategy<Value = Step> {
        use proptest::prelude::*;
        let at = 0..48 * PAGE as u64;
        prop_oneof![
            4 => (at.clone(), 1..3 * PAGE, any::<u8>()).prop_map(|(o, l, b)| Step::Write(o, l, b)),
            2 => at.clone().prop_map(Step::Truncate),
            1 => (at.clone(), 1..6 * PAGE as u64).prop_map(|(o, l)| Step::Punch(o, l)),
            1 => (at, 1..6 * PAGE as u64, any::<bool>()).prop_map(|(o, l, k)| Step::Allocate(o, l, k)),
            1 => Just(Step::Show),
            1 => Just(Step::Unshow),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(64))]

        /// The engine over a store that shows files, against a byte vector: after every step
        /// the engine's reads and, while the file is shown, the memory file a client would
        /// map (size and bytes) hold what the model does, and the store counts the blocks
        /// the engine does.
        #[test]
        fn placed_files_read_as_the_model_through_every_change(
            steps in proptest::collection::vec(step(), 1..40)
        ) {
            use btfuse_core::{Credentials, FallocateMode, Filesystem, OpenFlags, SetAttr};
            use std::os::unix::fs::FileExt;
            use proptest::{prop_assert, prop_assert_eq};

            let mut store = MappedStore::new(4 << 20, 2);
            // A few blocks a step, so that files are placed over several calls.
            store.place_step = 3;
            let store = Arc::new(store);
            let fs = MemFs::new(Arc::clone(&store), Config::default(), ZeroClock);
            let root = Credentials::root();
            let (attr, mut fh) = fs
                .create(&root, Ino::ROOT, b"f", 0o644, OpenFlags::READ_WRITE)
                .unwrap();
            let ino = attr.ino;
            let mut shown = Some(show_all(&store, ino, &fs));
            let mut model: Vec<u8> = Vec::new();
            for step in steps {
                match step {
                    Step::Write(offset, len, byte) => {
                        let data = vec![byte; len];
                        fs.write(&root, fh, offset, &data).unwrap();
                        let end = offset as usize + len;
                        if model.len() < end {
                            model.resize(end, 0);
                        }
                        model[offset as usize..end].fill(byte);
                    }
                    Step::Truncate(size) => {
                        let set = SetAttr { size: Some(size), ..SetAttr::default() };
                        fs.setattr(&root, ino, &set, Some(fh)).unwrap();
                        model.resize(size as usize, 0);
                    }
                    Step::Punch(offset, len) => {
                        fs.fallocate(&root, fh, FallocateMode::PunchHole, offset, len).unwrap();
                        let end = ((offset + len) as usize).min(model.len());
                        if (offset as usize) < end {
                            model[offset as usize..end].fill(0);
                        }
                    }
                    Step::Allocate(offset, len, keep) => {
                        let mode = if keep { FallocateMode::KeepSize } else { FallocateMode::Allocate };
                        fs.fallocate(&root, fh, mode, offset, len).unwrap();
                        if !keep && model.len() < (offset + len) as usize {
                            model.resize((offset + len) as usize, 0);
                        }
                    }
                    Step::Show => shown = Some(show_all(&store, ino, &fs)),
                    Step::Unshow => {
                        fs.release(fh).unwrap();
                        fs.unplace_file(ino).unwrap();
                        prop_assert_eq!(store.shown_files(), 0);
                        shown = None;
                        fh = fs.open(&root, ino, OpenFlags::READ_WRITE).unwrap();
                    }
                }
                let mut read = vec![0xee; model.len() + 10];
                let n = fs.read(&root, fh, 0, &mut read).unwrap();
                prop_assert_eq!(&read[..n], &model[..]);
                let blocks = fs.getattr(&root, ino).unwrap().blocks / (PAGE as u64 / 512);
                prop_assert_eq!(store.used_blocks(), blocks);
                if let Some(memfd) = &shown {
                    let mut size = [0u8; 8];
                    memfd.read_exact_at(&mut size, MAPPED_SIZE_AT as u64).unwrap();
                    prop_assert_eq!(u64::from_ne_bytes(size), model.len() as u64);
                    let mut bytes = vec![0xee; model.len()];
                    memfd.read_exact_at(&mut bytes, MAPPED_HEADER as u64).unwrap();
                    prop_assert!(bytes == model, "the memory file differs from the model");
                }
            }
        }
    }

    #[test]
    fn only_a_regular_file_open_for_reading_is_shown() {
        let dir = tempfile::tempdir().unwrap();
        let (server, socket) = server(dir.path(), 4);
        let client = Client::connect(&socket).unwrap();
        client.write("/w", b"data").unwrap();
        let write_only = OpenOptions::new().write(true).open(&client, "/w").unwrap();
        let e = client.map_file(write_only.description()).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EBADF));
        client.create_dir("/d").unwrap();
        let dir_fd = OpenOptions::new().read(true).open(&client, "/d").unwrap();
        let e = client.map_file(dir_fd.description()).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EISDIR));
        let e = client.map_file(12345).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EBADF));
        drop((write_only, dir_fd, client));
        server.shutdown();
    }

    #[test]
    fn what_a_client_gets_cannot_change_the_file() {
        let store = MappedStore::new(1 << 20, 4);
        let file = store.show(Ino(7), &EMPTY).unwrap();
        let fd = file.as_raw_fd();
        // SAFETY: fcntl and fstat on an open descriptor.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        assert_eq!(flags & libc::O_ACCMODE, libc::O_RDONLY);
        let meta = file.metadata().unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(meta.permissions().mode() & 0o7777, 0);
        // No writable shared mapping, no resize, no hole punched.
        // SAFETY: a mapping that is unmapped at once if it is made at all.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                PAGE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        assert_eq!(p, libc::MAP_FAILED);
        assert_eq!(
            io::Error::last_os_error().raw_os_error(),
            Some(libc::EACCES)
        );
        assert!(file.set_len(0).is_err());
        let mode = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
        // SAFETY: fallocate on an open descriptor.
        let punched = unsafe { libc::fallocate(fd, mode, 0, PAGE as libc::off_t) };
        assert_ne!(punched, 0);
    }

    #[test]
    fn shown_blocks_share_the_capacity_and_come_back_as_zeros() {
        let store = MappedStore::new(8 * PAGE as u64, 2);
        store.show(Ino(7), &EMPTY).unwrap();
        let shown: Vec<_> = (0..4).map(|i| store.allocate_for(7, i).unwrap()).collect();
        // An owner that is not shown gets pool blocks.
        let pooled: Vec<_> = (0..4).map(|i| store.allocate_for(8, i).unwrap()).collect();
        assert_eq!(store.used_blocks(), 8);
        assert_eq!(store.allocate_for(7, 4), Err(StoreError::Full));
        assert_eq!(store.allocate(), Err(StoreError::Full));
        assert!(store.placed_at(shown[2], 7, 2));
        assert!(!store.placed_at(shown[2], 7, 3));
        assert!(!store.placed_at(pooled[2], 8, 2));
        store.write(shown[1], 10, b"hello").unwrap();
        let mut buf = [0u8; 7];
        store.read(shown[1], 9, &mut buf).unwrap();
        assert_eq!(&buf, b"\0hello\0");
        assert_eq!(
            store.read(shown[1], PAGE - 3, &mut buf),
            Err(StoreError::OutOfRange)
        );
        store.free(shown[1]).unwrap();
        assert_eq!(store.free(shown[1]), Err(StoreError::NotAllocated));
        assert_eq!(
            store.read(shown[1], 0, &mut buf),
            Err(StoreError::NotAllocated)
        );
        assert_eq!(store.used_blocks(), 7);
        let again = store.allocate_for(7, 1).unwrap();
        let mut page = vec![0xff; PAGE];
        store.read(again, 0, &mut page).unwrap();
        assert!(
            page.iter().all(|&b| b == 0),
            "a block handed out again reads as zeros"
        );
        for block in shown
            .iter()
            .skip(2)
            .chain(&pooled)
            .chain([&shown[0], &again])
        {
            store.free(*block).unwrap();
        }
        assert_eq!(store.used_blocks(), 0);
    }

    #[test]
    fn at_most_max_files_are_shown_and_a_gone_file_makes_room() {
        let store = MappedStore::new(1 << 20, 2);
        store.show(Ino(1), &EMPTY).unwrap();
        store.show(Ino(2), &EMPTY).unwrap();
        // Full, and both still open: nothing is shown.
        let busy = Fake {
            unplace: Err(Errno::Busy),
            ..EMPTY
        };
        assert_eq!(store.show(Ino(3), &busy).unwrap_err(), Errno::NoSpace);
        // Showing one again takes no room.
        store.show(Ino(2), &EMPTY).unwrap();
        assert_eq!(store.shown_files(), 2);
        store.file_gone(1);
        store.show(Ino(3), &EMPTY).unwrap();
        assert_eq!(store.shown_files(), 2);
        // Nothing is shown when the engine cannot place the file.
        store.file_gone(3);
        let refuses = Fake {
            place: Err(Errno::NotSupported),
            ..EMPTY
        };
        assert_eq!(
            store.show(Ino(4), &refuses).unwrap_err(),
            Errno::NotSupported
        );
    }
}
