//! The neighbourhood of a profile as of a point: the profile, each of its identities with the other
//! profiles (of the caller's identity scope) that held it up to then, and its aliases both ways.
//! The audit explorer draws it (`docs/audit.md`, "Explorer"); `GET
//! /v1/audit/profiles/{mpid}/graph` serves it.
//!
//! Read from the log's indexes like the other audit use cases ([`super::past`]): the profile is
//! folded from the entries that touched it, and each identity's holders from the entries that
//! attached or detached it. The cost grows with the number of identities looked at, so it is
//! bounded ([`NeighbourhoodLimits`]), and the report says how much it left out.

use std::cmp::Reverse;

use idgraph_log::IndexKey;
use idgraph_model::{Identity, Mpid, Seq, Timestamp};
use idgraph_projection::AliasRecord;
use idgraph_query::history::{Holding, IdentityHistoryBuilder};

use super::{AsOf, Audit, ProfileState, past};
use crate::EngineError;

/// How much a [`Neighbourhood`] holds at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeighbourhoodLimits {
    /// Identities of the profile whose holders are looked up; the others are only counted. Each
    /// costs an index read and the entries that attached or detached it.
    pub identities_max: usize,
    /// Other profiles' holdings reported per identity (the newest); the others are only counted.
    pub holders_per_identity_max: usize,
}

impl NeighbourhoodLimits {
    /// What the HTTP endpoint uses: a picture that stays readable, and a few milliseconds of reads
    /// per identity at most.
    pub const DEFAULT: NeighbourhoodLimits =
        NeighbourhoodLimits { identities_max: 100, holders_per_identity_max: 20 };
}

/// A profile and its neighbourhood at a past point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neighbourhood {
    /// The point, as a sequence.
    pub as_of: Seq,
    /// The profile as it was then (all its identities, whatever the limits).
    pub profile: ProfileState,
    /// The identities looked at (at most `limits.identities_max`): those that have been attached
    /// or detached more than once first (others may have held them), then in the workspace's
    /// identity priority, then by value.
    pub identities: Vec<IdentityNeighbours>,
    /// Identities of the profile left out of `identities` by the limit.
    pub n_identities_omitted: usize,
    /// Accepted aliases from or to the profile up to then, oldest first.
    pub aliases: Vec<AliasRecord>,
    /// The limits applied.
    pub limits: NeighbourhoodLimits,
}

/// One identity of the profile, and who else held it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityNeighbours {
    /// The identity.
    pub identity: Identity,
    /// Since when the profile holds it (the entry that attached it last).
    pub held_since: Option<(Seq, Timestamp)>,
    /// Other profiles' holdings of it up to then, oldest first; the newest
    /// `limits.holders_per_identity_max` of them.
    pub others: Vec<Holding>,
    /// Other profiles' holdings left out by the limit.
    pub n_others_omitted: usize,
}

impl Audit<'_> {
    /// Profile `mpid` as of `as_of`, its identities with the other profiles that held each up to
    /// then, and its aliases both ways, within `limits`. [`EngineError::NotFound`] if the profile
    /// did not exist then in the caller's identity scope.
    pub fn neighbourhood(
        &self,
        mpid: Mpid,
        as_of: AsOf,
        limits: NeighbourhoodLimits,
    ) -> Result<Neighbourhood, EngineError> {
        let as_of = self.resolve(as_of)?;
        let scope = &self.caller.scope;
        let projection = past::profiles_as_of(self.log, scope, &[mpid], as_of)?;
        let Some(id) = projection.profile_id(mpid) else {
            return Err(EngineError::NotFound(format!(
                "MPID {mpid} did not exist as of sequence {as_of}"
            )));
        };
        let view = projection.profile(id);
        let profile = ProfileState {
            mpid,
            created: view.created,
            last_seen: view.last_seen,
            identities: projection.identities_of_sorted(id),
            aliased_to: projection.aliases_from(mpid),
        };
        let aliases: Vec<AliasRecord> = projection
            .aliases()
            .iter()
            .filter(|alias| alias.source == mpid || alias.destination == mpid)
            .copied()
            .collect();

        let looked_at = self.most_telling(&profile.identities, as_of, limits.identities_max)?;
        let n_identities_omitted = profile.identities.len() - looked_at.len();
        let identities = looked_at
            .into_iter()
            .map(|identity| self.identity_neighbours(mpid, identity, as_of, limits))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Neighbourhood { as_of, profile, identities, n_identities_omitted, aliases, limits })
    }

    /// The `n` identities of `identities` most worth drawing: those the identity index lists more
    /// than once up to `as_of` (attached or detached again: perhaps by another profile) first,
    /// then in the caller's identity priority, then by value. One index read per identity, no
    /// entry read.
    fn most_telling(
        &self,
        identities: &[Identity],
        as_of: Seq,
        n: usize,
    ) -> Result<Vec<Identity>, EngineError> {
        let scope = &self.caller.scope;
        let priority = &self.caller.resolver.identity_priority;
        let mut ranked = Vec::with_capacity(identities.len());
        for identity in identities {
            let n_changes = self.log.indexed(IndexKey::identity(scope, identity), as_of)?.len();
            let rank = priority
                .iter()
                .position(|t| *t == identity.identity_type)
                .unwrap_or(priority.len());
            ranked.push((Reverse(n_changes > 1), rank, identity));
        }
        ranked.sort();
        Ok(ranked.into_iter().take(n).map(|(_, _, identity)| identity.clone()).collect())
    }

    /// Who held `identity` up to `as_of`: since when `mpid` holds it, and the other profiles'
    /// holdings (the newest `limits.holders_per_identity_max`).
    fn identity_neighbours(
        &self,
        mpid: Mpid,
        identity: Identity,
        as_of: Seq,
        limits: NeighbourhoodLimits,
    ) -> Result<IdentityNeighbours, EngineError> {
        let scope = &self.caller.scope;
        let mut builder = IdentityHistoryBuilder::new(identity.clone(), Some(scope.clone()));
        for (seq, entry) in &past::entries_of_identity(self.log, scope, &identity, as_of)? {
            builder.feed(*seq, entry);
        }
        let (own, mut others): (Vec<Holding>, Vec<Holding>) =
            builder.finish().into_iter().partition(|holding| holding.mpid == mpid);
        let held_since = own.iter().rev().find(|h| h.until.is_none()).map(|h| h.from);
        let n_others_omitted = others.len().saturating_sub(limits.holders_per_identity_max);
        others.drain(..n_others_omitted);
        Ok(IdentityNeighbours { identity, held_since, others, n_others_omitted })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use idgraph_model::{Environment, IdentityChange, IdentityType, Timestamp};
    use idgraph_query::{
        AliasQuery, Answer, IdentityOp, IdentityQuery, MpidSource, ResolverConfig, Strategy,
    };

    use super::*;
    use crate::{Command, Engine, EngineConfig, ManualClock, RequestMeta, Workspace};

    struct Counting(i64);

    impl MpidSource for Counting {
        fn next_candidate(&mut self) -> i64 {
            self.0 += 1;
            self.0
        }
    }

    fn engine() -> Engine {
        let priority =
            [IdentityType::CustomerId, IdentityType::Other, IdentityType::DeviceApplicationStamp];
        let mut resolver =
            ResolverConfig::new(Strategy::Default, priority.to_vec(), &[], &[], &[]).unwrap();
        resolver.guardrails.identities_per_type_max = 2_000;
        let workspace = Workspace { name: "shop".into(), scope: "shop".into(), resolver };
        let clock = ManualClock::new(Timestamp(1_700_000_000_000_000), 1_000);
        Engine::in_memory(EngineConfig::single(workspace), Box::new(clock), Box::new(Counting(0)))
    }

    fn handle(engine: &Engine, command: Command) -> Answer {
        let meta = RequestMeta {
            workspace: "shop".into(),
            environment: Environment::Production,
            request_id: None,
        };
        engine.handle(&meta, command).unwrap()
    }

    fn identity(engine: &Engine, op: IdentityOp, identities: &[(IdentityType, &str)]) -> Mpid {
        let known_identities =
            identities.iter().map(|(t, v)| Identity::new(*t, (*v).to_owned())).collect();
        let query = IdentityQuery { op, known_identities, previous_mpid: None };
        match handle(engine, Command::Identity(query)) {
            Answer::Resolved(answer) => answer.mpid,
            other => panic!("{other:?}"),
        }
    }

    /// A customer on two devices (the second one's anonymous profile aliased to the first), with
    /// 1,000 identities of one type: the neighbourhood shows the other holder of the second
    /// device and the alias, is bounded by the limits, and is fast.
    #[test]
    fn a_profile_with_a_thousand_identities_has_a_bounded_neighbourhood() {
        use IdentityType::{CustomerId, DeviceApplicationStamp as Das, Other};
        let engine = engine();
        let first = identity(&engine, IdentityOp::Identify, &[(Das, "d1")]);
        assert_eq!(identity(&engine, IdentityOp::Login, &[(CustomerId, "c1"), (Das, "d1")]), first);
        let identity_changes = (0..1_000)
            .map(|idx| IdentityChange {
                identity_type: Other,
                old_value: None,
                new_value: Some(format!("o{idx:04}")),
            })
            .collect();
        handle(&engine, Command::Modify { mpid: first, identity_changes });
        let second = identity(&engine, IdentityOp::Identify, &[(Das, "d2")]);
        assert_ne!(second, first);
        let before_login = engine.log().last_seq();
        assert_eq!(identity(&engine, IdentityOp::Login, &[(CustomerId, "c1"), (Das, "d2")]), first);
        let alias = AliasQuery { source: second, destination: first, start: None, end: None };
        handle(&engine, Command::Alias(alias));

        let audit = engine.audit("shop").unwrap();
        let generous = NeighbourhoodLimits { identities_max: 2_000, holders_per_identity_max: 5 };
        let all = audit.neighbourhood(first, AsOf::Now, generous).unwrap();
        assert_eq!(all.profile.identities.len(), 1_003);
        assert_eq!((all.identities.len(), all.n_identities_omitted), (1_003, 0));
        // d2 (held by the second profile too) comes first: it was attached twice.
        let d2 = &all.identities[0];
        assert_eq!(d2.identity, Identity::new(Das, "d2".to_owned()));
        assert_eq!(d2.others.iter().map(|h| h.mpid).collect::<Vec<_>>(), [second]);
        assert!(d2.held_since.is_some_and(|(seq, _)| seq > before_login));
        // Then the priority: the customer ID.
        assert_eq!(all.identities[1].identity, Identity::new(CustomerId, "c1".to_owned()));
        assert_eq!(all.aliases.len(), 1);
        assert_eq!((all.aliases[0].source, all.aliases[0].destination), (second, first));
        let from_second = audit.neighbourhood(second, AsOf::Now, generous).unwrap();
        assert_eq!(from_second.aliases, all.aliases, "aliases are reported both ways");

        let started = Instant::now();
        let bounded = audit.neighbourhood(first, AsOf::Now, NeighbourhoodLimits::DEFAULT).unwrap();
        let elapsed = started.elapsed();
        assert_eq!((bounded.identities.len(), bounded.n_identities_omitted), (100, 903));
        assert_eq!(bounded.profile.identities.len(), 1_003);
        assert!(elapsed.as_secs_f64() < 2.0, "took {elapsed:?}");

        // Before the second login, d2 was only the second profile's.
        let then = audit.neighbourhood(first, AsOf::Seq(before_login), generous).unwrap();
        assert!(!then.profile.identities.contains(&d2.identity));
        assert!(then.aliases.is_empty());
        let other = audit.neighbourhood(second, AsOf::Seq(before_login), generous).unwrap();
        assert_eq!(other.identities.len(), 1);
        assert!(other.identities[0].others.is_empty());
        // A profile that did not exist yet, or never, is not found.
        let created = audit.neighbourhood(second, AsOf::Seq(Seq(1)), generous);
        assert!(matches!(created, Err(EngineError::NotFound(_))), "{created:?}");
        let never = audit.neighbourhood(Mpid::new(999_999).unwrap(), AsOf::Now, generous);
        assert!(matches!(never, Err(EngineError::NotFound(_))), "{never:?}");
    }
}
