//! Workload files: writing them ([`write_jsonl`]) and reading them back ([`Reader`],
//! [`read_jsonl_line`]), with errors that name the line ([`ReadError`]).
//!
//! The format is JSON Lines: one [`WorkloadRequest`] object per line, `\n`-terminated, no header,
//! no blank lines, so line `n` of the file is request `n` and a [`crate::LineRef`] is a plain line
//! number.

use std::fmt;
use std::io::{self, BufRead, Write};

use crate::generator::Generator;
use crate::request::{Op, WorkloadRequest};

/// Bytes collected before each write to the output. Large enough that per-write overhead vanishes
/// (a few hundred lines per write), small enough to stay in cache; the output needs no `BufWriter`.
const WRITE_CHUNK_BYTES: usize = 64 * 1024;

/// Writes the generator's remaining lines to `out`; returns how many were written. Buffers
/// internally (pass a plain `File` or `Stdout`) and allocates nothing per line.
pub fn write_jsonl(generator: &mut Generator, mut out: impl Write) -> io::Result<u64> {
    let mut buffer = Vec::with_capacity(WRITE_CHUNK_BYTES + 1024);
    let mut n_lines = 0;
    while generator.next_line(&mut buffer) {
        n_lines += 1;
        if buffer.len() >= WRITE_CHUNK_BYTES {
            out.write_all(&buffer)?;
            buffer.clear();
        }
    }
    out.write_all(&buffer)?;
    out.flush()?;
    Ok(n_lines)
}

/// Why a line of a workload file could not be read.
#[derive(Debug)]
#[non_exhaustive]
pub struct ReadError {
    /// The 1-based line number. A command reports it as `path:line: kind`.
    pub line: u64,
    /// What went wrong.
    pub kind: ReadErrorKind,
}

/// What went wrong with a line.
#[derive(Debug)]
#[non_exhaustive]
pub enum ReadErrorKind {
    /// Reading the input failed; the reader stops.
    Io(io::Error),
    /// The line is not a valid request object (syntax, unknown field, unknown identity type...).
    Json(serde_json::Error),
    /// The line parses but breaks a rule of the format (a reference that does not point to an
    /// earlier result-bearing line, a modify without `mpid`, ...).
    Invalid(String),
}

impl fmt::Display for ReadErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadErrorKind::Io(err) => write!(f, "cannot read: {err}"),
            ReadErrorKind::Json(err) => write!(f, "not a workload request: {err}"),
            ReadErrorKind::Invalid(message) => f.write_str(message),
        }
    }
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.kind)
    }
}

impl std::error::Error for ReadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            ReadErrorKind::Io(err) => Some(err),
            ReadErrorKind::Json(err) => Some(err),
            ReadErrorKind::Invalid(_) => None,
        }
    }
}

/// Parses line `line_number` (1-based, without its `\n`) and checks the rules that need no other
/// line: references point to earlier lines, and modify-only fields appear exactly on modify.
/// [`Reader`] also checks that references point to result-bearing ops.
pub fn read_jsonl_line(line_number: u64, text: &str) -> Result<WorkloadRequest, ReadError> {
    let error = |kind| ReadError { line: line_number, kind };
    let request: WorkloadRequest =
        serde_json::from_str(text).map_err(|err| error(ReadErrorKind::Json(err)))?;
    check_shape(line_number, &request).map_err(|message| error(ReadErrorKind::Invalid(message)))?;
    Ok(request)
}

fn check_shape(line_number: u64, request: &WorkloadRequest) -> Result<(), String> {
    for reference in request.references() {
        if reference.line == 0 || reference.line >= line_number {
            return Err(format!(
                "reference to line {} is not to an earlier line (lines are numbered from 1)",
                reference.line
            ));
        }
    }
    if request.op == Op::Modify {
        if request.mpid.is_none() {
            return Err("modify needs `mpid` (a reference to an earlier line)".to_owned());
        }
        if !request.known_identities.is_empty() || request.previous_mpid.is_some() {
            return Err("modify takes `mpid` and `identity_changes`, not `known_identities` or \
                        `previous_mpid`"
                .to_owned());
        }
    } else if request.mpid.is_some() || !request.identity_changes.is_empty() {
        return Err(format!("`mpid` and `identity_changes` are for modify, not {}", request.op));
    }
    Ok(())
}

/// Reads a workload file line by line, checking every line with [`read_jsonl_line`] and, across
/// lines, that each reference points to an identify, login or logout line.
///
/// Memory: one bit per line read (which lines are result-bearing), 6 MB for 50 million lines.
/// After an I/O error the reader yields nothing more; after a bad line it continues with the next.
#[derive(Debug)]
pub struct Reader<R> {
    input: R,
    /// The number of the last line read.
    line: u64,
    buffer: String,
    /// Bit `n` is set when line `n` is result-bearing (bit 0 unused).
    result_bearing: Vec<u64>,
    failed: bool,
}

impl<R: BufRead> Reader<R> {
    /// A reader of `input`, positioned before line 1.
    pub fn new(input: R) -> Reader<R> {
        Reader { input, line: 0, buffer: String::new(), result_bearing: Vec::new(), failed: false }
    }

    /// The number of the last line read (0 before the first).
    pub fn line(&self) -> u64 {
        self.line
    }

    fn is_result_bearing(&self, line: u64) -> bool {
        let word = self.result_bearing.get((line / 64) as usize).copied().unwrap_or(0);
        word & (1 << (line % 64)) != 0
    }

    fn mark_result_bearing(&mut self, line: u64) {
        let word_idx = (line / 64) as usize;
        if self.result_bearing.len() <= word_idx {
            self.result_bearing.resize(word_idx + 1, 0);
        }
        self.result_bearing[word_idx] |= 1 << (line % 64);
    }

    fn check_references(&self, request: &WorkloadRequest) -> Result<(), ReadError> {
        for reference in request.references() {
            if !self.is_result_bearing(reference.line) {
                let message = format!(
                    "reference to line {}, which is not an identify, login or logout",
                    reference.line
                );
                return Err(ReadError { line: self.line, kind: ReadErrorKind::Invalid(message) });
            }
        }
        Ok(())
    }
}

impl<R: BufRead> Iterator for Reader<R> {
    type Item = Result<WorkloadRequest, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        self.buffer.clear();
        let n_bytes = match self.input.read_line(&mut self.buffer) {
            Ok(n_bytes) => n_bytes,
            Err(err) => {
                self.failed = true;
                return Some(Err(ReadError { line: self.line + 1, kind: ReadErrorKind::Io(err) }));
            }
        };
        if n_bytes == 0 {
            return None;
        }
        self.line += 1;
        let text = self.buffer.trim_end_matches(['\n', '\r']);
        let request = read_jsonl_line(self.line, text)
            .and_then(|request| self.check_references(&request).map(|()| request));
        if let Ok(request) = &request
            && request.op.is_result_bearing()
        {
            self.mark_result_bearing(self.line);
        }
        Some(request)
    }
}
