//! The runner's side of the reference scheme: [`MpidBook`] remembers which MPID each line returned,
//! so `{"ref": n}` can be turned into a real MPID while replaying.
//!
//! A runner does, for every line:
//!
//! 1. resolve the line's references with [`MpidBook::resolve`];
//! 2. send the request (an unresolvable `previous_mpid` is sent as absent; a modify whose target
//!    is unresolvable cannot be sent, and counts as skipped);
//! 3. record the MPID the answer carried (`None` for errors, modify and search):
//!    [`MpidBook::record`] when lines are replayed one after another, [`MpidBook::record_line`]
//!    when several clients finish lines out of order (the runner, `runner/`).
//!
//! Replayed in order, a reference is unresolvable only when the referenced request failed (for
//! example, it carried nothing but blocked values under a strict configuration). Replayed by
//! several clients at once, it may also point to a line another client still has in flight
//! ([`Unresolved::NotYetRecorded`]).

use std::fmt;

use idgraph_model::Mpid;

use crate::request::LineRef;

/// The MPID returned for each line so far, indexed by line number. A little over 8 bytes per line
/// (an `Option<Mpid>` is the size of an `i64`, plus one bit saying the line was recorded): 400 MB
/// for 50 million lines.
///
/// The memory grows with the workload because a reference can reach arbitrarily far back (a user
/// who returns after a long pause refers to their last visit).
#[derive(Debug, Clone, Default)]
pub struct MpidBook {
    /// Entry `n - 1` is line `n`'s result (`None` also for a line not recorded yet).
    mpids: Vec<Option<Mpid>>,
    /// Bit `(n - 1) % 64` of word `(n - 1) / 64` is set once line `n` is recorded.
    recorded: Vec<u64>,
    /// Lines recorded so far.
    n_recorded: u64,
}

/// Why a reference has no MPID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Unresolved {
    /// The referenced line has not been recorded yet (the workload is malformed, or the line is
    /// still in flight on another client).
    NotYetRecorded(LineRef),
    /// The referenced line was recorded without an MPID (its request failed, or it is a search or
    /// modify).
    NoResult(LineRef),
}

impl fmt::Display for Unresolved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unresolved::NotYetRecorded(reference) => {
                write!(f, "line {} has not been replayed yet", reference.line)
            }
            Unresolved::NoResult(reference) => {
                write!(f, "line {} returned no MPID", reference.line)
            }
        }
    }
}

impl std::error::Error for Unresolved {}

impl MpidBook {
    /// An empty book, before line 1.
    pub fn new() -> MpidBook {
        MpidBook::default()
    }

    /// Records the result of the line after the highest one recorded so far, and returns its
    /// number (the first call is line 1). For replaying in order: call it once per line, including
    /// lines that failed or carry no MPID.
    pub fn record(&mut self, mpid: Option<Mpid>) -> u64 {
        let line = self.mpids.len() as u64 + 1;
        self.record_line(line, mpid);
        line
    }

    /// Records the result of line `line` (1-based), in any order. Recording a line again replaces
    /// its result.
    pub fn record_line(&mut self, line: u64, mpid: Option<Mpid>) {
        assert!(line >= 1, "line numbers start at 1");
        let idx = usize::try_from(line - 1).expect("a line number fits in memory");
        if self.mpids.len() <= idx {
            self.mpids.resize(idx + 1, None);
            self.recorded.resize(idx / 64 + 1, 0);
        }
        self.mpids[idx] = mpid;
        let (word, bit) = (idx / 64, 1u64 << (idx % 64));
        if self.recorded[word] & bit == 0 {
            self.recorded[word] |= bit;
            self.n_recorded += 1;
        }
    }

    /// Lines recorded so far.
    pub fn lines_recorded(&self) -> u64 {
        self.n_recorded
    }

    /// The MPID returned for the referenced line.
    pub fn resolve(&self, reference: LineRef) -> Result<Mpid, Unresolved> {
        let idx = usize::try_from(reference.line).ok().and_then(|line| line.checked_sub(1));
        let Some(idx) = idx.filter(|&idx| self.is_recorded(idx)) else {
            return Err(Unresolved::NotYetRecorded(reference));
        };
        self.mpids[idx].ok_or(Unresolved::NoResult(reference))
    }

    fn is_recorded(&self, idx: usize) -> bool {
        self.recorded.get(idx / 64).is_some_and(|word| word & (1 << (idx % 64)) != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_recorded_lines_only() {
        let mut book = MpidBook::new();
        let mpid = Mpid::new(42).unwrap();
        assert_eq!(book.record(Some(mpid)), 1);
        assert_eq!(book.record(None), 2);
        assert_eq!(book.resolve(LineRef { line: 1 }), Ok(mpid));
        assert_eq!(
            book.resolve(LineRef { line: 2 }),
            Err(Unresolved::NoResult(LineRef { line: 2 }))
        );
        assert!(matches!(book.resolve(LineRef { line: 3 }), Err(Unresolved::NotYetRecorded(_))));
        assert!(matches!(book.resolve(LineRef { line: 0 }), Err(Unresolved::NotYetRecorded(_))));
        assert_eq!(book.lines_recorded(), 2);
        assert_eq!(std::mem::size_of::<Option<Mpid>>(), 8);
    }

    #[test]
    fn records_lines_out_of_order() {
        let mut book = MpidBook::new();
        let mpid = Mpid::new(-7).unwrap();
        book.record_line(130, Some(mpid));
        assert_eq!(book.resolve(LineRef { line: 130 }), Ok(mpid));
        for line in [1, 64, 65, 129, 131] {
            assert_eq!(
                book.resolve(LineRef { line }),
                Err(Unresolved::NotYetRecorded(LineRef { line })),
                "line {line} is a hole"
            );
        }
        book.record_line(65, None);
        assert_eq!(
            book.resolve(LineRef { line: 65 }),
            Err(Unresolved::NoResult(LineRef { line: 65 }))
        );
        book.record_line(65, None);
        assert_eq!(book.lines_recorded(), 2, "recording a line again does not count it twice");
        assert_eq!(book.record(None), 131, "record continues after the highest line");
    }
}
