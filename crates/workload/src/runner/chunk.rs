//! Cutting a workload into chunks for concurrent clients: [`Chunker`].
//!
//! Clients share one source of requests, in line order; each takes its next chunk (one request, or
//! up to a pipeline's worth) under a lock. A chunk never holds a request together with a line it
//! references, since that answer cannot be known when the chunk is sent: such a request is held back
//! for a later chunk.

use std::collections::VecDeque;
use std::fmt::Display;

use crate::request::WorkloadRequest;

/// Most lines held back at once; past it, chunks are cut short.
const HELD_MAX: usize = 4_096;

/// The shared source, and the lines held back for the next chunk.
pub(crate) struct Chunker<S> {
    requests: S,
    /// The last line number taken from `requests`.
    line: u64,
    /// Lines taken but not sent yet, in line order: each references a line of the chunk that was
    /// being built when it was taken.
    held: VecDeque<(u64, WorkloadRequest)>,
}

impl<S, E> Chunker<S>
where
    S: Iterator<Item = Result<WorkloadRequest, E>>,
    E: Display,
{
    pub(crate) fn new(requests: S) -> Chunker<S> {
        Chunker { requests, line: 0, held: VecDeque::new() }
    }

    /// The next up-to-`n_max` lines, with their line numbers (empty: the workload is finished), or
    /// the source's error. A reference to a line another client still has in flight is sent
    /// unresolved, as a device that has not heard back yet would; with one client and no
    /// pipeline, every reference is resolved.
    pub(crate) fn next_chunk(
        &mut self,
        n_max: usize,
    ) -> Result<Vec<(u64, WorkloadRequest)>, String> {
        let Chunker { requests, line, held } = self;
        let mut chunk: Vec<(u64, WorkloadRequest)> = Vec::with_capacity(n_max);
        let mut deferred = VecDeque::new();
        // The chunk is in line order (held lines are older than any line taken after them), so
        // whether it holds a line is a binary search.
        let refers_to_chunk = |request: &WorkloadRequest, chunk: &[(u64, WorkloadRequest)]| {
            request.references().any(|r| chunk.binary_search_by_key(&r.line, |(l, _)| *l).is_ok())
        };
        while chunk.len() < n_max {
            let Some((held_line, request)) = held.pop_front() else { break };
            if refers_to_chunk(&request, &chunk) {
                deferred.push_back((held_line, request));
            } else {
                chunk.push((held_line, request));
            }
        }
        while chunk.len() < n_max && held.len() + deferred.len() < HELD_MAX {
            let Some(request) = requests.next() else { break };
            *line += 1;
            let request = request.map_err(|err| err.to_string())?;
            if refers_to_chunk(&request, &chunk) {
                deferred.push_back((*line, request));
            } else {
                chunk.push((*line, request));
            }
        }
        debug_assert!(chunk.is_sorted_by_key(|(l, _)| *l), "a chunk is in line order");
        // Deferred lines go before the rest of the held ones: they are older.
        deferred.extend(held.drain(..));
        *held = deferred;
        Ok(chunk)
    }
}
