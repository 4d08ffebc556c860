//! Audit over the log: the projection as of any sequence or time (nearest snapshot plus a tail
//! fold), and the explanation of a stored entry, re-decided against the state just before it.

use std::ops::ControlFlow;

use idgraph_log::Log;
use idgraph_model::{Entry, Event, Operation, Seq, Timestamp};
use idgraph_projection::Projection;
use idgraph_query::{Explanation, IdentityOp, IdentityQuery, MpidSource, Resolver, World};

use crate::{EngineError, Workspace};

fn unavailable(err: idgraph_log::Error) -> EngineError {
    EngineError::Unavailable(err.to_string())
}

/// The projection as it was after entry `seq` (`Seq::ZERO`: empty): the newest verified snapshot at
/// or before `seq`, plus the entries up to `seq`.
pub fn projection_as_of(log: &Log, seq: Seq) -> Result<Projection, EngineError> {
    let mut projection = Projection::new();
    for snapshot in log.snapshots_at_or_before(seq).map_err(unavailable)? {
        let loaded = log
            .load_snapshot(snapshot)
            .ok()
            .flatten()
            .and_then(|bytes| Projection::from_snapshot(&bytes).ok());
        if let Some(loaded) = loaded.filter(|p| p.last_seq() == snapshot) {
            projection = loaded;
            break;
        }
    }
    let mut failure = None;
    log.scan(projection.last_seq().next(), |entry_seq, entry| {
        if entry_seq > seq {
            return ControlFlow::Break(());
        }
        match projection.apply(entry_seq, &entry) {
            Ok(()) => ControlFlow::Continue(()),
            Err(err) => {
                failure = Some(err.to_string());
                ControlFlow::Break(())
            }
        }
    })
    .map_err(unavailable)?;
    match failure {
        Some(reason) => Err(EngineError::Unavailable(reason)),
        None => Ok(projection),
    }
}

/// The projection as it was at `time`: after the last entry recorded at or before it.
pub fn projection_at_time(log: &Log, time: Timestamp) -> Result<(Seq, Projection), EngineError> {
    let seq = log.seq_at(time).map_err(unavailable)?;
    Ok((seq, projection_as_of(log, seq)?))
}

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
    /// The entry explained.
    pub entry: Entry,
    /// How the resolver decides it against the state just before it.
    pub explanation: Explanation,
    /// Whether that decision equals what was recorded (events and outcome).
    pub agrees: bool,
}

/// Re-decides stored entry `seq` against the projection as of `seq - 1` with the workspace's
/// configuration, explaining each step, and says whether it agrees with what was recorded.
/// `None` for entries that are not identity requests (modify, alias, admin).
pub fn explain_entry(
    log: &Log,
    workspace: &Workspace,
    seq: Seq,
) -> Result<Option<EntryExplanation>, EngineError> {
    let Some(entry) = log.get(seq).map_err(unavailable)? else {
        return Err(EngineError::Unavailable(format!("no entry at sequence {seq}")));
    };
    let (op, request) = match &entry.request.operation {
        Operation::Identify(request) => (IdentityOp::Identify, request),
        Operation::Login(request) => (IdentityOp::Login, request),
        Operation::Logout(request) => (IdentityOp::Logout, request),
        _ => return Ok(None),
    };
    let projection = projection_as_of(log, Seq(seq.0 - 1))?;
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
    let resolver = Resolver { projection: &projection, config: &workspace.resolver };
    let (decision, explanation) = resolver.explain_identity(
        &world,
        &query,
        entry.recorded_at,
        &mut RecordedMpids(created, 1 << 62),
    );
    let agrees = decision
        .is_ok_and(|d| d.events == entry.events && d.outcome.as_ref() == Some(&entry.outcome));
    Ok(Some(EntryExplanation { entry, explanation, agrees }))
}
