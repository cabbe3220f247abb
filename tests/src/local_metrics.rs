//! The metrics one test records, on a recorder of its own: tests that count calls run in
//! parallel without sharing the process's global recorder.

use std::collections::HashMap;
use std::time::Duration;

use metrics::LocalRecorderGuard;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};

use crate::within;

/// A metric's name and its labels, sorted.
type Series = (String, Vec<(String, String)>);

/// Records the metrics of everything that runs on this thread until dropped: with tokio's
/// default current-thread test runtime, that is the test and every task it spawns (servers,
/// channels, quinn's drivers).
///
/// Counters are totals; a histogram counts its samples. Gauges are not kept.
pub struct LocalMetrics {
    snapshotter: Snapshotter,
    seen: HashMap<Series, u64>,
    _installed: LocalRecorderGuard<'static>,
}

impl LocalMetrics {
    /// Starts recording this thread's metrics. Panics in a multi-thread runtime, where tasks
    /// would run, and record, on other threads.
    pub fn start() -> Self {
        let flavor = tokio::runtime::Handle::current().runtime_flavor();
        assert_eq!(
            flavor,
            tokio::runtime::RuntimeFlavor::CurrentThread,
            "a local recorder only sees this thread: use #[tokio::test] without flavor"
        );
        // Leaked so that the guard can live in the same struct: one small recorder per test.
        let recorder: &'static DebuggingRecorder = Box::leak(Box::new(DebuggingRecorder::new()));
        Self {
            snapshotter: recorder.snapshotter(),
            seen: HashMap::new(),
            _installed: metrics::set_default_local_recorder(recorder),
        }
    }

    /// A counter's total, or a histogram's number of samples, with exactly these labels (0 if
    /// never recorded).
    pub fn get(&mut self, name: &str, labels: &[(&str, &str)]) -> u64 {
        // Each snapshot drains the recorder, so the totals are kept here.
        for (key, _, _, value) in self.snapshotter.snapshot().into_vec() {
            let n = match value {
                DebugValue::Counter(n) => n,
                DebugValue::Histogram(samples) => samples.len() as u64,
                DebugValue::Gauge(_) => continue,
            };
            let key = key.key();
            let labels = key.labels().map(|l| (l.key(), l.value()));
            *self.seen.entry(series(key.name(), labels)).or_default() += n;
        }
        let labels = labels.iter().copied();
        self.seen.get(&series(name, labels)).copied().unwrap_or(0)
    }

    /// Waits until the count of `name` with these labels is `n`, failing at once if it goes
    /// past `n`: for what is recorded after the client has its answer (the server records a
    /// call just after its last frame leaves). Bounded by [`TIMEOUT`](crate::TIMEOUT).
    pub async fn reaches(&mut self, name: &str, labels: &[(&str, &str)], n: u64) {
        within(&format!("{name} {labels:?} reaches {n}"), async {
            loop {
                let now = self.get(name, labels);
                assert!(now <= n, "{name} {labels:?}: {now}, expected {n}");
                if now == n {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
    }
}

impl std::fmt::Debug for LocalMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalMetrics")
            .field("seen", &self.seen)
            .finish_non_exhaustive()
    }
}

fn series<'a>(name: &str, labels: impl Iterator<Item = (&'a str, &'a str)>) -> Series {
    let mut labels: Vec<(String, String)> =
        labels.map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
    labels.sort();
    (name.to_owned(), labels)
}
