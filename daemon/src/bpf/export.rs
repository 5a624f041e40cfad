//! The programs' metrics in the `--metrics` exposition.

use std::sync::atomic::Ordering;

use prometheus_client::collector::Collector as PromCollector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;

use super::helpers::registry;

/// Adds the programs' counters, refusals and faults to a scrape (registered by the exporter).
#[derive(Debug)]
pub struct Collector;

impl PromCollector for Collector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        // Copied out first: the lock is not held while the text is written.
        let (programs, mut counters, dropped) = {
            let registry = registry();
            if registry.programs.is_empty() {
                return Ok(());
            }
            let counters: Vec<_> = registry
                .counters
                .iter()
                .map(|(&(slot, counter, key), &total)| (slot, counter, key, total))
                .collect();
            (registry.programs.clone(), counters, registry.dropped)
        };
        counters.sort_unstable();
        {
            let mut m = encoder.encode_descriptor(
                "btfuse_bpf_counter",
                "Counters bumped by eBPF programs (btfuse_count), by program, counter and key.",
                None,
                MetricType::Counter,
            )?;
            for (slot, counter, key, total) in counters {
                let Some(program) = programs.get(slot) else {
                    continue;
                };
                let (label, key) = (program.counter_label(counter), key.to_string());
                let labels = [
                    ("program", program.name.as_str()),
                    ("counter", label.as_str()),
                    ("key", key.as_str()),
                ];
                m.encode_family(&labels)?
                    .encode_counter::<NoLabelSet, _, u64>(&total, None)?;
            }
        }
        for (metric, help, read) in [
            (
                "btfuse_bpf_refused",
                "Operations an eBPF program failed with an errno.",
                (|p: &super::ProgramInfo| p.refused.load(Ordering::Relaxed))
                    as fn(&super::ProgramInfo) -> u64,
            ),
            (
                "btfuse_bpf_faults",
                "eBPF program runs that faulted; their operations failed with EIO.",
                |p: &super::ProgramInfo| p.faults.load(Ordering::Relaxed),
            ),
        ] {
            let mut m = encoder.encode_descriptor(metric, help, None, MetricType::Counter)?;
            for program in &programs {
                m.encode_family(&[("program", program.name.as_str())])?
                    .encode_counter::<NoLabelSet, _, u64>(&read(program), None)?;
            }
        }
        let m = encoder.encode_descriptor(
            "btfuse_bpf_counter_dropped",
            "Counter bumps dropped because the most series were kept.",
            None,
            MetricType::Counter,
        )?;
        DroppedCount(dropped).encode(m)
    }
}

struct DroppedCount(u64);

impl EncodeMetric for DroppedCount {
    fn encode(&self, mut encoder: prometheus_client::encoding::MetricEncoder) -> std::fmt::Result {
        encoder.encode_counter::<NoLabelSet, _, u64>(&self.0, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Counter
    }
}
