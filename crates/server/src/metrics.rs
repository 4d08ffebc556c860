//! Prometheus metrics in the text exposition format, kept by hand (a few counters and one
//! histogram do not need a metrics framework), and the process's own CPU time and memory
//! (`process_cpu_seconds_total`, `process_resident_memory_bytes`, Prometheus's standard names), so a
//! load generator can tell what a request costs the *server*.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use idgraph_log::LogStats;
use idgraph_model::Seq;

/// Latency histogram bucket upper bounds, in seconds.
const LATENCY_BUCKETS_SECONDS: [f64; 12] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0];

/// Request counters and the latency histogram.
#[derive(Debug, Default)]
pub struct Metrics {
    /// (endpoint, status) → count. A `BTreeMap` so the exposition is sorted and stable.
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    latency_buckets: [AtomicU64; LATENCY_BUCKETS_SECONDS.len()],
    latency_count: AtomicU64,
    latency_sum_micros: AtomicU64,
}

impl Metrics {
    /// Records one finished request.
    pub fn record(&self, endpoint: &str, status: u16, latency: Duration) {
        *self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((endpoint.to_owned(), status))
            .or_insert(0) += 1;
        let seconds = latency.as_secs_f64();
        for (bucket, bound) in self.latency_buckets.iter().zip(LATENCY_BUCKETS_SECONDS) {
            if seconds <= bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_micros.fetch_add(latency.as_micros() as u64, Ordering::Relaxed);
    }

    /// The exposition text.
    pub fn render(&self, positions: [Seq; 4], log: LogStats) -> String {
        let [assigned_seq, written_seq, durable_seq, indexed_seq] = positions;
        let mut out = String::new();
        out.push_str("# HELP idgraph_http_requests_total HTTP requests by endpoint and status.\n# TYPE idgraph_http_requests_total counter\n");
        for ((endpoint, status), count) in
            self.requests.lock().unwrap_or_else(|p| p.into_inner()).iter()
        {
            let _ = writeln!(
                out,
                "idgraph_http_requests_total{{endpoint=\"{endpoint}\",status=\"{status}\"}} {count}"
            );
        }
        out.push_str("# HELP idgraph_http_request_duration_seconds HTTP request latency.\n# TYPE idgraph_http_request_duration_seconds histogram\n");
        for (bucket, bound) in self.latency_buckets.iter().zip(LATENCY_BUCKETS_SECONDS) {
            let _ = writeln!(
                out,
                "idgraph_http_request_duration_seconds_bucket{{le=\"{bound}\"}} {}",
                bucket.load(Ordering::Relaxed)
            );
        }
        let count = self.latency_count.load(Ordering::Relaxed);
        let _ =
            writeln!(out, "idgraph_http_request_duration_seconds_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "idgraph_http_request_duration_seconds_sum {}",
            self.latency_sum_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "idgraph_http_request_duration_seconds_count {count}");
        let gauges = [
            (
                "idgraph_log_last_seq",
                "Last sequence assigned (queued entries included).",
                "gauge",
                assigned_seq.0,
            ),
            (
                "idgraph_log_written_seq",
                "Last sequence written to storage.",
                "gauge",
                written_seq.0,
            ),
            (
                "idgraph_log_durable_seq",
                "Last sequence known to be fsynced.",
                "gauge",
                durable_seq.0,
            ),
            (
                "idgraph_log_indexed_seq",
                "Last sequence whose audit index keys are written (the indexer follows the log).",
                "gauge",
                indexed_seq.0,
            ),
            (
                "idgraph_log_index_lag_entries",
                "Entries written but not indexed yet.",
                "gauge",
                written_seq.0.saturating_sub(indexed_seq.0),
            ),
            (
                "idgraph_log_writes_total",
                "Group commits (storage writes).",
                "counter",
                log.n_writes,
            ),
            (
                "idgraph_log_syncs_total",
                "fsyncs; entries_written / syncs is the mean fsync batch size.",
                "counter",
                log.n_syncs,
            ),
            (
                "idgraph_log_entries_written_total",
                "Entries written.",
                "counter",
                log.n_entries_written,
            ),
        ];
        for (name, help, kind, value) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
        }
        out.push_str("# HELP idgraph_log_batch_entries Entries per group commit (one storage write).\n# TYPE idgraph_log_batch_entries histogram\n");
        let mut cumulative = 0;
        for (count, bound) in log.batch_sizes.iter().zip(idgraph_log::BATCH_SIZE_BUCKETS) {
            cumulative += count;
            let le = if bound == u64::MAX { "+Inf".to_owned() } else { bound.to_string() };
            let _ = writeln!(out, "idgraph_log_batch_entries_bucket{{le=\"{le}\"}} {cumulative}");
        }
        let _ = writeln!(
            out,
            "idgraph_log_batch_entries_sum {}\nidgraph_log_batch_entries_count {}",
            log.n_entries_written, log.n_writes
        );
        if let Some(cpu) = process_cpu_seconds() {
            let _ = writeln!(
                out,
                "# HELP process_cpu_seconds_total User and system CPU time of the server process, all threads.\n# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total {cpu}"
            );
        }
        if let Some(bytes) = resident_bytes() {
            let _ = writeln!(
                out,
                "# HELP process_resident_memory_bytes Resident memory of the server process.\n# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes {bytes}"
            );
        }
        out
    }
}

/// CPU time used so far by this process, all threads, user and system (Linux `/proc/self/stat`, in
/// clock ticks of 1/100 s: `USER_HZ` is 100 on every Linux ABI). `None` elsewhere.
pub fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    Some(cpu_ticks_of_stat(&stat)? as f64 / 100.0)
}

/// User plus system clock ticks from the text of `/proc/<pid>/stat`.
fn cpu_ticks_of_stat(stat: &str) -> Option<u64> {
    // The command name (field 2) may hold spaces and parentheses: fields are counted after its
    // last closing parenthesis, where utime and stime are the 12th and 13th.
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(user + system)
}

/// Resident memory of this process (Linux `/proc/self/statm`, in pages of 4 KiB).
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

#[cfg(test)]
mod process_tests {
    use super::*;

    #[test]
    fn cpu_ticks_are_utime_plus_stime_whatever_the_command_name() {
        let stat = "4242 (idg (x) y) R 1 4242 4242 0 -1 4194304 2567 0 0 0 731 45 0 0 20 0 3 0";
        assert_eq!(cpu_ticks_of_stat(stat), Some(776));
        assert_eq!(cpu_ticks_of_stat("4242 (idgraph) R 1"), None, "too short");
        assert!(process_cpu_seconds().is_some(), "this process's own stat parses");
        assert!(resident_bytes().is_some_and(|bytes| bytes > 0));
    }
}
