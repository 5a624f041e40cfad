//! `struct stat` and `struct statx` from the engine's attributes.

use btfuse_core::Attr;

/// The device number btfuse files report (`st_dev`): "bt" in the minor, major 0x42, far from
/// the numbers Linux hands out for real filesystems.
pub(crate) const DEV_MAJOR: u32 = 0x42;
pub(crate) const DEV_MINOR: u32 = 0x6274;

/// Fills `st` as `stat(2)` would.
pub(crate) fn fill_stat(st: &mut libc::stat, attr: &Attr) {
    // SAFETY: an all-zero `stat` is a valid value (plain integers).
    *st = unsafe { std::mem::zeroed() };
    st.st_dev = libc::makedev(DEV_MAJOR, DEV_MINOR);
    st.st_ino = attr.ino.0;
    st.st_mode = attr.mode();
    st.st_nlink = u64::from(attr.nlink);
    st.st_uid = attr.uid;
    st.st_gid = attr.gid;
    st.st_rdev = u64::from(attr.rdev);
    st.st_size = attr.size as i64;
    st.st_blksize = i64::from(attr.blksize);
    st.st_blocks = attr.blocks as i64;
    st.st_atime = attr.atime.secs;
    st.st_atime_nsec = i64::from(attr.atime.nanos);
    st.st_mtime = attr.mtime.secs;
    st.st_mtime_nsec = i64::from(attr.mtime.nanos);
    st.st_ctime = attr.ctime.secs;
    st.st_ctime_nsec = i64::from(attr.ctime.nanos);
}

/// Fills `stx` as `statx(2)` would for every basic field.
pub(crate) fn fill_statx(stx: &mut libc::statx, attr: &Attr) {
    // SAFETY: an all-zero `statx` is a valid value (plain integers).
    *stx = unsafe { std::mem::zeroed() };
    let ts = |t: btfuse_core::Timestamp| {
        // SAFETY: an all-zero timestamp is valid; the private padding stays zero.
        let mut out: libc::statx_timestamp = unsafe { std::mem::zeroed() };
        out.tv_sec = t.secs;
        out.tv_nsec = t.nanos;
        out
    };
    stx.stx_mask = libc::STATX_BASIC_STATS;
    stx.stx_blksize = attr.blksize;
    stx.stx_nlink = attr.nlink;
    stx.stx_uid = attr.uid;
    stx.stx_gid = attr.gid;
    stx.stx_mode = attr.mode() as u16;
    stx.stx_ino = attr.ino.0;
    stx.stx_size = attr.size;
    stx.stx_blocks = attr.blocks;
    stx.stx_atime = ts(attr.atime);
    stx.stx_ctime = ts(attr.ctime);
    stx.stx_mtime = ts(attr.mtime);
    stx.stx_rdev_major = libc::major(u64::from(attr.rdev));
    stx.stx_rdev_minor = libc::minor(u64::from(attr.rdev));
    stx.stx_dev_major = DEV_MAJOR;
    stx.stx_dev_minor = DEV_MINOR;
}
