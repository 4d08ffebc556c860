//! The engine's error type: what went wrong, with the kind of the failure below it kept, so that the
//! server maps each kind to its status in one place (`server::wire`).

use idgraph_projection::OutOfSequence;
use idgraph_query::RequestError;

/// Why the engine did not answer. Each variant says how a server maps it. Deliberately not
/// `#[non_exhaustive]`: a new kind must be given its status where errors are mapped, and the
/// compiler says where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// The request is invalid. **Handling:** 4xx with the resolver's code and message.
    #[error(transparent)]
    Request(#[from] RequestError),
    /// No such workspace. **Handling:** a configuration or authentication problem; 401.
    #[error("unknown workspace `{0}`")]
    UnknownWorkspace(String),
    /// An audit question names something the log does not have in the caller's identity scope
    /// (an MPID, a sequence). **Handling:** 404.
    #[error("{0}")]
    NotFound(String),
    /// An audit question that is invalid as asked (explaining a modify, a configuration change that
    /// does not validate). **Handling:** 400.
    #[error("{0}")]
    Invalid(String),
    /// The `request_id` was used, within the idempotency window, for another request (another
    /// operation, environment or content). Nothing is recorded. **Handling:** 422; the client
    /// must retry with the same request or use a new id.
    #[error(
        "request_id `{request_id}` was already used for another request (a {operation}) within \
         the idempotency window: retry with the same request, or use a new request_id"
    )]
    RequestIdReused {
        /// The id.
        request_id: String,
        /// The operation it was first used for.
        operation: &'static str,
    },
    /// The submission queue is full: the engine is deciding as fast as it can and the request
    /// was not queued. **Handling:** 503 with `Retry-After`; the client retries later.
    #[error("the engine is overloaded ({queue_capacity} requests queued); retry shortly")]
    Overloaded {
        /// The queue's capacity.
        queue_capacity: usize,
    },
    /// This node of a cluster is not the writer, so it decides nothing: recorded requests go to the
    /// writer (the server forwards them; this error is the guard behind that, for a request that
    /// raced with a change of writer). **Handling:** 503 with `Retry-After`; the client retries.
    #[error(
        "this node is not the cluster's writer; retry (the request is forwarded to the writer)"
    )]
    NotWriter,
    /// The log failed; its error says which way ([`idgraph_log::Error`]'s variants document the
    /// handling of each: 503 for storage failures, 500 for corruption and gaps).
    #[error(transparent)]
    Log(#[from] idgraph_log::Error),
    /// The log holds an entry the fold cannot take (out of sequence): the log is inconsistent.
    /// **Handling:** as corruption; stop serving from this log, 500.
    #[error("the log cannot be folded: {0}")]
    Fold(#[from] OutOfSequence),
    /// An earlier write failed after its entry was applied, so the projection may be ahead of the
    /// log: the engine refuses every request until it is reopened (which replays the log).
    /// **Handling:** 503 and alert; restart once the cause is fixed.
    #[error("the engine refuses requests after a failure ({cause}); restart to replay the log")]
    Halted {
        /// The failure that halted the engine.
        cause: String,
    },
}

impl EngineError {
    /// Whether the error is the caller's (a 4xx), as opposed to the service's.
    pub fn is_client_error(&self) -> bool {
        matches!(
            self,
            EngineError::Request(_)
                | EngineError::UnknownWorkspace(_)
                | EngineError::NotFound(_)
                | EngineError::Invalid(_)
                | EngineError::RequestIdReused { .. }
        )
    }
}
