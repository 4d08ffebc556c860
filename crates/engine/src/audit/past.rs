//! The past, read from the log: the state as of any sequence or time, and the entries that touched a
//! profile or an identity. These are the building blocks of the audit use cases ([`super`]).
//!
//! Two ways to the past. [`projection_as_of`] rebuilds the whole graph (nearest snapshot plus a
//! tail fold): exact for any question, but its cost grows with the log. [`profiles_as_of`] and
//! [`lookup_as_of`] read the log's profile and identity indexes and fold only the entries that
//! touched the profiles a question is about, into a [`PartialProjection`]: milliseconds on any
//! log, and equal to the full fold for those profiles (tested at every sequence).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::ControlFlow;

use idgraph_log::{IndexKey, Log};
use idgraph_model::{Entry, Event, Identity, Mpid, Seq, Timestamp};
use idgraph_projection::{PartialProjection, Projection};

use crate::EngineError;
use crate::load::newest_good_snapshot;

/// The projection as it was after entry `seq` (`Seq::ZERO`: empty): the newest verified snapshot at
/// or before `seq`, plus the entries up to `seq`.
///
/// A snapshot that does not verify is skipped (the next older one, or the start of the log, is used
/// instead: the answer is the same, only slower); opening the engine reports such snapshots.
pub fn projection_as_of(log: &Log, seq: Seq) -> Result<Projection, EngineError> {
    let (snapshot, _discarded) = newest_good_snapshot(log, seq)?;
    let mut projection = snapshot.unwrap_or_else(Projection::new);
    let mut failure = None;
    log.scan(projection.last_seq().next(), |entry_seq, entry| {
        if entry_seq > seq {
            return ControlFlow::Break(());
        }
        match projection.apply(entry_seq, &entry) {
            Ok(()) => ControlFlow::Continue(()),
            Err(err) => {
                failure = Some(err);
                ControlFlow::Break(())
            }
        }
    })?;
    match failure {
        Some(err) => Err(err.into()),
        None => Ok(projection),
    }
}

/// The projection as it was at `time`: after the last entry recorded at or before it.
pub fn projection_at_time(log: &Log, time: Timestamp) -> Result<(Seq, Projection), EngineError> {
    let seq = log.seq_at(time)?;
    Ok((seq, projection_as_of(log, seq)?))
}

/// The state of the profiles `mpids` as of entry `seq`, folded from only the entries that touched
/// them (the log's profile index): each profile's creation, identities, aliases and last-seen time
/// are exactly those of a full fold to `seq` (the other side of each alias is folded too). Only
/// entries of identity scope `scope` are read: a profile of another scope, or one that did not exist
/// yet, is absent.
pub fn profiles_as_of(
    log: &Log,
    scope: &str,
    mpids: &[Mpid],
    seq: Seq,
) -> Result<PartialProjection, EngineError> {
    let mut kept: BTreeSet<Mpid> = mpids.iter().copied().collect();
    let mut entries = BTreeMap::new();
    read_profile_entries(log, scope, &kept, seq, &mut entries)?;
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
    read_profile_entries(log, scope, &partners, seq, &mut entries)?;
    kept.extend(partners);
    let mut projection = PartialProjection::new();
    for (entry_seq, entry) in &entries {
        projection.apply_selected(*entry_seq, entry, |mpid| kept.contains(&mpid))?;
    }
    Ok(projection)
}

/// Reads into `entries` every entry of `scope` up to `seq` that changed one of `mpids`, and the
/// newest that saw each.
fn read_profile_entries(
    log: &Log,
    scope: &str,
    mpids: &BTreeSet<Mpid>,
    seq: Seq,
    entries: &mut BTreeMap<Seq, Entry>,
) -> Result<(), EngineError> {
    let mut seqs = BTreeSet::new();
    for mpid in mpids {
        let changed = log.indexed(IndexKey::ProfileChanged(*mpid), seq)?;
        // Times never go back in log order, so of the entries that saw the profile without
        // changing it, the newest alone sets its last-seen time: one entry, however busy.
        seqs.extend(log.last_indexed(IndexKey::ProfileSeen(*mpid), seq)?);
        seqs.extend(changed);
    }
    for entry_seq in seqs {
        if entries.contains_key(&entry_seq) {
            continue;
        }
        let entry = log.get(entry_seq)?.ok_or(idgraph_log::Error::Gap { missing: entry_seq })?;
        if entry.request.scope == scope {
            entries.insert(entry_seq, entry);
        }
    }
    Ok(())
}

/// Every entry of identity scope `scope` up to `up_to` that touched profile `mpid` (changed it, or
/// was answered with it), oldest first, from the log's profile index: the input of a profile
/// history.
pub fn entries_of_profile(
    log: &Log,
    scope: &str,
    mpid: Mpid,
    up_to: Seq,
) -> Result<Vec<(Seq, Entry)>, EngineError> {
    let mut seqs = log.indexed(IndexKey::ProfileChanged(mpid), up_to)?;
    seqs.extend(log.indexed(IndexKey::ProfileSeen(mpid), up_to)?);
    seqs.sort_unstable();
    let mut entries = read_entries(log, seqs)?;
    entries.retain(|(_, entry)| entry.request.scope == scope);
    Ok(entries)
}

/// Every entry up to `up_to` that attached or detached `identity` in identity scope `scope`,
/// oldest first, from the log's identity index: the input of an identity history.
pub fn entries_of_identity(
    log: &Log,
    scope: &str,
    identity: &Identity,
    up_to: Seq,
) -> Result<Vec<(Seq, Entry)>, EngineError> {
    let seqs = log.indexed(IndexKey::identity(scope, identity), up_to)?;
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
        .map(|seq| match log.get(seq)? {
            Some(entry) => Ok((seq, entry)),
            None => Err(idgraph_log::Error::Gap { missing: seq }.into()),
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
) -> Result<PartialProjection, EngineError> {
    let mut profiles = holders_as_of(log, scope, identities, seq)?;
    profiles.extend(previous_mpid);
    profiles_as_of(log, scope, &profiles.into_iter().collect::<Vec<_>>(), seq)
}
