//! Path resolution for frontends that receive paths instead of inodes (the ring).
//!
//! [`resolve`] walks a path component by component through [`Filesystem::find`], so every
//! directory walked is checked for search permission by the same code that serves FUSE
//! lookups. It follows symbolic links (at most [`MAX_SYMLINKS`], then `ELOOP`), handles `.`,
//! `..`, repeated and trailing slashes (a trailing slash requires a directory), and enforces
//! `NAME_MAX` per component and `PATH_MAX` per path.
//!
//! The filesystem usually appears at a mount point of a larger namespace. Give that mount point
//! as `mount` and a walk that leaves the filesystem (an absolute symlink pointing elsewhere, or
//! `..` above the root) stops with [`Resolved::Outside`] and the host path to continue with;
//! without `mount` the filesystem is its own root, as in a chroot.

use alloc::vec::Vec;

use crate::error::{Errno, Result};
use crate::fs::Filesystem;
use crate::types::*;

/// Most symbolic links followed in one resolution (Linux `MAXSYMLINKS`).
pub const MAX_SYMLINKS: u32 = 40;

/// Where a walk ended.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Resolved<T> {
    /// Inside the filesystem.
    Inside(T),
    /// Outside it: the absolute host path the walk must continue with.
    Outside(Vec<u8>),
}

/// The directory a path's last component lives in, and that component.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Parent {
    /// The directory.
    pub dir: Attr,
    /// The last component: a name, `.` or `..` (for `/`, `.`).
    pub name: Vec<u8>,
    /// Whether the path ended with a slash (the target must then be a directory).
    pub trailing_slash: bool,
}

/// How a walk treats a symbolic link in the last component.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Follow {
    /// Resolve it (`stat`, `open`).
    Follow,
    /// Return the link itself (`lstat`, `O_NOFOLLOW`); a trailing slash still follows.
    NoFollow,
}

/// A walk in progress: the directory reached, the names leading to it, and the links met.
struct Walk<'a, F: ?Sized> {
    fs: &'a F,
    cred: &'a Credentials,
    mount: Option<&'a [u8]>,
    /// Names from the filesystem root to `dir`, to name the host path if the walk leaves.
    trail: Vec<Vec<u8>>,
    dir: Attr,
    links: u32,
}

/// Appends `rest` to `head` with one slash between them (none if `rest` is empty).
fn join(mut head: Vec<u8>, rest: &[u8]) -> Vec<u8> {
    if !rest.is_empty() {
        if head.last() != Some(&b'/') {
            head.push(b'/');
        }
        head.extend_from_slice(rest);
    }
    head
}

impl<'a, F: Filesystem + ?Sized> Walk<'a, F> {
    fn new(fs: &'a F, cred: &'a Credentials, mount: Option<&'a [u8]>) -> Result<Self> {
        let dir = fs.find(cred, Ino::ROOT, b".")?;
        Ok(Walk {
            fs,
            cred,
            mount,
            trail: Vec::new(),
            dir,
            links: 0,
        })
    }

    /// The host path of the current directory (or of its parent, with `up`) joined to `rest`.
    fn outside(&self, up: bool, rest: &[u8]) -> Vec<u8> {
        let mut out: Vec<u8> = self.mount.unwrap_or(b"").to_vec();
        for name in &self.trail {
            out.push(b'/');
            out.extend_from_slice(name);
        }
        if up {
            while out.pop().is_some_and(|b| b != b'/') {}
        }
        if out.is_empty() {
            out.push(b'/');
        }
        join(out, rest)
    }

    fn go_root(&mut self) -> Result<()> {
        self.dir = self.fs.find(self.cred, Ino::ROOT, b".")?;
        self.trail.clear();
        Ok(())
    }

    /// Follows the symlink `link` met with `rest` still to walk: returns the path to walk
    /// next from the current directory, or the host path if the link leads outside.
    fn splice(&mut self, link: Ino, rest: &[u8]) -> Result<Resolved<Vec<u8>>> {
        self.links += 1;
        if self.links > MAX_SYMLINKS {
            return Err(Errno::TooManySymlinks);
        }
        let target = self.fs.readlink(self.cred, link)?;
        if target.first() != Some(&b'/') {
            return Ok(Resolved::Inside(join(target, rest)));
        }
        let inner = match self.mount {
            None => Some(&target[..]),
            Some(mount) => match target.strip_prefix(mount) {
                Some(tail) if tail.is_empty() || tail[0] == b'/' => Some(tail),
                _ => None,
            },
        };
        match inner {
            Some(tail) => {
                self.go_root()?;
                Ok(Resolved::Inside(join(
                    b"/".to_vec(),
                    &join(tail.to_vec(), rest),
                )))
            }
            None => Ok(Resolved::Outside(join(target, rest))),
        }
    }

    /// Walks `path` up to (not including) its last component; returns that component and
    /// whether a slash followed it, or the host path if the walk left the filesystem.
    fn walk_to_last(&mut self, path: &[u8]) -> Result<Resolved<(Vec<u8>, bool)>> {
        let mut buf: Vec<u8> = path.to_vec();
        let mut pos = 0;
        loop {
            if buf.get(pos) == Some(&b'/') {
                while buf.get(pos) == Some(&b'/') {
                    pos += 1;
                }
                self.go_root()?;
            }
            let end = buf[pos..]
                .iter()
                .position(|&b| b == b'/')
                .map_or(buf.len(), |i| pos + i);
            let name = buf[pos..end].to_vec();
            let mut next = end;
            while buf.get(next) == Some(&b'/') {
                next += 1;
            }
            if next >= buf.len() {
                let name = if name.is_empty() { b".".to_vec() } else { name };
                return Ok(Resolved::Inside((name, end < buf.len())));
            }
            pos = next;
            if name == b"." {
                continue;
            }
            if name == b".." {
                if self.dir.ino == Ino::ROOT && self.mount.is_some() {
                    return Ok(Resolved::Outside(self.outside(true, &buf[pos..])));
                }
                self.dir = self.fs.find(self.cred, self.dir.ino, b"..")?;
                self.trail.pop();
                continue;
            }
            let attr = self.fs.find(self.cred, self.dir.ino, &name)?;
            if attr.kind == FileType::Symlink {
                match self.splice(attr.ino, &buf[pos..])? {
                    Resolved::Outside(host) => return Ok(Resolved::Outside(host)),
                    Resolved::Inside(next_path) => {
                        buf = next_path;
                        pos = 0;
                        continue;
                    }
                }
            }
            if attr.kind != FileType::Directory {
                return Err(Errno::NotADirectory);
            }
            self.trail.push(name);
            self.dir = attr;
        }
    }
}

fn check_path(path: &[u8]) -> Result<()> {
    if path.is_empty() {
        Err(Errno::NotFound)
    } else if path.len() >= PATH_MAX {
        Err(Errno::NameTooLong)
    } else if path.contains(&0) {
        Err(Errno::InvalidArgument)
    } else {
        Ok(())
    }
}

/// Resolves `path`, taken from the filesystem root, to the inode it names.
///
/// Errors are those of `stat(2)`: `ENOENT` (missing component or empty path), `ENOTDIR` (a
/// component that must be a directory is not), `EACCES` (a directory walked lacks search
/// permission), `ENAMETOOLONG`, `ELOOP`.
pub fn resolve<F: Filesystem + ?Sized>(
    fs: &F,
    cred: &Credentials,
    mount: Option<&[u8]>,
    path: &[u8],
    follow: Follow,
) -> Result<Resolved<Attr>> {
    check_path(path)?;
    let mut walk = Walk::new(fs, cred, mount)?;
    let mut path = path.to_vec();
    loop {
        let (name, slash) = match walk.walk_to_last(&path)? {
            Resolved::Outside(host) => return Ok(Resolved::Outside(host)),
            Resolved::Inside(last) => last,
        };
        if name == b".." && walk.dir.ino == Ino::ROOT && mount.is_some() {
            return Ok(Resolved::Outside(walk.outside(true, b"")));
        }
        let attr = fs.find(cred, walk.dir.ino, &name)?;
        if attr.kind == FileType::Symlink && (follow == Follow::Follow || slash) {
            match walk.splice(attr.ino, if slash { b"." } else { b"" })? {
                Resolved::Outside(host) => return Ok(Resolved::Outside(host)),
                Resolved::Inside(next) => {
                    path = next;
                    continue;
                }
            }
        }
        if slash && attr.kind != FileType::Directory {
            return Err(Errno::NotADirectory);
        }
        return Ok(Resolved::Inside(attr));
    }
}

/// Resolves every component of `path` but the last, for calls that create, remove or rename
/// it. The last component is returned as written (`.` for `/`); it is not looked up.
pub fn resolve_parent<F: Filesystem + ?Sized>(
    fs: &F,
    cred: &Credentials,
    mount: Option<&[u8]>,
    path: &[u8],
) -> Result<Resolved<Parent>> {
    check_path(path)?;
    let mut walk = Walk::new(fs, cred, mount)?;
    match walk.walk_to_last(path)? {
        Resolved::Outside(host) => Ok(Resolved::Outside(host)),
        Resolved::Inside((name, trailing_slash)) => Ok(Resolved::Inside(Parent {
            dir: walk.dir,
            name,
            trailing_slash,
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Config, MemFs, MemPool, ZeroClock};

    fn sample() -> MemFs<MemPool> {
        let fs = MemFs::new(MemPool::new(1 << 20), Config::default(), ZeroClock);
        let root = Credentials::root();
        let a = fs.mkdir(&root, Ino::ROOT, b"a", 0o755).unwrap();
        let b = fs.mkdir(&root, a.ino, b"b", 0o700).unwrap();
        fs.mknod(&root, b.ino, b"f", FileType::RegularFile, 0o644, 0)
            .unwrap();
        fs.symlink(&root, Ino::ROOT, b"rel", b"a/b/f").unwrap();
        fs.symlink(&root, Ino::ROOT, b"abs", b"/a/b").unwrap();
        fs.symlink(&root, Ino::ROOT, b"host", b"/etc/passwd")
            .unwrap();
        fs.symlink(&root, Ino::ROOT, b"mounted", b"/mnt/bt/a")
            .unwrap();
        fs.symlink(&root, Ino::ROOT, b"loop", b"loop").unwrap();
        fs.symlink(&root, a.ino, b"up", b"../a/./b//f").unwrap();
        fs
    }

    fn ino_of(fs: &MemFs<MemPool>, path: &[u8]) -> Result<Resolved<u64>> {
        resolve(fs, &Credentials::root(), None, path, Follow::Follow).map(|r| match r {
            Resolved::Inside(a) => Resolved::Inside(a.ino.0),
            Resolved::Outside(p) => Resolved::Outside(p),
        })
    }

    #[test]
    fn walks_dots_slashes_and_links() {
        let fs = sample();
        let f = ino_of(&fs, b"/a/b/f").unwrap();
        assert_eq!(ino_of(&fs, b"//a/./b/../b///f").unwrap(), f);
        assert_eq!(ino_of(&fs, b"/rel").unwrap(), f);
        assert_eq!(ino_of(&fs, b"/a/up").unwrap(), f);
        assert_eq!(ino_of(&fs, b"/abs/f").unwrap(), f);
        assert_eq!(ino_of(&fs, b"/..").unwrap(), Resolved::Inside(1));
        assert_eq!(ino_of(&fs, b"/a/b/f/"), Err(Errno::NotADirectory));
        assert_eq!(ino_of(&fs, b"/a/b/f/x"), Err(Errno::NotADirectory));
        assert_eq!(ino_of(&fs, b"/a/nope/f"), Err(Errno::NotFound));
        assert_eq!(ino_of(&fs, b""), Err(Errno::NotFound));
        assert_eq!(ino_of(&fs, b"/loop"), Err(Errno::TooManySymlinks));
        let long = [b'x'; 256];
        assert_eq!(
            ino_of(&fs, &[b"/".as_slice(), &long].concat()),
            Err(Errno::NameTooLong)
        );
        assert_eq!(ino_of(&fs, &[b'/'; PATH_MAX]), Err(Errno::NameTooLong));
        // lstat semantics: the link itself, unless a trailing slash asks for a directory.
        let root = Credentials::root();
        let link = resolve(&fs, &root, None, b"/abs", Follow::NoFollow).unwrap();
        assert!(matches!(link, Resolved::Inside(a) if a.kind == FileType::Symlink));
        let dir = resolve(&fs, &root, None, b"/abs/", Follow::NoFollow).unwrap();
        assert!(matches!(dir, Resolved::Inside(a) if a.kind == FileType::Directory));
    }

    #[test]
    fn search_permission_is_checked_per_component() {
        let fs = sample();
        let alice = Credentials::user(1000, 1000);
        let walk = resolve(&fs, &alice, None, b"/a/b/f", Follow::Follow);
        assert_eq!(walk, Err(Errno::PermissionDenied));
        assert!(resolve(&fs, &alice, None, b"/a/b", Follow::Follow).is_ok());
    }

    #[test]
    fn leaving_the_mount_names_the_host_path() {
        let fs = sample();
        let root = Credentials::root();
        let mount = Some(&b"/mnt/bt"[..]);
        let out = |p: &[u8]| resolve(&fs, &root, mount, p, Follow::Follow).unwrap();
        assert_eq!(out(b"/host"), Resolved::Outside(b"/etc/passwd".to_vec()));
        assert_eq!(
            out(b"/a/../../x/y"),
            Resolved::Outside(b"/mnt/x/y".to_vec())
        );
        assert_eq!(out(b"/a/b/.."), out(b"/a"));
        let a = out(b"/a");
        assert_eq!(out(b"/mounted"), a);
        // Without a mount the filesystem is its own root.
        let inside = resolve(&fs, &root, None, b"/mounted", Follow::Follow);
        assert_eq!(inside, Err(Errno::NotFound));
    }

    #[test]
    fn parent_of_last_component() {
        let fs = sample();
        let root = Credentials::root();
        let Resolved::Inside(p) = resolve_parent(&fs, &root, None, b"/abs/../new/").unwrap() else {
            panic!("outside")
        };
        assert_eq!(p.name, b"new");
        assert!(p.trailing_slash);
        let a = fs.find(&root, Ino::ROOT, b"a").unwrap();
        assert_eq!(p.dir.ino, a.ino);
        // A symlink to a file in the middle of a path is ENOTDIR.
        let through_file = resolve_parent(&fs, &root, None, b"/rel/../x");
        assert_eq!(through_file, Err(Errno::NotADirectory));
        let Resolved::Inside(top) = resolve_parent(&fs, &root, None, b"/").unwrap() else {
            panic!("outside")
        };
        assert_eq!((top.dir.ino, &top.name[..]), (Ino::ROOT, &b"."[..]));
    }
}
