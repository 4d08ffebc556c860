//! Reads: everything the resolver, the engine and audit ask of a projection. None of them changes
//! anything, and every list they return is sorted (the hash tables are probed, never iterated).

use std::hash::BuildHasher;

use idgraph_model::{Environment, Identity, IdentityType, IdentityTypeSet, Mpid, Seq, Timestamp};
use petgraph::Direction::{Incoming, Outgoing};
use petgraph::graph::{EdgeIndex, NodeIndex};
use petgraph::visit::EdgeRef;
use smallvec::SmallVec;

use crate::interner::{Hint, Key};
use crate::packed::{Edge, Node};
use crate::{AliasRecord, Diagnostic, IdentityId, ProfileId, Projection, WorldId};

/// A read-only view of one profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileView {
    /// Its MPID.
    pub mpid: Mpid,
    /// The world it lives in.
    pub world: WorldId,
    /// When it was created.
    pub created: Timestamp,
    /// When a request last resolved to it (or modified it).
    pub last_seen: Timestamp,
    /// The types of identities it holds.
    pub types: IdentityTypeSet,
    /// How many identities it holds; 0 means orphaned.
    pub n_identities: u32,
    /// Whether it has been the source of an accepted alias.
    pub was_alias_source: bool,
    /// Whether it has been the destination of an accepted alias.
    pub was_alias_destination: bool,
}

impl ProfileView {
    /// An orphaned profile holds no identity and can never be returned by a lookup.
    pub fn is_orphaned(&self) -> bool {
        self.n_identities == 0
    }
}

impl Projection {
    /// The last applied sequence (`Seq::ZERO` when empty).
    pub fn last_seq(&self) -> Seq {
        self.last_seq
    }

    /// The latest `recorded_at` applied.
    pub fn last_time(&self) -> Timestamp {
        self.last_time
    }

    /// The world of `scope` in `environment`, if any entry has touched it.
    pub fn world(&self, scope: &str, environment: Environment) -> Option<WorldId> {
        // Worlds are few: a scan of a short list, with no owned key to build.
        let idx = self.worlds.iter().position(|(s, e)| s == scope && *e == environment)?;
        Some(WorldId(idx as u16))
    }

    /// The identity `identity_type=value` in `world`, if ever seen.
    pub fn identity_id(
        &self,
        world: WorldId,
        identity_type: IdentityType,
        value: &str,
    ) -> Option<IdentityId> {
        self.interner.get(Key { world, identity_type, value })
    }

    /// The type and value of an identity.
    pub fn identity(&self, id: IdentityId) -> (IdentityType, &str) {
        let key = self.interner.resolve(id);
        (key.identity_type, key.value)
    }

    /// The profiles `identity` looks up now, sorted by [`ProfileId`].
    pub fn profiles_of(&self, identity: IdentityId) -> SmallVec<[ProfileId; 4]> {
        // Most identities look up one profile, which the interner record names: no graph walk.
        match self.interner.hint(identity) {
            Hint::None => SmallVec::new(),
            Hint::One(profile) => smallvec::smallvec![profile],
            Hint::Many => self.walk_profiles_of(identity),
        }
    }

    /// [`Projection::profiles_of`] by walking the graph.
    pub(crate) fn walk_profiles_of(&self, identity: IdentityId) -> SmallVec<[ProfileId; 4]> {
        let node = self.interner.node(identity);
        let mut profiles: SmallVec<[ProfileId; 4]> = self
            .graph
            .edges_directed(node, Outgoing)
            .filter(|edge| edge.weight().is_lookup())
            .filter_map(|edge| match self.graph[edge.target()].unpack() {
                Node::Profile(profile) => Some(profile),
                Node::Identity(_) => None,
            })
            .collect();
        profiles.sort_unstable();
        profiles
    }

    /// The identities `profile` holds now, sorted by [`IdentityId`] (first-seen order).
    pub fn identities_of(&self, profile: ProfileId) -> SmallVec<[IdentityId; 8]> {
        let node = self.profiles[profile.0 as usize].node;
        let mut identities: SmallVec<[IdentityId; 8]> = self
            .graph
            .edges_directed(node, Incoming)
            .filter(|edge| edge.weight().is_lookup())
            .filter_map(|edge| match self.graph[edge.source()].unpack() {
                Node::Identity(identity) => Some(identity),
                Node::Profile(_) => None,
            })
            .collect();
        identities.sort_unstable();
        identities
    }

    /// How many identities of `identity_type` `profile` holds now (the resolver's guardrail
    /// count, for every identity a request would attach). O(1): a busy profile can hold hundreds
    /// of identities.
    pub fn n_identities_of_type(&self, profile: ProfileId, identity_type: IdentityType) -> usize {
        if !self.profiles[profile.0 as usize].types.contains(identity_type) {
            return 0;
        }
        self.shared_types.get(profile, identity_type).map_or(1, |n| n as usize)
    }

    /// The identities of `profile` as owned values, sorted by type then value.
    pub fn identities_of_sorted(&self, profile: ProfileId) -> Vec<Identity> {
        let mut identities: Vec<Identity> = self
            .identities_of(profile)
            .iter()
            .map(|id| {
                let (identity_type, value) = self.identity(*id);
                Identity::new(identity_type, value)
            })
            .collect();
        identities.sort();
        identities
    }

    /// Whether `profile` holds `identity` now.
    pub fn holds(&self, profile: ProfileId, identity: IdentityId) -> bool {
        match self.interner.hint(identity) {
            Hint::None => false,
            Hint::One(single) => single == profile,
            Hint::Many => {
                let identity_node = self.interner.node(identity);
                let profile_node = self.profiles[profile.0 as usize].node;
                self.find_lookup_edge(identity_node, profile_node).is_some()
            }
        }
    }

    /// The profile with this MPID, in any world.
    pub fn profile_id(&self, mpid: Mpid) -> Option<ProfileId> {
        let hash = self.mpid_hasher.hash_one(mpid);
        let found = self.mpid_index.find(hash, |id| self.profiles[id as usize].mpid == mpid);
        found.map(ProfileId)
    }

    /// A view of one profile.
    pub fn profile(&self, profile: ProfileId) -> ProfileView {
        let p = &self.profiles[profile.0 as usize];
        ProfileView {
            mpid: p.mpid,
            world: p.world,
            created: p.created,
            last_seen: p.last_seen,
            types: p.types,
            n_identities: p.n_identities,
            was_alias_source: p.was_alias_source,
            was_alias_destination: p.was_alias_destination,
        }
    }

    /// The MPID of a profile.
    pub fn mpid(&self, profile: ProfileId) -> Mpid {
        self.profiles[profile.0 as usize].mpid
    }

    /// Events applied since this value was created or loaded from a snapshot (a statistic).
    pub fn n_events_applied(&self) -> u64 {
        self.n_events_applied
    }

    /// How many profiles exist (orphaned included).
    pub fn n_profiles(&self) -> usize {
        self.profiles.len()
    }

    /// How many distinct identities have been seen.
    pub fn n_identities(&self) -> usize {
        self.interner.len()
    }

    /// How many identity → profile lookups exist now.
    pub fn n_lookups(&self) -> usize {
        self.graph.edge_count() - self.aliases.len()
    }

    /// Accepted aliases, in log order.
    pub fn aliases(&self) -> &[AliasRecord] {
        &self.aliases
    }

    /// Accepted aliases whose source is `mpid`.
    pub fn aliases_from(&self, mpid: Mpid) -> Vec<AliasRecord> {
        let Some(profile) = self.profile_id(mpid) else { return Vec::new() };
        let node = self.profiles[profile.0 as usize].node;
        let mut records: Vec<AliasRecord> = self
            .graph
            .edges_directed(node, Outgoing)
            .filter_map(|edge| match edge.weight().unpack() {
                Edge::Alias(idx) => Some(self.aliases[idx as usize]),
                Edge::LooksUp(_) => None,
            })
            .collect();
        records.sort_by_key(|record| record.seq);
        records
    }

    /// The diagnostics kept (at most [`crate::DIAGNOSTICS_KEPT_MAX`]) and how many there were in
    /// all.
    pub fn diagnostics(&self) -> (&[Diagnostic], u64) {
        (&self.diagnostics, self.n_diagnostics)
    }

    /// The lookup edge from `identity` to `profile`, if any.
    pub(crate) fn find_lookup_edge(
        &self,
        identity: NodeIndex<u32>,
        profile: NodeIndex<u32>,
    ) -> Option<EdgeIndex<u32>> {
        // An identity looks up few profiles, so a scan of its outgoing edges is cheap.
        self.graph
            .edges_directed(identity, Outgoing)
            .find(|edge| edge.target() == profile && edge.weight().is_lookup())
            .map(|edge| edge.id())
    }
}
