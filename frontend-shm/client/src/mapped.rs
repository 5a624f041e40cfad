//! A file shown in this process's own mapping (`MapFile`): read without a round trip.
//!
//! The server places the file's data in a memory file and sends a read-only descriptor of it
//! (see `btfuse_core::ring::Request::MapFile` for the layout). Mapped here, it is the file as
//! the engine holds it at every moment: the server writes through its own mapping of the
//! same pages. A read copies from it, bounded by the size the first page shows, which the
//! server moves only once the bytes are in place and the memory file covers them.

#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

use btfuse_core::ring::{
    MAPPED_CHANGES_AT, MAPPED_GONE, MAPPED_HEADER, MAPPED_SIZE_AT, MAPPED_SPAN,
};
use memmap2::{Mmap, MmapOptions};

/// A read-only mapping of a file the server shows.
pub struct MappedFile {
    map: Mmap,
}

impl std::fmt::Debug for MappedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MappedFile")
            .field("size", &self.size())
            .finish_non_exhaustive()
    }
}

impl MappedFile {
    /// Maps the memory file the server sent: its header and [`MAPPED_SPAN`] bytes of data.
    pub(crate) fn new(file: &File) -> io::Result<MappedFile> {
        // SAFETY: the server only grows the memory file and keeps every byte a reader may
        // reach (up to the size it shows) inside it; the bytes change under the mapping,
        // which is read only through raw pointers and atomics.
        let map = unsafe {
            MmapOptions::new()
                .len(MAPPED_HEADER + MAPPED_SPAN as usize)
                .map(file)?
        };
        Ok(MappedFile { map })
    }

    fn header(&self, at: usize) -> &AtomicU64 {
        // SAFETY: the header page is mapped while `self` lives and 8-byte aligned at `at`;
        // the server changes it only with atomics.
        unsafe { &*self.map.as_ptr().add(at).cast::<AtomicU64>() }
    }

    /// The file's size now.
    pub fn size(&self) -> u64 {
        self.header(MAPPED_SIZE_AT).load(Ordering::Acquire)
    }

    /// How many changes to its content or size the file has had since it was first shown.
    pub fn changes(&self) -> u64 {
        self.header(MAPPED_CHANGES_AT).load(Ordering::Acquire)
    }

    /// Copies up to `len` bytes at `offset` into `buf` (which holds `len` bytes), as `pread`
    /// would: fewer at the end of the file, none past it. `None` when the bytes lie past
    /// [`MAPPED_SPAN`], or the mapping shows the file no more: read through the server.
    ///
    /// # Safety
    ///
    /// `buf` is valid for writing `len` bytes.
    pub unsafe fn read_at(&self, buf: *mut u8, len: usize, offset: u64) -> Option<usize> {
        let size = self.size();
        if size == MAPPED_GONE {
            return None;
        }
        if offset >= size {
            return Some(0);
        }
        let n = (len as u64).min(size - offset);
        if offset + n > MAPPED_SPAN {
            return None;
        }
        // SAFETY: `offset + n` is within the span, so inside the mapping, and below the size
        // shown, so inside the memory file; the caller's contract covers `buf`.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.map.as_ptr().add(MAPPED_HEADER + offset as usize),
                buf,
                n as usize,
            );
        }
        Some(n as usize)
    }
}
