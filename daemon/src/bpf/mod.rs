//! eBPF programs run before every engine operation of both frontends (`--bpf PROGRAM.o`).
//!
//! A program is compiled from C with `clang -O2 -target bpf` against
//! `examples/bpf/btfuse_bpf.h`. [`Hooks::load`] reads each object file ([`object`]), checks it
//! ([`verify`]) and builds an rbpf virtual machine for it: compiled to machine code on x86-64
//! when every memory access was proved in bounds and it calls no helper
//! ([`verify::calls_helpers`] says why), run by rbpf's checking interpreter otherwise.
//! [`Programmed`] wraps an engine so that every call first builds the operation's
//! [`Context`] and runs the programs in order: the first that returns an errno fails the call
//! with it and nothing stored changes; a run that faults fails the call with `EIO` and is
//! counted. Both daemons put the one [`Hooks`] around their one engine for each frontend, so a
//! client cannot go around it. With no program given, the wrapper is one branch on a field.
//!
//! `SIGHUP` makes the daemon call [`Hooks::reload`]: the files are read and checked again and
//! the new set replaces the old one atomically (`arc-swap`), between two operations; a file
//! that no longer loads leaves the old set in place. Clients and the mount stay.
//!
//! What programs count ([`helpers`]) is exported by `--metrics` ([`Collector`]):
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `btfuse_bpf_counter_total` | counter | `program`, `counter`, `key` |
//! | `btfuse_bpf_refused_total` | counter | `program`: operations it failed with an errno |
//! | `btfuse_bpf_faults_total` | counter | `program`: runs that faulted (answered `EIO`) |
//! | `btfuse_bpf_counter_dropped_total` | counter | bumps past [`MAX_SERIES`] series |

pub mod context;
mod export;
pub mod helpers;
pub mod object;
mod programmed;
pub mod verify;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use btfuse_core::Errno;

pub use context::{CONTEXT_SIZE, Context, Op};
pub use export::Collector;
pub use helpers::{MAX_SERIES, ProgramInfo};
pub use programmed::Programmed;
pub use verify::{MAX_INSNS, Safety};

use crate::sys::SharedVm;

/// A program that could not be loaded: which file, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadError {
    /// The object file.
    pub path: PathBuf,
    /// Why it was refused.
    pub reason: String,
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "bpf program {}: {}", self.path.display(), self.reason)
    }
}

impl std::error::Error for LoadError {}

/// What running the programs on one operation decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every program let the operation go on.
    Allow,
    /// A program failed it with this errno.
    Refuse(Errno),
    /// A program faulted: the operation fails with `EIO`.
    Fault,
}

impl Verdict {
    /// The operation's outcome so far: `Ok` to go on.
    pub fn into_result(self) -> btfuse_core::Result<()> {
        match self {
            Verdict::Allow => Ok(()),
            Verdict::Refuse(errno) => Err(errno),
            Verdict::Fault => Err(Errno::Io),
        }
    }
}

/// One loaded program.
pub struct Program {
    info: Arc<ProgramInfo>,
    slot: usize,
    vm: SharedVm,
    jit: bool,
}

/// Every program's code, kept for the life of the daemon: rbpf's VM borrows it for `'static`.
/// The same code loaded again (a `SIGHUP` that changed nothing) is found here, not kept twice,
/// so only a changed program adds its few kilobytes.
static CODE: Mutex<Vec<&'static [u8]>> = Mutex::new(Vec::new());

fn keep_code(code: Vec<u8>) -> &'static [u8] {
    let mut kept = CODE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(same) = kept.iter().find(|c| **c == code.as_slice()) {
        return same;
    }
    let leaked: &'static [u8] = Box::leak(code.into_boxed_slice());
    kept.push(leaked);
    leaked
}

impl Program {
    /// Loads the program in the object file at `path`.
    pub fn load(path: &Path) -> Result<Program, LoadError> {
        let refuse = |reason: String| LoadError {
            path: path.to_owned(),
            reason,
        };
        let bytes = std::fs::read(path).map_err(|e| refuse(format!("cannot read: {e}")))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        let name = name.strip_suffix(".o").unwrap_or(&name);
        let name = name.strip_suffix(".bpf").unwrap_or(name);
        Program::from_object(name, &bytes).map_err(refuse)
    }

    /// Loads a program named `name` from the bytes of an object file.
    pub fn from_object(name: &str, bytes: &[u8]) -> Result<Program, String> {
        let object = object::parse(bytes)?;
        Program::from_code(name, object.code, &object.counter_names)
    }

    /// Loads a program named `name` from raw instructions.
    pub fn from_code(name: &str, code: Vec<u8>, counters: &[String]) -> Result<Program, String> {
        let safety = verify::check(&code).map_err(|r| format!("refused: {r}"))?;
        let code = keep_code(code);
        let mut vm = rbpf::EbpfVmRaw::new(Some(code))
            .map_err(|e| format!("refused by rbpf's checks: {e}"))?;
        for (number, helper) in helpers::ALL {
            vm.register_helper(number, helper)
                .map_err(|e| format!("cannot register helper {number}: {e}"))?;
        }
        let jit = cfg!(target_arch = "x86_64")
            && safety == Safety::Proved
            && !verify::calls_helpers(code);
        #[cfg(target_arch = "x86_64")]
        if jit {
            vm.jit_compile()
                .map_err(|e| format!("rbpf's JIT refused it: {e}"))?;
        }
        if let Safety::Unproved { insn } = safety {
            log::info!(
                "bpf program {name}: the access at insn #{insn} is not provably inside the \
                 context or the stack: it runs in the interpreter, which checks every access"
            );
        }
        let (slot, info) = helpers::enrol(name, counters);
        Ok(Program {
            info,
            slot,
            vm: SharedVm(vm),
            jit,
        })
    }

    /// Its name (the `program` label).
    pub fn name(&self) -> &str {
        &self.info.name
    }

    /// Whether it runs as machine code (else in the interpreter).
    pub fn is_compiled(&self) -> bool {
        self.jit
    }

    /// Runs it on `ctx`, which it may scribble on.
    pub fn run(&self, ctx: &mut Context) -> Verdict {
        // Read first: the program may overwrite it.
        let op = ctx.op_number();
        helpers::set_running(self.slot);
        let result = crate::sys::run_program(&self.vm, self.jit, ctx.bytes_mut());
        match result {
            Ok(0) => Verdict::Allow,
            Ok(value) => {
                let errno = i32::try_from(value).ok().and_then(Errno::from_code);
                match errno {
                    Some(errno) => {
                        self.info
                            .refused
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        Verdict::Refuse(errno)
                    }
                    None => {
                        self.fault(op, &format!("returned {value}, not an errno btfuse has"));
                        Verdict::Fault
                    }
                }
            }
            Err(e) => {
                self.fault(op, &e.to_string());
                Verdict::Fault
            }
        }
    }

    fn fault(&self, op: u32, what: &str) {
        let n = self
            .info
            .faults
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // The first faults, then every thousandth: a faulting program must not flood the log.
        if n < 10 || n.is_multiple_of(1000) {
            let op = Op::ALL
                .iter()
                .find(|kind| **kind as u32 == op)
                .map_or("?", |kind| kind.label());
            let first = what.lines().next().unwrap_or(what);
            log::warn!(
                "bpf program {}: fault #{} on {op}, answered EIO: {first}",
                self.info.name,
                n + 1
            );
        }
    }
}

/// The programs a daemon runs: the files named on its command line and the set last loaded
/// from them, which [`reload`](Hooks::reload) replaces.
pub struct Hooks {
    paths: Vec<PathBuf>,
    set: ArcSwap<Vec<Program>>,
    books: programmed::Books,
}

impl Hooks {
    /// The hooks for a daemon's `--bpf` files: `None` when there are none, so that its
    /// engines run no program and keep no books.
    pub fn for_command_line(paths: Vec<PathBuf>) -> Result<Option<Arc<Hooks>>, LoadError> {
        if paths.is_empty() {
            return Ok(None);
        }
        Hooks::load(paths).map(Some)
    }

    /// Loads every file of `paths`, in order; the first that cannot be loaded fails the whole.
    pub fn load(paths: Vec<PathBuf>) -> Result<Arc<Hooks>, LoadError> {
        let set = load_all(&paths)?;
        for program in &set {
            log::info!(
                "bpf program {} loaded ({})",
                program.name(),
                if program.is_compiled() {
                    "compiled"
                } else {
                    "interpreted"
                }
            );
        }
        Ok(Arc::new(Hooks {
            paths,
            set: ArcSwap::from_pointee(set),
            books: programmed::Books::default(),
        }))
    }

    /// Hooks built from programs already loaded (tests and benchmarks).
    pub fn from_programs(programs: Vec<Program>) -> Arc<Hooks> {
        Arc::new(Hooks {
            paths: Vec::new(),
            set: ArcSwap::from_pointee(programs),
            books: programmed::Books::default(),
        })
    }

    /// Reads and checks the files again and, if all load, runs the new set from the next
    /// operation on; otherwise keeps the old one. The number of programs now running.
    pub fn reload(&self) -> Result<usize, LoadError> {
        let set = load_all(&self.paths)?;
        let n = set.len();
        self.set.store(Arc::new(set));
        Ok(n)
    }

    /// [`reload`](Hooks::reload) for `SIGHUP`, saying in the log what came of it.
    pub fn reload_logged(&self) {
        match self.reload() {
            Ok(n) => log::info!("SIGHUP: {n} bpf programs reloaded"),
            Err(e) => log::warn!("SIGHUP: {e}; the programs loaded before stay"),
        }
    }

    /// The files it loads.
    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }

    /// Runs the programs on `ctx`, in order, until one refuses or faults. Each sees the
    /// operation as the daemon described it: all but the last run on a copy.
    pub fn check(&self, ctx: &mut Context) -> Verdict {
        let set = self.set.load();
        let Some((last, others)) = set.split_last() else {
            return Verdict::Allow;
        };
        for program in others {
            match program.run(&mut ctx.clone()) {
                Verdict::Allow => {}
                other => return other,
            }
        }
        last.run(ctx)
    }
}

fn load_all(paths: &[PathBuf]) -> Result<Vec<Program>, LoadError> {
    paths.iter().map(|p| Program::load(p)).collect()
}
