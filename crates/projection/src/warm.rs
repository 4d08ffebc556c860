//! The warm-up of [`Projection::apply_run`]: before a run of entries is folded, everything the fold
//! will look up is read in a tight loop, so the processor overlaps the cache misses that dominate
//! a fold of a large projection, and what was found is handed to the fold as [`EventIds`].
//!
//! The warm-up only reads. What it finds stays right through the run because profiles and
//! interned identities are never removed; what it does not find (something an earlier entry of the
//! run creates) the fold looks up again. So the fold's rules never depend on it: folding a run
//! equals folding its entries one by one (a test compares them).

use idgraph_model::{EntryView, Mpid};

use crate::fold::{EventIds, Names};
use crate::interner::Key;
use crate::{ProfileId, Projection};

impl Projection {
    /// Reads what folding `entry` will read, without changing anything, and pushes what it found
    /// onto `found`: one [`EventIds`] for the outcome's MPID, then one per event.
    pub(crate) fn warm_up(&self, entry: &EntryView<'_>, found: &mut Vec<EventIds>) {
        let mut touched = 0u64;
        // A profile's record and, when a lookup or alias edge may be added or removed there, its
        // graph node.
        let mut touch_profile = |mpid: Mpid, node_too: bool| -> Option<ProfileId> {
            let profile = self.profile_id(mpid)?;
            let record = &self.profiles[profile.0 as usize];
            touched ^= record.last_seen.0 as u64;
            if node_too {
                touched ^= self.graph.node_weight(record.node).map_or(0, |n| n.0.into());
            }
            Some(profile)
        };
        let seen = entry.outcome.seen_mpid().and_then(|mpid| touch_profile(mpid, false));
        found.push(EventIds { profile: seen, ..EventIds::NONE });
        let first_event = found.len();
        for event in &entry.events {
            let names = Names::of(event);
            // A profile being created is not found (unless created twice): the probe still brings
            // in the slot its MPID will take.
            let profile =
                touch_profile(names.profile, names.other.is_some() || names.identity.is_some());
            let other = names.other.and_then(|mpid| touch_profile(mpid, true));
            found.push(EventIds { profile, other, identity: None });
        }
        std::hint::black_box(touched);
        let (scope, environment) = (entry.request.scope, entry.request.environment);
        let Some(world) = self.world(scope, environment) else {
            return;
        };
        for (event, event_found) in entry.events.iter().zip(&mut found[first_event..]) {
            if let Some(identity) = Names::of(event).identity {
                let key =
                    Key { world, identity_type: identity.identity_type, value: identity.value };
                event_found.identity = self.interner.get(key);
            }
        }
    }
}
