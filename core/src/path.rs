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
//! The filesystem usually appears at a mount point of a larger namespace, and the links it
//! holds are written for that namespace. [`Mount`] says where it appears: a walk that leaves
//! the filesystem (an absolute symlink pointing elsewhere, or `..` above the root) then stops
//! with [`Resolved::Outside`] and the [`Escape`] to continue with. With [`Mount::Chroot`] the
//! filesystem is its own root and a walk never leaves.

use alloc::borrow::Cow;
use alloc::vec::Vec;
use core::ops::Range;

use crate::error::{Errno, Result};
use crate::fs::Filesystem;
use crate::types::*;

/// Most symbolic links followed in one resolution (Linux `MAXSYMLINKS`).
pub const MAX_SYMLINKS: u32 = 40;

/// Where the filesystem appears in the namespace its paths and symbolic links are written for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mount<'a> {
    /// Nowhere: the filesystem is its own root, as in a chroot. `..` at the root stays there,
    /// an absolute link starts from the root, and a walk never leaves.
    Chroot,
    /// At this absolute host path (no trailing slash). An absolute link under it stays inside;
    /// any other absolute link, and `..` at the root, leave with an absolute host path.
    At(&'a [u8]),
    /// At a place the walker does not know, as for a server whose clients each see the
    /// filesystem at their own prefix. Every absolute link leaves, with its target (and what is
    /// left to walk) as the path; `..` at the root leaves with `..` and what is left to walk,
    /// relative to where the filesystem appears. Whoever knows that place joins the two.
    Elsewhere,
}

/// Where a walk that left the filesystem goes on.
///
/// Invariant: `path` is 1 to `PATH_MAX - 1` bytes without NUL (a walk whose continuation would
/// be longer fails with `ENAMETOOLONG`: the walk that goes on takes it as one argument), and
/// `links` is at most [`MAX_SYMLINKS`].
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Escape {
    /// The path to continue with: absolute in the host namespace, or (only with
    /// [`Mount::Elsewhere`]) relative to the directory the filesystem appears at, starting
    /// with `..`.
    pub path: Vec<u8>,
    /// Symbolic links followed before leaving, the one that led out included: a walk that goes
    /// on counts from here towards [`MAX_SYMLINKS`].
    pub links: u32,
}

/// Where a walk ended.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Resolved<T> {
    /// Inside the filesystem.
    Inside(T),
    /// Outside it: where the walk must continue.
    Outside(Escape),
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

/// A walk in progress: the directory reached and the links met.
struct Walk<'a, F: ?Sized, O> {
    fs: &'a F,
    cred: &'a Credentials,
    mount: Mount<'a>,
    /// Told each directory before a name is looked up in it.
    observe: O,
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

/// `path` without its last component (`/` for a path with one component).
fn parent_of(path: &[u8]) -> Vec<u8> {
    let cut = path.iter().rposition(|&b| b == b'/').unwrap_or(0);
    let mut out = path[..cut].to_vec();
    if out.is_empty() {
        out.push(b'/');
    }
    out
}

impl<'a, F: Filesystem + ?Sized, O: FnMut(Ino)> Walk<'a, F, O> {
    /// A walk of `path` from `start`, or from the root if `path` is absolute. The start must be
    /// a directory (`ENOTDIR`) the caller may search (`EACCES`), as Linux's `path_init` and
    /// first `may_lookup` want.
    ///
    /// The names leading to a start other than the root are not known, and need not be: a walk
    /// leaves through `..` only at the root, and the root's place is `mount`'s.
    fn new(
        fs: &'a F,
        cred: &'a Credentials,
        mount: Mount<'a>,
        start: Ino,
        path: &[u8],
        mut observe: O,
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
            observe(start);
            Some(fs.find(cred, start, b".")?)
        };
        Ok(Walk {
            fs,
            cred,
            mount,
            observe,
            dir: start,
            dir_attr,
            links: 0,
        })
    }

    /// Leaves with `path` as the continuation, unless it is too long to be one.
    fn leave(&self, path: Vec<u8>) -> Result<Escape> {
        if path.len() >= PATH_MAX {
            return Err(Errno::NameTooLong);
        }
        Ok(Escape {
            path,
            links: self.links,
        })
    }

    /// `..` at the root, with `rest` still to walk: where the walk goes on, if it leaves.
    fn above_root(&self, rest: &[u8]) -> Result<Option<Escape>> {
        let path = match self.mount {
            Mount::Chroot => return Ok(None),
            Mount::At(mount) => join(parent_of(mount), rest),
            Mount::Elsewhere => join(b"..".to_vec(), rest),
        };
        self.leave(path).map(Some)
    }

    fn go_root(&mut self) {
        if self.dir != Ino::ROOT {
            self.enter(Ino::ROOT, None);
        }
    }

    /// Follows the symlink `link` met with `rest` still to walk: returns the path to walk
    /// next from the current directory, or the escape if the link leads outside.
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
            Mount::Chroot => Some(&target[..]),
            Mount::At(mount) => match target.strip_prefix(mount) {
                Some(tail) if tail.is_empty() || tail[0] == b'/' => Some(tail),
                _ => None,
            },
            Mount::Elsewhere => None,
        };
        match inner {
            Some(tail) => {
                self.go_root();
                Ok(Resolved::Inside(join(
                    b"/".to_vec(),
                    &join(tail.to_vec(), rest),
                )))
            }
            None => self.leave(join(target, rest)).map(Resolved::Outside),
        }
    }

    /// Walks `path` up to (not including) its last component; returns the path walked last
    /// (`path` itself unless a symlink replaced it), the last component's range in it, and
    /// whether a slash followed it; or the escape if the walk left the filesystem. Nothing is
    /// allocated unless a symlink is followed or the walk leaves.
    fn walk_to_last<'p>(&mut self, path: Cow<'p, [u8]>) -> Result<Resolved<Last<'p>>> {
        let mut buf = path;
        let mut pos = 0;
        loop {
            if buf.get(pos) == Some(&b'/') {
                while buf.get(pos) == Some(&b'/') {
                    pos += 1;
                }
                self.go_root();
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
                if self.dir == Ino::ROOT
                    && let Some(escape) = self.above_root(&buf[pos..])?
                {
                    return Ok(Resolved::Outside(escape));
                }
                let up = self.find(self.dir, b"..")?;
                self.enter(up.ino, Some(up));
                continue;
            }
            let attr = self.find(self.dir, &buf[name.clone()])?;
            if attr.kind == FileType::Symlink {
                match self.splice(attr.ino, &buf[pos..])? {
                    Resolved::Outside(escape) => return Ok(Resolved::Outside(escape)),
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
            self.enter(attr.ino, Some(attr));
        }
    }

    /// `name` in `dir`, as [`Filesystem::find`] answers, once the observer knows of `dir`.
    fn find(&mut self, dir: Ino, name: &[u8]) -> Result<Attr> {
        (self.observe)(dir);
        self.fs.find(self.cred, dir, name)
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
                let attr = self.find(self.dir, b".")?;
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
    mount: Mount<'_>,
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
    mount: Mount<'_>,
    start: Ino,
    path: &[u8],
    follow: Follow,
) -> Result<Resolved<Attr>> {
    resolve_observed(fs, cred, mount, start, path, follow, |_| {})
}

/// [`resolve_at`], telling `observe` each directory before the walk looks a name up in it
/// (or checks it as the start): the directories whose entries and permissions the answer
/// depends on. With the inode reached, they are all it depends on: a link's target never
/// changes. A directory may be told more than once.
pub fn resolve_observed<F: Filesystem + ?Sized>(
    fs: &F,
    cred: &Credentials,
    mount: Mount<'_>,
    start: Ino,
    path: &[u8],
    follow: Follow,
    observe: impl FnMut(Ino),
) -> Result<Resolved<Attr>> {
    check_path(path)?;
    let mut walk = Walk::new(fs, cred, mount, start, path, observe)?;
    let mut path = Cow::Borrowed(path);
    loop {
        let last = match walk.walk_to_last(path)? {
            Resolved::Outside(escape) => return Ok(Resolved::Outside(escape)),
            Resolved::Inside(last) => last,
        };
        let slash = last.slash;
        let name = last.name();
        if name == b".."
            && walk.dir == Ino::ROOT
            && let Some(escape) = walk.above_root(b"")?
        {
            return Ok(Resolved::Outside(escape));
        }
        let attr = walk.find(walk.dir, name)?;
        if attr.kind == FileType::Symlink && (follow == Follow::Follow || slash) {
            match walk.splice(attr.ino, if slash { b"." } else { b"" })? {
                Resolved::Outside(escape) => return Ok(Resolved::Outside(escape)),
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
    mount: Mount<'_>,
    path: &[u8],
) -> Result<Resolved<Parent>> {
    resolve_parent_at(fs, cred, mount, Ino::ROOT, path)
}

/// [`resolve_parent`] for a relative path taken from the directory `start` (`mkdirat(2)` and
/// the other `*at` calls that create or remove); an absolute path starts at the root.
pub fn resolve_parent_at<F: Filesystem + ?Sized>(
    fs: &F,
    cred: &Credentials,
    mount: Mount<'_>,
    start: Ino,
    path: &[u8],
) -> Result<Resolved<Parent>> {
    check_path(path)?;
    let mut walk = Walk::new(fs, cred, mount, start, path, |_| {})?;
    match walk.walk_to_last(Cow::Borrowed(path))? {
        Resolved::Outside(escape) => Ok(Resolved::Outside(escape)),
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
    use alloc::vec;

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
        resolve(
            fs,
            &Credentials::root(),
            Mount::Chroot,
            path,
            Follow::Follow,
        )
        .map(|r| match r {
            Resolved::Inside(a) => Resolved::Inside(a.ino.0),
            Resolved::Outside(e) => Resolved::Outside(e),
        })
    }

    #[test]
    fn a_walk_tells_each_directory_it_looks_in() {
        let fs = sample();
        let root = Credentials::root();
        let seen = |start: Ino, path: &[u8], follow| {
            let mut dirs = Vec::new();
            let found = resolve_observed(&fs, &root, Mount::Chroot, start, path, follow, |d| {
                dirs.push(d)
            });
            let found = match found {
                Ok(Resolved::Inside(attr)) => Ok(attr.ino),
                Ok(Resolved::Outside(_)) => panic!("left a chroot"),
                Err(e) => Err(e),
            };
            (found, dirs)
        };
        let ino = |path: &[u8]| seen(Ino::ROOT, path, Follow::NoFollow).0.unwrap();
        let (r, a, b, f) = (Ino::ROOT, ino(b"/a"), ino(b"/a/b"), ino(b"/a/b/f"));
        let rel = ino(b"/rel");
        assert_eq!(seen(r, b"/a/b/f", Follow::Follow), (Ok(f), vec![r, a, b]));
        assert_eq!(
            seen(r, b"/rel", Follow::Follow),
            (Ok(f), vec![r, r, a, b]),
            "the link's own directory, then its target's walk"
        );
        assert_eq!(seen(r, b"/rel", Follow::NoFollow), (Ok(rel), vec![r]));
        assert_eq!(
            seen(r, b"/a/up", Follow::Follow),
            (Ok(f), vec![r, a, a, r, a, b]),
            "`..` is looked up in the directory it leaves"
        );
        assert_eq!(
            seen(r, b"/a/none/f", Follow::Follow),
            (Err(Errno::NotFound), vec![r, a]),
            "a failure depends on the directories up to it"
        );
        assert_eq!(
            seen(a, b"b/f", Follow::Follow),
            (Ok(f), vec![a, a, b]),
            "a start other than the root is checked first"
        );
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
        let link = resolve(&fs, &root, Mount::Chroot, b"/abs", Follow::NoFollow).unwrap();
        assert!(matches!(link, Resolved::Inside(a) if a.kind == FileType::Symlink));
        let dir = resolve(&fs, &root, Mount::Chroot, b"/abs/", Follow::NoFollow).unwrap();
        assert!(matches!(dir, Resolved::Inside(a) if a.kind == FileType::Directory));
    }

    #[test]
    fn search_permission_is_checked_per_component() {
        let fs = sample();
        let alice = Credentials::user(1000, 1000);
        let walk = resolve(&fs, &alice, Mount::Chroot, b"/a/b/f", Follow::Follow);
        assert_eq!(walk, Err(Errno::PermissionDenied));
        assert!(resolve(&fs, &alice, Mount::Chroot, b"/a/b", Follow::Follow).is_ok());
    }

    fn escape(path: &[u8], links: u32) -> Resolved<Attr> {
        Resolved::Outside(Escape {
            path: path.to_vec(),
            links,
        })
    }

    #[test]
    fn leaving_the_mount_names_the_host_path() {
        let fs = sample();
        let root = Credentials::root();
        let mount = Mount::At(b"/mnt/bt");
        let out = |p: &[u8]| resolve(&fs, &root, mount, p, Follow::Follow).unwrap();
        assert_eq!(out(b"/host"), escape(b"/etc/passwd", 1));
        assert_eq!(out(b"/a/../../x/y"), escape(b"/mnt/x/y", 0));
        assert_eq!(out(b"/.."), escape(b"/mnt", 0));
        assert_eq!(out(b"/a/b/.."), out(b"/a"));
        let a = out(b"/a");
        assert_eq!(out(b"/mounted"), a);
        // Without a mount the filesystem is its own root.
        let inside = resolve(&fs, &root, Mount::Chroot, b"/mounted", Follow::Follow);
        assert_eq!(inside, Err(Errno::NotFound));
    }

    #[test]
    fn leaving_an_unknown_place_names_the_rest_of_the_walk() {
        let fs = sample();
        let root = Credentials::root();
        let a = fs.find(&root, Ino::ROOT, b"a").unwrap().ino;
        fs.symlink(&root, a, b"out", b"../../x").unwrap();
        fs.symlink(&root, Ino::ROOT, b"via", b"rel/../out").unwrap();
        fs.symlink(&root, Ino::ROOT, b"twice", b"host").unwrap();
        let out = |p: &[u8]| resolve(&fs, &root, Mount::Elsewhere, p, Follow::Follow).unwrap();
        // Every absolute link leaves, even one that a known mount would keep inside.
        assert_eq!(out(b"/host"), escape(b"/etc/passwd", 1));
        assert_eq!(out(b"/twice"), escape(b"/etc/passwd", 2));
        assert_eq!(out(b"/mounted/b"), escape(b"/mnt/bt/a/b", 1));
        assert_eq!(out(b"/host/"), escape(b"/etc/passwd/.", 1));
        // `..` at the root leaves relative to where the filesystem appears.
        assert_eq!(out(b"/.."), escape(b"..", 0));
        assert_eq!(out(b"/../"), escape(b"..", 0));
        assert_eq!(out(b"/a/../../y/./z/"), escape(b"../y/./z/", 0));
        assert_eq!(out(b"/a/out/w"), escape(b"../x/w", 1));
        let at = |p: &[u8]| resolve_at(&fs, &root, Mount::Elsewhere, a, p, Follow::Follow);
        assert_eq!(at(b"../.."), Ok(escape(b"..", 0)));
        assert_eq!(at(b"out"), Ok(escape(b"../x", 1)));
        // A link is left as it is when not followed; the walk to it may still leave.
        let link = resolve(&fs, &root, Mount::Elsewhere, b"/host", Follow::NoFollow).unwrap();
        assert!(matches!(link, Resolved::Inside(l) if l.kind == FileType::Symlink));
        let parent = resolve_parent(&fs, &root, Mount::Elsewhere, b"/host/new").unwrap();
        assert_eq!(
            parent,
            Resolved::Outside(Escape {
                path: b"/etc/passwd/new".to_vec(),
                links: 1
            })
        );
        let parent = resolve_parent(&fs, &root, Mount::Elsewhere, b"/../new").unwrap();
        assert_eq!(
            parent,
            Resolved::Outside(Escape {
                path: b"../new".to_vec(),
                links: 0
            })
        );
        // What stays inside is walked as in a chroot, loops included.
        assert_eq!(out(b"/a/up"), out(b"/rel"));
        let looped = resolve(&fs, &root, Mount::Elsewhere, b"/loop", Follow::Follow);
        assert_eq!(looped, Err(Errno::TooManySymlinks));
        // A continuation too long to be one argument is refused.
        let long = [b'n'; 200].repeat(20);
        let mut target = b"/".to_vec();
        for chunk in long.chunks(200) {
            target.extend_from_slice(chunk);
            target.push(b'/');
        }
        target.pop();
        fs.symlink(&root, Ino::ROOT, b"long", &target).unwrap();
        let mut path = b"/long/".to_vec();
        path.extend_from_slice(&[b'x'; 200]);
        let too_long = resolve(&fs, &root, Mount::Elsewhere, &path, Follow::Follow);
        assert_eq!(too_long, Err(Errno::NameTooLong));
    }

    #[test]
    fn parent_of_last_component() {
        let fs = sample();
        let root = Credentials::root();
        let Resolved::Inside(p) =
            resolve_parent(&fs, &root, Mount::Chroot, b"/abs/../new/").unwrap()
        else {
            panic!("outside")
        };
        assert_eq!(p.name, b"new");
        assert!(p.trailing_slash);
        let a = fs.find(&root, Ino::ROOT, b"a").unwrap();
        assert_eq!(p.dir.ino, a.ino);
        // A symlink to a file in the middle of a path is ENOTDIR.
        let through_file = resolve_parent(&fs, &root, Mount::Chroot, b"/rel/../x");
        assert_eq!(through_file, Err(Errno::NotADirectory));
        let Resolved::Inside(top) = resolve_parent(&fs, &root, Mount::Chroot, b"/").unwrap() else {
            panic!("outside")
        };
        assert_eq!((top.dir.ino, &top.name[..]), (Ino::ROOT, &b"."[..]));
    }

    fn ino_at(fs: &MemFs<MemPool>, start: Ino, path: &[u8]) -> Result<Resolved<u64>> {
        let at = resolve_at(
            fs,
            &Credentials::root(),
            Mount::Chroot,
            start,
            path,
            Follow::Follow,
        );
        at.map(|r| match r {
            Resolved::Inside(a) => Resolved::Inside(a.ino.0),
            Resolved::Outside(e) => Resolved::Outside(e),
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

        let Resolved::Inside(p) =
            resolve_parent_at(&fs, &root, Mount::Chroot, a, b"b/new/").unwrap()
        else {
            panic!("outside")
        };
        assert_eq!(
            (p.dir.ino, &p.name[..], p.trailing_slash),
            (b, &b"new"[..], true)
        );
        let Resolved::Inside(p) = resolve_parent_at(&fs, &root, Mount::Chroot, b, b"x").unwrap()
        else {
            panic!("outside")
        };
        assert_eq!((p.dir.ino, &p.name[..]), (b, &b"x"[..]));
        let Resolved::Inside(p) = resolve_parent_at(&fs, &root, Mount::Chroot, b, b"/y").unwrap()
        else {
            panic!("outside")
        };
        assert_eq!((p.dir.ino, &p.name[..]), (Ino::ROOT, &b"y"[..]));
        let through_file = resolve_parent_at(&fs, &root, Mount::Chroot, Ino(file), b"x");
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
            let walk = resolve_at(&fs, &alice, Mount::Chroot, b, path, Follow::Follow);
            assert_eq!(walk, Err(Errno::PermissionDenied), "{path:?}");
        }
        let parent = resolve_parent_at(&fs, &alice, Mount::Chroot, b, b"new");
        assert_eq!(parent, Err(Errno::PermissionDenied));
        assert!(resolve_at(&fs, &alice, Mount::Chroot, b, b"/a", Follow::Follow).is_ok());
        assert!(resolve_at(&fs, &alice, Mount::Chroot, a, b"b", Follow::Follow).is_ok());
    }

    #[test]
    fn walk_from_a_directory_leaves_the_mount_through_the_root() {
        let fs = sample();
        let root = Credentials::root();
        let a = fs.find(&root, Ino::ROOT, b"a").unwrap().ino;
        let mount = Mount::At(b"/mnt/bt");
        let out = |p: &[u8]| resolve_at(&fs, &root, mount, a, p, Follow::Follow).unwrap();
        assert_eq!(out(b"../../x/y"), escape(b"/mnt/x/y", 0));
        assert_eq!(out(b"b/../../.."), escape(b"/mnt", 0));
        assert_eq!(out(b"../host"), escape(b"/etc/passwd", 1));
        let Resolved::Inside(b) = out(b"b/") else {
            panic!("outside")
        };
        assert_eq!(b.kind, FileType::Directory);
    }
}
