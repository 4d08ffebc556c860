//! `idgraph log ...`: append entries from JSON Lines, print entries, verify the log.
//!
//! The JSON form of an entry is the serde form of `idgraph_model::Entry` (see
//! `docs/log-format.md`). It is an administration format, not the Identity API.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;
use idgraph_log::{Durability, Log};
use idgraph_model::{Entry, Seq};

/// Entries per durable batch when appending from a file.
const APPEND_BATCH_ENTRIES: usize = 1_000;

#[derive(Debug, Subcommand)]
pub(crate) enum LogCommand {
    /// Append entries read from a JSON Lines file (one entry per line), durably.
    Append {
        /// The file to read (`-` for standard input).
        file: PathBuf,
        /// The data folder.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Print entries as JSON Lines, each as `{"seq":N,"entry":{...}}`.
    Show {
        /// First sequence to print.
        #[arg(long, default_value_t = 1)]
        from: u64,
        /// Most entries to print.
        #[arg(long)]
        limit: Option<usize>,
        /// The data folder.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Read every record and check checksums, sequence and time order.
    Verify {
        /// The data folder.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

pub(crate) fn run(command: LogCommand) -> anyhow::Result<()> {
    match command {
        LogCommand::Append { file, data_dir } => append(&file, &crate::data_dir_arg(data_dir)),
        LogCommand::Show { from, limit, data_dir } => {
            show(Seq(from), limit.unwrap_or(usize::MAX), &crate::data_dir_arg(data_dir))
        }
        LogCommand::Verify { data_dir } => verify(&crate::data_dir_arg(data_dir)),
    }
}

fn open_log(data_dir: &Path) -> anyhow::Result<Log> {
    Log::open(data_dir.join("log")).with_context(|| format!("cannot open {}", data_dir.display()))
}

fn append(file: &Path, data_dir: &Path) -> anyhow::Result<()> {
    let reader: Box<dyn BufRead> = if file == Path::new("-") {
        Box::new(BufReader::new(std::io::stdin()))
    } else {
        let opened = File::open(file).with_context(|| format!("cannot read {}", file.display()))?;
        Box::new(BufReader::new(opened))
    };
    // Parse everything first: a bad line anywhere appends nothing.
    let mut entries = Vec::new();
    for (idx, line) in reader.lines().enumerate() {
        let line_no = idx + 1;
        let line = line.with_context(|| format!("{}:{line_no}: cannot read", file.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let entry: Entry = serde_json::from_str(&line)
            .with_context(|| format!("{}:{line_no}: not a log entry", file.display()))?;
        entries.push(entry);
    }
    let log = open_log(data_dir)?;
    let mut last = log.last_seq();
    for batch in entries.chunks(APPEND_BATCH_ENTRIES) {
        (_, last) = log.append_batch(batch, Durability::Synced)?;
    }
    log.close()?;
    outln!("appended {} entries; last sequence {last}", entries.len());
    Ok(())
}

fn show(from: Seq, limit: usize, data_dir: &Path) -> anyhow::Result<()> {
    let log = open_log(data_dir)?;
    let mut out = BufWriter::new(std::io::stdout().lock());
    let mut n_shown = 0;
    let mut write_error = None;
    log.scan(from, |seq, entry| {
        let line = serde_json::json!({ "seq": seq.0, "entry": entry });
        if let Err(err) = writeln!(out, "{line}") {
            write_error = Some(err);
            return ControlFlow::Break(());
        }
        n_shown += 1;
        if n_shown >= limit { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
    })?;
    if let Some(err) = write_error {
        return Err(err).context("cannot write to standard output");
    }
    out.flush()?;
    Ok(())
}

fn verify(data_dir: &Path) -> anyhow::Result<()> {
    let log = open_log(data_dir)?;
    let report = log.verify()?;
    outln!(
        "ok: {} entries, last sequence {}, {} index keys present",
        report.n_entries,
        report.last_seq,
        report.n_index_keys
    );
    Ok(())
}
