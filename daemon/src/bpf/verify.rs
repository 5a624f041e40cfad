//! The checks a program passes before it is loaded, on top of rbpf's own (well-formed
//! instructions, registers, jumps inside the program).
//!
//! - **The budget.** At most [`MAX_INSNS`] instructions and no backward jump: control only
//!   moves forward, so a run executes at most as many instructions as the program has. This is
//!   the instruction budget, enforced before the first run rather than counted during each.
//! - **What the daemon cannot give.** Calls of helpers other than ours, calls of local
//!   functions (not inlined), map and other pseudo loads, and division or remainder by the
//!   constant 0 are refused, each with its instruction number.
//! - **Memory, proved or checked.** A forward pass over the instructions (possible because jumps
//!   only go forward, so every predecessor of an instruction comes before it) follows which
//!   registers and 8-byte stack slots hold the context pointer or the stack pointer, at which
//!   constant offset. A program whose every load and store is so proved inside the context or
//!   its 512-byte stack may run compiled to machine code (rbpf's JIT), which checks nothing at
//!   run time; any other program runs in rbpf's interpreter, which checks each access and
//!   turns a bad one into a fault of that run.
//!
//! Division by a register holding 0 follows the eBPF instruction set (RFC 9669): the quotient
//! is 0 and the remainder the dividend, in the JIT and the interpreter alike; it is no fault.

use rbpf::ebpf;

use super::context::CONTEXT_SIZE;

/// Most instructions in a program: with jumps only forward, most instructions one run executes.
pub const MAX_INSNS: usize = 4096;

/// Helper numbers the daemon serves (`btfuse_time_ns` = 1, ... `btfuse_log` = 4).
pub(crate) const HELPERS: std::ops::RangeInclusive<i32> = 1..=4;

/// Why a program was refused, with the instruction it is about where there is one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal(pub String);

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// How a program that passed may run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Safety {
    /// Every memory access was proved inside the context or the stack.
    Proved,
    /// Some access could not be proved: only the checking interpreter may run it. The
    /// instruction named is the first such access.
    Unproved {
        /// Index of the first access not proved.
        insn: usize,
    },
}

/// What a register or stack slot holds, as far as the pass can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Value {
    /// The context pointer plus a constant.
    Ctx(i64),
    /// The frame pointer (r10, the top of the stack) plus a constant.
    Stack(i64),
    /// Anything else.
    Other,
}

const STACK_SLOTS: usize = ebpf::STACK_SIZE / 8;

#[derive(Clone, Copy, PartialEq, Eq)]
struct State {
    regs: [Value; 11],
    slots: [Value; STACK_SLOTS],
}

impl State {
    fn entry() -> State {
        let mut regs = [Value::Other; 11];
        regs[1] = Value::Ctx(0);
        regs[10] = Value::Stack(0);
        State {
            regs,
            slots: [Value::Other; STACK_SLOTS],
        }
    }

    fn join(&mut self, other: &State) {
        let pairs = self.regs.iter_mut().zip(&other.regs);
        for (mine, theirs) in pairs.chain(self.slots.iter_mut().zip(&other.slots)) {
            if *mine != *theirs {
                *mine = Value::Other;
            }
        }
    }
}

/// Bytes an access of this load/store opcode moves.
fn access_size(opc: u8) -> i64 {
    match opc & 0x18 {
        ebpf::BPF_B => 1,
        ebpf::BPF_H => 2,
        ebpf::BPF_W => 4,
        _ => 8,
    }
}

/// Whether `len` bytes at `base + off` lie inside the context or the stack.
fn proved(base: Value, off: i16, len: i64) -> bool {
    match base {
        Value::Ctx(o) => {
            let start = o.saturating_add(i64::from(off));
            start >= 0 && start.saturating_add(len) <= CONTEXT_SIZE as i64
        }
        Value::Stack(o) => {
            let start = o.saturating_add(i64::from(off));
            start >= -(ebpf::STACK_SIZE as i64) && start.saturating_add(len) <= 0
        }
        Value::Other => false,
    }
}

/// The stack slot an 8-byte aligned access at `base + off` covers, if it is one.
fn slot(base: Value, off: i16, len: i64) -> Option<usize> {
    let Value::Stack(o) = base else { return None };
    let start = o + i64::from(off);
    (len == 8 && start % 8 == 0 && proved(base, off, len))
        .then(|| ((start + ebpf::STACK_SIZE as i64) / 8) as usize)
}

/// Forgets what the stack slots overlapping `len` bytes at `base + off` held.
fn clobber(state: &mut State, base: Value, off: i16, len: i64) {
    match base {
        Value::Stack(o) => {
            let start = o + i64::from(off) + ebpf::STACK_SIZE as i64;
            for byte in [start, start + len - 1] {
                if let Ok(i) = usize::try_from(byte / 8)
                    && let Some(s) = state.slots.get_mut(i)
                {
                    *s = Value::Other;
                }
            }
        }
        // A store through a pointer the pass cannot place may land anywhere on the stack.
        Value::Other => state.slots = [Value::Other; STACK_SLOTS],
        Value::Ctx(_) => {}
    }
}

/// Checks `prog` (raw instructions); how it may run, or why it is refused.
pub fn check(prog: &[u8]) -> Result<Safety, Refusal> {
    if prog.is_empty() || !prog.len().is_multiple_of(ebpf::INSN_SIZE) {
        return Err(Refusal(format!(
            "the code is {} bytes, not a whole number of {}-byte instructions",
            prog.len(),
            ebpf::INSN_SIZE
        )));
    }
    let count = prog.len() / ebpf::INSN_SIZE;
    if count > MAX_INSNS {
        return Err(Refusal(format!(
            "{count} instructions, more than the budget of {MAX_INSNS} per run"
        )));
    }
    let mut incoming: Vec<Option<State>> = vec![None; count + 1];
    incoming[0] = Some(State::entry());
    let mut first_unproved = None;
    let mut i = 0;
    while i < count {
        let insn = ebpf::get_insn(prog, i);
        let Some(mut state) = incoming[i].take() else {
            // Unreachable: nothing flows in (rbpf's checks cover its encoding).
            i += 1;
            continue;
        };
        let mut next = i + 1;
        let mut falls_through = true;
        let class = insn.opc & ebpf::BPF_CLS_MASK;
        let dst = usize::from(insn.dst).min(10);
        let src = usize::from(insn.src).min(10);
        match class {
            ebpf::BPF_LD => {
                if insn.opc != ebpf::LD_DW_IMM {
                    first_unproved.get_or_insert(i);
                } else if insn.src != 0 {
                    return Err(Refusal(format!(
                        "insn #{i} loads a map or another relocated object (pseudo source \
                         {}): maps are not supported, use the btfuse_count helper",
                        insn.src
                    )));
                }
                state.regs[dst] = Value::Other;
                if insn.opc == ebpf::LD_DW_IMM {
                    next = i + 2;
                }
            }
            ebpf::BPF_LDX => {
                let len = access_size(insn.opc);
                let base = state.regs[src];
                if insn.opc & 0xe0 != ebpf::BPF_MEM || !proved(base, insn.off, len) {
                    first_unproved.get_or_insert(i);
                }
                state.regs[dst] =
                    slot(base, insn.off, len).map_or(Value::Other, |s| state.slots[s]);
            }
            ebpf::BPF_ST | ebpf::BPF_STX => {
                let len = access_size(insn.opc);
                let base = state.regs[dst];
                if insn.opc & 0xe0 != ebpf::BPF_MEM || !proved(base, insn.off, len) {
                    first_unproved.get_or_insert(i);
                }
                clobber(&mut state, base, insn.off, len);
                if class == ebpf::BPF_STX
                    && insn.opc & 0xe0 == ebpf::BPF_MEM
                    && let Some(s) = slot(base, insn.off, len)
                {
                    state.slots[s] = state.regs[src];
                }
            }
            ebpf::BPF_ALU | ebpf::BPF_ALU64 => {
                let op = insn.opc & ebpf::BPF_ALU_OP_MASK;
                let by_imm = insn.opc & ebpf::BPF_X == 0;
                if (op == ebpf::BPF_DIV || op == ebpf::BPF_MOD) && by_imm && insn.imm == 0 {
                    return Err(Refusal(format!("insn #{i} divides by the constant 0")));
                }
                state.regs[dst] = match (class, op, by_imm, state.regs[dst]) {
                    (ebpf::BPF_ALU64, ebpf::BPF_MOV, false, _) => state.regs[src],
                    (ebpf::BPF_ALU64, ebpf::BPF_ADD, true, Value::Ctx(o)) => {
                        Value::Ctx(o + i64::from(insn.imm))
                    }
                    (ebpf::BPF_ALU64, ebpf::BPF_ADD, true, Value::Stack(o)) => {
                        Value::Stack(o + i64::from(insn.imm))
                    }
                    (ebpf::BPF_ALU64, ebpf::BPF_SUB, true, Value::Ctx(o)) => {
                        Value::Ctx(o - i64::from(insn.imm))
                    }
                    (ebpf::BPF_ALU64, ebpf::BPF_SUB, true, Value::Stack(o)) => {
                        Value::Stack(o - i64::from(insn.imm))
                    }
                    _ => Value::Other,
                };
            }
            ebpf::BPF_JMP | ebpf::BPF_JMP32 => match insn.opc {
                ebpf::EXIT => falls_through = false,
                ebpf::CALL => {
                    if insn.src != 0 {
                        return Err(Refusal(format!(
                            "insn #{i} calls a local function: mark every function but the \
                             entry `static __always_inline`"
                        )));
                    }
                    if !HELPERS.contains(&insn.imm) {
                        return Err(Refusal(format!(
                            "insn #{i} calls helper {}, which btfuse does not have (it has \
                             {}..={}: see btfuse_bpf.h)",
                            insn.imm,
                            HELPERS.start(),
                            HELPERS.end()
                        )));
                    }
                    for r in &mut state.regs[0..=5] {
                        *r = Value::Other;
                    }
                }
                ebpf::TAIL_CALL => {
                    return Err(Refusal(format!("insn #{i} is a tail call")));
                }
                _ => {
                    if insn.off < 0 {
                        let to = i as i64 + 1 + i64::from(insn.off);
                        return Err(Refusal(format!(
                            "insn #{i} jumps back to #{to}: a loop, which could exceed the \
                             budget of {MAX_INSNS} instructions per run (unroll it)"
                        )));
                    }
                    let target = i + 1 + insn.off as usize;
                    if target >= count {
                        return Err(Refusal(format!(
                            "insn #{i} jumps to #{target}, past the end"
                        )));
                    }
                    merge(&mut incoming[target], &state);
                    falls_through = insn.opc != ebpf::JA;
                }
            },
            _ => {
                return Err(Refusal(format!(
                    "insn #{i} has opcode {:#04x}, which btfuse does not run",
                    insn.opc
                )));
            }
        }
        if falls_through {
            if next >= count {
                return Err(Refusal(format!("insn #{i} runs past the end without exit")));
            }
            merge(&mut incoming[next], &state);
        }
        i = next;
    }
    Ok(match first_unproved {
        None => Safety::Proved,
        Some(insn) => Safety::Unproved { insn },
    })
}

/// Whether `prog` calls a helper. rbpf's x86-64 JIT calls helpers with the stack 8 bytes off
/// the 16-byte alignment the System V ABI requires at a call (its prologue pushes five
/// registers, reserves 512 bytes and enters the code with a `call`), which a helper's vector
/// instructions fault on: such programs run in the interpreter.
pub fn calls_helpers(prog: &[u8]) -> bool {
    (0..prog.len() / ebpf::INSN_SIZE).any(|i| {
        let insn = ebpf::get_insn(prog, i);
        insn.opc == ebpf::CALL && insn.src == 0
    })
}

fn merge(slot: &mut Option<State>, state: &State) {
    match slot {
        Some(existing) => existing.join(state),
        None => *slot = Some(*state),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rbpf::insn_builder::{
        Arch, BpfCode, Cond, Endian, Instruction, IntoBytes, MemSize, Source,
    };

    fn code(build: impl FnOnce(&mut BpfCode)) -> Vec<u8> {
        let mut code = BpfCode::new();
        build(&mut code);
        code.into_bytes().to_vec()
    }

    #[test]
    fn reading_the_context_at_constant_offsets_is_proved() {
        let prog = code(|c| {
            c.load_x(MemSize::Word)
                .set_dst(0)
                .set_src(1)
                .set_off(4)
                .push();
            c.mov(Source::Reg, Arch::X64).set_dst(6).set_src(1).push();
            c.add(Source::Imm, Arch::X64).set_dst(6).set_imm(80).push();
            c.load_x(MemSize::Byte)
                .set_dst(2)
                .set_src(6)
                .set_off(255)
                .push();
            c.exit().push();
        });
        assert_eq!(check(&prog), Ok(Safety::Proved));
    }

    #[test]
    fn a_spilled_context_pointer_is_followed_through_the_stack() {
        let prog = code(|c| {
            c.store_x(MemSize::DoubleWord)
                .set_dst(10)
                .set_src(1)
                .set_off(-8)
                .push();
            c.mov(Source::Imm, Arch::X64).set_dst(1).set_imm(0).push();
            c.load_x(MemSize::DoubleWord)
                .set_dst(3)
                .set_src(10)
                .set_off(-8)
                .push();
            c.load_x(MemSize::Word)
                .set_dst(0)
                .set_src(3)
                .set_off(12)
                .push();
            c.exit().push();
        });
        assert_eq!(check(&prog), Ok(Safety::Proved));
    }

    #[test]
    fn accesses_past_the_context_or_through_other_values_go_to_the_interpreter() {
        let past = code(|c| {
            c.load_x(MemSize::Byte)
                .set_dst(0)
                .set_src(1)
                .set_off(592)
                .push();
            c.exit().push();
        });
        assert_eq!(check(&past), Ok(Safety::Unproved { insn: 0 }));
        let loaded = code(|c| {
            c.load_x(MemSize::DoubleWord)
                .set_dst(2)
                .set_src(1)
                .set_off(32)
                .push();
            c.load_x(MemSize::Byte)
                .set_dst(0)
                .set_src(2)
                .set_off(0)
                .push();
            c.exit().push();
        });
        assert_eq!(check(&loaded), Ok(Safety::Unproved { insn: 1 }));
        let below_stack = code(|c| {
            c.store(MemSize::DoubleWord)
                .set_dst(10)
                .set_off(-520)
                .set_imm(1)
                .push();
            c.mov(Source::Imm, Arch::X64).set_dst(0).set_imm(0).push();
            c.exit().push();
        });
        assert_eq!(check(&below_stack), Ok(Safety::Unproved { insn: 0 }));
        // Two paths that leave different pointers in r2: no longer provable after they join.
        let joined = code(|c| {
            c.mov(Source::Reg, Arch::X64).set_dst(2).set_src(1).push();
            c.jump_conditional(Cond::Equals, Source::Imm)
                .set_dst(3)
                .set_imm(0)
                .set_off(1)
                .push();
            c.mov(Source::Reg, Arch::X64).set_dst(2).set_src(10).push();
            c.load_x(MemSize::Byte)
                .set_dst(0)
                .set_src(2)
                .set_off(0)
                .push();
            c.exit().push();
        });
        assert_eq!(check(&joined), Ok(Safety::Unproved { insn: 3 }));
        let _ = Endian::Little;
    }

    #[test]
    fn loops_unknown_helpers_local_calls_and_constant_division_by_zero_are_refused() {
        let looping = code(|c| {
            c.mov(Source::Imm, Arch::X64).set_dst(0).set_imm(0).push();
            c.add(Source::Imm, Arch::X64).set_dst(0).set_imm(1).push();
            c.jump_conditional(Cond::Greater, Source::Imm)
                .set_dst(0)
                .set_imm(-1)
                .set_off(-2)
                .push();
            c.exit().push();
        });
        let refusal = check(&looping).unwrap_err().0;
        assert!(refusal.contains("insn #2 jumps back to #1"), "{refusal}");
        let helper = code(|c| {
            c.call().set_imm(6).push();
            c.exit().push();
        });
        assert!(check(&helper).unwrap_err().0.contains("helper 6"));
        let local = code(|c| {
            c.call().set_src(1).set_imm(1).push();
            c.exit().push();
        });
        assert!(check(&local).unwrap_err().0.contains("local function"));
        let div = code(|c| {
            c.mov(Source::Imm, Arch::X64).set_dst(0).set_imm(7).push();
            c.div(Source::Imm, Arch::X64).set_dst(0).set_imm(0).push();
            c.exit().push();
        });
        assert_eq!(
            check(&div),
            Err(Refusal("insn #1 divides by the constant 0".into()))
        );
        let long = vec![0u8; (MAX_INSNS + 1) * 8];
        assert!(check(&long).unwrap_err().0.contains("budget"));
        assert!(check(&[0u8; 12]).unwrap_err().0.contains("whole number"));
        let no_exit = code(|c| {
            c.mov(Source::Imm, Arch::X64).set_dst(0).set_imm(0).push();
        });
        assert!(check(&no_exit).unwrap_err().0.contains("without exit"));
    }
}
