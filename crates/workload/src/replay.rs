//! The runner's side of the reference scheme: [`MpidBook`] remembers which MPID each line returned,
//! so `{"ref": n}` can be turned into a real MPID while replaying in order.
//!
//! A runner does, for every line in order:
//!
//! 1. resolve the line's references with [`MpidBook::resolve`];
//! 2. send the request (an unresolvable `previous_mpid` is sent as absent; a modify whose target
//!    is unresolvable cannot be sent, and counts as skipped);
//! 3. [`MpidBook::record`] the MPID the answer carried (`None` for errors, modify and search).
//!
//! A reference is unresolvable only when the referenced request failed (for example, it carried
//! nothing but blocked values under a strict configuration).

use std::fmt;

use idgraph_model::Mpid;

use crate::request::LineRef;

/// The MPID returned for each line so far, indexed by line number. 8 bytes per line (an
/// `Option<Mpid>` is the size of an `i64`): 400 MB for 50 million lines.
///
/// The memory grows with the workload because a reference can reach arbitrarily far back (a user
/// who returns after a long pause refers to their last visit).
#[derive(Debug, Clone, Default)]
pub struct MpidBook {
    /// Entry `n - 1` is line `n`'s result.
    mpids: Vec<Option<Mpid>>,
}

/// Why a reference has no MPID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Unresolved {
    /// The referenced line has not been recorded yet (the workload is malformed, or lines are being
    /// recorded out of order).
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

    /// Records the result of the next line and returns that line's number (the first call is line
    /// 1). Call it once per line, including lines that failed or carry no MPID.
    pub fn record(&mut self, mpid: Option<Mpid>) -> u64 {
        self.mpids.push(mpid);
        self.mpids.len() as u64
    }

    /// Lines recorded so far.
    pub fn lines_recorded(&self) -> u64 {
        self.mpids.len() as u64
    }

    /// The MPID returned for the referenced line.
    pub fn resolve(&self, reference: LineRef) -> Result<Mpid, Unresolved> {
        let idx = usize::try_from(reference.line).ok().and_then(|line| line.checked_sub(1));
        match idx.and_then(|idx| self.mpids.get(idx)) {
            Some(Some(mpid)) => Ok(*mpid),
            Some(None) => Err(Unresolved::NoResult(reference)),
            None => Err(Unresolved::NotYetRecorded(reference)),
        }
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
        assert_eq!(std::mem::size_of::<Option<Mpid>>(), 8);
    }
}
