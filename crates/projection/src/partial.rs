//! A partial projection: the state of a few chosen profiles, folded from only the entries that
//! touched them, for audit questions about a past point ("MPID X as of sequence N"). It is a type
//! of its own so that it can never be folded as if it were the live state: its only fold skips
//! entries and parts of entries, which would corrupt a full fold.

use std::ops::Deref;

use idgraph_model::{Entry, Mpid, Seq};

use crate::{OutOfSequence, Projection};

/// The state of a few chosen profiles (and the identities they hold), rebuilt from only the entries
/// that touched them ([`PartialProjection::apply_selected`]). Everything it says about those
/// profiles equals what a full fold to the same point says; anything else it lacks. Its digests do
/// not describe the log.
///
/// It reads as a [`Projection`] (through `Deref`, or [`PartialProjection::as_projection`]), so the
/// resolver and every read work on it; it cannot be turned into one, nor folded with
/// [`Projection::apply`].
#[derive(Debug, Clone, Default)]
pub struct PartialProjection(Projection);

impl PartialProjection {
    /// An empty partial projection.
    pub fn new() -> PartialProjection {
        PartialProjection(Projection::new())
    }

    /// Folds the part of entry `seq` that concerns the profiles `keep` accepts: events naming only
    /// accepted MPIDs, and the outcome's "last seen" for an accepted MPID. Sequences must
    /// increase; gaps are expected. The caller must give every entry that changed an accepted
    /// profile (the log's profile index lists them), or the state of that profile is incomplete.
    pub fn apply_selected(
        &mut self,
        seq: Seq,
        entry: &Entry,
        keep: impl Fn(Mpid) -> bool,
    ) -> Result<(), OutOfSequence> {
        self.0.fold_selected(seq, entry, keep)
    }

    /// The projection, to read.
    pub fn as_projection(&self) -> &Projection {
        &self.0
    }
}

impl Deref for PartialProjection {
    type Target = Projection;

    fn deref(&self) -> &Projection {
        &self.0
    }
}

impl AsRef<Projection> for PartialProjection {
    fn as_ref(&self) -> &Projection {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use idgraph_model::{Entry, Event, Mpid, Seq};

    use super::*;
    use crate::tests::{fold, generated};

    /// What a profile looks like in a projection, for comparing two.
    fn profile_state(
        projection: &Projection,
        mpid: Mpid,
    ) -> Option<(crate::ProfileView, Vec<idgraph_model::Identity>, Vec<crate::AliasRecord>)> {
        let profile = projection.profile_id(mpid)?;
        let identities = projection.identities_of_sorted(profile);
        Some((projection.profile(profile), identities, projection.aliases_from(mpid)))
    }

    /// The entries a partial fold of `mpids` needs: those that name one of them.
    fn touching(entries: &[Entry], mpids: &BTreeSet<Mpid>) -> Vec<(Seq, Entry)> {
        let names = |event: &Event| match event {
            Event::ProfileCreated { mpid }
            | Event::IdentityAttached { mpid, .. }
            | Event::IdentityDetached { mpid, .. } => vec![*mpid],
            Event::AliasRecorded { source, destination, .. } => vec![*source, *destination],
        };
        entries
            .iter()
            .enumerate()
            .filter(|(_, entry)| {
                entry.outcome.seen_mpid().is_some_and(|mpid| mpids.contains(&mpid))
                    || entry.events.iter().flat_map(names).any(|mpid| mpids.contains(&mpid))
            })
            .map(|(idx, entry)| (Seq(idx as u64 + 1), entry.clone()))
            .collect()
    }

    #[test]
    fn a_partial_fold_of_some_profiles_equals_the_full_fold_on_them() {
        let entries = generated(23, 3_000);
        let full = fold(&entries);
        // Every fifth profile, and the other side of each of their aliases.
        let selected: BTreeSet<Mpid> = (0..full.n_profiles() as u32)
            .step_by(5)
            .map(|profile| full.mpid(crate::ProfileId(profile)))
            .collect();
        let kept: BTreeSet<Mpid> = full
            .aliases()
            .iter()
            .filter(|alias| {
                selected.contains(&alias.source) || selected.contains(&alias.destination)
            })
            .flat_map(|alias| [alias.source, alias.destination])
            .chain(selected.iter().copied())
            .collect();
        let mut partial = PartialProjection::new();
        for (seq, entry) in touching(&entries, &kept) {
            partial.apply_selected(seq, &entry, |mpid| kept.contains(&mpid)).unwrap();
        }
        assert!(partial.n_profiles() < full.n_profiles());
        for mpid in &selected {
            assert_eq!(profile_state(&partial, *mpid), profile_state(&full, *mpid), "{mpid}");
        }
        assert_eq!(partial.as_projection().n_profiles(), kept.len());
        let last = partial.last_seq();
        let first = touching(&entries, &kept)[0].clone();
        assert_eq!(
            partial.apply_selected(first.0, &first.1, |_| true),
            Err(OutOfSequence { last, given: first.0 }),
            "sequences must increase"
        );
    }
}
