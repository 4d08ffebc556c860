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

/// Most expired ids forgotten per insert. Expiry is lazy and bounded, so a request after a long
/// quiet spell (when every remembered id has expired at once) does not stall the engine while a
/// million answers are dropped; [`IdempotencyIndex::get`] ignores expired ones meanwhile. Each
/// insert adds one id and forgets up to this many, so a backlog drains.
const EXPIRED_DROPPED_PER_INSERT: usize = 4;

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

/// One remembered answer: the key's hash, the key, when, the answer.
type Remembered = (u64, Key, Timestamp, Answer);

#[derive(Debug)]
pub(crate) struct IdempotencyIndex {
    window_micros: i64,
    /// (workspace, request id) → answer, with the key's hash (growth rehashes without reading
    /// the strings) and the time it was remembered, split over [`SHARDS`] tables by [`shard_of`].
    /// Probed only, never iterated.
    answers: Box<[HashTable<Remembered>]>,
    /// Randomly seeded: request ids come from clients.
    hasher: DefaultHashBuilder,
    /// Insertion order with times (and hashes), for expiry. Its capacity is reserved for
    /// [`IDEMPOTENCY_IDS_MAX`] ids up front (40 MB of address space, resident only as it fills), so
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

    /// The answer remembered for `request_id` in `workspace`, if it was remembered within the
    /// window before `now`.
    pub(crate) fn get(&self, workspace: &str, request_id: &str, now: Timestamp) -> Option<&Answer> {
        let hash = self.hash(workspace, request_id);
        let table = &self.answers[shard_of(hash)];
        let found = table.find(hash, |(_, key, ..)| key.parts() == (workspace, request_id));
        found.filter(|(_, _, time, _)| !self.expired(*time, now)).map(|(.., answer)| answer)
    }

    /// Whether an id remembered at `time` is outside the window at `now`.
    fn expired(&self, time: Timestamp, now: Timestamp) -> bool {
        time.0 < now.0.saturating_sub(self.window_micros)
    }

    pub(crate) fn insert(
        &mut self,
        workspace: &str,
        request_id: &str,
        time: Timestamp,
        answer: Answer,
    ) {
        for _ in 0..EXPIRED_DROPPED_PER_INSERT {
            let Some((oldest, ..)) = self.order.front() else { break };
            if !self.expired(*oldest, time) && self.order.len() < IDEMPOTENCY_IDS_MAX {
                break;
            }
            let (_, hash, expired) = self.order.pop_front().expect("front exists");
            let same = |(_, key, ..): &Remembered| Arc::ptr_eq(&key.joined, &expired.joined);
            if let Ok(slot) = self.answers[shard_of(hash)].find_entry(hash, same) {
                slot.remove();
            }
        }
        let hash = self.hash(workspace, request_id);
        let table = &mut self.answers[shard_of(hash)];
        // Remembered before (an expired answer not yet forgotten, or a rebuild meeting an id twice):
        // forget it, so the id gets a fresh key and a fresh place in the expiry queue. The old
        // place then names a key no longer in the table and forgets nothing.
        let same = |(_, key, ..): &Remembered| key.parts() == (workspace, request_id);
        if let Ok(slot) = table.find_entry(hash, same) {
            slot.remove();
        }
        self.scratch.clear();
        self.scratch.push_str(workspace);
        self.scratch.push_str(request_id);
        let key = Key { joined: Arc::from(self.scratch.as_str()), workspace_len: workspace.len() };
        table.insert_unique(hash, (hash, key.clone(), time, answer), |(hash, ..)| *hash);
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

    fn n_remembered(index: &IdempotencyIndex) -> usize {
        index.answers.iter().map(HashTable::len).sum()
    }

    #[test]
    fn remembers_by_workspace_and_id_within_the_window() {
        let mut index = IdempotencyIndex::new(100);
        index.insert("ab", "c", Timestamp(0), answer(1));
        index.insert("a", "bc", Timestamp(10), answer(2));
        let at = |now| Timestamp(now);
        assert_eq!(mpid_of(index.get("ab", "c", at(10))), Mpid::new(1));
        assert_eq!(mpid_of(index.get("a", "bc", at(10))), Mpid::new(2), "the split matters");
        assert!(index.get("abc", "", at(10)).is_none());
        // Past the window the oldest is not answered any more, even before anything is inserted.
        assert!(index.get("ab", "c", at(101)).is_none());
        assert_eq!(mpid_of(index.get("a", "bc", at(101))), Mpid::new(2));
        // An insert forgets the expired one.
        index.insert("x", "y", Timestamp(105), answer(3));
        assert_eq!(n_remembered(&index), 2);
        assert_eq!(mpid_of(index.get("x", "y", at(105))), Mpid::new(3));
        index.insert("late", "y", Timestamp(1_000), answer(7));
        assert!(index.get("x", "y", at(1_000)).is_none());
        assert!(index.get("a", "bc", at(1_000)).is_none());
        assert_eq!(n_remembered(&index), 1);
    }

    #[test]
    fn an_expired_id_remembered_again_keeps_its_new_answer() {
        let mut index = IdempotencyIndex::new(100);
        for n in 0..EXPIRED_DROPPED_PER_INSERT {
            index.insert("w", &format!("old-{n}"), Timestamp(0), answer(1));
        }
        index.insert("w", "again", Timestamp(1), answer(2));
        // At 200 everything has expired; the insert forgets the oldest few, not "again" yet, which
        // is then remembered anew.
        index.insert("w", "again", Timestamp(200), answer(3));
        assert_eq!(mpid_of(index.get("w", "again", Timestamp(200))), Mpid::new(3));
        // Its first place in the expiry queue comes up next: it must not forget the new answer.
        index.insert("w", "other", Timestamp(210), answer(4));
        assert_eq!(mpid_of(index.get("w", "again", Timestamp(210))), Mpid::new(3));
        assert_eq!(n_remembered(&index), 2);
    }

    #[test]
    fn many_ids_spread_over_the_tables_are_all_found_and_expire_a_few_at_a_time() {
        let mut index = IdempotencyIndex::new(1_000);
        for n in 0..50_000 {
            index.insert("w", &format!("request-{n}"), Timestamp(n / 100), answer(n + 1));
        }
        let now = Timestamp(499);
        for n in (0..50_000).step_by(7) {
            assert_eq!(mpid_of(index.get("w", &format!("request-{n}"), now)), Mpid::new(n + 1));
        }
        assert!(index.answers.iter().all(|table| !table.is_empty()), "every table is used");
        assert_eq!(n_remembered(&index), 50_000);
        // Much later, every id has expired at once: none is answered, and each insert forgets a
        // few of them (the engine never stalls to forget them all) until none is left.
        let now = Timestamp(100_000);
        assert!(index.get("w", "request-49999", now).is_none());
        index.insert("w", "late-0", now, answer(1));
        assert_eq!(n_remembered(&index), 50_000 - EXPIRED_DROPPED_PER_INSERT + 1);
        let mut n_inserts = 1;
        while index.order.front().is_some_and(|(time, ..)| time.0 < 99_000) {
            index.insert("w", &format!("late-{n_inserts}"), now, answer(1));
            n_inserts += 1;
        }
        assert_eq!(n_remembered(&index), n_inserts);
        assert!(index.get("w", "late-0", now).is_some());
        assert!(n_inserts * EXPIRED_DROPPED_PER_INSERT >= 50_000);
    }
}
