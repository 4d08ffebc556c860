//! The explanation of a stored entry: re-decided against the state just before it (folded from the
//! log's indexes), step by step, and compared with what was recorded.

use idgraph_log::Log;
use idgraph_model::{Entry, Event, Operation, Seq};
use idgraph_query::{
    Explanation, IdentityOp, IdentityQuery, MpidSource, Resolver, ResolverConfig, World,
};

use super::past;
use crate::EngineError;

/// Replays the MPIDs a stored entry created, so that re-deciding it reproduces its events exactly;
/// past them (a decision that disagrees), fresh values from a counter, so it never loops.
struct RecordedMpids(Vec<i64>, i64);

impl MpidSource for RecordedMpids {
    fn next_candidate(&mut self) -> i64 {
        if self.0.is_empty() {
            self.1 += 1;
            self.1
        } else {
            self.0.remove(0)
        }
    }
}

/// An explanation of a stored identify / login / logout entry.
#[derive(Debug, Clone)]
pub struct EntryExplanation {
    /// The sequence of the entry explained.
    pub seq: Seq,
    /// The entry explained.
    pub entry: Entry,
    /// How the resolver decides it against the state just before it.
    pub explanation: Explanation,
    /// Whether that decision equals what was recorded (events and outcome).
    pub agrees: bool,
}

/// Re-decides stored entry `entry` (at `seq`) against the state just before it with `config`,
/// explaining each step, and says whether it agrees with what was recorded. Only identify, login
/// and logout entries are explained ([`EngineError::Invalid`] for the others).
pub(super) fn explain_entry(
    log: &Log,
    config: &ResolverConfig,
    seq: Seq,
    entry: Entry,
) -> Result<EntryExplanation, EngineError> {
    let (op, request) = match &entry.request.operation {
        Operation::Identify(request) => (IdentityOp::Identify, request),
        Operation::Login(request) => (IdentityOp::Login, request),
        Operation::Logout(request) => (IdentityOp::Logout, request),
        other => {
            return Err(EngineError::Invalid(format!(
                "entry {seq} is a {}: only identify, login and logout entries are explained",
                other.name()
            )));
        }
    };
    let projection = past::lookup_as_of(
        log,
        &entry.request.scope,
        &request.known_identities,
        request.previous_mpid,
        Seq(seq.0 - 1),
    )?;
    let world =
        World { scope: entry.request.scope.clone(), environment: entry.request.environment };
    let query = IdentityQuery {
        op,
        known_identities: request.known_identities.clone(),
        previous_mpid: request.previous_mpid,
    };
    let created: Vec<i64> = entry
        .events
        .iter()
        .filter_map(
            |e| if let Event::ProfileCreated { mpid } = e { Some(mpid.get()) } else { None },
        )
        .collect();
    let resolver = Resolver { projection: &projection, config };
    let (decision, explanation) = resolver.explain_identity(
        &world,
        &query,
        entry.recorded_at,
        &mut RecordedMpids(created, 1 << 62),
    );
    let agrees = decision
        .is_ok_and(|d| d.events == entry.events && d.outcome.as_ref() == Some(&entry.outcome));
    Ok(EntryExplanation { seq, entry, explanation, agrees })
}
