//! File data: a regular file's block map, and the reads, writes, resizes, allocations and
//! hole punches that go through the [`BlockStore`]. Absent indices are holes.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use super::{Body, MemFs, State};
use crate::block::{BlockNo, BlockStore, StoreError};
use crate::error::{Errno, Result};

/// A regular file's data: holes are absent from `blocks`.
///
/// The calls that allocate blocks or change the data take `owner`: the inode number the store
/// knows the file by while it is placed ([`State::placed_as`]), whose blocks then come from
/// [`BlockStore::allocate_for`] and whose every change the store is told of.
#[derive(Default)]
pub(super) struct FileData {
    pub(super) size: u64,
    pub(super) blocks: BTreeMap<u64, BlockNo>,
}

pub(super) fn store_err(e: StoreError) -> Errno {
    match e {
        StoreError::Full => Errno::NoSpace,
        _ => Errno::Io,
    }
}

impl<B: BlockStore> MemFs<B> {
    /// A new block for `index` of a file: where the store places it if the file is placed.
    fn allocate_block(
        &self,
        owner: Option<u64>,
        index: u64,
    ) -> core::result::Result<BlockNo, StoreError> {
        match owner {
            Some(owner) => self.store.allocate_for(owner, index),
            None => self.store.allocate(),
        }
    }

    /// Tells the store of a placed file that its content or size changed.
    pub(super) fn data_changed(&self, owner: Option<u64>, file: &FileData) {
        if let Some(owner) = owner {
            self.store.file_changed(owner, file.size);
        }
    }

    /// Copies `block` into the fresh block `new` (through `buf`, a block long) and frees it in
    /// its place; on failure frees `new` instead and leaves `block` as it was.
    fn move_block(&self, block: &mut BlockNo, new: BlockNo, buf: &mut [u8]) -> Result<()> {
        let copied = self
            .store
            .read(*block, 0, buf)
            .and_then(|()| self.store.write(new, 0, buf));
        if let Err(e) = copied {
            let _ = self.store.free(new);
            return Err(store_err(e));
        }
        let freed = self.store.free(core::mem::replace(block, new));
        debug_assert!(freed.is_ok());
        Ok(())
    }

    /// Moves at most `most` blocks of `file` (inode `owner`, placed from now on) at index
    /// `from` and above that are not yet where the store places them there, and tells the
    /// store its size; `Some(index)` to go on from when some may be left. A failure leaves
    /// the blocks moved so far where they are, harmless: the file is still read and written
    /// through the store, wherever each block is.
    pub(super) fn place_locked(
        &self,
        file: &mut FileData,
        owner: u64,
        from: u64,
        most: u64,
    ) -> Result<Option<u64>> {
        let mut buf = alloc::vec![0u8; self.block_size() as usize];
        let mut moved = 0;
        let mut rest = None;
        for (&index, block) in file.blocks.range_mut(from..) {
            if self.store.placed_at(*block, owner, index) {
                continue;
            }
            if moved == most {
                rest = Some(index);
                break;
            }
            let new = self.store.allocate_for(owner, index).map_err(store_err)?;
            self.move_block(block, new, &mut buf)?;
            moved += 1;
        }
        self.data_changed(Some(owner), file);
        Ok(rest)
    }

    /// Moves every placed block of `file` (inode `owner`) back to where
    /// [`BlockStore::allocate`] puts them, then tells the store the file is placed no more;
    /// a failure leaves it placed (partly).
    pub(super) fn unplace_locked(&self, file: &mut FileData, owner: u64) -> Result<()> {
        let mut buf = alloc::vec![0u8; self.block_size() as usize];
        for (&index, block) in file.blocks.iter_mut() {
            if !self.store.placed_at(*block, owner, index) {
                continue;
            }
            let new = self.store.allocate().map_err(store_err)?;
            self.move_block(block, new, &mut buf)?;
        }
        self.store.file_gone(owner);
        Ok(())
    }

    pub(super) fn read_locked(&self, st: &State, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let file = match &st.body {
            Body::File(f) => f,
            Body::Dir(_) => return Err(Errno::IsADirectory),
            _ => return Err(Errno::InvalidArgument),
        };
        if offset >= file.size {
            return Ok(0);
        }
        let len = buf
            .len()
            .min((file.size - offset).min(usize::MAX as u64) as usize);
        let bs = self.block_size();
        let mut done = 0usize;
        while done < len {
            let pos = offset + done as u64;
            let within = (pos % bs) as usize;
            let n = (bs as usize - within).min(len - done);
            let out = &mut buf[done..done + n];
            match file.blocks.get(&(pos / bs)) {
                Some(&block) => self.store.read(block, within, out).map_err(store_err)?,
                None => out.fill(0),
            }
            done += n;
        }
        Ok(len)
    }

    /// Frees every block at index `from` and above.
    pub(super) fn free_blocks_from(&self, file: &mut FileData, from: u64) {
        for (_, block) in file.blocks.split_off(&from) {
            let freed = self.store.free(block);
            debug_assert!(freed.is_ok());
        }
    }

    /// Sets a file's size, freeing blocks past the end and zeroing the tail of the last one.
    pub(super) fn set_size(
        &self,
        owner: Option<u64>,
        file: &mut FileData,
        size: u64,
    ) -> Result<()> {
        let bs = self.block_size();
        if size < file.size {
            self.free_blocks_from(file, size.div_ceil(bs));
            let tail = (size % bs) as usize;
            if tail != 0
                && let Some(&block) = file.blocks.get(&(size / bs))
            {
                self.store
                    .zero(block, tail, bs as usize - tail)
                    .map_err(store_err)?;
            }
        }
        file.size = size;
        self.data_changed(owner, file);
        Ok(())
    }

    pub(super) fn write_locked(
        &self,
        owner: Option<u64>,
        file: &mut FileData,
        offset: u64,
        data: &[u8],
    ) -> Result<usize> {
        let bs = self.block_size();
        let mut done = 0usize;
        while done < data.len() {
            let pos = offset + done as u64;
            let index = pos / bs;
            let within = (pos % bs) as usize;
            let n = (bs as usize - within).min(data.len() - done);
            let block = match file.blocks.get(&index) {
                Some(&block) => block,
                None => match self.allocate_block(owner, index) {
                    Ok(block) => {
                        file.blocks.insert(index, block);
                        block
                    }
                    Err(e) if done == 0 => return Err(store_err(e)),
                    Err(_) => break,
                },
            };
            if let Err(e) = self.store.write(block, within, &data[done..done + n]) {
                if done == 0 {
                    return Err(store_err(e));
                }
                break;
            }
            done += n;
        }
        let end = offset + done as u64;
        if end > file.size {
            file.size = end;
        }
        if done > 0 {
            self.data_changed(owner, file);
        }
        Ok(done)
    }

    /// Allocates every missing block of `[offset, end)`, all or nothing.
    pub(super) fn allocate_range(
        &self,
        owner: Option<u64>,
        file: &mut FileData,
        offset: u64,
        end: u64,
    ) -> Result<()> {
        let bs = self.block_size();
        let (first, last) = (offset / bs, end.div_ceil(bs));
        let present = file.blocks.range(first..last).count() as u64;
        if last - first - present > self.store.free_blocks() {
            return Err(Errno::NoSpace);
        }
        let mut added = Vec::new();
        for index in first..last {
            if file.blocks.contains_key(&index) {
                continue;
            }
            match self.allocate_block(owner, index) {
                Ok(block) => {
                    file.blocks.insert(index, block);
                    added.push(index);
                }
                Err(e) => {
                    for index in added {
                        if let Some(block) = file.blocks.remove(&index) {
                            let _ = self.store.free(block);
                        }
                    }
                    return Err(store_err(e));
                }
            }
        }
        Ok(())
    }

    /// Frees whole blocks inside `[offset, end)` and zeroes the partial ones at its edges.
    pub(super) fn punch_range(
        &self,
        owner: Option<u64>,
        file: &mut FileData,
        offset: u64,
        end: u64,
    ) -> Result<()> {
        let bs = self.block_size();
        let (first_whole, last_whole) = (offset.div_ceil(bs), end / bs);
        if first_whole < last_whole {
            let mut tail = file.blocks.split_off(&first_whole);
            let mut keep = tail.split_off(&last_whole);
            for block in tail.values() {
                let _ = self.store.free(*block);
            }
            file.blocks.append(&mut keep);
        }
        let zero_part = |index: u64, from: u64, to: u64| -> Result<()> {
            if from < to
                && let Some(&block) = file.blocks.get(&index)
            {
                let start = (from - index * bs) as usize;
                self.store
                    .zero(block, start, (to - from) as usize)
                    .map_err(store_err)?;
            }
            Ok(())
        };
        if first_whole > last_whole {
            // The range lies inside one block.
            zero_part(offset / bs, offset, end)?;
            self.data_changed(owner, file);
            return Ok(());
        }
        if !offset.is_multiple_of(bs) {
            zero_part(offset / bs, offset, first_whole * bs)?;
        }
        if !end.is_multiple_of(bs) {
            zero_part(end / bs, last_whole * bs, end)?;
        }
        self.data_changed(owner, file);
        Ok(())
    }
}
