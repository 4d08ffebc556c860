//! Administrative corrections (reversible links): detach identities from a profile, or split them
//! off into a new profile. Recorded as compensating events; nothing in the log is rewritten, so the
//! history shows both the link and its reversal.

use idgraph_model::{DetachReason, Event, Identity, Mpid, Outcome};
use idgraph_projection::{ProfileId, Projection};

use crate::{Answer, Decision, ErrorCode, MpidSource, RequestError, World};

fn find(projection: &Projection, world: &World, mpid: Mpid) -> Result<ProfileId, RequestError> {
    let profile = projection.profile_id(mpid).filter(|p| {
        projection.world(&world.scope, world.environment) == Some(projection.profile(*p).world)
    });
    profile
        .ok_or_else(|| RequestError::new(ErrorCode::LookupError, format!("MPID {mpid} not found")))
}

fn check_held(
    projection: &Projection,
    profile: ProfileId,
    mpid: Mpid,
    identities: &[Identity],
) -> Result<(), RequestError> {
    if identities.is_empty() {
        return Err(RequestError::new(ErrorCode::LookupError, "no identities given"));
    }
    let held = projection.identities_of_sorted(profile);
    if let Some(missing) = identities.iter().find(|identity| !held.contains(identity)) {
        return Err(RequestError::new(
            ErrorCode::LookupError,
            format!("{mpid} does not hold {missing}"),
        ));
    }
    Ok(())
}

/// Detaches `identities` from `mpid`.
pub(crate) fn detach(
    projection: &Projection,
    world: &World,
    mpid: Mpid,
    identities: &[Identity],
) -> Result<Decision, RequestError> {
    let profile = find(projection, world, mpid)?;
    check_held(projection, profile, mpid, identities)?;
    let events = identities
        .iter()
        .map(|identity| Event::IdentityDetached {
            mpid,
            identity: identity.clone(),
            reason: DetachReason::AdminDetached,
        })
        .collect();
    Ok(Decision {
        events,
        outcome: Some(Outcome::AdminApplied { new_mpid: None }),
        answer: Answer::Admin { new_mpid: None },
    })
}

/// Moves `identities` from `mpid` to a new profile.
pub(crate) fn split(
    projection: &Projection,
    world: &World,
    mpid: Mpid,
    identities: &[Identity],
    mpids: &mut dyn MpidSource,
) -> Result<Decision, RequestError> {
    let profile = find(projection, world, mpid)?;
    check_held(projection, profile, mpid, identities)?;
    let new_mpid = mpids.draw(projection);
    let mut events = vec![Event::ProfileCreated { mpid: new_mpid }];
    for identity in identities {
        events.push(Event::IdentityDetached {
            mpid,
            identity: identity.clone(),
            reason: DetachReason::SplitTo { mpid: new_mpid },
        });
        events.push(Event::IdentityAttached { mpid: new_mpid, identity: identity.clone() });
    }
    Ok(Decision {
        events,
        outcome: Some(Outcome::AdminApplied { new_mpid: Some(new_mpid) }),
        answer: Answer::Admin { new_mpid: Some(new_mpid) },
    })
}
