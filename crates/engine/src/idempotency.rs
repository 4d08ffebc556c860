//! `request_id` idempotency: a repeated request id within a window of recorded time gets the first
//! answer and appends nothing. The index is derived from the log (rebuilt on open from the entries
//! inside the window), so it obeys the same rule as everything else: the log is the truth.

use std::collections::VecDeque;
use std::hash::BuildHasher;
use std::ops::ControlFlow;
use std::sync::Arc;

use hashbrown::{DefaultHashBuilder, HashTable};
use idgraph_log::Log;
use idgraph_model::Timestamp;
use idgraph_query::Answer;

use crate::answer::answer_of;

/// Most request ids remembered; the oldest are forgotten first even inside the window. Bounds the
/// memory a flood of unique ids can take.
pub const IDEMPOTENCY_IDS_MAX: usize = 1_000_000;

/// The answers are split over this many hash tables by hash, so that growing one (which moves every
/// answer it holds, under the engine's write lock) moves a 64th of them: a table of a million
/// answers in one piece stalled every request for about 200 ms each time it doubled.
const SHARDS: usize = 64;

/// The table of a key's hash: bits the tables themselves hardly use (hashbrown takes a table's
/// slot from the low bits and its tag from the top seven).
fn shard_of(hash: u64) -> usize {
    (hash >> 32) as usize % SHARDS
}

/// A remembered (workspace, request id): both strings in one allocation, shared by the table and
/// the expiry queue, so remembering an answer allocates once.
#[derive(Debug, Clone)]
struct Key {
    /// The workspace followed by the request id.
    joined: Arc<str>,
    workspace_len: usize,
}

impl Key {
    fn parts(&self) -> (&str, &str) {
        self.joined.split_at(self.workspace_len)
    }
}

#[derive(Debug)]
pub(crate) struct IdempotencyIndex {
    window_micros: i64,
    /// (workspace, request id) → answer, with the key's hash (growth rehashes without reading
    /// the strings), split over [`SHARDS`] tables by [`shard_of`]. Probed only, never iterated.
    answers: Box<[HashTable<(u64, Key, Answer)>]>,
    /// Randomly seeded: request ids come from clients.
    hasher: DefaultHashBuilder,
    /// Insertion order with times (and hashes), for expiry. Its capacity is reserved for
    /// [`IDEMPOTENCY_IDS_MAX`] ids up front (32 MB of address space, resident only as it fills), so
    /// it never stalls a request to grow.
    order: VecDeque<(Timestamp, u64, Key)>,
    /// Where a new key is joined before it is copied into its one allocation.
    scratch: String,
}

impl IdempotencyIndex {
    pub(crate) fn new(window_micros: i64) -> IdempotencyIndex {
        IdempotencyIndex {
            window_micros,
            answers: (0..SHARDS).map(|_| HashTable::new()).collect(),
            hasher: DefaultHashBuilder::default(),
            order: VecDeque::with_capacity(IDEMPOTENCY_IDS_MAX),
            scratch: String::new(),
        }
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

    fn hash(&self, workspace: &str, request_id: &str) -> u64 {
        self.hasher.hash_one((workspace, request_id))
    }

    pub(crate) fn get(&self, workspace: &str, request_id: &str) -> Option<&Answer> {
        let hash = self.hash(workspace, request_id);
        let table = &self.answers[shard_of(hash)];
        let found = table.find(hash, |(_, key, _)| key.parts() == (workspace, request_id));
        found.map(|(_, _, answer)| answer)
    }

    pub(crate) fn insert(
        &mut self,
        workspace: &str,
        request_id: &str,
        time: Timestamp,
        answer: Answer,
    ) {
        while let Some((oldest, ..)) = self.order.front() {
            if oldest.0 >= time.0.saturating_sub(self.window_micros)
                && self.order.len() < IDEMPOTENCY_IDS_MAX
            {
                break;
            }
            let (_, hash, expired) = self.order.pop_front().expect("front exists");
            let same = |(_, key, _): &(u64, Key, Answer)| Arc::ptr_eq(&key.joined, &expired.joined);
            if let Ok(slot) = self.answers[shard_of(hash)].find_entry(hash, same) {
                slot.remove();
            }
        }
        let hash = self.hash(workspace, request_id);
        let table = &mut self.answers[shard_of(hash)];
        if let Some((_, _, remembered)) =
            table.find_mut(hash, |(_, key, _)| key.parts() == (workspace, request_id))
        {
            *remembered = answer;
            return;
        }
        self.scratch.clear();
        self.scratch.push_str(workspace);
        self.scratch.push_str(request_id);
        let key = Key { joined: Arc::from(self.scratch.as_str()), workspace_len: workspace.len() };
        table.insert_unique(hash, (hash, key.clone(), answer), |(hash, ..)| *hash);
        self.order.push_back((time, hash, key));
    }
}

#[cfg(test)]
mod tests {
    use idgraph_model::Mpid;

    use super::*;

    fn answer(n: i64) -> Answer {
        Answer::Modified { mpid: Mpid::new(n).unwrap(), change_results: Vec::new() }
    }

    fn mpid_of(answer: Option<&Answer>) -> Option<Mpid> {
        match answer {
            Some(Answer::Modified { mpid, .. }) => Some(*mpid),
            _ => None,
        }
    }

    #[test]
    fn remembers_by_workspace_and_id_within_the_window() {
        let mut index = IdempotencyIndex::new(100);
        index.insert("ab", "c", Timestamp(0), answer(1));
        index.insert("a", "bc", Timestamp(10), answer(2));
        assert_eq!(mpid_of(index.get("ab", "c")), Mpid::new(1));
        assert_eq!(mpid_of(index.get("a", "bc")), Mpid::new(2), "the split matters");
        assert!(index.get("abc", "").is_none());
        // Past the window the oldest is forgotten, the newer one is kept.
        index.insert("x", "y", Timestamp(105), answer(3));
        assert!(index.get("ab", "c").is_none());
        assert_eq!(mpid_of(index.get("a", "bc")), Mpid::new(2));
        assert_eq!(mpid_of(index.get("x", "y")), Mpid::new(3));
        // Remembering an id again replaces its answer and keeps one expiry slot.
        index.insert("x", "y", Timestamp(106), answer(4));
        assert_eq!(mpid_of(index.get("x", "y")), Mpid::new(4));
        assert_eq!(index.order.len(), 2);
        index.insert("z", "z", Timestamp(1_000), answer(5));
        assert!(index.get("x", "y").is_none() && index.get("a", "bc").is_none());
        assert_eq!(index.answers.iter().map(HashTable::len).sum::<usize>(), 1);
    }

    #[test]
    fn many_ids_spread_over_the_tables_are_all_found_and_all_expire() {
        let mut index = IdempotencyIndex::new(1_000);
        for n in 0..50_000 {
            index.insert("w", &format!("request-{n}"), Timestamp(n / 100), answer(n + 1));
        }
        for n in (0..50_000).step_by(7) {
            assert_eq!(mpid_of(index.get("w", &format!("request-{n}"))), Mpid::new(n + 1));
        }
        assert!(index.answers.iter().all(|table| !table.is_empty()), "every table is used");
        // Ids older than the window (times before 500) are gone, the rest kept.
        assert!(index.get("w", "request-49999").is_some());
        assert_eq!(index.answers.iter().map(HashTable::len).sum::<usize>(), 50_000);
        index.insert("w", "late", Timestamp(1_499), answer(9));
        assert!(index.get("w", "request-49899").is_none());
        assert!(index.get("w", "request-49900").is_some());
        assert_eq!(index.answers.iter().map(HashTable::len).sum::<usize>(), 101);
        assert_eq!(index.order.len(), 101);
    }
}
