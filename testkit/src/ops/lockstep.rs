//! Two filesystems driven in lockstep: every answer compared, and after every step the whole
//! tree, as a walk of everything observable.

use crate::clock::ManualClock;
use btfuse_core::{Credentials, Fh, FileType, Filesystem, Ino, OpenFlags, SeekWhence};
use std::collections::BTreeSet;

use super::apply::{
    AttrView, OpenPair, Outcome, Side, apply, attr_outcome, collect_entries, settle, slot_index,
};
use super::{Bytes, Op};

/// Content of files up to this size is compared whole; beyond it, per data segment.
const WHOLE_FILE_LIMIT: u64 = 1 << 20;
/// How much of one data segment of a large file is compared.
const SEGMENT_READ: u64 = 64 << 10;

/// Where two outcomes carrying bytes first differ, to point at it in a report.
fn byte_difference(a: &Outcome, b: &Outcome) -> String {
    let (Outcome::Count(_, x), Outcome::Count(_, y)) = (a, b) else {
        return String::new();
    };
    match x.0.iter().zip(&y.0).position(|(p, q)| p != q) {
        Some(i) => format!(
            "\n  first differing byte at {i}: a {:#04x}, b {:#04x}",
            x.0[i], y.0[i]
        ),
        None => String::new(),
    }
}

/// Everything observable about a tree, as (what, outcome) facts in a fixed walk order.
fn snapshot(fs: &dyn Filesystem) -> Vec<(String, Outcome)> {
    let root = Credentials::root();
    let mut facts = vec![(
        "statfs".to_string(),
        settle(fs.statfs(&root).map(Outcome::StatFs)),
    )];
    let mut seen = BTreeSet::new();
    visit(fs, Ino::ROOT, "/".to_string(), &mut seen, &mut facts);
    facts
}

fn visit(
    fs: &dyn Filesystem,
    ino: Ino,
    path: String,
    seen: &mut BTreeSet<Ino>,
    facts: &mut Vec<(String, Outcome)>,
) {
    let root = Credentials::root();
    // Attributes first: reading content below may move atime.
    let attr = match fs.getattr(&root, ino) {
        Ok(attr) => attr,
        Err(e) => return facts.push((format!("{path} getattr"), Outcome::Failed(e))),
    };
    facts.push((format!("{path} getattr"), attr_outcome(attr)));
    if !seen.insert(ino) {
        return; // Another name of an inode already walked.
    }
    xattr_facts(fs, ino, &path, facts);
    match attr.kind {
        FileType::Directory => {
            let dir = OpenFlags {
                directory: true,
                ..OpenFlags::READ
            };
            let listing = fs.open(&root, ino, dir).and_then(|fh| {
                let listing = collect_entries(fs, &root, fh, 0, None);
                fs.release(fh)?;
                listing
            });
            facts.push((
                format!("{path} readdir"),
                settle(listing.clone().map(Outcome::Entries)),
            ));
            for entry in listing.unwrap_or_default() {
                if entry.name.0 == b"." || entry.name.0 == b".." {
                    continue;
                }
                let name = String::from_utf8_lossy(&entry.name.0);
                let child = if path == "/" {
                    format!("/{name}")
                } else {
                    format!("{path}/{name}")
                };
                visit(fs, Ino(entry.ino), child, seen, facts);
            }
        }
        FileType::RegularFile => match fs.open(&root, ino, OpenFlags::READ) {
            Ok(fh) => {
                file_facts(fs, fh, attr.size, &path, facts);
                let released = settle(fs.release(fh).map(|()| Outcome::Done));
                facts.push((format!("{path} release"), released));
            }
            Err(e) => facts.push((format!("{path} open"), Outcome::Failed(e))),
        },
        FileType::Symlink => {
            let target = fs.readlink(&root, ino).map(|t| Outcome::Target(Bytes(t)));
            facts.push((format!("{path} readlink"), settle(target)));
        }
        _ => {}
    }
}

fn xattr_facts(fs: &dyn Filesystem, ino: Ino, path: &str, facts: &mut Vec<(String, Outcome)>) {
    let root = Credentials::root();
    let names = fs.listxattr(&root, ino, &mut []).and_then(|len| {
        let mut buf = vec![0; len];
        let n = fs.listxattr(&root, ino, &mut buf)?;
        buf.truncate(n);
        Ok(buf)
    });
    let Ok(names) = names else {
        return facts.push((
            format!("{path} listxattr"),
            settle(names.map(|_| Outcome::Done)),
        ));
    };
    facts.push((
        format!("{path} listxattr"),
        Outcome::Count(names.len(), Bytes(names.clone())),
    ));
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let mut buf = vec![0; 65_536];
        let value = fs.getxattr(&root, ino, name, &mut buf).map(|n| {
            buf.truncate(n);
            Outcome::Count(n, Bytes(buf))
        });
        let name = String::from_utf8_lossy(name);
        facts.push((format!("{path} getxattr {name}"), settle(value)));
    }
}

/// The `SEEK_DATA`/`SEEK_HOLE` map and the content of a regular file open on `fh`.
fn file_facts(
    fs: &dyn Filesystem,
    fh: Fh,
    size: u64,
    path: &str,
    facts: &mut Vec<(String, Outcome)>,
) {
    let root = Credentials::root();
    let mut segments = Vec::new();
    let mut end_error = None;
    let mut pos = 0;
    // The bound only stops a runaway walk over a broken map.
    while pos < size && segments.len() < 4096 {
        let data = match fs.lseek(&root, fh, pos, SeekWhence::Data) {
            Ok(data) => data,
            Err(e) => {
                end_error = Some(e);
                break;
            }
        };
        match fs.lseek(&root, fh, data, SeekWhence::Hole) {
            Ok(hole) => {
                segments.push((data, hole));
                if hole <= pos {
                    break;
                }
                pos = hole;
            }
            Err(e) => {
                segments.push((data, u64::MAX));
                end_error = Some(e);
                break;
            }
        }
    }
    let mut reads = Vec::new();
    if size <= WHOLE_FILE_LIMIT {
        reads.push((0, size));
    } else {
        reads.push((0, SEGMENT_READ));
        for &(data, hole) in &segments {
            reads.push((data, hole.saturating_sub(data).min(SEGMENT_READ)));
        }
    }
    facts.push((
        format!("{path} seek map"),
        Outcome::Segments(segments, end_error),
    ));
    for (offset, len) in reads {
        let mut buf = vec![0; len as usize];
        let result = fs.read(&root, fh, offset, &mut buf).map(|n| {
            buf.truncate(n);
            Outcome::Count(n, Bytes(buf))
        });
        facts.push((format!("{path} read {offset}+{len}"), settle(result)));
    }
}

/// Compares the trees of `a` and `b`; `when` says at which point, for the report.
fn compare_trees(a: &dyn Filesystem, b: &dyn Filesystem, when: &str) -> Result<(), String> {
    let (facts_a, facts_b) = (snapshot(a), snapshot(b));
    for i in 0..facts_a.len().max(facts_b.len()) {
        match (facts_a.get(i), facts_b.get(i)) {
            (Some(x), Some(y)) if x == y => continue,
            (x, y) => {
                let detail = match (x, y) {
                    (Some((_, p)), Some((_, q))) => byte_difference(p, q),
                    _ => String::new(),
                };
                return Err(format!(
                    "{when}: the trees differ\n  a: {x:?}\n  b: {y:?}{detail}"
                ));
            }
        }
    }
    Ok(())
}

/// Applies `ops` to `a` and `b` in lockstep and compares them after every step.
///
/// Before each step the clock advances by 1 ns ([`Op::Sleep`] adds its own jump). Each result
/// must be identical on both sides: attributes field by field (inode numbers included), errors,
/// bytes, directory listings with their cookies, xattr values. After each step the whole tree is
/// walked on both sides as root (statfs, then depth-first by `readdir`: attributes, xattrs,
/// listings, the `SEEK_DATA`/`SEEK_HOLE` map and content of files, symlink targets) and the
/// walks must agree; the walk's reads move atimes, equally on both sides. At the end every
/// handle still open is released, every lookup forgotten, and the trees compared once more.
///
/// # Errors
///
/// A report naming the step, the operation and both sides' results, at the first difference.
pub fn run_pair(
    a: &dyn Filesystem,
    b: &dyn Filesystem,
    clock: &ManualClock,
    ops: &[Op],
) -> Result<(), String> {
    let mut handles: Vec<OpenPair> = Vec::new();
    compare_trees(a, b, "before the first step")?;
    for (step, op) in ops.iter().enumerate() {
        clock.tick();
        if let Op::Sleep { secs } = op {
            clock.advance(i64::from(*secs) * 1_000_000_000);
        }
        let (out_a, fh_a) = apply(a, Side::A, &handles, op);
        let (out_b, fh_b) = apply(b, Side::B, &handles, op);
        let at = format!("step {step} of {}: {op:?}", ops.len());
        if out_a != out_b {
            let detail = byte_difference(&out_a, &out_b);
            return Err(format!("{at}\n  a: {out_a:?}\n  b: {out_b:?}{detail}"));
        }
        match (fh_a, fh_b, &out_a) {
            (Some(fa), Some(fb), Outcome::Created(AttrView(attr))) => {
                handles.push(OpenPair {
                    a: fa,
                    b: fb,
                    ino: attr.ino,
                });
            }
            (Some(fa), Some(fb), Outcome::Opened(ino)) => {
                handles.push(OpenPair {
                    a: fa,
                    b: fb,
                    ino: *ino,
                });
            }
            _ => {}
        }
        if let (Op::Release { handle }, Outcome::Done) = (op, &out_a)
            && let Some(i) = slot_index(&handles, *handle)
        {
            handles.remove(i);
        }
        compare_trees(a, b, &format!("after {at}"))?;
    }
    clock.tick();
    for (i, pair) in handles.iter().enumerate() {
        let (ra, rb) = (a.release(pair.a), b.release(pair.b));
        if ra != rb {
            return Err(format!(
                "releasing handle {i} at the end\n  a: {ra:?}\n  b: {rb:?}"
            ));
        }
    }
    // Inode numbers are never reused and each step creates at most one inode, so every inode
    // ever made is at most the root's 1 plus the number of steps.
    for ino in 2..=ops.len() as u64 + 1 {
        a.forget(Ino(ino), u64::MAX);
        b.forget(Ino(ino), u64::MAX);
    }
    compare_trees(
        a,
        b,
        "after releasing every handle and forgetting every lookup",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Model;
    use crate::ops::ops_strategy;
    use btfuse_core::{Clock, Config};
    use proptest::prelude::*;
    use std::sync::Arc;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

        /// The driver itself is deterministic: two models agree on any sequence.
        #[test]
        fn two_models_agree(ops in ops_strategy(1..80)) {
            let clock = Arc::new(ManualClock::new());
            let config = Config { max_inodes: 12, ..Config::default() };
            let a = Model::new(config.clone(), 4096, 64, clock.clone() as Arc<dyn Clock>);
            let b = Model::new(config, 4096, 64, clock.clone() as Arc<dyn Clock>);
            run_pair(&a, &b, &clock, &ops).map_err(TestCaseError::fail)?;
        }
    }
}
