//! Markdown tables of repeated runs: median with min and max, and ratios to tonic computed
//! within each repetition.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use crate::load::LoadResult;
use crate::transport::ClientKind;

/// Median, min and max of `values` (NaN for none).
pub(crate) fn spread(mut values: Vec<f64>) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    let median = if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    };
    (median, values[0], values[n - 1])
}

pub(crate) fn cell(values: Vec<f64>, digits: usize) -> String {
    let (median, min, max) = spread(values);
    format!("{median:.digits$} [{min:.digits$}–{max:.digits$}]")
}

/// The transports of a set of repetitions, in the order they ran.
fn kinds_in<T>(runs: &[Vec<(ClientKind, T)>]) -> Vec<ClientKind> {
    runs.first()
        .map(|rep| rep.iter().map(|(k, _)| *k).collect())
        .unwrap_or_default()
}

/// `kind`'s result in each repetition, and (its result, tonic's) for each repetition that
/// has both: the pairs ratios to tonic are taken from.
pub(crate) fn of_kind<'a, T>(
    runs: &'a [Vec<(ClientKind, T)>],
    kind: ClientKind,
) -> (Vec<&'a T>, Vec<(&'a T, &'a T)>) {
    let find = |rep: &'a Vec<(ClientKind, T)>, wanted| {
        rep.iter().find(|(k, _)| *k == wanted).map(|(_, r)| r)
    };
    let results = runs.iter().filter_map(|rep| find(rep, kind)).collect();
    let pairs = runs
        .iter()
        .filter_map(|rep| find(rep, kind).zip(find(rep, ClientKind::Tonic)))
        .collect();
    (results, pairs)
}

/// One table under `heading`: a row per transport.
pub(crate) fn table(heading: &str, runs: &[Vec<(ClientKind, LoadResult)>]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\n## {heading}\n");
    let _ = writeln!(
        out,
        "| transport | calls/s | p50 µs | p99 µs | p99.9 µs | CPU µs/call | calls/s ÷ tonic | p50 ÷ tonic | errors |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|");
    for kind in kinds_in(runs) {
        let (results, pairs) = of_kind(runs, kind);
        if results.is_empty() {
            continue;
        }
        let rate = |r: &LoadResult| r.calls as f64 / r.secs;
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            kind.name(),
            cell(results.iter().map(|r| rate(r)).collect(), 0),
            cell(results.iter().map(|r| r.p50_us as f64).collect(), 0),
            cell(results.iter().map(|r| r.p99_us as f64).collect(), 0),
            cell(results.iter().map(|r| r.p999_us as f64).collect(), 0),
            cell(
                results
                    .iter()
                    .map(|r| r.cpu_ms * 1000.0 / r.all_calls.max(1) as f64)
                    .collect(),
                1
            ),
            cell(pairs.iter().map(|(m, t)| rate(m) / rate(t)).collect(), 2),
            cell(
                pairs
                    .iter()
                    .map(|(m, t)| m.p50_us as f64 / t.p50_us.max(1) as f64)
                    .collect(),
                2
            ),
            results.iter().map(|r| r.errors).sum::<u64>(),
        );
    }
    out
}

/// One figure for the charts: the median of a metric for a transport, in a chart (`scenario`
/// and `cell`, e.g. "hol" and "1024 B; RTT 20 ms") at a point on its x axis (`category`).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Row {
    pub(crate) scenario: String,
    pub(crate) cell: String,
    pub(crate) category: String,
    pub(crate) transport: String,
    pub(crate) metric: String,
    pub(crate) value: f64,
}

impl Row {
    pub(crate) fn new(
        scenario: &str,
        cell: &str,
        category: &str,
        transport: &str,
        metric: &str,
        value: f64,
    ) -> Self {
        // Commas separate the fields; the labels never need one.
        let field = |s: &str| s.replace(',', ";");
        Self {
            scenario: field(scenario),
            cell: field(cell),
            category: field(category),
            transport: field(transport),
            metric: field(metric),
            value,
        }
    }

    pub(crate) fn parse(line: &str) -> Option<Self> {
        let mut parts = line.split(',');
        let mut next = || parts.next().map(str::to_owned);
        Some(Self {
            scenario: next()?,
            cell: next()?,
            category: next()?,
            transport: next()?,
            metric: next()?,
            value: next()?.parse().ok()?,
        })
    }
}

/// Appends `rows` to the CSV file at `path` (created if missing).
pub(crate) fn append_csv(path: &Path, rows: &[Row]) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    for r in rows {
        writeln!(
            file,
            "{},{},{},{},{},{}",
            r.scenario, r.cell, r.category, r.transport, r.metric, r.value
        )?;
    }
    Ok(())
}

/// Chart rows of a load table: the median calls/s and latency percentiles per transport.
pub(crate) fn load_rows(
    scenario: &str,
    cell: &str,
    category: &str,
    runs: &[Vec<(ClientKind, LoadResult)>],
) -> Vec<Row> {
    let mut rows = Vec::new();
    for kind in kinds_in(runs) {
        let (results, _) = of_kind(runs, kind);
        let median =
            |f: &dyn Fn(&LoadResult) -> f64| spread(results.iter().map(|r| f(r)).collect()).0;
        let metrics: [(&str, f64); 4] = [
            ("calls per second", median(&|r| r.calls as f64 / r.secs)),
            ("p50 latency (ms)", median(&|r| r.p50_us as f64 / 1000.0)),
            ("p99 latency (ms)", median(&|r| r.p99_us as f64 / 1000.0)),
            ("p99.9 latency (ms)", median(&|r| r.p999_us as f64 / 1000.0)),
        ];
        for (metric, value) in metrics {
            rows.push(Row::new(
                scenario,
                cell,
                category,
                kind.name(),
                metric,
                value,
            ));
        }
    }
    rows
}
