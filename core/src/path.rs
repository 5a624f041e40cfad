//! Path resolution for frontends that receive paths instead of inodes (the ring).
//!
//! [`resolve`] walks a path component by component through [`Filesystem::find`], so every
//! directory walked is checked for search permission by the same code that serves FUSE
//! lookups. It follows symbolic links (at most [`MAX_SYMLINKS`], then `ELOOP`), handles `.`,
//! `..`, repeated and trailing slashes (a trailing slash requires a directory), and enforces
//! `NAME_MAX` per component and `PATH_MAX` per path.
//!
//! [`resolve_at`] and [`resolve_parent_at`] are the `*at` forms: a relative path starts at a
//! given directory (the `dirfd` of `openat`), an absolute one still at the filesystem root.
//!
//! The filesystem usually appears at a mount point of a larger namespace. Give that mount point
//! as `mount` and a walk that leaves the filesystem (an absolute symlink pointing elsewhere, or
//! `..` above the root) stops with [`Resolved::Outside`] and the host path to continue with;
//! without `mount` the filesystem is its own root, as in a chroot.

use alloc::borrow::Cow;
use alloc::vec::Vec;
use core::ops::Range;

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

/// Where [`Walk::walk_to_last`] stopped: the path it walked last (the caller's, unless a
/// symlink replaced it), the last component's place in it, and whether a slash followed it.
struct Last<'p> {
    path: Cow<'p, [u8]>,
    name: Range<usize>,
    slash: bool,
}

impl Last<'_> {
    /// The last component; `.` for a path that ends at a directory (`/`).
    fn name(&self) -> &[u8] {
        if self.name.is_empty() {
            b"."
        } else {
            self.path.get(self.name.clone()).unwrap_or(b".")
        }
    }
}

/// A walk in progress: the directory reached, the names leading to it, and the links met.
struct Walk<'a, F: ?Sized> {
    fs: &'a F,
    cred: &'a Credentials,
    mount: Option<&'a [u8]>,
    /// Names from the filesystem root to `dir`, to name the host path if the walk leaves.
    trail: Vec<Vec<u8>>,
    /// The directory reached.
    dir: Ino,
    /// Its attributes, when a step already returned them.
    dir_attr: Option<Attr>,
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
    /// A walk of `path` from `start`, or from the root if `path` is absolute. The start must be
    /// a directory (`ENOTDIR`) the caller may search (`EACCES`), as Linux's `path_init` and
    /// first `may_lookup` want.
    ///
    /// The names leading to a start other than the root are not known, and need not be: they
    /// only serve to name the host path when a walk leaves through the root, and a walk at the
    /// root has none left, however it got there.
    fn new(
        fs: &'a F,
        cred: &'a Credentials,
        mount: Option<&'a [u8]>,
        start: Ino,
        path: &[u8],
    ) -> Result<Self> {
        let start = if path.first() == Some(&b'/') {
            Ino::ROOT
        } else {
            start
        };
        // The root is a directory, and the first step from it checks search permission on it:
        // only another start needs checking up front.
        let dir_attr = if start == Ino::ROOT {
            None
        } else {
            Some(fs.find(cred, start, b".")?)
        };
        Ok(Walk {
            fs,
            cred,
            mount,
            trail: Vec::new(),
            dir: start,
            dir_attr,
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
        if self.dir != Ino::ROOT {
            self.enter(Ino::ROOT, None);
        }
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

    /// Walks `path` up to (not including) its last component; returns the path walked last
    /// (`path` itself unless a symlink replaced it), the last component's range in it, and
    /// whether a slash followed it; or the host path if the walk left the filesystem. Nothing
    /// is allocated unless a symlink is followed or the walk must track names for `mount`.
    fn walk_to_last<'p>(&mut self, path: Cow<'p, [u8]>) -> Result<Resolved<Last<'p>>> {
        let mut buf = path;
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
            let name = pos..end;
            let mut next = end;
            while buf.get(next) == Some(&b'/') {
                next += 1;
            }
            if next >= buf.len() {
                let slash = end < buf.len();
                return Ok(Resolved::Inside(Last {
                    path: buf,
                    name,
                    slash,
                }));
            }
            pos = next;
            if &buf[name.clone()] == b"." {
                continue;
            }
            if &buf[name.clone()] == b".." {
                if self.dir == Ino::ROOT && self.mount.is_some() {
                    return Ok(Resolved::Outside(self.outside(true, &buf[pos..])));
                }
                let up = self.fs.find(self.cred, self.dir, b"..")?;
                self.enter(up.ino, Some(up));
                self.trail.pop();
                continue;
            }
            let attr = self.fs.find(self.cred, self.dir, &buf[name.clone()])?;
            if attr.kind == FileType::Symlink {
                match self.splice(attr.ino, &buf[pos..])? {
                    Resolved::Outside(host) => return Ok(Resolved::Outside(host)),
                    Resolved::Inside(next_path) => {
                        buf = Cow::Owned(next_path);
                        pos = 0;
                        continue;
                    }
                }
            }
            if attr.kind != FileType::Directory {
                return Err(Errno::NotADirectory);
            }
            // The names only serve to spell a host path when a walk leaves `mount`.
            if self.mount.is_some() {
                self.trail.push(buf[name].to_vec());
            }
            self.enter(attr.ino, Some(attr));
        }
    }

    fn enter(&mut self, dir: Ino, attr: Option<Attr>) {
        self.dir = dir;
        self.dir_attr = attr;
    }

    /// The attributes of the directory reached.
    fn dir_attr(&mut self) -> Result<Attr> {
        match self.dir_attr {
            Some(attr) => Ok(attr),
            None => {
                let attr = self.fs.find(self.cred, self.dir, b".")?;
                self.dir_attr = Some(attr);
                Ok(attr)
            }
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
    resolve_at(fs, cred, mount, Ino::ROOT, path, follow)
}

/// Resolves `path` to the inode it names, a relative path from the directory `start` and an
/// absolute one from the filesystem root (`fstatat(2)` with a `dirfd`).
///
/// Errors are [`resolve`]'s, and for a relative path `ENOTDIR` if `start` is not a directory
/// and `EACCES` if the caller may not search it.
pub fn resolve_at<F: Filesystem + ?Sized>(
    fs: &F,
    cred: &Credentials,
    mount: Option<&[u8]>,
    start: Ino,
    path: &[u8],
    follow: Follow,
) -> Result<Resolved<Attr>> {
    check_path(path)?;
    let mut walk = Walk::new(fs, cred, mount, start, path)?;
    let mut path = Cow::Borrowed(path);
    loop {
        let last = match walk.walk_to_last(path)? {
            Resolved::Outside(host) => return Ok(Resolved::Outside(host)),
            Resolved::Inside(last) => last,
        };
        let slash = last.slash;
        let name = last.name();
        if name == b".." && walk.dir == Ino::ROOT && mount.is_some() {
            return Ok(Resolved::Outside(walk.outside(true, b"")));
        }
        let attr = fs.find(cred, walk.dir, name)?;
        if attr.kind == FileType::Symlink && (follow == Follow::Follow || slash) {
            match walk.splice(attr.ino, if slash { b"." } else { b"" })? {
                Resolved::Outside(host) => return Ok(Resolved::Outside(host)),
                Resolved::Inside(next) => {
                    path = Cow::Owned(next);
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
    resolve_parent_at(fs, cred, mount, Ino::ROOT, path)
}

/// [`resolve_parent`] for a relative path taken from the directory `start` (`mkdirat(2)` and
/// the other `*at` calls that create or remove); an absolute path starts at the root.
pub fn resolve_parent_at<F: Filesystem + ?Sized>(
    fs: &F,
    cred: &Credentials,
    mount: Option<&[u8]>,
    start: Ino,
    path: &[u8],
) -> Result<Resolved<Parent>> {
    check_path(path)?;
    let mut walk = Walk::new(fs, cred, mount, start, path)?;
    match walk.walk_to_last(Cow::Borrowed(path))? {
        Resolved::Outside(host) => Ok(Resolved::Outside(host)),
        Resolved::Inside(last) => Ok(Resolved::Inside(Parent {
            dir: walk.dir_attr()?,
            name: last.name().to_vec(),
            trailing_slash: last.slash,
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

    fn ino_at(fs: &MemFs<MemPool>, start: Ino, path: &[u8]) -> Result<Resolved<u64>> {
        let at = resolve_at(fs, &Credentials::root(), None, start, path, Follow::Follow);
        at.map(|r| match r {
            Resolved::Inside(a) => Resolved::Inside(a.ino.0),
            Resolved::Outside(p) => Resolved::Outside(p),
        })
    }

    #[test]
    fn relative_paths_start_at_the_given_directory() {
        let fs = sample();
        let root = Credentials::root();
        let a = fs.find(&root, Ino::ROOT, b"a").unwrap().ino;
        let b = fs.find(&root, a, b"b").unwrap().ino;
        let f = ino_of(&fs, b"/a/b/f").unwrap();
        assert_eq!(ino_at(&fs, a, b"b/f").unwrap(), f);
        assert_eq!(ino_at(&fs, a, b"./b/../b//f").unwrap(), f);
        assert_eq!(ino_at(&fs, a, b"up").unwrap(), f);
        assert_eq!(ino_at(&fs, b, b"../../rel").unwrap(), f);
        assert_eq!(ino_at(&fs, a, b".").unwrap(), Resolved::Inside(a.0));
        assert_eq!(ino_at(&fs, b, b"..").unwrap(), Resolved::Inside(a.0));
        assert_eq!(ino_at(&fs, a, b"f"), Err(Errno::NotFound));
        // An absolute path ignores the start, even one that is not a directory.
        let Resolved::Inside(file) = f else {
            panic!("outside")
        };
        assert_eq!(ino_at(&fs, b, b"/a").unwrap(), Resolved::Inside(a.0));
        assert_eq!(
            ino_at(&fs, Ino(file), b"/a").unwrap(),
            Resolved::Inside(a.0)
        );
        assert_eq!(ino_at(&fs, Ino(file), b"x"), Err(Errno::NotADirectory));
        assert_eq!(ino_at(&fs, Ino(file), b"."), Err(Errno::NotADirectory));
        assert_eq!(ino_at(&fs, Ino(9999), b"x"), Err(Errno::NotFound));
        // The path's own checks come first.
        assert_eq!(ino_at(&fs, Ino(file), b""), Err(Errno::NotFound));

        let Resolved::Inside(p) = resolve_parent_at(&fs, &root, None, a, b"b/new/").unwrap() else {
            panic!("outside")
        };
        assert_eq!(
            (p.dir.ino, &p.name[..], p.trailing_slash),
            (b, &b"new"[..], true)
        );
        let Resolved::Inside(p) = resolve_parent_at(&fs, &root, None, b, b"x").unwrap() else {
            panic!("outside")
        };
        assert_eq!((p.dir.ino, &p.name[..]), (b, &b"x"[..]));
        let Resolved::Inside(p) = resolve_parent_at(&fs, &root, None, b, b"/y").unwrap() else {
            panic!("outside")
        };
        assert_eq!((p.dir.ino, &p.name[..]), (Ino::ROOT, &b"y"[..]));
        let through_file = resolve_parent_at(&fs, &root, None, Ino(file), b"x");
        assert_eq!(through_file, Err(Errno::NotADirectory));
    }

    #[test]
    fn start_directory_needs_search_permission() {
        let fs = sample();
        let root = Credentials::root();
        let alice = Credentials::user(1000, 1000);
        let a = fs.find(&root, Ino::ROOT, b"a").unwrap().ino;
        let b = fs.find(&root, a, b"b").unwrap().ino;
        for path in [&b"f"[..], b".", b".."] {
            let walk = resolve_at(&fs, &alice, None, b, path, Follow::Follow);
            assert_eq!(walk, Err(Errno::PermissionDenied), "{path:?}");
        }
        let parent = resolve_parent_at(&fs, &alice, None, b, b"new");
        assert_eq!(parent, Err(Errno::PermissionDenied));
        assert!(resolve_at(&fs, &alice, None, b, b"/a", Follow::Follow).is_ok());
        assert!(resolve_at(&fs, &alice, None, a, b"b", Follow::Follow).is_ok());
    }

    #[test]
    fn walk_from_a_directory_leaves_the_mount_through_the_root() {
        let fs = sample();
        let root = Credentials::root();
        let a = fs.find(&root, Ino::ROOT, b"a").unwrap().ino;
        let mount = Some(&b"/mnt/bt"[..]);
        let out = |p: &[u8]| resolve_at(&fs, &root, mount, a, p, Follow::Follow).unwrap();
        assert_eq!(out(b"../../x/y"), Resolved::Outside(b"/mnt/x/y".to_vec()));
        assert_eq!(out(b"b/../../.."), Resolved::Outside(b"/mnt".to_vec()));
        assert_eq!(out(b"../host"), Resolved::Outside(b"/etc/passwd".to_vec()));
        let Resolved::Inside(b) = out(b"b/") else {
            panic!("outside")
        };
        assert_eq!(b.kind, FileType::Directory);
    }
}
