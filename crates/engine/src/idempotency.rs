//! `request_id` idempotency: a repeated request id within a window of recorded time gets the first
//! answer and appends nothing. The index is derived from the log (rebuilt on open from the entries
//! inside the window), so it obeys the same rule as everything else: the log is the truth.
//!
//! The rule for a reused id (as payment APIs have it): a retry must repeat the request. The index
//! keeps a fingerprint of what each id asked (operation, environment, identities or changes); the
//! same id with another request within the window is refused
//! ([`crate::EngineError::RequestIdReused`], HTTP 422), never answered with the first request's
//! answer, and nothing is recorded for it.
//!
//! Memory is bounded twice: at most [`IDEMPOTENCY_IDS_MAX`] ids and [`IDEMPOTENCY_BYTES_MAX`] bytes
//! of ids and answers (ids are at most [`REQUEST_ID_BYTES_MAX`] bytes); past either, the oldest are
//! forgotten first, even inside the window.

use std::collections::VecDeque;
use std::hash::BuildHasher;
use std::ops::ControlFlow;
use std::sync::Arc;

use hashbrown::{DefaultHashBuilder, HashTable};
use std::hash::{Hash, Hasher};

use idgraph_log::Log;
use idgraph_model::{Entry, Environment, Operation, Seq, Timestamp};
use idgraph_query::{Answer, IdentityOp};

use crate::Command;
use crate::answer::answer_of;

/// Most request ids remembered; the oldest are forgotten first even inside the window. Bounds the
/// memory a flood of unique ids can take.
pub const IDEMPOTENCY_IDS_MAX: usize = 1_000_000;

/// Most bytes of ids and answers remembered (an estimate of their heap use, see
/// [`remembered_bytes`]); the oldest are forgotten first past it. A million typical answers take
/// about a fifth of it; a flood of long ids or large answers stops here.
pub const IDEMPOTENCY_BYTES_MAX: usize = 256 << 20;

/// The longest `request_id` accepted, in bytes (a UUID is 36). Longer ids are refused (400), so a
/// client cannot make the engine remember arbitrarily large keys.
pub const REQUEST_ID_BYTES_MAX: usize = 128;

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

/// What a request asked, reduced to what a retry repeats: its operation and a hash of its
/// environment and content (the alias window, which defaults to times around the request's own,
/// is left out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fingerprint {
    /// The operation's name (for the error that names the first use).
    pub(crate) operation: &'static str,
    hash: u64,
}

/// One remembered answer.
#[derive(Debug)]
struct Remembered {
    /// The key's hash.
    hash: u64,
    key: Key,
    /// When it was recorded.
    time: Timestamp,
    /// The sequence of the entry that recorded it: a repeat is answered only once that entry is
    /// durable (its first answer may still be waiting for its fsync).
    seq: Seq,
    /// What was asked.
    request: Fingerprint,
    answer: Answer,
}

/// What the index says of a request id.
#[derive(Debug)]
pub(crate) enum Seen<'a> {
    /// Not remembered within the window: decide the request.
    New,
    /// The same request again: its first answer, and the entry that recorded it.
    Repeat(&'a Answer, Seq),
    /// Another request under the same id: refuse it. The first request's operation.
    Conflict(&'static str),
}

#[cfg(test)]
impl Seen<'_> {
    /// Whether the id is free (not remembered within the window).
    fn is_new(&self) -> bool {
        matches!(self, Seen::New)
    }
}

/// The heap bytes an id and its answer take, roughly (strings and vectors, with a fixed overhead per
/// entry for the table slot, the queue slot and the allocations' headers).
fn remembered_bytes(key: &Key, answer: &Answer) -> usize {
    const OVERHEAD: usize = 128;
    let answer_bytes = match answer {
        Answer::Resolved(resolved) => resolved
            .matched_identities
            .iter()
            .map(|identity| std::mem::size_of_val(identity) + identity.value.len())
            .sum(),
        Answer::Modified { change_results, .. } => {
            change_results.len() * std::mem::size_of::<idgraph_query::ChangeResult>()
        }
        Answer::Alias { reason, .. } => reason.as_ref().map_or(0, String::len),
        Answer::NotFound | Answer::Admin { .. } => 0,
    };
    OVERHEAD + key.joined.len() + answer_bytes
}

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
    /// [`remembered_bytes`] of everything in `answers`.
    bytes: usize,
    /// The byte budget ([`IDEMPOTENCY_BYTES_MAX`]; smaller in tests).
    bytes_max: usize,
}

impl IdempotencyIndex {
    pub(crate) fn new(window_micros: i64) -> IdempotencyIndex {
        IdempotencyIndex {
            window_micros,
            answers: (0..SHARDS).map(|_| HashTable::new()).collect(),
            hasher: DefaultHashBuilder::default(),
            order: VecDeque::with_capacity(IDEMPOTENCY_IDS_MAX),
            scratch: String::new(),
            bytes: 0,
            bytes_max: IDEMPOTENCY_BYTES_MAX,
        }
    }

    /// The fingerprint of a recorded operation in `environment`. Equals
    /// [`IdempotencyIndex::fingerprint_command`] of the command it was recorded from.
    pub(crate) fn fingerprint(
        &self,
        environment: Environment,
        operation: &Operation,
    ) -> Fingerprint {
        let mut hasher = self.hasher.build_hasher();
        environment.hash(&mut hasher);
        operation.name().hash(&mut hasher);
        match operation {
            Operation::Identify(request)
            | Operation::Login(request)
            | Operation::Logout(request) => {
                request.known_identities.hash(&mut hasher);
                request.previous_mpid.hash(&mut hasher);
            }
            Operation::Modify { mpid, identity_changes } => {
                mpid.hash(&mut hasher);
                identity_changes.hash(&mut hasher);
            }
            Operation::Alias { source, destination, .. } => {
                source.hash(&mut hasher);
                destination.hash(&mut hasher);
            }
            Operation::AdminDetach(correction) | Operation::AdminSplit(correction) => {
                correction.hash(&mut hasher);
            }
        }
        Fingerprint { operation: operation.name(), hash: hasher.finish() }
    }

    /// The fingerprint of the entry `command` records, in `environment` (see
    /// [`IdempotencyIndex::fingerprint`]). `None` for a search, which records nothing.
    pub(crate) fn fingerprint_command(
        &self,
        environment: Environment,
        command: &Command,
    ) -> Option<Fingerprint> {
        let mut hasher = self.hasher.build_hasher();
        environment.hash(&mut hasher);
        let operation = match command {
            Command::Identity(query) => {
                let name = match query.op {
                    IdentityOp::Identify => "identify",
                    IdentityOp::Login => "login",
                    IdentityOp::Logout => "logout",
                    IdentityOp::Search => return None,
                };
                name.hash(&mut hasher);
                query.known_identities.hash(&mut hasher);
                query.previous_mpid.hash(&mut hasher);
                name
            }
            Command::Modify { mpid, identity_changes } => {
                "modify".hash(&mut hasher);
                mpid.hash(&mut hasher);
                identity_changes.hash(&mut hasher);
                "modify"
            }
            Command::Alias(query) => {
                "alias".hash(&mut hasher);
                query.source.hash(&mut hasher);
                query.destination.hash(&mut hasher);
                "alias"
            }
            Command::AdminDetach(correction) => {
                "admin_detach".hash(&mut hasher);
                correction.hash(&mut hasher);
                "admin_detach"
            }
            Command::AdminSplit(correction) => {
                "admin_split".hash(&mut hasher);
                correction.hash(&mut hasher);
                "admin_split"
            }
        };
        Some(Fingerprint { operation, hash: hasher.finish() })
    }

    /// Rebuilds the index from the entries recorded within the window before `last_time`.
    pub(crate) fn rebuild(
        log: &Log,
        last_time: Timestamp,
        window_micros: i64,
    ) -> idgraph_log::Result<IdempotencyIndex> {
        let mut index = IdempotencyIndex::new(window_micros);
        // The oldest entry still inside the window is recorded at `last_time - window` exactly
        // (`expired` keeps it), so the scan starts after the last entry before that.
        let from =
            log.seq_at(Timestamp(last_time.0.saturating_sub(window_micros).saturating_sub(1)))?;
        log.scan(from.next(), |seq, entry| {
            index.remember(seq, &entry);
            ControlFlow::Continue(())
        })?;
        Ok(index)
    }

    /// Remembers the answer of a recorded entry that carries a `request_id`, as deciding it did:
    /// what a rebuild does for each entry in the window, and a follower for each entry it applies.
    pub(crate) fn remember(&mut self, seq: Seq, entry: &Entry) {
        if let Some(request_id) = &entry.request.request_id {
            let request = self.fingerprint(entry.request.environment, &entry.request.operation);
            let answer = answer_of(entry);
            self.insert(
                &entry.request.workspace,
                request_id,
                request,
                seq,
                entry.recorded_at,
                answer,
            );
        }
    }

    fn hash(&self, workspace: &str, request_id: &str) -> u64 {
        self.hasher.hash_one((workspace, request_id))
    }

    /// What is remembered of `request_id` in `workspace` within the window before `now`, given
    /// that it now asks `request`.
    pub(crate) fn get(
        &self,
        workspace: &str,
        request_id: &str,
        request: Fingerprint,
        now: Timestamp,
    ) -> Seen<'_> {
        let hash = self.hash(workspace, request_id);
        let table = &self.answers[shard_of(hash)];
        let found = table.find(hash, |r| r.key.parts() == (workspace, request_id));
        match found.filter(|r| !self.expired(r.time, now)) {
            None => Seen::New,
            Some(r) if r.request == request => Seen::Repeat(&r.answer, r.seq),
            Some(r) => Seen::Conflict(r.request.operation),
        }
    }

    /// Whether an id remembered at `time` is outside the window at `now`.
    fn expired(&self, time: Timestamp, now: Timestamp) -> bool {
        time.0 < now.0.saturating_sub(self.window_micros)
    }

    /// Remembers `answer` to `request` under `request_id` in `workspace`, recorded at `time`.
    pub(crate) fn insert(
        &mut self,
        workspace: &str,
        request_id: &str,
        request: Fingerprint,
        seq: Seq,
        time: Timestamp,
        answer: Answer,
    ) {
        // Expired ids go a few at a time; past the count or byte budget, the oldest go regardless
        // (as many as it takes for the bytes: each insert adds a bounded amount).
        let mut n_dropped = 0;
        while let Some((oldest, ..)) = self.order.front() {
            let over_budget =
                self.order.len() >= IDEMPOTENCY_IDS_MAX || self.bytes > self.bytes_max;
            let expired = n_dropped < EXPIRED_DROPPED_PER_INSERT && self.expired(*oldest, time);
            if !over_budget && !expired {
                break;
            }
            let (_, hash, dropped) = self.order.pop_front().expect("front exists");
            let same = |r: &Remembered| Arc::ptr_eq(&r.key.joined, &dropped.joined);
            if let Ok(slot) = self.answers[shard_of(hash)].find_entry(hash, same) {
                let (removed, _) = slot.remove();
                self.bytes -= remembered_bytes(&removed.key, &removed.answer);
            }
            n_dropped += 1;
        }
        let hash = self.hash(workspace, request_id);
        let table = &mut self.answers[shard_of(hash)];
        // Remembered before (an expired answer not yet forgotten, or a rebuild meeting an id twice):
        // forget it, so the id gets a fresh key and a fresh place in the expiry queue. The old
        // place then names a key no longer in the table and forgets nothing.
        let same = |r: &Remembered| r.key.parts() == (workspace, request_id);
        if let Ok(slot) = table.find_entry(hash, same) {
            let (removed, _) = slot.remove();
            self.bytes -= remembered_bytes(&removed.key, &removed.answer);
        }
        self.scratch.clear();
        self.scratch.push_str(workspace);
        self.scratch.push_str(request_id);
        let key = Key { joined: Arc::from(self.scratch.as_str()), workspace_len: workspace.len() };
        self.bytes += remembered_bytes(&key, &answer);
        let remembered = Remembered { hash, key: key.clone(), time, seq, request, answer };
        table.insert_unique(hash, remembered, |r| r.hash);
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

    /// The fingerprint of every request in these tests but the conflicting ones.
    const ASKED: Fingerprint = Fingerprint { operation: "modify", hash: 0 };

    fn mpid_of(seen: Seen<'_>) -> Option<Mpid> {
        match seen {
            Seen::Repeat(Answer::Modified { mpid, .. }, _) => Some(*mpid),
            _ => None,
        }
    }

    fn n_remembered(index: &IdempotencyIndex) -> usize {
        index.answers.iter().map(HashTable::len).sum()
    }

    #[test]
    fn remembers_by_workspace_and_id_within_the_window() {
        let mut index = IdempotencyIndex::new(100);
        index.insert("ab", "c", ASKED, Seq(1), Timestamp(0), answer(1));
        index.insert("a", "bc", ASKED, Seq(1), Timestamp(10), answer(2));
        let at = |now| Timestamp(now);
        assert_eq!(mpid_of(index.get("ab", "c", ASKED, at(10))), Mpid::new(1));
        assert_eq!(mpid_of(index.get("a", "bc", ASKED, at(10))), Mpid::new(2), "the split matters");
        assert!(index.get("abc", "", ASKED, at(10)).is_new());
        // Past the window the oldest is not answered any more, even before anything is inserted.
        assert!(index.get("ab", "c", ASKED, at(101)).is_new());
        assert_eq!(mpid_of(index.get("a", "bc", ASKED, at(101))), Mpid::new(2));
        // An insert forgets the expired one.
        index.insert("x", "y", ASKED, Seq(1), Timestamp(105), answer(3));
        assert_eq!(n_remembered(&index), 2);
        assert_eq!(mpid_of(index.get("x", "y", ASKED, at(105))), Mpid::new(3));
        index.insert("late", "y", ASKED, Seq(1), Timestamp(1_000), answer(7));
        assert!(index.get("x", "y", ASKED, at(1_000)).is_new());
        assert!(index.get("a", "bc", ASKED, at(1_000)).is_new());
        assert_eq!(n_remembered(&index), 1);
    }

    #[test]
    fn an_expired_id_remembered_again_keeps_its_new_answer() {
        let mut index = IdempotencyIndex::new(100);
        for n in 0..EXPIRED_DROPPED_PER_INSERT {
            index.insert("w", &format!("old-{n}"), ASKED, Seq(1), Timestamp(0), answer(1));
        }
        index.insert("w", "again", ASKED, Seq(1), Timestamp(1), answer(2));
        // At 200 everything has expired; the insert forgets the oldest few, not "again" yet, which
        // is then remembered anew.
        index.insert("w", "again", ASKED, Seq(1), Timestamp(200), answer(3));
        assert_eq!(mpid_of(index.get("w", "again", ASKED, Timestamp(200))), Mpid::new(3));
        // Its first place in the expiry queue comes up next: it must not forget the new answer.
        index.insert("w", "other", ASKED, Seq(1), Timestamp(210), answer(4));
        assert_eq!(mpid_of(index.get("w", "again", ASKED, Timestamp(210))), Mpid::new(3));
        assert_eq!(n_remembered(&index), 2);
    }

    #[test]
    fn many_ids_spread_over_the_tables_are_all_found_and_expire_a_few_at_a_time() {
        let mut index = IdempotencyIndex::new(1_000);
        for n in 0..50_000 {
            index.insert(
                "w",
                &format!("request-{n}"),
                ASKED,
                Seq(1),
                Timestamp(n / 100),
                answer(n + 1),
            );
        }
        let now = Timestamp(499);
        for n in (0..50_000).step_by(7) {
            assert_eq!(
                mpid_of(index.get("w", &format!("request-{n}"), ASKED, now)),
                Mpid::new(n + 1)
            );
        }
        assert!(index.answers.iter().all(|table| !table.is_empty()), "every table is used");
        assert_eq!(n_remembered(&index), 50_000);
        // Much later, every id has expired at once: none is answered, and each insert forgets a
        // few of them (the engine never stalls to forget them all) until none is left.
        let now = Timestamp(100_000);
        assert!(index.get("w", "request-49999", ASKED, now).is_new());
        index.insert("w", "late-0", ASKED, Seq(1), now, answer(1));
        assert_eq!(n_remembered(&index), 50_000 - EXPIRED_DROPPED_PER_INSERT + 1);
        let mut n_inserts = 1;
        while index.order.front().is_some_and(|(time, ..)| time.0 < 99_000) {
            index.insert("w", &format!("late-{n_inserts}"), ASKED, Seq(1), now, answer(1));
            n_inserts += 1;
        }
        assert_eq!(n_remembered(&index), n_inserts);
        assert!(mpid_of(index.get("w", "late-0", ASKED, now)).is_some());
        assert!(n_inserts * EXPIRED_DROPPED_PER_INSERT >= 50_000);
    }

    #[test]
    fn another_request_under_a_remembered_id_is_a_conflict_not_the_first_answer() {
        let mut index = IdempotencyIndex::new(1_000);
        let query = |op, value: &str| {
            Command::Identity(idgraph_query::IdentityQuery {
                op,
                known_identities: vec![idgraph_model::Identity::new(
                    idgraph_model::IdentityType::Email,
                    value,
                )],
                previous_mpid: None,
            })
        };
        let prod = Environment::Production;
        let identify =
            index.fingerprint_command(prod, &query(IdentityOp::Identify, "a@b.c")).unwrap();
        index.insert("w", "id-1", identify, Seq(1), Timestamp(0), answer(1));
        assert_eq!(mpid_of(index.get("w", "id-1", identify, Timestamp(5))), Mpid::new(1));
        // Another operation, other identities, another environment: each a conflict naming the first.
        let login = index.fingerprint_command(prod, &query(IdentityOp::Login, "a@b.c")).unwrap();
        let other = index.fingerprint_command(prod, &query(IdentityOp::Identify, "x@y.z")).unwrap();
        let dev = Environment::Development;
        let in_dev = index.fingerprint_command(dev, &query(IdentityOp::Identify, "a@b.c")).unwrap();
        for asked in [login, other, in_dev] {
            assert!(matches!(
                index.get("w", "id-1", asked, Timestamp(5)),
                Seen::Conflict("identify")
            ));
        }
        // Past the window the id is free again.
        assert!(index.get("w", "id-1", login, Timestamp(2_000)).is_new());
        // A search records nothing and so has no fingerprint.
        assert!(index.fingerprint_command(prod, &query(IdentityOp::Search, "a@b.c")).is_none());
    }

    #[test]
    fn a_command_and_the_operation_it_records_have_the_same_fingerprint() {
        let index = IdempotencyIndex::new(1_000);
        let identities =
            vec![idgraph_model::Identity::new(idgraph_model::IdentityType::Email, "e")];
        let mpid = Mpid::new(7).unwrap();
        let change = idgraph_model::IdentityChange {
            identity_type: idgraph_model::IdentityType::Email,
            old_value: None,
            new_value: Some("f".into()),
        };
        let correction = idgraph_model::AdminCorrection {
            mpid,
            identities: identities.clone(),
            actor: "a".into(),
            reason: "r".into(),
        };
        let commands = [
            Command::Identity(idgraph_query::IdentityQuery {
                op: IdentityOp::Logout,
                known_identities: identities.clone(),
                previous_mpid: Some(mpid),
            }),
            Command::Modify { mpid, identity_changes: vec![change] },
            Command::Alias(idgraph_query::AliasQuery {
                source: mpid,
                destination: Mpid::new(8).unwrap(),
                start: None,
                end: None,
            }),
            Command::AdminDetach(correction.clone()),
            Command::AdminSplit(correction),
        ];
        let env = Environment::Production;
        for command in commands {
            let from_command = index.fingerprint_command(env, &command).unwrap();
            let operation = crate::engine::operation_of(command, Timestamp(1_000_000));
            assert_eq!(from_command, index.fingerprint(env, &operation), "{operation:?}");
        }
    }

    #[test]
    fn memory_is_bounded_in_bytes_oldest_forgotten_first() {
        let mut index = IdempotencyIndex::new(1_000_000);
        index.bytes_max = 64 * 1024;
        let long_id = "x".repeat(REQUEST_ID_BYTES_MAX - 8);
        for n in 0..10_000 {
            index.insert(
                "w",
                &format!("{n:08}{long_id}"),
                ASKED,
                Seq(1),
                Timestamp(n),
                answer(n + 1),
            );
            assert!(index.bytes <= index.bytes_max + 1024, "{} bytes after {n}", index.bytes);
        }
        let n_kept = n_remembered(&index);
        assert!((100..1_000).contains(&n_kept), "{n_kept} kept");
        // The newest are the ones kept.
        let newest = format!("{:08}{long_id}", 9_999);
        assert_eq!(mpid_of(index.get("w", &newest, ASKED, Timestamp(9_999))), Mpid::new(10_000));
        assert!(index.get("w", &format!("{:08}{long_id}", 0), ASKED, Timestamp(9_999)).is_new());
    }
}
