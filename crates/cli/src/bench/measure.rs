//! What `idgraph bench` measures about the process and its files, outside the runner: peak RSS and
//! CPU time (Linux `/proc/self`; the parsing is the server's, which reports its own), and the bytes
//! a log takes on disk.

use std::path::Path;

/// Peak resident set size of this process (Linux `VmHWM`).
pub(super) fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// CPU time used so far by this process, all threads, user and system.
pub(super) fn cpu_seconds() -> Option<f64> {
    idgraph_server::process_cpu_seconds()
}

/// Bytes of every file under `dir`, recursively (0 for what cannot be read).
pub(super) fn folder_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .filter_map(Result::ok)
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => folder_bytes(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}
