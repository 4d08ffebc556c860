//! What `idgraph bench` measures about the process and its files, outside the runner: peak RSS and
//! CPU time (Linux `/proc/self`), and the bytes a log takes on disk.

use std::path::Path;

/// Peak resident set size of this process (Linux `VmHWM`).
pub(super) fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// CPU time used so far by this process, all threads, user and system (Linux `/proc/self/stat`,
/// in clock ticks of 1/100 s: `USER_HZ` is 100 on every Linux ABI).
pub(super) fn cpu_seconds() -> Option<f64> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_are_utime_plus_stime_whatever_the_command_name() {
        let stat = "4242 (idg (x) y) R 1 4242 4242 0 -1 4194304 2567 0 0 0 731 45 0 0 20 0 3 0";
        assert_eq!(cpu_ticks_of_stat(stat), Some(776));
        assert_eq!(cpu_ticks_of_stat("4242 (idgraph) R 1"), None, "too short");
        assert!(cpu_seconds().is_some(), "this process's own stat parses");
    }
}
