//! What `idgraph bench` prints about a run: [`Report`], as a table row under [`Report::HEADER`] or
//! as one JSON object, from the runner's [`RunStats`] and the [`Resources`] the caller measured.

use super::RunStats;

/// What the caller measured around a run, outside the runner: the process and the target.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Resources {
    /// Peak resident set size of the process.
    pub peak_rss_bytes: Option<u64>,
    /// CPU time the process used during the run, all threads. For an in-process target that is
    /// the engine's and the runner's own; for an HTTP target, the client's only.
    pub cpu_seconds: Option<f64>,
    /// For an HTTP target: the CPU time the *server* used during the run (from its `/metrics`),
    /// which is what a request costs the service.
    pub server_cpu_seconds: Option<f64>,
    /// Bytes on disk of the log the run wrote.
    pub log_bytes: Option<u64>,
    /// The projection's heap bytes in use per identity.
    pub bytes_per_identity: Option<f64>,
}

/// One run, named, with everything measured about it.
#[derive(Debug, Clone)]
pub struct Report {
    /// What ran, e.g. `in-process durable, 16 clients`.
    pub name: String,
    /// What the runner measured.
    pub stats: RunStats,
    /// What the caller measured.
    pub resources: Resources,
}

impl Report {
    /// The table's header; [`Report::row`] lines up under it.
    pub const HEADER: &'static str = "run                                             requests      req/s  p50 us  p90 us  p99 us p99.9 us  errors  CPU us/r  srv us/r  RSS MiB  log MiB  B/id";

    /// The report as one JSON object.
    pub fn json(&self) -> serde_json::Value {
        let stats = &self.stats;
        let resources = &self.resources;
        let q = |q: f64| stats.latency.value_at_quantile(q);
        serde_json::json!({
            "name": self.name, "requests": stats.requests(), "errors": stats.errors, "rejected": stats.rejected,
            "skipped": stats.skipped, "unresolved_references": stats.unresolved, "seconds": stats.seconds,
            "requests_per_second": stats.requests() as f64 / stats.seconds,
            "latency_us": {"p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "p999": q(0.999), "max": stats.latency.max()},
            "peak_rss_bytes": resources.peak_rss_bytes, "cpu_seconds": resources.cpu_seconds,
            "cpu_us_per_request": self.cpu_us_per_request(), "server_cpu_seconds": resources.server_cpu_seconds,
            "server_cpu_us_per_request": self.server_cpu_us_per_request(), "log_bytes": resources.log_bytes,
            "bytes_per_identity": resources.bytes_per_identity,
        })
    }

    /// CPU microseconds per request, over all threads.
    pub fn cpu_us_per_request(&self) -> Option<f64> {
        self.resources.cpu_seconds.map(|cpu| cpu * 1e6 / self.stats.requests().max(1) as f64)
    }

    /// The server's CPU microseconds per request (HTTP targets whose server reports its CPU time).
    pub fn server_cpu_us_per_request(&self) -> Option<f64> {
        self.resources.server_cpu_seconds.map(|cpu| cpu * 1e6 / self.stats.requests().max(1) as f64)
    }

    /// The report as one line of the table under [`Report::HEADER`].
    pub fn row(&self) -> String {
        let stats = &self.stats;
        let q = |q: f64| stats.latency.value_at_quantile(q);
        let mib = |b: Option<u64>| {
            b.map(|b| format!("{:.0}", b as f64 / (1 << 20) as f64)).unwrap_or_else(|| "-".into())
        };
        format!(
            "{:<46} {:>9} {:>10.0} {:>7} {:>7} {:>7} {:>8} {:>7} {:>8} {:>9} {:>8} {:>8} {:>6}",
            self.name,
            stats.requests(),
            stats.requests() as f64 / stats.seconds,
            q(0.5),
            q(0.9),
            q(0.99),
            q(0.999),
            stats.errors,
            self.cpu_us_per_request().map(|us| format!("{us:.1}")).unwrap_or_else(|| "-".into()),
            self.server_cpu_us_per_request()
                .map(|us| format!("{us:.1}"))
                .unwrap_or_else(|| "-".into()),
            mib(self.resources.peak_rss_bytes),
            mib(self.resources.log_bytes),
            self.resources
                .bytes_per_identity
                .map(|b| format!("{b:.0}"))
                .unwrap_or_else(|| "-".into()),
        )
    }

    /// A line on what was not sent as written (rejected, skipped, sent unresolved); `None` when
    /// everything was.
    pub fn notes(&self) -> Option<String> {
        let stats = &self.stats;
        (stats.unresolved + stats.skipped + stats.rejected > 0).then(|| {
            format!(
                "{}: {} rejected (4xx), {} modify skipped and {} references sent unresolved \
                 (their line was still in flight)",
                self.name, stats.rejected, stats.skipped, stats.unresolved
            )
        })
    }
}
