//! The in-process target of `idgraph bench`: a durable engine (RocksDB in a folder), called
//! directly; a pipelined chunk is one `Engine::handle_batch` (one lock, one wait for durability).

use std::path::Path;

use idgraph_engine::{Command, Engine, EngineConfig, EngineError, RequestMeta, Workspace};
use idgraph_model::IdentityType;
use idgraph_query::{Answer, IdentityOp, IdentityQuery, ResolverConfig, Strategy};
use idgraph_workload::{Op, Outcome, Ready, Target, WorkloadRequest};

/// The workspace every request goes to.
const WORKSPACE: &str = "bench";

/// An engine opened on a data folder.
#[derive(Debug)]
pub(super) struct InProcess {
    engine: Engine,
}

impl InProcess {
    /// Opens (or creates) the engine in `data_dir`, with one workspace on profile conversion and
    /// `customerid` and `email` as login and unique types.
    pub(super) fn open(data_dir: &Path) -> anyhow::Result<InProcess> {
        let workspace =
            Workspace { name: WORKSPACE.into(), scope: WORKSPACE.into(), resolver: bench_config() };
        let engine = Engine::open(data_dir, EngineConfig::single(workspace))
            .map_err(|err| anyhow::anyhow!("{err}"))?
            .0;
        Ok(InProcess { engine })
    }

    /// The projection's heap bytes in use
    /// ([`idgraph_projection::Projection::heap_bytes_in_use`]) per identity.
    pub(super) fn bytes_per_identity(&self) -> f64 {
        self.engine
            .with_projection(|p| p.heap_bytes_in_use() as f64 / p.n_identities().max(1) as f64)
    }

    pub(super) fn close(self) -> anyhow::Result<()> {
        self.engine.close().map_err(|err| anyhow::anyhow!("{err}"))
    }
}

impl Target for InProcess {
    type Client = ();

    fn client(&self) {}

    fn send(&self, _client: &mut (), requests: &[Ready<'_>]) -> Vec<Outcome> {
        if let [ready] = requests {
            let answer = self.engine.handle(&meta_of(ready.request()), command_of(ready));
            return vec![outcome_of(answer)];
        }
        let batch = requests.iter().map(|ready| (meta_of(ready.request()), command_of(ready)));
        self.engine.handle_batch(batch.collect()).into_iter().map(outcome_of).collect()
    }
}

fn bench_config() -> ResolverConfig {
    let login = [IdentityType::CustomerId, IdentityType::Email];
    ResolverConfig::new(
        Strategy::ProfileConversion,
        idgraph_query::DEFAULT_PRIORITY.to_vec(),
        &login,
        &login,
        &[],
    )
    .expect("valid")
}

fn meta_of(request: &WorkloadRequest) -> RequestMeta {
    RequestMeta {
        workspace: WORKSPACE.into(),
        environment: request.environment,
        request_id: Some(request.request_id.clone()),
    }
}

fn command_of(ready: &Ready<'_>) -> Command {
    match *ready {
        Ready::Modify { request, mpid } => {
            Command::Modify { mpid, identity_changes: request.identity_changes.clone() }
        }
        Ready::Identity { request, previous_mpid } => {
            let op = match request.op {
                Op::Identify => IdentityOp::Identify,
                Op::Login => IdentityOp::Login,
                Op::Logout => IdentityOp::Logout,
                _ => IdentityOp::Search,
            };
            Command::Identity(IdentityQuery {
                op,
                known_identities: request.identities(),
                previous_mpid,
            })
        }
    }
}

fn outcome_of(answer: Result<Answer, EngineError>) -> Outcome {
    match answer {
        Ok(Answer::Resolved(answer)) => Outcome::Answered(Some(answer.mpid)),
        Ok(_) => Outcome::Answered(None),
        Err(err) if err.is_client_error() => Outcome::Rejected,
        Err(err) => Outcome::Failed(err.to_string()),
    }
}
