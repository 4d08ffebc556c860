//! The fold: the only code that changes a projection's state (snapshot loading aside, which
//! reproduces it). [`Projection::apply`], [`Projection::apply_view`] and
//! [`Projection::apply_run`] fold whole entries in sequence; a [`crate::PartialProjection`] folds
//! chosen parts of entries through [`Projection::fold_selected`]. All of them apply each event
//! through one set of rules ([`Projection::apply_event`]).
//!
//! The rules receive the ids of what an event names already looked up ([`EventIds`]): whether the
//! replay's warm-up (`warm.rs`) found them or [`Projection::look_up`] did is decided in one place,
//! and a rule never needs to know.

use std::hash::BuildHasher;

use idgraph_model::{
    DetachReason, Entry, EntryView, Environment, Event, EventView, IdentityType, IdentityTypeSet,
    IdentityView, Mpid, Seq, Timestamp,
};
use petgraph::graph::NodeIndex;

use crate::digest;
use crate::interner::{Hint, Key};
use crate::packed::{Edge, Node};
use crate::{AliasRecord, IdentityId, Profile, ProfileId, Projection, WorldId};

/// Something wrong with the data in the log, found while folding it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The entry that carried it.
    pub seq: Seq,
    /// What is wrong.
    pub message: String,
}

/// Most diagnostics kept in memory; later ones are counted only.
pub const DIAGNOSTICS_KEPT_MAX: usize = 1_000;

/// [`Projection::apply`] was called with an entry that does not follow the last one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("entry {given} applied after {last}: entries must be applied in sequence")]
pub struct OutOfSequence {
    /// The last applied sequence.
    pub last: Seq,
    /// The sequence given.
    pub given: Seq,
}

/// An event, owned or borrowed, seen as an [`EventView`] (borrowing: no copy of its strings).
pub(crate) trait AsEventView {
    fn with_view<R>(&self, f: impl FnOnce(&EventView<'_>) -> R) -> R;
}

impl AsEventView for Event {
    #[inline]
    fn with_view<R>(&self, f: impl FnOnce(&EventView<'_>) -> R) -> R {
        f(&EventView::from(self))
    }
}

impl AsEventView for EventView<'_> {
    #[inline]
    fn with_view<R>(&self, f: impl FnOnce(&EventView<'_>) -> R) -> R {
        f(self)
    }
}

/// What an event names: the profiles and the identity the fold looks up for it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Names<'a> {
    /// The profile it creates, attaches to or detaches from, or an alias's source.
    pub(crate) profile: Mpid,
    /// An alias's destination.
    pub(crate) other: Option<Mpid>,
    /// The identity it attaches or detaches.
    pub(crate) identity: Option<IdentityView<'a>>,
}

impl<'a> Names<'a> {
    /// What `event` names: the one place, besides the rules and the digest encoding, that tells
    /// the kinds of event apart (warm-up and a partial fold read the names only).
    #[inline]
    pub(crate) fn of(event: &EventView<'a>) -> Names<'a> {
        match event {
            EventView::ProfileCreated { mpid } => {
                Names { profile: *mpid, other: None, identity: None }
            }
            EventView::IdentityAttached { mpid, identity }
            | EventView::IdentityDetached { mpid, identity, .. } => {
                Names { profile: *mpid, other: None, identity: Some(*identity) }
            }
            EventView::AliasRecorded { source, destination, .. } => {
                Names { profile: *source, other: Some(*destination), identity: None }
            }
        }
    }
}

/// The ids of what one event names (its [`Names`]), or, first of an entry's, of its outcome's
/// MPID. Before [`Projection::look_up`], `None` means "not known yet" (what the warm-up of
/// [`Projection::apply_run`] hands over); after it, "there is none".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EventIds {
    /// The profile the event names (an alias's source).
    pub(crate) profile: Option<ProfileId>,
    /// An alias's destination.
    pub(crate) other: Option<ProfileId>,
    /// The identity the event attaches or detaches.
    pub(crate) identity: Option<IdentityId>,
}

impl EventIds {
    /// Nothing known yet.
    pub(crate) const NONE: EventIds = EventIds { profile: None, other: None, identity: None };
}

impl Projection {
    /// Folds one entry. `seq` must be the next sequence. Problems with the entry's data become
    /// [`Diagnostic`]s; the rest of the entry still applies.
    pub fn apply(&mut self, seq: Seq, entry: &Entry) -> Result<(), OutOfSequence> {
        let request = &entry.request;
        let seen = entry.outcome.seen_mpid();
        let world = (request.scope.as_str(), request.environment);
        self.fold(seq, entry.recorded_at, world, &entry.events, seen, &[])
    }

    /// [`Projection::apply`] for a borrowed view of a stored entry (what replay decodes): the same
    /// fold, the same result.
    pub fn apply_view(&mut self, seq: Seq, entry: &EntryView<'_>) -> Result<(), OutOfSequence> {
        let request = &entry.request;
        let seen = entry.outcome.seen_mpid();
        let world = (request.scope, request.environment);
        self.fold(seq, entry.recorded_at, world, &entry.events, seen, &[])
    }

    /// Folds a run of consecutive entries, as [`Projection::apply_view`] on each in turn would, and
    /// returns how many were folded: all of them, or those before the first out of sequence (with
    /// the error).
    ///
    /// Replay folds runs of about a thousand entries. The run is first *warmed up*
    /// (`warm.rs`): everything the fold will look up is read in a tight loop with no
    /// dependency from one entry to the next, so the processor overlaps the cache misses that
    /// dominate a fold beyond a few million identities (`benches/projection.rs` measures replay at
    /// 10M events). What the warm-up finds is handed to the fold, which then looks up only what was
    /// not found yet: profiles and interned identities are never removed, so a found id stays
    /// right, while something an earlier entry of the run creates is looked up again. The result
    /// is exactly that of folding the entries one by one.
    pub fn apply_run(
        &mut self,
        run: &[(Seq, EntryView<'_>)],
    ) -> (usize, Result<(), OutOfSequence>) {
        let mut found = Vec::with_capacity(run.len() * 3);
        for (_, entry) in run {
            self.warm_up(entry, &mut found);
        }
        let mut at = 0;
        for (n_folded, (seq, entry)) in run.iter().enumerate() {
            let n_found = 1 + entry.events.len();
            let entry_found = found.get(at..at + n_found).unwrap_or_default();
            at += n_found;
            let request = &entry.request;
            let seen = entry.outcome.seen_mpid();
            let world = (request.scope, request.environment);
            let folded =
                self.fold(*seq, entry.recorded_at, world, &entry.events, seen, entry_found);
            if let Err(err) = folded {
                return (n_folded, Err(err));
            }
        }
        (run.len(), Ok(()))
    }

    /// Folds one entry, with `found` what warm-up found for it (one [`EventIds`] for the outcome's
    /// MPID, then one per event; empty if not warmed up).
    fn fold<E: AsEventView>(
        &mut self,
        seq: Seq,
        recorded_at: Timestamp,
        (scope, environment): (&str, Environment),
        events: &[E],
        seen: Option<Mpid>,
        found: &[EventIds],
    ) -> Result<(), OutOfSequence> {
        if seq != self.last_seq.next() {
            return Err(OutOfSequence { last: self.last_seq, given: seq });
        }
        let world = self.begin_entry(seq, recorded_at, scope, environment);
        for (i, event) in events.iter().enumerate() {
            let event_found = found.get(1 + i).copied().unwrap_or(EventIds::NONE);
            event.with_view(|event| self.apply_event(seq, world, recorded_at, event, event_found));
        }
        self.n_events_applied += events.len() as u64;
        if let Some(mpid) = seen {
            let seen_found = found.first().and_then(|found| found.profile);
            if let Some(profile) = self.profile_id_or(mpid, seen_found) {
                let profile = &mut self.profiles[profile.0 as usize];
                profile.last_seen = profile.last_seen.max(recorded_at);
            } else {
                self.diagnose(seq, format!("outcome names unknown MPID {mpid}"));
            }
        }
        self.running_digest =
            digest::chain(self.running_digest, seq, world, recorded_at, events, seen);
        Ok(())
    }

    /// Folds the part of entry `seq` that concerns the profiles `keep` accepts: the events naming
    /// only accepted MPIDs, and the outcome's "last seen" for an accepted MPID. Sequences must
    /// increase; gaps are expected. What [`crate::PartialProjection::apply_selected`] does, and
    /// only it: gaps would corrupt a full fold.
    pub(crate) fn fold_selected(
        &mut self,
        seq: Seq,
        entry: &Entry,
        keep: impl Fn(Mpid) -> bool,
    ) -> Result<(), OutOfSequence> {
        if seq <= self.last_seq {
            return Err(OutOfSequence { last: self.last_seq, given: seq });
        }
        let request = &entry.request;
        let world = self.begin_entry(seq, entry.recorded_at, &request.scope, request.environment);
        for event in &entry.events {
            let event = EventView::from(event);
            let names = Names::of(&event);
            if keep(names.profile) && names.other.is_none_or(&keep) {
                self.apply_event(seq, world, entry.recorded_at, &event, EventIds::NONE);
                self.n_events_applied += 1;
            }
        }
        if let Some(mpid) = entry.outcome.seen_mpid()
            && keep(mpid)
            && let Some(profile) = self.profile_id(mpid)
        {
            let profile = &mut self.profiles[profile.0 as usize];
            profile.last_seen = profile.last_seen.max(entry.recorded_at);
        }
        Ok(())
    }

    /// Moves to entry `seq` (already checked) and returns its world.
    fn begin_entry(
        &mut self,
        seq: Seq,
        recorded_at: Timestamp,
        scope: &str,
        environment: Environment,
    ) -> WorldId {
        self.last_seq = seq;
        self.last_time = self.last_time.max(recorded_at);
        self.intern_world(scope, environment)
    }

    /// Applies one event's rule, `found` being what warm-up found of its ids.
    fn apply_event(
        &mut self,
        seq: Seq,
        world: WorldId,
        time: Timestamp,
        event: &EventView<'_>,
        found: EventIds,
    ) {
        let ids = self.look_up(world, &Names::of(event), found);
        match event {
            EventView::ProfileCreated { mpid } => {
                if ids.profile.is_some() {
                    return self.diagnose(seq, format!("profile {mpid} created twice"));
                }
                self.create_profile(*mpid, world, time);
            }
            EventView::IdentityAttached { mpid, identity } => {
                let Some(profile) = self.profile_in_world(seq, *mpid, world, ids.profile) else {
                    return;
                };
                self.attach(seq, profile, *identity, ids.identity);
            }
            EventView::IdentityDetached { mpid, identity, reason } => {
                let Some(profile) = self.profile_in_world(seq, *mpid, world, ids.profile) else {
                    return;
                };
                self.detach(seq, profile, *identity, reason, ids.identity);
            }
            EventView::AliasRecorded { source, destination, start, end } => {
                let source_id = self.profile_in_world(seq, *source, world, ids.profile);
                let destination_id = self.profile_in_world(seq, *destination, world, ids.other);
                let (Some(source_id), Some(destination_id)) = (source_id, destination_id) else {
                    return;
                };
                let record = AliasRecord {
                    source: *source,
                    destination: *destination,
                    start: *start,
                    end: *end,
                    seq,
                };
                self.add_alias(source_id, destination_id, record);
            }
        }
    }

    /// The ids of what an event names in `world`: those in `found` (warm-up found them), the rest
    /// looked up. After it, `None` means there is none.
    #[inline]
    fn look_up(&self, world: WorldId, names: &Names<'_>, found: EventIds) -> EventIds {
        let identity = names.identity.map(|identity| Key {
            world,
            identity_type: identity.identity_type,
            value: identity.value,
        });
        EventIds {
            profile: self.profile_id_or(names.profile, found.profile),
            other: names.other.and_then(|mpid| self.profile_id_or(mpid, found.other)),
            identity: identity.and_then(|key| self.identity_id_or(key, found.identity)),
        }
    }

    /// The profile of `mpid`: `found` if warm-up found it (profiles are never removed), else
    /// looked up.
    #[inline]
    fn profile_id_or(&self, mpid: Mpid, found: Option<ProfileId>) -> Option<ProfileId> {
        let Some(found) = found else { return self.profile_id(mpid) };
        debug_assert_eq!(self.profiles[found.0 as usize].mpid, mpid, "found for another MPID");
        Some(found)
    }

    /// The interned id of `key`: `found` if warm-up found it (interned identities are never
    /// removed), else looked up.
    #[inline]
    fn identity_id_or(&self, key: Key<'_>, found: Option<IdentityId>) -> Option<IdentityId> {
        let Some(found) = found else { return self.interner.get(key) };
        debug_assert_eq!(self.interner.get(key), Some(found), "found for another key");
        Some(found)
    }

    fn add_node(&mut self, node: Node) -> NodeIndex<u32> {
        self.graph.add_node(node.pack())
    }

    fn add_edge(&mut self, from: NodeIndex<u32>, to: NodeIndex<u32>, edge: Edge) {
        self.graph.add_edge(from, to, edge.pack());
    }

    fn create_profile(&mut self, mpid: Mpid, world: WorldId, time: Timestamp) -> ProfileId {
        let id = ProfileId(self.profiles.len() as u32);
        let node = self.add_node(Node::Profile(id));
        self.profiles.push(Profile {
            mpid,
            world,
            node,
            created: time,
            last_seen: time,
            types: IdentityTypeSet::EMPTY,
            n_identities: 0,
            was_alias_source: false,
            was_alias_destination: false,
        });
        self.index_mpid(mpid, id);
        id
    }

    /// Adds a profile, already pushed, to the MPID index.
    pub(crate) fn index_mpid(&mut self, mpid: Mpid, id: ProfileId) {
        debug_assert_eq!(self.profiles[id.0 as usize].mpid, mpid);
        self.mpid_index.insert_unique(self.mpid_hasher.hash_one(mpid), id.0);
    }

    fn add_alias(&mut self, source: ProfileId, destination: ProfileId, record: AliasRecord) {
        let idx = self.aliases.len() as u32;
        self.aliases.push(record);
        let (source_node, destination_node) =
            (self.profiles[source.0 as usize].node, self.profiles[destination.0 as usize].node);
        self.add_edge(source_node, destination_node, Edge::Alias(idx));
        self.profiles[source.0 as usize].was_alias_source = true;
        self.profiles[destination.0 as usize].was_alias_destination = true;
    }

    /// `profile`, the profile of `mpid` if any, provided it lives in `world`; else a diagnostic.
    fn profile_in_world(
        &mut self,
        seq: Seq,
        mpid: Mpid,
        world: WorldId,
        profile: Option<ProfileId>,
    ) -> Option<ProfileId> {
        let Some(profile) = profile else {
            self.diagnose(seq, format!("event names unknown MPID {mpid}"));
            return None;
        };
        if self.profiles[profile.0 as usize].world != world {
            self.diagnose(seq, format!("event crosses worlds: MPID {mpid} lives in another scope"));
            return None;
        }
        Some(profile)
    }

    /// Attaches `identity` (interned as `identity_id` if it has been) to `profile`.
    fn attach(
        &mut self,
        seq: Seq,
        profile: ProfileId,
        identity: IdentityView<'_>,
        identity_id: Option<IdentityId>,
    ) {
        let identity_id = match identity_id {
            Some(id) => id,
            None => {
                let world = self.profiles[profile.0 as usize].world;
                let key =
                    Key { world, identity_type: identity.identity_type, value: identity.value };
                if !self.interner.fits(key) {
                    let message = format!(
                        "{identity}: value longer than 65,535 bytes, or the identity arena (2 GiB) is full"
                    );
                    return self.diagnose(seq, message);
                }
                let node = self.add_node(Node::Identity(self.interner.next_id()));
                self.interner.insert(key, node).expect("checked by fits")
            }
        };
        let identity_node = self.interner.node(identity_id);
        let profile_node = self.profiles[profile.0 as usize].node;
        if self.find_lookup_edge(identity_node, profile_node).is_some() {
            return self.diagnose(seq, format!("{identity} attached twice"));
        }
        self.add_edge(identity_node, profile_node, Edge::LooksUp(identity.identity_type));
        self.note_lookup_added(identity_id, profile);
        self.note_type_added(profile, identity.identity_type);
    }

    /// Detaches `identity` (interned as `identity_id` if it has been) from `profile`.
    fn detach(
        &mut self,
        seq: Seq,
        profile: ProfileId,
        identity: IdentityView<'_>,
        reason: &DetachReason,
        identity_id: Option<IdentityId>,
    ) {
        let edge = identity_id.and_then(|identity_id| {
            let identity_node = self.interner.node(identity_id);
            self.find_lookup_edge(identity_node, self.profiles[profile.0 as usize].node)
        });
        let (Some(edge), Some(identity_id)) = (edge, identity_id) else {
            let mpid = self.profiles[profile.0 as usize].mpid;
            return self.diagnose(
                seq,
                format!("{identity} detached from {mpid} ({reason:?}) but not attached"),
            );
        };
        self.graph.remove_edge(edge);
        self.refresh_hint(identity_id);
        self.note_type_removed(profile, identity.identity_type);
    }

    /// Counts one more identity of `identity_type` on `profile`.
    pub(crate) fn note_type_added(&mut self, profile: ProfileId, identity_type: IdentityType) {
        let record = &mut self.profiles[profile.0 as usize];
        record.n_identities += 1;
        if record.types.contains(identity_type) {
            self.shared_types.add_another(profile, identity_type);
        } else {
            record.types.insert(identity_type);
        }
    }

    /// Counts one identity of `identity_type` fewer on `profile`.
    fn note_type_removed(&mut self, profile: ProfileId, identity_type: IdentityType) {
        let record = &mut self.profiles[profile.0 as usize];
        record.n_identities -= 1;
        if !self.shared_types.remove_one(profile, identity_type) {
            record.types.remove(identity_type);
        }
    }

    /// Keeps the interner's profile hint right after a lookup edge was added.
    pub(crate) fn note_lookup_added(&mut self, identity: IdentityId, profile: ProfileId) {
        let hint = match self.interner.hint(identity) {
            Hint::None => Hint::One(profile),
            Hint::One(_) | Hint::Many => Hint::Many,
        };
        self.interner.set_hint(identity, hint);
    }

    /// Recomputes the interner's profile hint from the graph after a lookup edge was removed.
    fn refresh_hint(&mut self, identity: IdentityId) {
        let mut profiles = self.walk_profiles_of(identity).into_iter();
        let hint = match (profiles.next(), profiles.next()) {
            (None, _) => Hint::None,
            (Some(profile), None) => Hint::One(profile),
            (Some(_), Some(_)) => Hint::Many,
        };
        self.interner.set_hint(identity, hint);
    }

    fn intern_world(&mut self, scope: &str, environment: Environment) -> WorldId {
        if let Some(world) = self.world(scope, environment) {
            return world;
        }
        let world = WorldId(self.worlds.len() as u16);
        self.worlds.push((scope.to_owned(), environment));
        self.world_index.insert((scope.to_owned(), environment), world);
        world
    }

    fn diagnose(&mut self, seq: Seq, message: String) {
        self.n_diagnostics += 1;
        if self.diagnostics.len() < DIAGNOSTICS_KEPT_MAX {
            self.diagnostics.push(Diagnostic { seq, message });
        }
    }
}
