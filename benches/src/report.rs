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

/// The median of `values` and their range, `digits` after the point: "1.50 [1.20–1.70]";
/// "—" when there is no number among them (a ratio to nothing, as 0 ÷ 0).
pub(crate) fn cell(values: Vec<f64>, digits: usize) -> String {
    if !values.iter().any(|v| v.is_finite()) {
        return "—".into();
    }
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
pub(crate) fn of_kind<T>(
    runs: &[Vec<(ClientKind, T)>],
    kind: ClientKind,
) -> (Vec<&T>, Vec<(&T, &T)>) {
    let results = runs.iter().filter_map(|rep| find(rep, kind)).collect();
    (results, pairs(runs, kind, ClientKind::Tonic))
}

/// (`kind`'s result, `base`'s) for each repetition that has both.
pub(crate) fn pairs<T>(
    runs: &[Vec<(ClientKind, T)>],
    kind: ClientKind,
    base: ClientKind,
) -> Vec<(&T, &T)> {
    runs.iter()
        .filter_map(|rep| find(rep, kind).zip(find(rep, base)))
        .collect()
}

fn find<T>(rep: &[(ClientKind, T)], kind: ClientKind) -> Option<&T> {
    rep.iter().find(|(k, _)| *k == kind).map(|(_, r)| r)
}

/// What the others are divided by, of the transports in `runs`: tonic, and bare quinn where
/// it ran.
pub(crate) fn baselines_in<T>(runs: &[Vec<(ClientKind, T)>]) -> Vec<ClientKind> {
    let kinds = kinds_in(runs);
    [ClientKind::Tonic, ClientKind::Quinn]
        .into_iter()
        .filter(|base| kinds.contains(base))
        .collect()
}

/// One table under `heading`: a row per transport, with its ratios to each of
/// [`baselines_in`].
pub(crate) fn table(heading: &str, runs: &[Vec<(ClientKind, LoadResult)>]) -> String {
    let baselines = baselines_in(runs);
    let mut out = String::new();
    let _ = writeln!(out, "\n## {heading}\n");
    let mut columns = vec![
        "transport".to_owned(),
        "calls/s".into(),
        "p50 µs".into(),
        "p99 µs".into(),
        "p99.9 µs".into(),
        "CPU µs/call".into(),
    ];
    for base in &baselines {
        columns.push(format!("calls/s ÷ {}", base.short_name()));
        columns.push(format!("p50 ÷ {}", base.short_name()));
    }
    columns.push("errors".into());
    let _ = writeln!(out, "{}", markdown_row(&columns));
    let _ = writeln!(out, "|{}", "---|".repeat(columns.len()));
    let rate = |r: &LoadResult| r.calls as f64 / r.secs;
    for kind in kinds_in(runs) {
        let (results, _) = of_kind(runs, kind);
        if results.is_empty() {
            continue;
        }
        let mut cells = vec![
            kind.name().to_owned(),
            cell(results.iter().map(|r| rate(r)).collect(), 0),
            cell(results.iter().map(|r| r.p50_us as f64).collect(), 0),
            cell(results.iter().map(|r| r.p99_us as f64).collect(), 0),
            cell(results.iter().map(|r| r.p999_us as f64).collect(), 0),
            cell(
                results
                    .iter()
                    .map(|r| r.cpu_ms * 1000.0 / r.all_calls.max(1) as f64)
                    .collect(),
                1,
            ),
        ];
        for &base in &baselines {
            let pairs = pairs(runs, kind, base);
            cells.push(cell(
                pairs.iter().map(|(m, b)| rate(m) / rate(b)).collect(),
                2,
            ));
            cells.push(cell(
                pairs
                    .iter()
                    .map(|(m, b)| m.p50_us as f64 / b.p50_us.max(1) as f64)
                    .collect(),
                2,
            ));
        }
        cells.push(results.iter().map(|r| r.errors).sum::<u64>().to_string());
        let _ = writeln!(out, "{}", markdown_row(&cells));
    }
    out
}

/// `| a | b | c |`.
pub(crate) fn markdown_row(cells: &[String]) -> String {
    format!("| {} |", cells.join(" | "))
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

#[cfg(test)]
mod tests {
    use super::table;
    use crate::load::LoadResult;
    use crate::transport::ClientKind;

    fn result(calls: u64, p50_us: u64) -> LoadResult {
        LoadResult {
            calls,
            all_calls: calls,
            errors: 0,
            secs: 1.0,
            p50_us,
            p99_us: p50_us * 2,
            p999_us: p50_us * 4,
            cpu_ms: 1000.0,
        }
    }

    /// Ratios to each baseline that ran, taken within each repetition.
    #[test]
    fn tables_divide_by_tonic_and_by_bare_quinn_where_it_ran() {
        let with_quinn = vec![vec![
            (ClientKind::Quic, result(50_000, 500)),
            (ClientKind::Tonic, result(25_000, 1000)),
            (ClientKind::Quinn, result(200_000, 250)),
        ]];
        let text = table("50 in flight", &with_quinn);
        let lines: Vec<&str> = text.lines().filter(|l| l.starts_with('|')).collect();
        assert_eq!(
            lines[0],
            "| transport | calls/s | p50 µs | p99 µs | p99.9 µs | CPU µs/call | calls/s ÷ tonic \
             | p50 ÷ tonic | calls/s ÷ bare quinn | p50 ÷ bare quinn | errors |"
        );
        assert_eq!(lines[1], "|---|---|---|---|---|---|---|---|---|---|---|");
        assert!(
            lines[2].starts_with("| quicrpc QUIC | 50000 [50000–50000] |"),
            "{}",
            lines[2]
        );
        assert!(
            lines[2].ends_with(
                "| 2.00 [2.00–2.00] | 0.50 [0.50–0.50] | 0.25 [0.25–0.25] | 2.00 [2.00–2.00] | 0 |"
            ),
            "{}",
            lines[2]
        );
        let without = vec![vec![
            (ClientKind::Quic, result(50_000, 500)),
            (ClientKind::Tonic, result(25_000, 1000)),
        ]];
        let text = table("50 in flight", &without);
        assert!(!text.contains("bare quinn"), "{text}");
        assert!(text.contains("| p50 ÷ tonic | errors |"), "{text}");
    }
}
