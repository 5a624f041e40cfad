//! The Grafana dashboard (`dashboards/btfuse.json`) against what a real `btfuse-shm` exports.
//!
//! Guards that every metric the dashboard's queries and template variables name is a sample
//! name the exporter really serves (`X_bucket` must be served as `X_bucket`: a query on a bare
//! histogram or info family name finds nothing in Prometheus), that only counters and
//! histogram parts go under `rate()`, and that every query uses the dashboard's data-source
//! variable. The daemon runs with `--metrics 127.0.0.1:0` and gets some load through the ring
//! first, so that counters, errors and histograms have series. The scrape itself must be
//! well-formed OpenMetrics: its content type, `# EOF` at the end, every sample in a declared
//! family, cumulative histogram buckets, and counts that add up to the load.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use btfuse_ring_client::Client;
use common::{Exposition, SCRAPE_ACCEPT, ShmDaemon, all_panels, dashboard_queries, http_get};
use serde_json::Value;

/// The template variable every panel and query must take its data source from.
const DATASOURCE_VARIABLE: &str = "DS_PROMETHEUS";

/// Successful and failed `stat` requests sent before the scrape.
const STATS: u32 = 20;
const FAILED_STATS: u32 = 5;
/// Bytes written to a file and read back before the scrape.
const FILE_BYTES: usize = 10_000;

#[test]
fn the_dashboard_queries_only_metrics_the_exporter_serves() {
    let dashboard = common::dashboard();
    check_datasources(&dashboard);
    let queries = dashboard_queries(&dashboard);
    assert!(
        queries.len() >= 10,
        "found only {} queries in the dashboard",
        queries.len()
    );

    // With the audit example, so that the eBPF panels' metrics have series.
    let audit = btfuse_testkit::bpf::compile(&btfuse_testkit::bpf::example("audit"), &[]);
    let daemon = ShmDaemon::start_with("64M", &[std::ffi::OsStr::new("--bpf"), audit.as_os_str()]);
    let client = Client::connect(daemon.socket()).expect("connect to the ring");
    for _ in 0..STATS {
        client.metadata("/").expect("stat /");
    }
    for _ in 0..FAILED_STATS {
        let err = client
            .metadata("/missing")
            .expect_err("stat of a missing file");
        assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
    }
    let data: Vec<u8> = (0..FILE_BYTES).map(|i| (i % 251) as u8).collect();
    client
        .write("/file", &data)
        .expect("create and write /file");
    assert_eq!(client.read("/file").expect("read /file"), data);
    client.rename("/file", "/file2").expect("rename /file");
    client.write("/scratch", b"x").expect("write /scratch");
    client.remove_file("/scratch").expect("unlink /scratch");

    // Scraped while the client is connected, so that the ring's gauges count it.
    let response =
        http_get(daemon.metrics_address(), "/metrics", SCRAPE_ACCEPT).expect("GET /metrics");
    assert_eq!(response.status, 200, "GET /metrics: {response:?}");
    let content_type = response.header("content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("application/openmetrics-text")
            && content_type.contains("version=1.0.0"),
        "GET /metrics answered with Content-Type {content_type:?}"
    );
    let exposition = Exposition::parse(&response.body);
    check_histograms(&exposition);
    check_load_is_counted(&exposition);

    let mut problems = Vec::new();
    for query in &queries {
        for metric in metric_names(&query.expr) {
            if !exposition.has_sample(&metric) {
                let hint = match exposition.families.get(&metric) {
                    Some(family_type) => format!(
                        ": it is the {family_type} family whose samples are {}",
                        family_samples(&metric, family_type)
                    ),
                    None => String::new(),
                };
                problems.push(format!("{}: {metric} is not served{hint}", query.place));
            }
        }
        for metric in rated_metric_names(&query.expr) {
            match exposition.family_of(&metric) {
                Some((_, "counter" | "histogram")) => {}
                Some((_, family_type)) => problems.push(format!(
                    "{}: rate() over {metric}, a {family_type}: rate() needs a counter or a \
                     histogram part",
                    query.place
                )),
                // Reported above as not served.
                None => {}
            }
        }
    }
    assert!(
        problems.is_empty(),
        "the dashboard does not match what the exporter serves:\n  {}\n\nserved samples: {:?}",
        problems.join("\n  "),
        exposition
            .samples
            .iter()
            .map(|s| s.name.as_str())
            .collect::<BTreeSet<_>>()
    );
    drop(client);
}

/// The sample names of a family, to suggest for a query that named the family.
fn family_samples(family: &str, family_type: &str) -> String {
    match family_type {
        "counter" => format!("{family}_total"),
        "histogram" => format!("{family}_bucket, {family}_sum and {family}_count"),
        "info" => format!("{family}_info"),
        _ => family.to_owned(),
    }
}

/// Every panel and query reads from `${DS_PROMETHEUS}`, a variable of type `datasource`;
/// panel ids are unique.
fn check_datasources(dashboard: &Value) {
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("templating.list");
    let datasource_variable = variables
        .iter()
        .find(|v| v["name"] == DATASOURCE_VARIABLE)
        .unwrap_or_else(|| panic!("no template variable {DATASOURCE_VARIABLE}"));
    assert_eq!(datasource_variable["type"], "datasource");
    assert_eq!(datasource_variable["query"], "prometheus");

    let expected_uid = format!("${{{DATASOURCE_VARIABLE}}}");
    let mut ids = BTreeSet::new();
    for panel in all_panels(dashboard) {
        let title = panel["title"].as_str().unwrap_or("(untitled)");
        let id = panel["id"].as_u64().expect("every panel has an id");
        assert!(ids.insert(id), "panel id {id} ({title}) is used twice");
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(
            panel["datasource"]["uid"], expected_uid,
            "panel {title:?} does not read from {expected_uid}"
        );
        for target in panel["targets"].as_array().into_iter().flatten() {
            assert_eq!(
                target["datasource"]["uid"], expected_uid,
                "a query of panel {title:?} does not read from {expected_uid}"
            );
        }
    }
    for variable in variables.iter().filter(|v| v["type"] == "query") {
        assert_eq!(
            variable["datasource"]["uid"], expected_uid,
            "variable {} does not read from {expected_uid}",
            variable["name"]
        );
    }
}

/// The identifiers of `expr` outside string literals, with the byte offset after each.
fn identifiers(expr: &str) -> Vec<(String, usize)> {
    let mut found = Vec::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if matches!(c, b'"' | b'\'' | b'`') {
            // Skip the string, escapes included (label values like "$frontend").
            i += 1;
            while i < bytes.len() && bytes[i] != c {
                i += if bytes[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
        } else if c.is_ascii_alphabetic() || c == b'_' || c == b':' {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || b"_:".contains(&bytes[i]))
            {
                i += 1;
            }
            found.push((expr[start..i].to_owned(), i));
        } else {
            i += 1;
        }
    }
    found
}

/// The metric names `expr` refers to: its identifiers that start with `btfuse_`.
fn metric_names(expr: &str) -> BTreeSet<String> {
    identifiers(expr)
        .into_iter()
        .map(|(name, _)| name)
        .filter(|name| name.starts_with("btfuse_"))
        .collect()
}

/// The metrics `expr` puts directly under `rate`, `irate` or `increase`.
fn rated_metric_names(expr: &str) -> BTreeSet<String> {
    let names = identifiers(expr);
    names
        .windows(2)
        .filter(|pair| {
            let (function, end) = &pair[0];
            matches!(function.as_str(), "rate" | "irate" | "increase")
                && expr[*end..].trim_start().starts_with('(')
                && pair[1].0.starts_with("btfuse_")
        })
        .map(|pair| pair[1].0.clone())
        .collect()
}

/// A histogram series: its family and its labels but `le`.
type HistogramSeries = (String, Vec<(String, String)>);

/// Every histogram series has cumulative buckets ending in `+Inf`, which equals `_count`.
fn check_histograms(exposition: &Exposition) {
    let mut series: BTreeMap<HistogramSeries, Vec<(f64, f64)>> = BTreeMap::new();
    for sample in &exposition.samples {
        let Some(family) = sample.name.strip_suffix("_bucket") else {
            continue;
        };
        let mut labels = sample.labels.clone();
        let le = labels
            .remove("le")
            .unwrap_or_else(|| panic!("bucket without le: {sample:?}"));
        let le: f64 = if le == "+Inf" {
            f64::INFINITY
        } else {
            le.parse().expect("a numeric le")
        };
        series
            .entry((family.to_owned(), labels.into_iter().collect()))
            .or_default()
            .push((le, sample.value));
    }
    assert!(!series.is_empty(), "no histogram series in the exposition");
    for ((family, labels), buckets) in series {
        let le_order: Vec<f64> = buckets.iter().map(|(le, _)| *le).collect();
        assert!(
            le_order.windows(2).all(|w| w[0] < w[1]),
            "{family}{labels:?}: buckets not in increasing le order: {le_order:?}"
        );
        assert!(
            buckets.windows(2).all(|w| w[0].1 <= w[1].1),
            "{family}{labels:?}: bucket counts are not cumulative: {buckets:?}"
        );
        let (last_le, inf_count) = *buckets.last().expect("at least one bucket");
        assert_eq!(last_le, f64::INFINITY, "{family}{labels:?}: no +Inf bucket");
        let label_refs: Vec<(&str, &str)> = labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let count = exposition.value(&format!("{family}_count"), &label_refs);
        assert_eq!(
            inf_count, count,
            "{family}{labels:?}: +Inf bucket != _count"
        );
        let sum = exposition.value(&format!("{family}_sum"), &label_refs);
        assert!(
            sum >= 0.0 && sum.is_finite(),
            "{family}{labels:?}: _sum {sum}"
        );
    }
}

/// The counters show at least the load this test sent.
fn check_load_is_counted(exposition: &Exposition) {
    let stat = [("frontend", "shm"), ("operation", "stat")];
    let stats = exposition.value("btfuse_operations_total", &stat);
    assert!(
        stats >= f64::from(STATS + FAILED_STATS),
        "{stats} stat operations counted, {} sent",
        STATS + FAILED_STATS
    );
    let enoent = [
        ("frontend", "shm"),
        ("operation", "stat"),
        ("errno", "ENOENT"),
    ];
    let failed = exposition.value("btfuse_operation_errors_total", &enoent);
    assert!(
        failed >= f64::from(FAILED_STATS),
        "{failed} failed stats counted, {FAILED_STATS} sent"
    );
    let timed = exposition.value("btfuse_operation_duration_seconds_count", &stat);
    assert_eq!(timed, stats, "every counted stat is timed");
    let shm = [("frontend", "shm")];
    for counter in ["btfuse_written_bytes_total", "btfuse_read_bytes_total"] {
        let bytes = exposition.value(counter, &shm);
        assert!(
            bytes >= FILE_BYTES as f64,
            "{counter} is {bytes}, {FILE_BYTES} bytes moved"
        );
    }
    let clients = exposition.value("btfuse_ring_clients", &[]);
    assert!(
        clients >= 1.0,
        "{clients} ring clients while one is connected"
    );
    assert!(
        exposition.value("btfuse_inodes_used", &[]) >= 2.0,
        "/ and /file2"
    );
    let build = exposition.find("btfuse_build_info", &[]).next();
    assert!(
        build.is_some_and(|s| s.value == 1.0 && s.labels.contains_key("version")),
        "btfuse_build_info{{version=...}} 1 is missing: {build:?}"
    );
}

#[test]
fn metric_names_skip_strings_functions_and_labels() {
    let expr = "histogram_quantile(0.9, sum by (le) (rate(btfuse_x_bucket{job=\"btfuse_not\", \
                frontend=~\"$frontend\"}[5m]))) / btfuse_y";
    assert_eq!(
        metric_names(expr),
        BTreeSet::from(["btfuse_x_bucket".to_owned(), "btfuse_y".to_owned()])
    );
    assert_eq!(
        rated_metric_names(expr),
        BTreeSet::from(["btfuse_x_bucket".to_owned()])
    );
}
