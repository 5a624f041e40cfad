//! `fork` and `exec`: the server's descriptions go with the process as the kernel's would.
//!
//! - `fork`: before the real fork, the server keeps a copy of this process's table under a
//!   token (the descriptions are shared, offsets included); the child opens a channel of its
//!   own and attaches to that copy. The table's locks are held across the fork so the child
//!   never inherits one half-taken.
//! - `exec`: the descriptors without close-on-exec survive in the kernel (their placeholders
//!   are ordinary descriptors); their descriptions are kept under a token, which rides in
//!   `BTFUSE_INHERIT` to the new program, whose copy of this library attaches to them when it
//!   loads. Close-on-exec descriptors are closed by the kernel with their placeholders, and
//!   their descriptions are released with the old program's connection.

use std::ffi::CString;

use libc::{c_char, c_int, pid_t};

use crate::real;
use crate::state::{self, Entry, INHERIT_VAR, guarded};

/// Interposed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fork() -> pid_t {
    let token = guarded(|| {
        if state::entries().is_empty() && state::cwd_desc().is_none() {
            return None;
        }
        state::current_client()?.prepare_fork().ok()
    })
    .flatten();
    let client = state::hold_client();
    let table = state::TABLE_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    // SAFETY: fork has no preconditions; the locks held make the child's copies consistent.
    let pid = unsafe { real::fork()() };
    drop(table);
    drop(client);
    if pid == 0 {
        // The parent's channels are the parent's: this process needs its own.
        let _ = guarded(|| {
            state::set_client(None);
            match token {
                Some(token) => {
                    let attached = state::client().and_then(|c| c.attach(token).ok());
                    if attached.is_none() {
                        // Without the server the descriptors are unusable: forget them, so
                        // that calls on them fail as on closed descriptors.
                        state::clear();
                        *state::CWD.lock().unwrap_or_else(|p| p.into_inner()) = None;
                    }
                }
                None => {
                    state::clear();
                    *state::CWD.lock().unwrap_or_else(|p| p.into_inner()) = None;
                }
            }
        });
    }
    pid
}

/// Interposed: `vfork` is served as `fork`. A vfork child shares its parent's memory, so the
/// descriptor table and connection it changes before `exec` would be the parent's too; a
/// fork child, allowed everywhere a vfork child is, changes only its own.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vfork() -> pid_t {
    // SAFETY: as for fork.
    unsafe { fork() }
}

/// The value of `BTFUSE_INHERIT` for an exec now: `TOKEN;FD=DESC[d],...`, or `None` when no
/// btfuse descriptor survives the exec.
fn inherit_value() -> Option<String> {
    let surviving: Vec<(c_int, Entry)> = state::entries()
        .into_iter()
        .filter(|&(fd, _)| {
            // SAFETY: F_GETFD on a placeholder this library holds.
            let flags = unsafe { real::fcntl()(fd, libc::F_GETFD, 0) };
            flags >= 0 && flags & libc::FD_CLOEXEC == 0
        })
        .collect();
    let cwd = state::CWD.lock().unwrap_or_else(|p| p.into_inner()).clone();
    if surviving.is_empty() && cwd.is_none() {
        return None;
    }
    let token = state::client()?.prepare_fork().ok()?;
    let mut value = format!("{token};");
    for (i, (fd, entry)) in surviving.iter().enumerate() {
        if i > 0 {
            value.push(',');
        }
        value.push_str(&format!(
            "{fd}={}{}",
            entry.desc,
            if entry.dir { "d" } else { "" }
        ));
    }
    if let Some((desc, path)) = cwd {
        value.push_str(&format!(";{desc}:"));
        for b in path {
            value.push_str(&format!("{b:02x}"));
        }
    }
    Some(value)
}

/// `envp` with `BTFUSE_INHERIT` set to `value` (and any older value dropped), plus the
/// mount's variables when the mount was discovered rather than named.
///
/// # Safety
/// `envp` is a null-terminated array of C strings.
unsafe fn with_inherit(envp: *const *const c_char, value: &str) -> Vec<CString> {
    let mut out = Vec::new();
    if let Some((prefix, socket)) = state::exec_environment() {
        for (name, value) in [(state::PREFIX_VAR, prefix), (state::SOCKET_VAR, socket)] {
            let mut var = format!("{name}=").into_bytes();
            var.extend_from_slice(&value);
            if let Ok(var) = CString::new(var) {
                out.push(var);
            }
        }
    }
    let prefix = format!("{INHERIT_VAR}=");
    let mut p = envp;
    // SAFETY: the caller's contract: walk until the terminating null.
    unsafe {
        while !p.is_null() && !(*p).is_null() {
            let entry = std::ffi::CStr::from_ptr(*p);
            if !entry.to_bytes().starts_with(prefix.as_bytes()) {
                out.push(entry.to_owned());
            }
            p = p.add(1);
        }
    }
    if let Ok(var) = CString::new(format!("{prefix}{value}")) {
        out.push(var);
    }
    out
}

fn pointers(strings: &[CString]) -> Vec<*const c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

unsafe extern "C" {
    /// The process environment.
    pub(crate) static environ: *const *const c_char;
}

/// Runs `exec` with the environment it should get: `envp` plus the inherited table, if any.
///
/// # Safety
/// `envp` is a null-terminated array of C strings.
pub(crate) unsafe fn exec_with(
    envp: *const *const c_char,
    exec: impl FnOnce(*const *const c_char) -> c_int,
) -> c_int {
    let value = guarded(inherit_value).flatten();
    match value {
        None => exec(envp),
        Some(value) => {
            // SAFETY: the caller's contract.
            let env = unsafe { with_inherit(envp, &value) };
            let ptrs = pointers(&env);
            exec(ptrs.as_ptr())
        }
    }
}

/// Interposed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn execve(
    path: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
) -> c_int {
    // SAFETY: libc's contract, passed on.
    unsafe { exec_with(envp, |env| real::execve()(path, argv, env)) }
}

/// Interposed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn execv(path: *const c_char, argv: *const *const c_char) -> c_int {
    // SAFETY: libc's contract, passed on; `environ` is the process environment.
    unsafe { exec_with(environ, |env| real::execve()(path, argv, env)) }
}

/// Interposed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn execvp(file: *const c_char, argv: *const *const c_char) -> c_int {
    // SAFETY: libc's contract, passed on; `environ` is the process environment.
    unsafe { exec_with(environ, |env| real::execvpe()(file, argv, env)) }
}

/// Interposed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn execvpe(
    file: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
) -> c_int {
    // SAFETY: libc's contract, passed on.
    unsafe { exec_with(envp, |env| real::execvpe()(file, argv, env)) }
}

/// What an `exec` hands over: the token, the descriptors, and the working directory.
type Inherited = (u64, Vec<(c_int, Entry)>, Option<(u32, Vec<u8>)>);

/// Parses `TOKEN;FD=DESC[d],...[;CWDDESC:HEXPATH]`.
fn parse_inherit(value: &str) -> Option<Inherited> {
    let mut parts = value.split(';');
    let token = parts.next()?.parse().ok()?;
    let list = parts.next()?;
    let mut entries = Vec::new();
    for item in list.split(',').filter(|s| !s.is_empty()) {
        let (fd, desc) = item.split_once('=')?;
        let (desc, dir) = match desc.strip_suffix('d') {
            Some(d) => (d, true),
            None => (desc, false),
        };
        entries.push((
            fd.parse().ok()?,
            Entry {
                desc: desc.parse().ok()?,
                dir,
            },
        ));
    }
    let cwd = match parts.next() {
        None => None,
        Some(cwd) => {
            let (desc, hex) = cwd.split_once(':')?;
            if hex.len() % 2 != 0 {
                return None;
            }
            let path = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
                .collect::<Option<Vec<u8>>>()?;
            Some((desc.parse().ok()?, path))
        }
    };
    Some((token, entries, cwd))
}

/// Runs when the library loads: a program started by `exec` from a btfuse program takes over
/// the descriptions its predecessor left it.
extern "C" fn on_load() {
    let _ = guarded(|| {
        let Ok(value) = std::env::var(INHERIT_VAR) else {
            return;
        };
        // SAFETY: removes the variable before anything else of the program runs, so that
        // its own children do not see a token already used.
        unsafe { libc::unsetenv(c"BTFUSE_INHERIT".as_ptr()) };
        let Some((token, entries, cwd)) = parse_inherit(&value) else {
            return;
        };
        let Some(client) = state::client() else {
            return;
        };
        if client.attach(token).is_ok() {
            for (fd, entry) in entries {
                state::insert(fd, entry);
            }
            for fd in 0..=2 {
                crate::stdio::sync_std_stream(fd);
            }
            if let Some((desc, path)) = cwd {
                state::remember_path(desc, path.clone());
                *state::CWD.lock().unwrap_or_else(|p| p.into_inner()) = Some((desc, path));
            }
        }
    });
}

#[used]
#[unsafe(link_section = ".init_array")]
static ON_LOAD: extern "C" fn() = on_load;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_inherited_table_parses_back() {
        let (token, entries, cwd) = parse_inherit("42;1=7,3=9d").unwrap();
        assert_eq!(token, 42);
        let file = Entry {
            desc: 7,
            dir: false,
        };
        let dir = Entry { desc: 9, dir: true };
        assert_eq!(entries, vec![(1, file), (3, dir)]);
        assert_eq!(cwd, None);
        assert!(parse_inherit("x;1=2").is_none());
        assert!(parse_inherit("1;1=x").is_none());
        assert_eq!(
            parse_inherit("5;").map(|(t, e, _)| (t, e.len())),
            Some((5, 0))
        );
        let (_, _, cwd) = parse_inherit("5;;11:2f61").unwrap();
        assert_eq!(cwd, Some((11, b"/a".to_vec())));
        assert!(parse_inherit("5;;11:2f6").is_none());
    }
}
