//! The answer a recorded entry gave, rebuilt from the entry alone: what a repeated `request_id`
//! gets back, live or after a restart.

use idgraph_model::{DetachReason, Entry, Event, Identity, IdentityRequest, Operation, Outcome};
use idgraph_query::{Answer, ChangeResult, ResolvedAnswer};

/// The answer recorded in `entry`.
pub fn answer_of(entry: &Entry) -> Answer {
    match &entry.outcome {
        Outcome::Resolved { mpid, is_logged_in, matched } => {
            let known: &[Identity] = match &entry.request.operation {
                Operation::Identify(IdentityRequest { known_identities, .. })
                | Operation::Login(IdentityRequest { known_identities, .. })
                | Operation::Logout(IdentityRequest { known_identities, .. }) => known_identities,
                _ => &[],
            };
            let mut matched_identities: Vec<Identity> = known
                .iter()
                .filter(|identity| matched.contains(&identity.identity_type))
                .cloned()
                .collect();
            matched_identities.sort();
            let created = entry.events.iter().any(
                |event| matches!(event, Event::ProfileCreated { mpid: created } if created == mpid),
            );
            Answer::Resolved(ResolvedAnswer {
                mpid: *mpid,
                is_logged_in: *is_logged_in,
                matched_identities,
                created,
            })
        }
        Outcome::Modified { mpid } => {
            let mut change_results: Vec<ChangeResult> = entry
                .events
                .iter()
                .filter_map(|event| match event {
                    Event::IdentityDetached {
                        mpid: loser,
                        identity,
                        reason: DetachReason::MovedTo { .. },
                    } => Some(ChangeResult {
                        identity_type: identity.identity_type,
                        modified_mpid: *loser,
                    }),
                    _ => None,
                })
                .collect();
            change_results.sort();
            change_results.dedup();
            Answer::Modified { mpid: *mpid, change_results }
        }
        Outcome::AliasAccepted => Answer::Alias { accepted: true, reason: None },
        Outcome::AliasIgnored { reason } => {
            Answer::Alias { accepted: false, reason: Some(reason.clone()) }
        }
        Outcome::AdminApplied { new_mpid } => Answer::Admin { new_mpid: *new_mpid },
    }
}
