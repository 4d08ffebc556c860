//! alias (spec §4.9): attribute a source profile's history to a destination. Validated
//! synchronously (400 / 403); requests that break the alias rules are acknowledged and ignored, as
//! IDSync does. Aliasing never changes lookups.

use idgraph_model::{Event, Mpid, Outcome, Timestamp};
use idgraph_projection::{ProfileId, Projection};

use crate::config::ResolverConfig;
use crate::{Answer, Decision, ErrorCode, RequestError, World};

/// The longest alias window: 90 days, in microseconds (IDSync `aliasMaxWindow`).
pub const ALIAS_WINDOW_MAX_MICROS: i64 = 90 * 24 * 3600 * 1_000_000;

/// An alias request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AliasQuery {
    /// The profile whose history is attributed.
    pub source: Mpid,
    /// The profile that receives it.
    pub destination: Mpid,
    /// Window start; default: 90 days before `end`.
    pub start: Option<Timestamp>,
    /// Window end; default: now.
    pub end: Option<Timestamp>,
}

pub(crate) fn decide(
    projection: &Projection,
    config: &ResolverConfig,
    world: &World,
    query: &AliasQuery,
    now: Timestamp,
) -> Result<Decision, RequestError> {
    if !config.strategy.supports_alias() {
        return Err(RequestError::new(
            ErrorCode::AliasNotProvisioned,
            format!(
                "Aliasing is not provisioned for this workspace: the {} strategy does not support aliasing.",
                config.strategy
            ),
        ));
    }
    if query.source == query.destination {
        return Err(RequestError::new(
            ErrorCode::InvalidData,
            "Source MPID is the same as the target MPID.",
        ));
    }
    let end = query.end.unwrap_or(now);
    let start = query.start.unwrap_or(Timestamp(end.0.saturating_sub(ALIAS_WINDOW_MAX_MICROS)));
    if start > end {
        return Err(RequestError::new(ErrorCode::InvalidData, "Given time range is invalid."));
    }
    // Windows longer than the maximum are clamped, as IDSync copies at most 90 days.
    let start = start.max(Timestamp(end.0.saturating_sub(ALIAS_WINDOW_MAX_MICROS)));
    let (Some(source), Some(destination)) =
        (find(projection, world, query.source), find(projection, world, query.destination))
    else {
        return Err(RequestError::new(
            ErrorCode::InvalidData,
            "The source MPID or target MPID does not exist.",
        ));
    };
    let ignored = |reason: &str| {
        let reason = reason.to_owned();
        Ok(Decision {
            events: Vec::new(),
            outcome: Some(Outcome::AliasIgnored { reason: reason.clone() }),
            answer: Answer::Alias { accepted: false, reason: Some(reason) },
        })
    };
    if projection.profile(source).was_alias_destination {
        return ignored("the source has been the destination of an earlier alias");
    }
    if projection.profile(destination).was_alias_source {
        return ignored("the destination has been the source of an earlier alias");
    }
    let overlaps = projection
        .aliases_from(query.source)
        .iter()
        .any(|earlier| earlier.start <= end && start <= earlier.end);
    if overlaps {
        return ignored("the source was already aliased over an overlapping window");
    }
    Ok(Decision {
        events: vec![Event::AliasRecorded {
            source: query.source,
            destination: query.destination,
            start,
            end,
        }],
        outcome: Some(Outcome::AliasAccepted),
        answer: Answer::Alias { accepted: true, reason: None },
    })
}

fn find(projection: &Projection, world: &World, mpid: Mpid) -> Option<ProfileId> {
    let profile = projection.profile_id(mpid)?;
    (projection.world(&world.scope, world.environment) == Some(projection.profile(profile).world))
        .then_some(profile)
}
