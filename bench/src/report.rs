//! Results: what a run records (JSON), how it is summarised (medians, spreads, ratios computed
//! round by round), and how it is shown (terminal table, Markdown report, comparison).

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::lab::Target;
use crate::workload::Workload;

/// Everything a run produced; `results.json` holds exactly this.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Results {
    /// How, when and where it ran.
    pub(crate) meta: Meta,
    /// One entry per workload, in run order.
    pub(crate) workloads: Vec<WorkloadResult>,
}

/// The circumstances of a run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Meta {
    /// The command line.
    pub(crate) command: String,
    /// When it started, UTC, ISO 8601.
    pub(crate) date: String,
    /// The commit of the working tree it ran from (`git rev-parse HEAD`), or "unknown".
    pub(crate) commit: String,
    /// Whether that tree had uncommitted changes.
    pub(crate) dirty: bool,
    /// `--quick`.
    pub(crate) quick: bool,
    /// Rounds per workload and target.
    pub(crate) rounds: usize,
    /// The targets, in report order.
    pub(crate) targets: Vec<Target>,
    /// The `btfuse-fuse` options (besides `--metrics` and the mount point).
    pub(crate) daemon_args: Vec<String>,
    /// The machine.
    pub(crate) machine: Machine,
    /// CPU hogs of the loaded measurements (`--load`); 0 when only idle figures were taken.
    #[serde(default)]
    pub(crate) load: usize,
}

/// The machine a run measured.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Machine {
    /// CPU model, from /proc/cpuinfo.
    pub(crate) cpu: String,
    /// CPUs this process may run on.
    pub(crate) cpus: usize,
    /// Memory, from /proc/meminfo.
    pub(crate) memory_bytes: u64,
    /// `uname -sr`.
    pub(crate) kernel: String,
}

/// One workload's measurements on every target.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct WorkloadResult {
    /// Which workload.
    pub(crate) workload: Workload,
    /// What one run does.
    pub(crate) description: String,
    /// Its size parameter.
    pub(crate) size: u64,
    /// Operations per timed run.
    pub(crate) ops: u64,
    /// Per target, in report order.
    pub(crate) targets: Vec<TargetResult>,
    /// The machine's floor for a shared-memory round trip (one cache line bounced between
    /// two threads, ns) measured at the start of each round: on a virtual machine it moves
    /// with where the host places the virtual CPUs, and every ring figure moves with it.
    #[serde(default)]
    pub(crate) floor_ns: Vec<f64>,
    /// The same measurements with CPU hogs running (`--load`), taken in the same rounds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) loaded: Option<Loaded>,
}

/// One workload's measurements while CPU hogs kept the cores busy.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Loaded {
    /// Per target, in report order, as for the idle figures.
    pub(crate) targets: Vec<TargetResult>,
    /// Per round, the share of the time the hogs were on a CPU (1.0: each hog had a core
    /// to itself the whole time): evidence that the machine really was busy.
    pub(crate) hog_share: Vec<f64>,
}

/// One workload on one target.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct TargetResult {
    /// Which target.
    pub(crate) target: Target,
    /// Nanoseconds per operation, one value per round, in round order.
    pub(crate) ns_per_op: Vec<f64>,
    /// Their median, minimum and maximum.
    pub(crate) time: Spread,
    /// This target's time over tmpfs's, round by round; absent without tmpfs.
    pub(crate) ratio_to_tmpfs: Option<Spread>,
    /// The FUSE mount's time over this target's, round by round; absent without the mount.
    pub(crate) speedup_over_fuse: Option<Spread>,
}

/// Median and range of a few values.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Spread {
    /// The median (the mean of the middle two for an even count).
    pub(crate) median: f64,
    /// The smallest value.
    pub(crate) min: f64,
    /// The largest value.
    pub(crate) max: f64,
}

impl Spread {
    /// The spread of `values`; `None` when there are none.
    pub(crate) fn of(values: &[f64]) -> Option<Spread> {
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = match n {
            0 => return None,
            _ if n % 2 == 1 => sorted[n / 2],
            _ => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
        };
        Some(Spread {
            median,
            min: sorted[0],
            max: sorted[n - 1],
        })
    }
}

/// Summarises the per-round times of each target (`rounds[t][r]`, same order as `targets`):
/// ratios are taken within each round, then summarised.
pub(crate) fn summarise(targets: &[Target], rounds: &[Vec<f64>]) -> Vec<TargetResult> {
    let find = |which: Target| targets.iter().position(|&t| t == which).map(|i| &rounds[i]);
    let pairwise = |num: &[f64], den: &[f64]| {
        let ratios: Vec<f64> = num.iter().zip(den).map(|(n, d)| n / d).collect();
        Spread::of(&ratios)
    };
    let tmpfs = find(Target::Tmpfs);
    let fuse = find(Target::Fuse);
    targets
        .iter()
        .zip(rounds)
        .map(|(&target, times)| TargetResult {
            target,
            ns_per_op: times.clone(),
            time: Spread::of(times).unwrap_or(Spread {
                median: f64::NAN,
                min: f64::NAN,
                max: f64::NAN,
            }),
            ratio_to_tmpfs: tmpfs.and_then(|base| pairwise(times, base)),
            speedup_over_fuse: fuse.and_then(|base| pairwise(base, times)),
        })
        .collect()
}

impl WorkloadResult {
    /// Summarises the per-round times of each target (`rounds[t][r]`, same order as
    /// `targets`): ratios are taken within each round, then summarised.
    pub(crate) fn new(
        workload: Workload,
        size: u64,
        ops: u64,
        targets: &[Target],
        rounds: &[Vec<f64>],
        floor_ns: Vec<f64>,
    ) -> WorkloadResult {
        WorkloadResult {
            workload,
            description: workload.describe(size),
            size,
            ops,
            targets: summarise(targets, rounds),
            floor_ns,
            loaded: None,
        }
    }

    /// The loaded result of `target`, if there is one.
    pub(crate) fn loaded(&self, target: Target) -> Option<&TargetResult> {
        self.loaded
            .as_ref()
            .and_then(|l| l.targets.iter().find(|t| t.target == target))
    }

    /// The result of `target`, if it ran.
    pub(crate) fn target(&self, target: Target) -> Option<&TargetResult> {
        self.targets.iter().find(|t| t.target == target)
    }
}

/// Nanoseconds, readably: `850 ns`, `2.07 µs`, `36.2 µs`, `418 µs`, `1.20 ms`.
pub(crate) fn duration(ns: f64) -> String {
    let (value, unit) = if ns < 1e3 {
        (ns, "ns")
    } else if ns < 1e6 {
        (ns / 1e3, "µs")
    } else if ns < 1e9 {
        (ns / 1e6, "ms")
    } else {
        (ns / 1e9, "s")
    };
    if unit == "ns" || value >= 100.0 {
        format!("{value:.0} {unit}")
    } else if value >= 10.0 {
        format!("{value:.1} {unit}")
    } else {
        format!("{value:.2} {unit}")
    }
}

/// A ratio: `1.98×`, `18.4×`, `0.52×`.
pub(crate) fn ratio(r: f64) -> String {
    if r >= 10.0 {
        format!("{r:.1}×")
    } else {
        format!("{r:.2}×")
    }
}

/// Rows of cells, printed with aligned columns (first left-aligned, the rest right-aligned).
fn align(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|row| row.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        for (c, cell) in row.iter().enumerate() {
            let pad = widths[c] - cell.chars().count();
            if c == 0 {
                out.push_str(cell);
                out.push_str(&" ".repeat(pad));
            } else {
                out.push_str("  ");
                out.push_str(&" ".repeat(pad));
                out.push_str(cell);
            }
        }
        out.push('\n');
    }
    out
}

impl Results {
    /// The terminal table: time per operation, and the ratio to tmpfs after each; with
    /// `--load`, a second table of the loaded figures.
    pub(crate) fn table(&self) -> String {
        let mut out = self.time_rows(WorkloadResult::target, true);
        let _ = writeln!(
            out,
            "time per operation, median of {} rounds; (×) = time relative to tmpfs, \
             round by round (below 1 is faster than tmpfs); floor = one cache line bounced \
             between two threads at the start of each round, the least a ring round trip can \
             take at the time",
            self.meta.rounds
        );
        if self.meta.load > 0 {
            let _ = writeln!(out, "\nwith {} CPU hogs:", self.meta.load);
            out.push_str(&self.time_rows(WorkloadResult::loaded, false));
        }
        out
    }

    /// Aligned rows of time per operation (ratio to tmpfs) of the results `pick` gives.
    fn time_rows(
        &self,
        pick: impl Fn(&WorkloadResult, Target) -> Option<&TargetResult>,
        floor: bool,
    ) -> String {
        let mut rows = vec![
            std::iter::once("workload".to_owned())
                .chain(self.meta.targets.iter().map(|t| t.label().to_owned()))
                .chain(floor.then(|| "floor".to_owned()))
                .collect::<Vec<_>>(),
        ];
        for w in &self.workloads {
            let mut row = vec![w.workload.name().to_owned()];
            for &target in &self.meta.targets {
                row.push(match pick(w, target) {
                    Some(r) => match r.ratio_to_tmpfs.filter(|_| target != Target::Tmpfs) {
                        Some(q) => format!("{} ({})", duration(r.time.median), ratio(q.median)),
                        None => duration(r.time.median),
                    },
                    None => "-".to_owned(),
                });
            }
            if floor {
                row.push(Spread::of(&w.floor_ns).map_or("-".to_owned(), |f| duration(f.median)));
            }
            rows.push(row);
        }
        align(&rows)
    }

    /// The Markdown report, which names the charts beside it.
    pub(crate) fn markdown(&self) -> String {
        let m = &self.meta;
        let mut out = String::new();
        let _ = writeln!(out, "# btfuse-bench results\n");
        let _ = writeln!(out, "- Command: `{}`", m.command);
        let _ = writeln!(
            out,
            "- Commit: `{}`{}",
            m.commit,
            if m.dirty {
                " (with uncommitted changes)"
            } else {
                ""
            }
        );
        let _ = writeln!(out, "- Date: {}", m.date);
        let _ = writeln!(
            out,
            "- Machine: {}, {} CPUs, {:.1} GiB; {}",
            m.machine.cpu,
            m.machine.cpus,
            m.machine.memory_bytes as f64 / f64::from(1u32 << 30),
            m.machine.kernel
        );
        let _ = writeln!(
            out,
            "- Method: {} rounds{}; in each round every target runs once (the order rotates \
             from round to round), each run in a fresh process after an untimed set-up and \
             a warm-up. Ratios are taken within a round, then the median over rounds.",
            m.rounds,
            if m.quick { " of the quick sizes" } else { "" }
        );
        let args = if m.daemon_args.is_empty() {
            "its defaults".to_owned()
        } else {
            format!("`{}`", m.daemon_args.join(" "))
        };
        let _ = writeln!(out, "- btfuse-fuse ran with {args}.\n");

        let _ = writeln!(
            out,
            "## Time per operation\n\nMedian (min–max) over the rounds. The last column is the \
             machine's floor for a shared-memory round trip at the start of each round (one \
             cache line bounced between two threads): on a virtual machine it moves with where \
             the host places the virtual CPUs, and the ring's figures move with it.\n"
        );
        header_row(&mut out, &m.targets, Some("round-trip floor"));
        for w in &self.workloads {
            let _ = write!(out, "| {} |", w.workload.name());
            for &t in &m.targets {
                match w.target(t) {
                    Some(r) => {
                        let s = r.time;
                        let _ = write!(
                            out,
                            " {} ({}–{}) |",
                            duration(s.median),
                            duration(s.min),
                            duration(s.max)
                        );
                    }
                    None => out.push_str(" – |"),
                }
            }
            match Spread::of(&w.floor_ns) {
                Some(f) => {
                    let _ = write!(
                        out,
                        " {} ({}–{}) |",
                        duration(f.median),
                        duration(f.min),
                        duration(f.max)
                    );
                }
                None => out.push_str(" – |"),
            }
            out.push('\n');
        }
        let others: Vec<Target> = m
            .targets
            .iter()
            .copied()
            .filter(|&t| t != Target::Tmpfs)
            .collect();
        if m.targets.contains(&Target::Tmpfs) && !others.is_empty() {
            let _ = writeln!(
                out,
                "\n## Relative to tmpfs\n\nTime on the target over time on tmpfs (below 1× is \
                 faster than tmpfs), median (min–max) of the per-round ratios.\n"
            );
            header_row(&mut out, &others, None);
            self.ratio_rows(&mut out, &others, |w, t| {
                w.target(t).and_then(|r| r.ratio_to_tmpfs)
            });
        }
        let faster: Vec<Target> = m
            .targets
            .iter()
            .copied()
            .filter(|&t| t != Target::Fuse)
            .collect();
        if m.targets.contains(&Target::Fuse) && !faster.is_empty() {
            let _ = writeln!(
                out,
                "\n## Speedup over the FUSE mount\n\nTime on the FUSE mount over time on the \
                 target, median (min–max) of the per-round ratios.\n"
            );
            header_row(&mut out, &faster, None);
            self.ratio_rows(&mut out, &faster, |w, t| {
                w.target(t).and_then(|r| r.speedup_over_fuse)
            });
        }
        if m.load > 0 {
            self.loaded_sections(&mut out, &others, &faster);
        }
        let _ = writeln!(
            out,
            "\n## Charts\n\n![time per operation](time.svg)\n\n![speedup over the FUSE \
             mount](speedup.svg)\n\n## Workloads\n"
        );
        for w in &self.workloads {
            let _ = writeln!(out, "- `{}`: {}.", w.workload.name(), w.description);
        }
        out
    }

    /// The loaded figures: beside the idle ones, then relative to tmpfs and to the FUSE mount
    /// under load.
    fn loaded_sections(&self, out: &mut String, others: &[Target], faster: &[Target]) {
        let m = &self.meta;
        let _ = writeln!(
            out,
            "\n## Idle and with {} CPU hogs, side by side\n\nTime per operation, median over \
             the rounds; in each round the loaded measurement follows the idle one, with {} \
             threads at normal priority computing without pause, each bound to a CPU of its own \
             (round robin over the CPUs). The last column is the share \
             of the time the hogs were on a CPU (median over rounds).\n",
            m.load, m.load
        );
        let _ = write!(out, "| workload |");
        for t in &m.targets {
            let _ = write!(out, " {} idle | {} loaded |", t.label(), t.label());
        }
        let _ = writeln!(
            out,
            " hogs on a CPU |\n|---|{}---:|",
            "---:|".repeat(2 * m.targets.len())
        );
        for w in &self.workloads {
            let _ = write!(out, "| {} |", w.workload.name());
            for &t in &m.targets {
                for r in [w.target(t), w.loaded(t)] {
                    match r {
                        Some(r) => {
                            let _ = write!(out, " {} |", duration(r.time.median));
                        }
                        None => out.push_str(" – |"),
                    }
                }
            }
            match w.loaded.as_ref().and_then(|l| Spread::of(&l.hog_share)) {
                Some(s) => {
                    let _ = writeln!(out, " {:.0}% |", s.median * 100.0);
                }
                None => out.push_str(" – |\n"),
            }
        }
        if m.targets.contains(&Target::Tmpfs) && !others.is_empty() {
            let _ = writeln!(
                out,
                "\n## With {} CPU hogs: relative to tmpfs\n\nLoaded time on the target over \
                 loaded time on tmpfs, median (min–max) of the per-round ratios.\n",
                m.load
            );
            header_row(out, others, None);
            self.ratio_rows(out, others, |w, t| {
                w.loaded(t).and_then(|r| r.ratio_to_tmpfs)
            });
        }
        if m.targets.contains(&Target::Fuse) && !faster.is_empty() {
            let _ = writeln!(
                out,
                "\n## With {} CPU hogs: speedup over the FUSE mount\n\nLoaded time on the \
                 FUSE mount over loaded time on the target, median (min–max) of the per-round \
                 ratios (below 1× the target is slower than the plain mount).\n",
                m.load
            );
            header_row(out, faster, None);
            self.ratio_rows(out, faster, |w, t| {
                w.loaded(t).and_then(|r| r.speedup_over_fuse)
            });
        }
    }

    fn ratio_rows(
        &self,
        out: &mut String,
        targets: &[Target],
        pick: impl Fn(&WorkloadResult, Target) -> Option<Spread>,
    ) {
        for w in &self.workloads {
            let _ = write!(out, "| {} |", w.workload.name());
            for &t in targets {
                match pick(w, t) {
                    Some(s) => {
                        let _ = write!(
                            out,
                            " {} ({}–{}) |",
                            ratio(s.median),
                            ratio(s.min),
                            ratio(s.max)
                        );
                    }
                    None => out.push_str(" – |"),
                }
            }
            out.push('\n');
        }
    }
}

/// A Markdown table's header: the workload, one column per target, and `extra`.
fn header_row(out: &mut String, targets: &[Target], extra: Option<&str>) {
    let _ = write!(out, "| workload |");
    let labels = targets.iter().map(|t| t.label()).chain(extra);
    let columns = labels.clone().count();
    for label in labels {
        let _ = write!(out, " {label} |");
    }
    let _ = writeln!(out, "\n|---|{}", "---:|".repeat(columns));
}

/// What changed from run `a` to run `b`: per workload and target present in both, the
/// medians, the change, and whether the two runs' ranges overlap (if they do, the change is
/// within the noise the runs themselves show).
pub(crate) fn compare(a: &Results, b: &Results) -> String {
    let mut rows = vec![
        ["workload", "target", "A", "B", "change", "ranges"]
            .map(str::to_owned)
            .to_vec(),
    ];
    for wa in &a.workloads {
        let Some(wb) = b.workloads.iter().find(|w| w.workload == wa.workload) else {
            continue;
        };
        let sizes_differ = wa.size != wb.size;
        for ra in &wa.targets {
            let Some(rb) = wb.target(ra.target) else {
                continue;
            };
            let (ta, tb) = (ra.time, rb.time);
            let change = (tb.median / ta.median - 1.0) * 100.0;
            let overlap = ta.min <= tb.max && tb.min <= ta.max;
            let verdict = if sizes_differ {
                "sizes differ"
            } else if overlap {
                "overlap"
            } else if tb.median < ta.median {
                "faster"
            } else {
                "slower"
            };
            rows.push(vec![
                wa.workload.name().to_owned(),
                ra.target.name().to_owned(),
                duration(ta.median),
                duration(tb.median),
                format!("{change:+.1}%"),
                verdict.to_owned(),
            ]);
        }
    }
    let mut out = format!(
        "A: {} ({}{}), B: {} ({}{})\n",
        a.meta.date,
        a.meta.commit,
        if a.meta.dirty { "+" } else { "" },
        b.meta.date,
        b.meta.commit,
        if b.meta.dirty { "+" } else { "" },
    );
    out.push_str(&align(&rows));
    out.push_str(
        "time per operation, medians; \"faster\"/\"slower\" only where the two runs' \
         min–max ranges do not overlap\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(times: [[f64; 3]; 4]) -> Results {
        let targets = Target::ALL.to_vec();
        let rounds: Vec<Vec<f64>> = times.iter().map(|t| t.to_vec()).collect();
        Results {
            meta: Meta {
                command: "btfuse-bench run".into(),
                date: "2026-11-26T00:00:00Z".into(),
                commit: "abc".into(),
                dirty: false,
                quick: true,
                rounds: 3,
                targets: targets.clone(),
                daemon_args: Vec::new(),
                machine: Machine {
                    cpu: "cpu".into(),
                    cpus: 2,
                    memory_bytes: 1 << 30,
                    kernel: "Linux 6".into(),
                },
                load: 0,
            },
            workloads: vec![WorkloadResult::new(
                Workload::Cat,
                10,
                10,
                &targets,
                &rounds,
                vec![100.0, 300.0, 200.0],
            )],
        }
    }

    #[test]
    fn medians_and_ranges() {
        assert_eq!(Spread::of(&[]), None);
        let s = Spread::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        assert_eq!(Spread::of(&[4.0, 1.0, 2.0, 3.0]).unwrap().median, 2.5);
    }

    #[test]
    fn ratios_are_taken_round_by_round() {
        // tmpfs is slow in round 2, and so is the FUSE mount: the per-round ratios stay 10×,
        // where a ratio of the medians would not.
        let r = sample([
            [1.0, 5.0, 1.0],
            [10.0, 50.0, 10.0],
            [0.5, 2.0, 0.5],
            [0.25, 1.0, 0.25],
        ]);
        let w = &r.workloads[0];
        let fuse = w.target(Target::Fuse).unwrap();
        assert_eq!(fuse.ratio_to_tmpfs.unwrap().median, 10.0);
        assert_eq!(fuse.ratio_to_tmpfs.unwrap().min, 10.0);
        let fast = w.target(Target::Fast).unwrap();
        assert_eq!(fast.ratio_to_tmpfs.unwrap().median, 0.5);
        assert_eq!(fast.speedup_over_fuse.unwrap().median, 20.0);
        let client = w.target(Target::Client).unwrap();
        assert_eq!(client.speedup_over_fuse.unwrap().max, 50.0);
        assert_eq!(
            w.target(Target::Tmpfs)
                .unwrap()
                .ratio_to_tmpfs
                .unwrap()
                .median,
            1.0
        );
    }

    #[test]
    fn reports_name_every_target_and_survive_json() {
        let r = sample([[2070.0; 3], [36_100.0; 3], [1000.0; 3], [800.0; 3]]);
        let table = r.table();
        assert!(table.contains("36.1 µs (17.4×)"), "{table}");
        assert!(table.contains("1.00 µs (0.48×)"), "{table}");
        assert!(table.lines().nth(1).unwrap().ends_with("200 ns"), "{table}");
        let md = r.markdown();
        for needle in [
            "| cat | 2.07 µs (2.07 µs–2.07 µs) |",
            "| 200 ns (100 ns–300 ns) |\n",
            "| workload | tmpfs | FUSE mount | mount + preload | Rust client | round-trip floor |\n\
             |---|---:|---:|---:|---:|---:|\n",
            "| workload | FUSE mount | mount + preload | Rust client |\n|---|---:|---:|---:|\n",
            "36.1×",
            "time.svg",
            "speedup.svg",
        ] {
            assert!(md.contains(needle), "{needle} missing from:\n{md}");
        }
        let back: Results = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back.workloads[0].targets[1].ns_per_op, vec![36_100.0; 3]);
    }

    #[test]
    fn loaded_figures_stand_beside_the_idle_ones() {
        let mut r = sample([[2000.0; 3], [30e3; 3], [1000.0; 3], [800.0; 3]]);
        assert!(!r.table().contains("CPU hogs"));
        assert!(!r.markdown().contains("CPU hogs"));
        r.meta.load = 2;
        // Loaded, the preload is 3× tmpfs in round 1 and 1× in the others; FUSE 10×.
        let loaded: Vec<Vec<f64>> = vec![
            vec![4000.0, 5000.0, 6000.0],
            vec![40e3, 50e3, 60e3],
            vec![12e3, 5000.0, 6000.0],
            vec![4000.0, 5000.0, 6000.0],
        ];
        r.workloads[0].loaded = Some(Loaded {
            targets: summarise(&r.meta.targets, &loaded),
            hog_share: vec![0.5, 0.6, 0.7],
        });
        let w = &r.workloads[0];
        assert_eq!(
            w.loaded(Target::Fast).unwrap().ratio_to_tmpfs.unwrap(),
            Spread {
                median: 1.0,
                min: 1.0,
                max: 3.0
            }
        );
        assert_eq!(
            w.loaded(Target::Fast)
                .unwrap()
                .speedup_over_fuse
                .unwrap()
                .median,
            10.0
        );
        let table = r.table();
        assert!(table.contains("with 2 CPU hogs:"), "{table}");
        assert!(table.contains("6.00 µs (1.00×)"), "{table}");
        let md = r.markdown();
        for needle in [
            "## Idle and with 2 CPU hogs, side by side",
            "| workload | tmpfs idle | tmpfs loaded | FUSE mount idle | FUSE mount loaded |",
            "| cat | 2.00 µs | 5.00 µs | 30.0 µs | 50.0 µs | 1.00 µs | 6.00 µs | 800 ns | \
             5.00 µs | 60% |\n",
            "## With 2 CPU hogs: relative to tmpfs",
            "| cat | 10.0× (10.0×–10.0×) | 1.00× (1.00×–3.00×) | 1.00× (1.00×–1.00×) |\n",
            "## With 2 CPU hogs: speedup over the FUSE mount",
        ] {
            assert!(md.contains(needle), "{needle} missing from:\n{md}");
        }
        let back: Results = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back.meta.load, 2);
        assert_eq!(
            back.workloads[0].loaded(Target::Fuse).unwrap().ns_per_op,
            vec![40e3, 50e3, 60e3]
        );
        // Results written before --load existed still read.
        let mut old = serde_json::to_value(sample([[1.0; 3]; 4])).unwrap();
        old["meta"].as_object_mut().unwrap().remove("load");
        let old: Results = serde_json::from_value(old).unwrap();
        assert_eq!(
            (old.meta.load, old.workloads[0].loaded.is_none()),
            (0, true)
        );
    }

    #[test]
    fn compare_calls_only_separated_ranges_a_change() {
        let a = sample([
            [2000.0, 2100.0, 2200.0],
            [30e3, 31e3, 32e3],
            [900.0; 3],
            [800.0; 3],
        ]);
        let b = sample([
            [2050.0, 2150.0, 2250.0],
            [20e3, 21e3, 22e3],
            [950.0; 3],
            [700.0; 3],
        ]);
        let text = compare(&a, &b);
        let line = |target: &str| {
            text.lines()
                .find(|l| l.starts_with("cat") && l.split_whitespace().nth(1) == Some(target))
                .unwrap()
                .to_owned()
        };
        assert!(line("tmpfs").ends_with("overlap"), "{text}");
        assert!(
            line("fuse").contains("-32.3%") && line("fuse").ends_with("faster"),
            "{text}"
        );
        assert!(line("fast").ends_with("slower"), "{text}");
        assert!(line("client").ends_with("faster"), "{text}");
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(duration(850.0), "850 ns");
        assert_eq!(duration(2070.0), "2.07 µs");
        assert_eq!(duration(36_170.0), "36.2 µs");
        assert_eq!(duration(418_571.0), "419 µs");
        assert_eq!(duration(1.2e6), "1.20 ms");
        assert_eq!(ratio(18.43), "18.4×");
        assert_eq!(ratio(0.5), "0.50×");
    }
}
