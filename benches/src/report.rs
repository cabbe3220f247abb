//! Markdown tables of repeated runs: median with min and max, and ratios to tonic computed
//! within each repetition.

use std::fmt::Write as _;

use crate::{ClientKind, LoadResult};

/// Median, min and max of `values`.
fn spread(mut values: Vec<f64>) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let median = if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    };
    (median, values[0], values[n - 1])
}

fn cell(values: Vec<f64>, digits: usize) -> String {
    let (median, min, max) = spread(values);
    format!("{median:.digits$} [{min:.digits$}–{max:.digits$}]")
}

/// One table: a row per transport.
pub(crate) fn table(concurrency: usize, runs: &[Vec<(ClientKind, LoadResult)>]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\n## {concurrency} in flight\n");
    let _ = writeln!(
        out,
        "| transport | calls/s | p50 µs | p99 µs | p99.9 µs | CPU µs/call | calls/s ÷ tonic | p50 ÷ tonic | errors |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|");
    for kind in ClientKind::ALL {
        let mine = |rep: &Vec<(ClientKind, LoadResult)>| {
            rep.iter().find(|(k, _)| *k == kind).map(|(_, r)| r.clone())
        };
        let tonic = |rep: &Vec<(ClientKind, LoadResult)>| {
            rep.iter()
                .find(|(k, _)| *k == ClientKind::Tonic)
                .map(|(_, r)| r.clone())
        };
        let results: Vec<LoadResult> = runs.iter().filter_map(mine).collect();
        let pairs: Vec<(LoadResult, LoadResult)> = runs
            .iter()
            .filter_map(|rep| mine(rep).zip(tonic(rep)))
            .collect();
        if results.is_empty() {
            continue;
        }
        let rate = |r: &LoadResult| r.calls as f64 / r.secs;
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            kind.name(),
            cell(results.iter().map(rate).collect(), 0),
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
