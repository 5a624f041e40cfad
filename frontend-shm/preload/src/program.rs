//! Whether the program an `exec` starts will load this library, which decides how the btfuse
//! descriptors it inherits reach it (see [`process`](crate::calls::process)).
//!
//! It will not when the environment it gets does not name this library in `LD_PRELOAD`, when
//! the loader runs it in secure mode (a set-user-ID or set-group-ID file, file capabilities,
//! or a caller whose real and effective ids differ), or when it has no loader at all (an ELF
//! file without `PT_INTERP`: a static binary). A script is judged by its interpreter. A file
//! that cannot be read counts as one that will not load it: the kernel descriptors it then
//! gets work under this library too, only slower.

use std::ffi::{CStr, CString};

use libc::{c_char, c_int};

use crate::real;

/// How an `exec` names the program it runs.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Program<'a> {
    /// A path, as the kernel is given it.
    Path(&'a CStr),
    /// A name looked up in `PATH` (`execvp`, `posix_spawnp`), or a path if it holds a slash.
    Search(&'a CStr),
    /// An open descriptor (`fexecve`).
    Fd(c_int),
    /// `execveat(dirfd, path, .., flags)`.
    At(c_int, &'a CStr, c_int),
}

/// How many `#!` interpreters are followed (Linux follows 4 levels; so does this).
const MAX_INTERPRETERS: usize = 4;

/// Whether `program`, started with environment `envp`, will load the library at `library`.
///
/// # Safety
/// `envp` is null or a null-terminated array of C strings.
pub(crate) unsafe fn loads_library(
    program: Program<'_>,
    envp: *const *const c_char,
    library: &[u8],
) -> bool {
    // SAFETY: the caller's contract.
    if !unsafe { preload_names(envp, library) } {
        return false;
    }
    // SAFETY: the id getters cannot fail.
    let secure = unsafe { libc::getuid() != libc::geteuid() || libc::getgid() != libc::getegid() };
    if secure {
        return false;
    }
    let mut fd = open_program(program);
    for _ in 0..=MAX_INTERPRETERS {
        let Some(file) = fd.take() else {
            return false;
        };
        match inspect(file) {
            Kind::Dynamic => return true,
            Kind::Foreign => return false,
            Kind::Script(interpreter) => fd = open_at(libc::AT_FDCWD, &interpreter, 0),
        }
    }
    false
}

/// Whether `envp`'s `LD_PRELOAD` names `library`, as the loader splits it.
///
/// # Safety
/// `envp` is null or a null-terminated array of C strings.
unsafe fn preload_names(envp: *const *const c_char, library: &[u8]) -> bool {
    let mut p = envp;
    let mut list: Option<&[u8]> = None;
    // SAFETY: the caller's contract: walk until the terminating null.
    unsafe {
        while !p.is_null() && !(*p).is_null() {
            if let Some(value) = CStr::from_ptr(*p).to_bytes().strip_prefix(b"LD_PRELOAD=") {
                // The loader takes the first definition, as getenv does.
                list.get_or_insert(value);
            }
            p = p.add(1);
        }
    }
    list.is_some_and(|list| {
        list.split(|&b| b == b':' || b == b' ')
            .any(|entry| entry == library)
    })
}

/// A descriptor this module owns, closed when dropped.
struct Owned(c_int);

impl Drop for Owned {
    fn drop(&mut self) {
        // SAFETY: closes a descriptor only this value refers to.
        unsafe { real::close()(self.0) };
    }
}

fn open_at(dirfd: c_int, path: &CStr, flags: c_int) -> Option<Owned> {
    // SAFETY: `path` is a C string; the flags are constants.
    let fd = unsafe {
        real::openat()(
            dirfd,
            path.as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC | flags,
            0,
        )
    };
    (fd >= 0).then_some(Owned(fd))
}

fn open_fd(fd: c_int) -> Option<Owned> {
    let path = CString::new(format!("/proc/self/fd/{fd}")).ok()?;
    open_at(libc::AT_FDCWD, &path, 0)
}

fn open_program(program: Program<'_>) -> Option<Owned> {
    match program {
        Program::Path(path) => open_at(libc::AT_FDCWD, path, 0),
        Program::Fd(fd) => open_fd(fd),
        Program::At(dirfd, path, flags) => {
            if path.is_empty() && flags & libc::AT_EMPTY_PATH != 0 {
                return open_fd(dirfd);
            }
            let nofollow = if flags & libc::AT_SYMLINK_NOFOLLOW != 0 {
                libc::O_NOFOLLOW
            } else {
                0
            };
            open_at(dirfd, path, nofollow)
        }
        Program::Search(name) => {
            if name.to_bytes().contains(&b'/') {
                return open_at(libc::AT_FDCWD, name, 0);
            }
            search_path(name.to_bytes())
        }
    }
}

/// The first executable file named `name` in the directories of `PATH`, as `execvp` searches.
fn search_path(name: &[u8]) -> Option<Owned> {
    // SAFETY: getenv reads the process environment, as the search of glibc does.
    let path = unsafe { libc::getenv(c"PATH".as_ptr()) };
    let path: &[u8] = if path.is_null() {
        b"/bin:/usr/bin"
    } else {
        // SAFETY: getenv returned a C string.
        unsafe { CStr::from_ptr(path) }.to_bytes()
    };
    path.split(|&b| b == b':').find_map(|dir| {
        let mut full = dir.to_vec();
        if !dir.is_empty() {
            full.push(b'/');
        }
        full.extend_from_slice(name);
        let full = CString::new(full).ok()?;
        // SAFETY: a C string.
        if unsafe { real::access()(full.as_ptr(), libc::X_OK) } != 0 {
            return None;
        }
        open_at(libc::AT_FDCWD, &full, 0)
    })
}

/// What a program file is, as far as this library is concerned.
enum Kind {
    /// An ELF program with a loader, which honours `LD_PRELOAD`.
    Dynamic,
    /// A static ELF program, one the loader runs in secure mode, or one this library cannot
    /// read.
    Foreign,
    /// A `#!` script: its interpreter decides.
    Script(CString),
}

fn pread_exact(fd: &Owned, buf: &mut [u8], offset: u64) -> bool {
    let Ok(offset) = libc::off_t::try_from(offset) else {
        return false;
    };
    // SAFETY: reads at most `buf.len()` bytes into `buf`.
    let n = unsafe { real::pread()(fd.0, buf.as_mut_ptr().cast(), buf.len(), offset) };
    usize::try_from(n) == Ok(buf.len())
}

fn inspect(file: Owned) -> Kind {
    // SAFETY: an all-zero `stat` is a valid value of the plain C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat writes into `st`, which lives for the call.
    if unsafe { real::fstat()(file.0, &mut st) } != 0 {
        return Kind::Foreign;
    }
    if st.st_mode & (libc::S_ISUID | libc::S_ISGID) != 0 {
        return Kind::Foreign;
    }
    // SAFETY: with a null buffer and size 0, fgetxattr only reports the value's size.
    let caps = unsafe {
        real::fgetxattr()(
            file.0,
            c"security.capability".as_ptr(),
            std::ptr::null_mut(),
            0,
        )
    };
    if caps >= 0 {
        return Kind::Foreign;
    }
    let mut head = [0u8; 256];
    // SAFETY: reads at most 256 bytes into `head`.
    let n = unsafe { real::pread()(file.0, head.as_mut_ptr().cast(), head.len(), 0) };
    let Some(head) = usize::try_from(n).ok().and_then(|n| head.get(..n)) else {
        return Kind::Foreign;
    };
    if let Some(rest) = head.strip_prefix(b"#!") {
        return interpreter(rest).map_or(Kind::Foreign, Kind::Script);
    }
    match has_interp(&file, head) {
        Some(true) => Kind::Dynamic,
        Some(false) => Kind::Foreign,
        // Not ELF: `execve` fails with ENOEXEC, and `execvp` runs it with /bin/sh.
        None => Kind::Dynamic,
    }
}

/// The interpreter's path in a `#!` line (after the `#!`): its first word.
fn interpreter(line: &[u8]) -> Option<CString> {
    let line = line.split(|&b| b == b'\n').next()?;
    let path = line
        .split(|&b| b == b' ' || b == b'\t')
        .find(|word| !word.is_empty())?;
    CString::new(path).ok()
}

/// Whether an ELF file has a `PT_INTERP` program header; `None` if it is not ELF.
fn has_interp(file: &Owned, head: &[u8]) -> Option<bool> {
    if head.get(..4)? != b"\x7fELF" {
        return None;
    }
    let wide = match head.get(4)? {
        1 => false,
        2 => true,
        _ => return Some(false),
    };
    let little = match head.get(5)? {
        1 => true,
        2 => false,
        _ => return Some(false),
    };
    let int = |at: usize, len: usize| -> Option<u64> {
        let bytes = head.get(at..at + len)?;
        let mut word = [0u8; 8];
        if little {
            word[..len].copy_from_slice(bytes);
            Some(u64::from_le_bytes(word))
        } else {
            word[8 - len..].copy_from_slice(bytes);
            Some(u64::from_be_bytes(word))
        }
    };
    let (phoff, phentsize, phnum) = if wide {
        (int(32, 8)?, int(54, 2)?, int(56, 2)?)
    } else {
        (int(28, 4)?, int(42, 2)?, int(44, 2)?)
    };
    if phentsize < 4 || phnum > 4096 {
        return Some(false);
    }
    for i in 0..phnum {
        let mut word = [0u8; 4];
        let at = phoff.checked_add(i.checked_mul(phentsize)?)?;
        if !pread_exact(file, &mut word, at) {
            return Some(false);
        }
        let kind = if little {
            u32::from_le_bytes(word)
        } else {
            u32::from_be_bytes(word)
        };
        if kind == libc::PT_INTERP {
            return Some(true);
        }
    }
    Some(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind_of(path: &CStr) -> &'static str {
        match open_at(libc::AT_FDCWD, path, 0).map(inspect) {
            None => "unreadable",
            Some(Kind::Dynamic) => "dynamic",
            Some(Kind::Foreign) => "foreign",
            Some(Kind::Script(_)) => "script",
        }
    }

    #[test]
    fn programs_are_told_apart() {
        // The loader itself is a static program; sh is a dynamic one on any glibc system.
        assert_eq!(kind_of(c"/bin/sh"), "dynamic");
        assert_eq!(kind_of(c"/lib64/ld-linux-x86-64.so.2"), "foreign");
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("s");
        std::fs::write(&script, "#! /bin/sh -e\necho\n").unwrap();
        let script = CString::new(script.as_os_str().as_encoded_bytes()).unwrap();
        let file = open_at(libc::AT_FDCWD, &script, 0).unwrap();
        match inspect(file) {
            Kind::Script(interpreter) => assert_eq!(interpreter.as_c_str(), c"/bin/sh"),
            _ => panic!("a script"),
        }
        let setuid = dir.path().join("u");
        std::fs::copy("/bin/sh", &setuid).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&setuid, std::fs::Permissions::from_mode(0o4755)).unwrap();
        let setuid = CString::new(setuid.as_os_str().as_encoded_bytes()).unwrap();
        assert_eq!(kind_of(&setuid), "foreign");
        assert_eq!(kind_of(c"/nonexistent/program"), "unreadable");
    }

    #[test]
    fn the_environment_must_name_the_library() {
        let lib = b"/x/libbtfuse_preload.so";
        let check = |vars: &[&CStr]| {
            let mut ptrs: Vec<*const c_char> = vars.iter().map(|v| v.as_ptr()).collect();
            ptrs.push(std::ptr::null());
            // SAFETY: a null-terminated array of C strings.
            unsafe { preload_names(ptrs.as_ptr(), lib) }
        };
        assert!(check(&[c"A=1", c"LD_PRELOAD=/x/libbtfuse_preload.so"]));
        assert!(check(&[
            c"LD_PRELOAD=/y/a.so:/x/libbtfuse_preload.so /z.so"
        ]));
        assert!(!check(&[c"A=1"]));
        assert!(!check(&[c"LD_PRELOAD=/y/libbtfuse_preload.so"]));
        assert!(!check(&[
            c"LD_PRELOAD=",
            c"LD_PRELOAD=/x/libbtfuse_preload.so"
        ]));
        // SAFETY: a null environment is allowed.
        assert!(!unsafe { preload_names(std::ptr::null(), lib) });
    }

    #[test]
    fn scripts_name_their_interpreter() {
        assert_eq!(interpreter(b"/bin/sh\n").unwrap().as_c_str(), c"/bin/sh");
        assert_eq!(
            interpreter(b" \t/usr/bin/env python3\nx")
                .unwrap()
                .as_c_str(),
            c"/usr/bin/env"
        );
        assert!(interpreter(b"   \n").is_none());
    }
}
