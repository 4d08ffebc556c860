//! Audit over the log: the state as of any sequence or time, and the explanation of a stored entry,
//! re-decided against the state just before it.
//!
//! Two ways to the past. [`projection_as_of`] rebuilds the whole graph (nearest snapshot plus a
//! tail fold): exact for any question, but its cost grows with the log. [`profiles_as_of`] and
//! [`lookup_as_of`] read the log's profile and identity indexes and fold only the entries that
//! touched the profiles a question is about, into a [`Projection::partial`]: milliseconds on any
//! log, and equal to the full fold for those profiles (tested at every sequence).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::ControlFlow;

use idgraph_log::{IndexKey, Log};
use idgraph_model::{Entry, Event, Identity, Mpid, Operation, Seq, Timestamp};
use idgraph_projection::Projection;
use idgraph_query::{Explanation, IdentityOp, IdentityQuery, MpidSource, Resolver, World};

use crate::{EngineError, Workspace};

fn unavailable(err: idgraph_log::Error) -> EngineError {
    EngineError::Unavailable(err.to_string())
}

/// The projection as it was after entry `seq` (`Seq::ZERO`: empty): the newest verified snapshot at
/// or before `seq`, plus the entries up to `seq`.
pub fn projection_as_of(log: &Log, seq: Seq) -> Result<Projection, EngineError> {
    let mut projection = Projection::new();
    for snapshot in log.snapshots_at_or_before(seq).map_err(unavailable)? {
        let loaded = log
            .load_snapshot(snapshot)
            .ok()
            .flatten()
            .and_then(|bytes| Projection::from_snapshot(&bytes).ok());
        if let Some(loaded) = loaded.filter(|p| p.last_seq() == snapshot) {
            projection = loaded;
            break;
        }
    }
    let mut failure = None;
    log.scan(projection.last_seq().next(), |entry_seq, entry| {
        if entry_seq > seq {
            return ControlFlow::Break(());
        }
        match projection.apply(entry_seq, &entry) {
            Ok(()) => ControlFlow::Continue(()),
            Err(err) => {
                failure = Some(err.to_string());
                ControlFlow::Break(())
            }
        }
    })
    .map_err(unavailable)?;
    match failure {
        Some(reason) => Err(EngineError::Unavailable(reason)),
        None => Ok(projection),
    }
}

/// The projection as it was at `time`: after the last entry recorded at or before it.
pub fn projection_at_time(log: &Log, time: Timestamp) -> Result<(Seq, Projection), EngineError> {
    let seq = log.seq_at(time).map_err(unavailable)?;
    Ok((seq, projection_as_of(log, seq)?))
}

/// The state of the profiles `mpids` as of entry `seq`, folded from only the entries that touched
/// them (the log's profile index): each profile's creation, identities, aliases and last-seen time
/// are exactly those of a full fold to `seq` (the other side of each alias is folded too). A
/// profile that did not exist yet is absent.
pub fn profiles_as_of(log: &Log, mpids: &[Mpid], seq: Seq) -> Result<Projection, EngineError> {
    let mut kept: BTreeSet<Mpid> = mpids.iter().copied().collect();
    let mut entries = BTreeMap::new();
    read_profile_entries(log, &kept, seq, &mut entries)?;
    let partners: BTreeSet<Mpid> = entries
        .values()
        .flat_map(|entry: &Entry| &entry.events)
        .filter_map(|event| match event {
            Event::AliasRecorded { source, destination, .. } => {
                [*source, *destination].into_iter().find(|mpid| !kept.contains(mpid))
            }
            _ => None,
        })
        .collect();
    read_profile_entries(log, &partners, seq, &mut entries)?;
    kept.extend(partners);
    let mut projection = Projection::partial();
    for (entry_seq, entry) in &entries {
        projection
            .apply_selected(*entry_seq, entry, |mpid| kept.contains(&mpid))
            .map_err(|err| EngineError::Unavailable(err.to_string()))?;
    }
    Ok(projection)
}

/// Reads into `entries` every entry up to `seq` that changed one of `mpids`, and the newest that
/// saw each.
fn read_profile_entries(
    log: &Log,
    mpids: &BTreeSet<Mpid>,
    seq: Seq,
    entries: &mut BTreeMap<Seq, Entry>,
) -> Result<(), EngineError> {
    let mut seqs = BTreeSet::new();
    for mpid in mpids {
        let changed = log.indexed(IndexKey::ProfileChanged(*mpid), seq).map_err(unavailable)?;
        // Times never go back in log order, so of the entries that saw the profile without
        // changing it, the newest alone sets its last-seen time: one entry, however busy.
        seqs.extend(log.last_indexed(IndexKey::ProfileSeen(*mpid), seq).map_err(unavailable)?);
        seqs.extend(changed);
    }
    for entry_seq in seqs {
        if entries.contains_key(&entry_seq) {
            continue;
        }
        let entry = log.get(entry_seq).map_err(unavailable)?.ok_or_else(|| {
            EngineError::Unavailable(format!("indexed entry {entry_seq} is missing"))
        })?;
        entries.insert(entry_seq, entry);
    }
    Ok(())
}

/// Every entry up to `up_to` that touched profile `mpid` (changed it, or was answered with it),
/// oldest first, from the log's profile index: the input of a profile history.
pub fn entries_of_profile(
    log: &Log,
    mpid: Mpid,
    up_to: Seq,
) -> Result<Vec<(Seq, Entry)>, EngineError> {
    let mut seqs = log.indexed(IndexKey::ProfileChanged(mpid), up_to).map_err(unavailable)?;
    seqs.extend(log.indexed(IndexKey::ProfileSeen(mpid), up_to).map_err(unavailable)?);
    seqs.sort_unstable();
    read_entries(log, seqs)
}

/// Every entry up to `up_to` that attached or detached `identity` in identity scope `scope`,
/// oldest first, from the log's identity index: the input of an identity history.
pub fn entries_of_identity(
    log: &Log,
    scope: &str,
    identity: &Identity,
    up_to: Seq,
) -> Result<Vec<(Seq, Entry)>, EngineError> {
    let seqs = log.indexed(IndexKey::identity(scope, identity), up_to).map_err(unavailable)?;
    // The index key is a hash of scope, type and value: confirm on the entry.
    let mut entries = read_entries(log, seqs)?;
    entries.retain(|(_, entry)| {
        entry.request.scope == scope
            && entry.events.iter().any(|event| match event {
                Event::IdentityAttached { identity: i, .. }
                | Event::IdentityDetached { identity: i, .. } => i == identity,
                _ => false,
            })
    });
    Ok(entries)
}

fn read_entries(log: &Log, seqs: Vec<Seq>) -> Result<Vec<(Seq, Entry)>, EngineError> {
    seqs.into_iter()
        .map(|seq| match log.get(seq).map_err(unavailable)? {
            Some(entry) => Ok((seq, entry)),
            None => Err(EngineError::Unavailable(format!("indexed entry {seq} is missing"))),
        })
        .collect()
}

/// The profiles that held any of `identities` (in identity scope `scope`, any environment) at some
/// point up to entry `seq`, from the log's identity index.
pub fn holders_as_of(
    log: &Log,
    scope: &str,
    identities: &[Identity],
    seq: Seq,
) -> Result<BTreeSet<Mpid>, EngineError> {
    let mut holders = BTreeSet::new();
    for identity in identities {
        for (_, entry) in entries_of_identity(log, scope, identity, seq)? {
            for event in &entry.events {
                if let Event::IdentityAttached { mpid, identity: attached } = event
                    && attached == identity
                {
                    holders.insert(*mpid);
                }
            }
        }
    }
    Ok(holders)
}

/// The state a request carrying `identities` (and naming `previous_mpid`) would be resolved against
/// as of entry `seq`: every profile that held one of the identities, and the previous profile, with
/// all their state ([`profiles_as_of`]). Resolution against it decides exactly as against a full
/// fold to `seq`.
pub fn lookup_as_of(
    log: &Log,
    scope: &str,
    identities: &[Identity],
    previous_mpid: Option<Mpid>,
    seq: Seq,
) -> Result<Projection, EngineError> {
    let mut profiles = holders_as_of(log, scope, identities, seq)?;
    profiles.extend(previous_mpid);
    profiles_as_of(log, &profiles.into_iter().collect::<Vec<_>>(), seq)
}

/// Replays the MPIDs a stored entry created, so that re-deciding it reproduces its events exactly;
/// past them (a decision that disagrees), fresh values from a counter, so it never loops.
struct RecordedMpids(Vec<i64>, i64);

impl MpidSource for RecordedMpids {
    fn next_candidate(&mut self) -> i64 {
        if self.0.is_empty() {
            self.1 += 1;
            self.1
        } else {
            self.0.remove(0)
        }
    }
}

/// An explanation of a stored identify / login / logout entry.
#[derive(Debug, Clone)]
pub struct EntryExplanation {
    /// The entry explained.
    pub entry: Entry,
    /// How the resolver decides it against the state just before it.
    pub explanation: Explanation,
    /// Whether that decision equals what was recorded (events and outcome).
    pub agrees: bool,
}

/// Re-decides stored entry `seq` against the projection as of `seq - 1` with the workspace's
/// configuration, explaining each step, and says whether it agrees with what was recorded.
/// `None` for entries that are not identity requests (modify, alias, admin).
pub fn explain_entry(
    log: &Log,
    workspace: &Workspace,
    seq: Seq,
) -> Result<Option<EntryExplanation>, EngineError> {
    let Some(entry) = log.get(seq).map_err(unavailable)? else {
        return Err(EngineError::Unavailable(format!("no entry at sequence {seq}")));
    };
    let (op, request) = match &entry.request.operation {
        Operation::Identify(request) => (IdentityOp::Identify, request),
        Operation::Login(request) => (IdentityOp::Login, request),
        Operation::Logout(request) => (IdentityOp::Logout, request),
        _ => return Ok(None),
    };
    let projection = lookup_as_of(
        log,
        &entry.request.scope,
        &request.known_identities,
        request.previous_mpid,
        Seq(seq.0 - 1),
    )?;
    let world =
        World { scope: entry.request.scope.clone(), environment: entry.request.environment };
    let query = IdentityQuery {
        op,
        known_identities: request.known_identities.clone(),
        previous_mpid: request.previous_mpid,
    };
    let created: Vec<i64> = entry
        .events
        .iter()
        .filter_map(
            |e| if let Event::ProfileCreated { mpid } = e { Some(mpid.get()) } else { None },
        )
        .collect();
    let resolver = Resolver { projection: &projection, config: &workspace.resolver };
    let (decision, explanation) = resolver.explain_identity(
        &world,
        &query,
        entry.recorded_at,
        &mut RecordedMpids(created, 1 << 62),
    );
    let agrees = decision
        .is_ok_and(|d| d.events == entry.events && d.outcome.as_ref() == Some(&entry.outcome));
    Ok(Some(EntryExplanation { entry, explanation, agrees }))
}
