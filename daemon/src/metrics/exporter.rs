//! The `--metrics` endpoint: `GET /metrics` over HTTP (`tiny_http`), answered with the
//! OpenMetrics text of everything recorded, added up over the threads at each scrape.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::{BUCKETS_NS, ERRNOS, FRONTENDS, Gauges, RECORDER, Recorder};

/// The HTTP endpoint, running until dropped.
pub struct Exporter {
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
    addr: SocketAddr,
}

impl Exporter {
    /// The address it listens on (the real port when 0 was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Turns recording on and serves `GET /metrics` on `addr`. `gauges` is called at each
/// scrape. Fails if the address cannot be bound (in use, not local, no permission); only one
/// exporter may run in a process.
pub fn serve(
    addr: SocketAddr,
    gauges: impl Fn() -> Gauges + Send + Sync + 'static,
) -> io::Result<Exporter> {
    let server = tiny_http::Server::http(addr).map_err(|e| {
        io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("cannot listen on {addr}: {e}"),
        )
    })?;
    let bound = server
        .server_addr()
        .to_ip()
        .ok_or_else(|| io::Error::other("metrics listener has no IP address"))?;
    let recorder = Recorder {
        threads: Mutex::new(Vec::new()),
        clock: quanta::Clock::new(),
        gauges: Box::new(gauges),
    };
    if RECORDER.set(recorder).is_err() {
        return Err(io::Error::other("metrics are already being served"));
    }
    let server = Arc::new(server);
    let serving = Arc::clone(&server);
    let thread = std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            for request in serving.incoming_requests() {
                respond(request);
            }
        })?;
    Ok(Exporter {
        server,
        thread: Some(thread),
        addr: bound,
    })
}

const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

fn respond(request: tiny_http::Request) {
    let path = request.url().split('?').next().unwrap_or("");
    let response = if *request.method() != tiny_http::Method::Get {
        tiny_http::Response::from_string("only GET\n").with_status_code(405)
    } else if path != "/metrics" {
        tiny_http::Response::from_string("metrics are at /metrics\n").with_status_code(404)
    } else {
        match exposition() {
            Ok(text) => {
                let header =
                    tiny_http::Header::from_bytes(&b"Content-Type"[..], CONTENT_TYPE.as_bytes())
                        .unwrap_or_else(|()| unreachable!("a constant header is valid"));
                tiny_http::Response::from_string(text).with_header(header)
            }
            Err(e) => tiny_http::Response::from_string(format!("{e}\n")).with_status_code(500),
        }
    };
    if let Err(e) = request.respond(response) {
        log::debug!("metrics response: {e}");
    }
}

/// What a ring server reports at each scrape.
pub trait RingGauges: Send + Sync {
    /// Channels being served right now.
    fn channels(&self) -> usize;

    /// Requests published by clients and not yet taken, as the workers last saw them.
    fn requests_waiting(&self) -> usize;
}

/// Where a daemon's ring server leaves its counters once it runs (the exporter starts first).
pub type RingSlot = Arc<OnceLock<Arc<dyn RingGauges>>>;

/// [`serve`] for a daemon over `fs` (at most `inodes_total` inodes) and the ring server that
/// will fill `ring`; logs the address it listens on.
pub fn serve_engine<B: btfuse_core::BlockStore + 'static>(
    addr: SocketAddr,
    fs: Arc<btfuse_core::MemFs<B>>,
    inodes_total: u64,
    ring: RingSlot,
) -> io::Result<Exporter> {
    let exporter = serve(addr, move || {
        let usage = fs.usage();
        let ring = ring.get();
        Gauges {
            // Hard links take units of the budget as inodes do: used + free = total.
            inodes_used: usage.inodes_charged,
            inodes_total,
            blocks_used: usage.blocks_used,
            blocks_total: usage.blocks_total,
            block_size: usage.block_size,
            open_handles: usage.handles,
            ring_clients: ring.map_or(0, |r| r.channels() as u64),
            ring_requests_waiting: ring.map_or(0, |r| r.requests_waiting() as u64),
        }
    })?;
    log::info!("metrics on http://{}/metrics", exporter.addr());
    Ok(exporter)
}

/// The OpenMetrics text of everything recorded so far.
pub fn exposition() -> std::result::Result<String, std::fmt::Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Snapshot));
    registry.register_collector(Box::new(crate::bpf::Collector));
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry)?;
    Ok(out)
}

/// Adds up the threads' counters at each scrape.
#[derive(Debug)]
struct Snapshot;

struct Totals {
    ops: [Vec<OpTotals>; 2],
    read_bytes: [u64; 2],
    written_bytes: [u64; 2],
}

#[derive(Clone, Default)]
struct OpTotals {
    count: u64,
    sum_ns: u64,
    buckets: [u64; BUCKETS_NS.len()],
    errors: [u64; ERRNOS.len()],
}

fn totals(recorder: &Recorder) -> Totals {
    let mut t = Totals {
        ops: FRONTENDS.map(|(frontend, _)| vec![OpTotals::default(); frontend.operations().len()]),
        read_bytes: [0; 2],
        written_bytes: [0; 2],
    };
    for cells in recorder
        .threads
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
    {
        for f in 0..2 {
            for (sum, op) in t.ops[f].iter_mut().zip(cells.ops[f].iter()) {
                sum.count += op.count.get();
                sum.sum_ns += op.sum_ns.get();
                for (s, b) in sum.buckets.iter_mut().zip(&op.buckets) {
                    *s += b.get();
                }
                for (s, e) in sum.errors.iter_mut().zip(&op.errors) {
                    *s += e.get();
                }
            }
            t.read_bytes[f] += cells.read_bytes[f].get();
            t.written_bytes[f] += cells.written_bytes[f].get();
        }
    }
    t
}

/// A gauge value, encoded by prometheus-client's gauge encoder.
struct Value(i64);

impl EncodeMetric for Value {
    fn encode(&self, mut encoder: prometheus_client::encoding::MetricEncoder) -> std::fmt::Result {
        encoder.encode_gauge(&self.0)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Gauge
    }
}

fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> std::fmt::Result {
    let metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    Value(i64::try_from(value).unwrap_or(i64::MAX)).encode(metric)
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let Some(recorder) = RECORDER.get() else {
            return Ok(());
        };
        let t = totals(recorder);
        let operations = FRONTENDS.map(|(frontend, _)| frontend.operation_labels());
        {
            let mut m = encoder.encode_descriptor(
                "btfuse_operations",
                "Operations served, by frontend and operation.",
                None,
                MetricType::Counter,
            )?;
            for (f, (_, frontend)) in FRONTENDS.iter().enumerate() {
                for (op, name) in t.ops[f].iter().zip(&operations[f]) {
                    if op.count == 0 {
                        continue;
                    }
                    let labels = [("frontend", *frontend), ("operation", name.as_str())];
                    m.encode_family(&labels)?
                        .encode_counter::<NoLabelSet, _, u64>(&op.count, None)?;
                }
            }
        }
        {
            let mut m = encoder.encode_descriptor(
                "btfuse_operation_errors",
                "Operations that failed, by frontend, operation and errno.",
                None,
                MetricType::Counter,
            )?;
            for (f, (_, frontend)) in FRONTENDS.iter().enumerate() {
                for (op, name) in t.ops[f].iter().zip(&operations[f]) {
                    for (count, errno) in op.errors.iter().zip(ERRNOS) {
                        if *count == 0 {
                            continue;
                        }
                        let labels = [
                            ("frontend", *frontend),
                            ("operation", name.as_str()),
                            ("errno", errno.name()),
                        ];
                        m.encode_family(&labels)?
                            .encode_counter::<NoLabelSet, _, u64>(count, None)?;
                    }
                }
            }
        }
        {
            let mut m = encoder.encode_descriptor(
                "btfuse_operation_duration_seconds",
                "Time to serve an operation, from its arrival in the daemon to its answer.",
                None,
                MetricType::Histogram,
            )?;
            for (f, (_, frontend)) in FRONTENDS.iter().enumerate() {
                for (op, name) in t.ops[f].iter().zip(&operations[f]) {
                    if op.count == 0 {
                        continue;
                    }
                    // Per-bucket counts: the encoder makes them cumulative.
                    let mut buckets: Vec<(f64, u64)> = BUCKETS_NS
                        .iter()
                        .zip(op.buckets)
                        .map(|(&bound, n)| (bound as f64 / 1e9, n))
                        .collect();
                    let bounded: u64 = op.buckets.iter().sum();
                    buckets.push((f64::INFINITY, op.count.saturating_sub(bounded)));
                    let labels = [("frontend", *frontend), ("operation", name.as_str())];
                    m.encode_family(&labels)?.encode_histogram::<NoLabelSet>(
                        op.sum_ns as f64 / 1e9,
                        op.count,
                        &buckets,
                        None,
                    )?;
                }
            }
        }
        for (metric, help, values) in [
            ("btfuse_read_bytes", "Bytes read from files.", t.read_bytes),
            (
                "btfuse_written_bytes",
                "Bytes written to files.",
                t.written_bytes,
            ),
        ] {
            let mut m = encoder.encode_descriptor(metric, help, None, MetricType::Counter)?;
            for ((_, frontend), value) in FRONTENDS.iter().zip(values) {
                m.encode_family(&[("frontend", *frontend)])?
                    .encode_counter::<NoLabelSet, _, u64>(&value, None)?;
            }
        }
        let g = (recorder.gauges)();
        gauge(
            &mut encoder,
            "btfuse_inodes_used",
            "Live inodes.",
            g.inodes_used,
        )?;
        gauge(
            &mut encoder,
            "btfuse_inodes_total",
            "Most inodes the filesystem may hold.",
            g.inodes_total,
        )?;
        gauge(
            &mut encoder,
            "btfuse_blocks_used",
            "Blocks holding file data.",
            g.blocks_used,
        )?;
        gauge(
            &mut encoder,
            "btfuse_blocks_total",
            "Blocks the store can hold.",
            g.blocks_total,
        )?;
        gauge(
            &mut encoder,
            "btfuse_block_size_bytes",
            "Bytes per block.",
            g.block_size,
        )?;
        gauge(
            &mut encoder,
            "btfuse_open_handles",
            "Open file and directory handles.",
            g.open_handles,
        )?;
        gauge(
            &mut encoder,
            "btfuse_ring_clients",
            "Connected ring channels.",
            g.ring_clients,
        )?;
        gauge(
            &mut encoder,
            "btfuse_ring_requests_waiting",
            "Ring requests published and not yet taken, as the workers last saw them.",
            g.ring_requests_waiting,
        )?;
        let mut m = encoder.encode_descriptor(
            "btfuse_build",
            "The running build.",
            None,
            MetricType::Info,
        )?;
        m.encode_info(&[("version", env!("CARGO_PKG_VERSION"))])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use btfuse_core::Errno;
    use btfuse_core::ring::{Request, Target};

    use super::super::{EngineOp, Frontend, add_bytes, record_ns};
    use super::*;

    fn get(addr: SocketAddr, path: &str) -> String {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        stream.read_to_string(&mut out).unwrap();
        out
    }
    /// The only test that turns recording on: the recorder is one per process.
    #[test]
    fn recorded_operations_reach_the_exposition_exactly() {
        let exporter = serve("127.0.0.1:0".parse().unwrap(), || Gauges {
            inodes_used: 7,
            inodes_total: 100,
            ring_clients: 3,
            ..Gauges::default()
        })
        .unwrap();
        assert!(
            serve("127.0.0.1:0".parse().unwrap(), Gauges::default).is_err(),
            "one per process"
        );
        let stat = Request::Stat {
            target: Target::Fd(0),
        }
        .index();
        record_ns(Frontend::Shm, stat, 300, None);
        // From another thread: its own cells, added up at the scrape.
        std::thread::spawn(move || {
            record_ns(Frontend::Shm, stat, 2_000_000_000, Some(Errno::NotFound));
            add_bytes(Frontend::Fuse, 10, 20);
        })
        .join()
        .unwrap();
        record_ns(Frontend::Fuse, EngineOp::Getattr as usize, 1_000, None);
        let text = exposition().unwrap();
        for line in [
            r#"btfuse_operations_total{frontend="shm",operation="stat"} 2"#,
            r#"btfuse_operation_errors_total{frontend="shm",operation="stat",errno="ENOENT"} 1"#,
            r#"btfuse_operation_duration_seconds_bucket{le="2.5e-7",frontend="shm",operation="stat"} 0"#,
            r#"btfuse_operation_duration_seconds_bucket{le="3.5e-7",frontend="shm",operation="stat"} 1"#,
            r#"btfuse_operation_duration_seconds_bucket{le="5e-7",frontend="shm",operation="stat"} 1"#,
            r#"btfuse_operation_duration_seconds_bucket{le="1.0",frontend="shm",operation="stat"} 1"#,
            r#"btfuse_operation_duration_seconds_bucket{le="+Inf",frontend="shm",operation="stat"} 2"#,
            r#"btfuse_operation_duration_seconds_count{frontend="shm",operation="stat"} 2"#,
            r#"btfuse_operation_duration_seconds_sum{frontend="shm",operation="stat"} 2.0000003"#,
            r#"btfuse_operation_duration_seconds_bucket{le="0.000001",frontend="fuse",operation="getattr"} 1"#,
            r#"btfuse_read_bytes_total{frontend="fuse"} 10"#,
            r#"btfuse_written_bytes_total{frontend="fuse"} 20"#,
            "btfuse_inodes_used 7",
            "btfuse_inodes_total 100",
            "btfuse_ring_clients 3",
            "btfuse_ring_requests_waiting 0",
            r#"btfuse_build_info{version=""#,
        ] {
            assert!(
                text.lines().any(|l| l.starts_with(line)),
                "missing {line:?} in:\n{text}"
            );
        }
        assert!(
            !text.contains(r#"operation="fork""#),
            "operations never seen are not listed"
        );
        assert!(text.ends_with("# EOF\n"));
        let response = get(exporter.addr(), "/metrics");
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(response.contains(CONTENT_TYPE));
        assert!(response.contains(r#"btfuse_operations_total{frontend="shm",operation="stat"} 2"#));
        assert!(get(exporter.addr(), "/").starts_with("HTTP/1.1 404"));
    }
}
