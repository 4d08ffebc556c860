//! modify (spec §2.5, §4.6): change the identities of one existing profile. Never creates a profile;
//! unique identities are moved from other profiles (which may become orphaned); immutable
//! identities cannot change once set.

use idgraph_model::{DetachReason, Event, Identity, IdentityChange, IdentityType, Mpid, Outcome};
use idgraph_projection::{ProfileId, Projection};

use crate::config::ResolverConfig;
use crate::{Answer, Decision, ErrorCode, RequestError, World};

/// A profile that lost a unique identity to a modify (`change_results` in the response).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ChangeResult {
    /// The type it lost.
    pub identity_type: IdentityType,
    /// The profile that lost it.
    pub modified_mpid: Mpid,
}

/// The modify's working copy of the target's identities.
struct Target {
    mpid: Mpid,
    identities: Vec<Identity>,
}

pub(crate) fn decide(
    projection: &Projection,
    config: &ResolverConfig,
    world: &World,
    mpid: Mpid,
    changes: &[IdentityChange],
) -> Result<Decision, RequestError> {
    let profile = find_profile(projection, world, mpid)?;
    if changes.is_empty() {
        return Err(RequestError::new(ErrorCode::LookupError, "identity_changes is empty."));
    }
    for change in changes {
        check_change(config, change)?;
    }
    let mut target = Target { mpid, identities: projection.identities_of_sorted(profile) };
    let mut events = Vec::new();
    let mut change_results = Vec::new();
    for change in changes {
        apply_change(
            projection,
            config,
            world,
            &mut target,
            change,
            &mut events,
            &mut change_results,
        )?;
    }
    change_results.sort();
    change_results.dedup();
    Ok(Decision {
        events,
        outcome: Some(Outcome::Modified { mpid }),
        answer: Answer::Modified { mpid, change_results },
    })
}

fn find_profile(
    projection: &Projection,
    world: &World,
    mpid: Mpid,
) -> Result<ProfileId, RequestError> {
    let not_found = || {
        RequestError::new(
            ErrorCode::LookupError,
            format!("MPID {mpid} not found: modify never creates a profile"),
        )
    };
    let profile = projection.profile_id(mpid).ok_or_else(not_found)?;
    let in_world = projection.world(&world.scope, world.environment)
        == Some(projection.profile(profile).world);
    in_world.then_some(profile).ok_or_else(not_found)
}

fn check_change(config: &ResolverConfig, change: &IdentityChange) -> Result<(), RequestError> {
    for value in [&change.old_value, &change.new_value].into_iter().flatten() {
        crate::check_value_length(config, change.identity_type, value)?;
    }
    if let Some(new_value) = &change.new_value
        && config.guardrails.is_blocked(change.identity_type, new_value)
    {
        return Err(RequestError::new(
            ErrorCode::LookupError,
            format!("{}={new_value:?} is a blocked placeholder value", change.identity_type),
        ));
    }
    Ok(())
}

fn apply_change(
    projection: &Projection,
    config: &ResolverConfig,
    world: &World,
    target: &mut Target,
    change: &IdentityChange,
    events: &mut Vec<Event>,
    change_results: &mut Vec<ChangeResult>,
) -> Result<(), RequestError> {
    let identity_type = change.identity_type;
    if change.old_value.is_some() && change.old_value == change.new_value {
        return Ok(()); // SDKs send unchanged values; nothing to do.
    }
    if config.priority_of(identity_type).is_none() {
        return Ok(()); // Only prioritised types are looked up, so only they are kept (spec §1.2).
    }
    let held: Vec<Identity> = target
        .identities
        .iter()
        .filter(|identity| identity.identity_type == identity_type)
        .cloned()
        .collect();
    let to_remove: Vec<Identity> = match (&change.old_value, &change.new_value) {
        (Some(old), _) => held.iter().filter(|identity| &identity.value == old).cloned().collect(),
        // Both null: remove every value of the type (undocumented by IDSync; see docs/resolution.md).
        (None, None) => held.clone(),
        (None, Some(_)) => Vec::new(),
    };
    let adds = change
        .new_value
        .as_ref()
        .filter(|new| !held.iter().any(|identity| &identity.value == *new));
    if config.immutable_ids.contains(identity_type)
        && !held.is_empty()
        && (!to_remove.is_empty() || adds.is_some())
    {
        return Err(RequestError::new(
            ErrorCode::LookupError,
            format!("{identity_type} is an immutable identity: once set it cannot be changed"),
        ));
    }
    for identity in to_remove {
        target.identities.retain(|held| *held != identity);
        events.push(Event::IdentityDetached {
            mpid: target.mpid,
            identity,
            reason: DetachReason::Modified,
        });
    }
    let Some(new_value) = adds else { return Ok(()) };
    let cap = config.guardrails.identities_per_type_max as usize;
    let n_held =
        target.identities.iter().filter(|held| held.identity_type == identity_type).count();
    if n_held >= cap {
        return Err(RequestError::new(
            ErrorCode::LookupError,
            format!(
                "MPID {} would hold more than {cap} {identity_type} values \
                 (identities_per_type_max): remove one in the same modify first",
                target.mpid
            ),
        ));
    }
    let identity = Identity::new(identity_type, new_value.as_str());
    if config.unique_ids.contains(identity_type) {
        move_from_others(projection, world, target.mpid, &identity, events, change_results);
    }
    target.identities.push(identity.clone());
    events.push(Event::IdentityAttached { mpid: target.mpid, identity });
    Ok(())
}

/// Detaches a unique identity from every other profile holding it.
fn move_from_others(
    projection: &Projection,
    world: &World,
    mpid: Mpid,
    identity: &Identity,
    events: &mut Vec<Event>,
    change_results: &mut Vec<ChangeResult>,
) {
    let Some(world_id) = projection.world(&world.scope, world.environment) else { return };
    let Some(id) = projection.identity_id(world_id, identity.identity_type, &identity.value) else {
        return;
    };
    for other in projection.profiles_of(id) {
        let other_mpid = projection.mpid(other);
        if other_mpid == mpid {
            continue;
        }
        events.push(Event::IdentityDetached {
            mpid: other_mpid,
            identity: identity.clone(),
            reason: DetachReason::MovedTo { mpid },
        });
        change_results.push(ChangeResult {
            identity_type: identity.identity_type,
            modified_mpid: other_mpid,
        });
    }
}
