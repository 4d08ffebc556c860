//! `request_id` idempotency: a repeated request id within a window of recorded time gets the first
//! answer and appends nothing. The index is derived from the log (rebuilt on open from the entries
//! inside the window), so it obeys the same rule as everything else: the log is the truth.

use std::collections::VecDeque;
use std::ops::ControlFlow;

use hashbrown::HashMap;
use idgraph_log::Log;
use idgraph_model::Timestamp;
use idgraph_query::Answer;

use crate::answer::answer_of;

/// Most request ids remembered; the oldest are forgotten first even inside the window. Bounds the
/// memory a flood of unique ids can take.
pub const IDEMPOTENCY_IDS_MAX: usize = 1_000_000;

/// A borrowed (workspace, request id) key: hashes like the owned tuple, so lookups allocate nothing.
#[derive(Hash)]
struct KeyRef<'a>(&'a str, &'a str);

impl hashbrown::Equivalent<(String, String)> for KeyRef<'_> {
    fn equivalent(&self, key: &(String, String)) -> bool {
        self.0 == key.0 && self.1 == key.1
    }
}

#[derive(Debug)]
pub(crate) struct IdempotencyIndex {
    window_micros: i64,
    /// (workspace, request id) → answer. Probed only, never iterated.
    answers: HashMap<(String, String), Answer>,
    /// Insertion order with times, for expiry.
    order: VecDeque<(Timestamp, (String, String))>,
}

impl IdempotencyIndex {
    pub(crate) fn new(window_micros: i64) -> IdempotencyIndex {
        IdempotencyIndex { window_micros, answers: HashMap::new(), order: VecDeque::new() }
    }

    /// Rebuilds the index from the entries recorded within the window before `last_time`.
    pub(crate) fn rebuild(
        log: &Log,
        last_time: Timestamp,
        window_micros: i64,
    ) -> idgraph_log::Result<IdempotencyIndex> {
        let mut index = IdempotencyIndex::new(window_micros);
        let from = log.seq_at(Timestamp(last_time.0.saturating_sub(window_micros)))?;
        log.scan(from.next(), |_, entry| {
            if let Some(request_id) = &entry.request.request_id {
                index.insert(
                    &entry.request.workspace,
                    request_id,
                    entry.recorded_at,
                    answer_of(&entry),
                );
            }
            ControlFlow::Continue(())
        })?;
        Ok(index)
    }

    pub(crate) fn get(&self, workspace: &str, request_id: &str) -> Option<&Answer> {
        self.answers.get(&KeyRef(workspace, request_id))
    }

    pub(crate) fn insert(
        &mut self,
        workspace: &str,
        request_id: &str,
        time: Timestamp,
        answer: Answer,
    ) {
        let key = (workspace.to_owned(), request_id.to_owned());
        while let Some((oldest, _)) = self.order.front() {
            if oldest.0 >= time.0.saturating_sub(self.window_micros)
                && self.order.len() < IDEMPOTENCY_IDS_MAX
            {
                break;
            }
            let (_, expired) = self.order.pop_front().expect("front exists");
            self.answers.remove(&expired);
        }
        if self.answers.insert(key.clone(), answer).is_none() {
            self.order.push_back((time, key));
        }
    }
}
