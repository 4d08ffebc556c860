//! # idgraph-server
//!
//! The HTTP Identity API, compatible with mParticle IDSync clients (spec §4): `POST /v1/identify`,
//! `/v1/search`, `/v1/login`, `/v1/logout`, `/v1/{mpid}/modify`, `/v1/identity/{api_key}/alias` and
//! `/v1/alias`; plus `GET /healthz`, `/metrics` (Prometheus) and `/openapi.json`.
//!
//! ## Architecture invariants
//! - The only crate that knows HTTP and JSON: it converts requests into engine commands by hand
//!   and answers with its own JSON shapes; the engine's types are not serialisable.
//! - Requests that record go to the engine's submission pipeline (`idgraph_engine::Pipeline`):
//!   the handler awaits its ticket, and one writer thread decides whatever is queued as a group,
//!   so there is no thread hand-off or condition variable per request; a full queue is 503 with
//!   `Retry-After`. A search (a read lock on the projection), audit and the change feed run on
//!   tokio's blocking pool.
//! - Every error is an IDSync-shaped JSON body with a 4xx/5xx status; handlers never panic on
//!   input. What a handler does not answer (axum's and tower-http's own refusals) is turned into
//!   one by `wire::json_errors`.
//! - Nothing a client does holds a connection, or shutdown, forever: connections are served by
//!   hyper with a header read timeout, bodies have a read timeout, and shutdown has a deadline
//!   after which the log is synced whatever is still running ([`serve`]).
//!
//! ## Map
//! - `admit.rs`: the steps every request takes (body limit, authentication, rate limit, JSON) as
//!   the extractors `Admitted` and `Caller`, and running the engine on the blocking pool.
//! - `wire.rs`: `ApiError`, its IDSync-shaped body, and the one mapping of engine and log errors
//!   to statuses.
//! - `api.rs`: the Identity API handlers; `audit_api.rs`: audit; `feed.rs`: the change feed and its
//!   JSON types.
//! - `explorer.rs`: the audit explorer page (`GET /explorer/`), its files embedded in the binary.
//! - `auth.rs`, `rate_limit.rs`, `metrics.rs` (including the process's own CPU time), `config.rs`.

mod admit;
mod api;
mod audit_api;
pub mod auth;
pub mod cluster_node;
pub mod config;
mod explorer;
mod feed;
mod forward;
mod metrics;
mod rate_limit;
mod wire;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use idgraph_engine::{Engine, EngineConfig, Pipeline};
use idgraph_query::IdentityOp;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tower_http::cors::{Any, CorsLayer};
use tower_http::decompression::RequestDecompressionLayer;

use crate::cluster_node::ClusterNode;
pub use crate::config::{ServerConfig, WorkspaceConfig};
use crate::metrics::Metrics;
pub use crate::metrics::process_cpu_seconds;
use crate::rate_limit::RateLimiter;

/// The OpenAPI document, kept in the repository at `docs/openapi.json`.
pub const OPENAPI_JSON: &str = include_str!("../../../docs/openapi.json");

/// Shared state of the handlers.
#[derive(Debug, Clone)]
pub(crate) struct AppState {
    engine: Arc<Engine>,
    /// Where state-changing requests go: decided in groups by the engine's writer thread and
    /// answered when durable (`idgraph_engine::Pipeline`). Closed at shutdown before the engine.
    pipeline: Arc<Pipeline>,
    config: Arc<ServerConfig>,
    metrics: Arc<Metrics>,
    rate_limiter: Arc<RateLimiter>,
    /// Cluster mode: this node's role and position (`cluster_node.rs`); `None` for a single node.
    cluster: Option<Arc<ClusterNode>>,
    /// The relay of recorded requests to the writer, in cluster mode (`forward.rs`).
    forwarder: reqwest::Client,
}

/// How long shutdown waits for the engine's writer to stop even when the shutdown deadline has
/// passed: enough for an idle writer, far less than a stuck engine call.
const PIPELINE_CLOSE_GRACE: Duration = Duration::from_millis(200);

/// Requests the engine's submission queue holds before it answers 503 (`Retry-After`): about a
/// second of work at the write path's speed, and a bound on memory whatever clients do.
const SUBMISSION_QUEUE_REQUESTS: usize = 65_536;

impl AppState {
    /// The state of a server over `engine`, its submission pipeline started.
    fn new(engine: Arc<Engine>, config: ServerConfig) -> anyhow::Result<AppState> {
        let pipeline = Pipeline::start(Arc::clone(&engine), SUBMISSION_QUEUE_REQUESTS)
            .map_err(|err| anyhow::anyhow!("cannot start the engine's writer thread: {err}"))?;
        Ok(AppState {
            engine,
            pipeline: Arc::new(pipeline),
            config: Arc::new(config),
            metrics: Arc::default(),
            rate_limiter: Arc::default(),
            cluster: None,
            // A writer that is paused or gone must not hold the relayed request: the client gets
            // a 503 and retries (with its request_id, safely).
            forwarder: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(1))
                .timeout(Duration::from_secs(5))
                .build()
                .map_err(|err| anyhow::anyhow!("cannot build the relay's HTTP client: {err}"))?,
        })
    }
}

/// Opens the engine on the configured data folder.
pub fn open_engine(config: &ServerConfig) -> anyhow::Result<Engine> {
    let engine_config =
        EngineConfig::new(config.workspaces.iter().map(|w| w.workspace.clone()).collect());
    let (engine, report) = Engine::open(&config.data_dir, engine_config)
        .map_err(|err| anyhow::anyhow!("cannot open {}: {err}", config.data_dir.display()))?;
    for (seq, reason) in &report.snapshots_discarded {
        tracing::warn!(%seq, %reason, "discarded a bad snapshot");
    }
    tracing::info!(snapshot = ?report.snapshot_seq, replayed = report.n_replayed, last_seq = %engine.log().last_seq(), "engine open");
    Ok(engine)
}

/// The router over an engine.
fn router(state: AppState) -> Router {
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers([
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
            header::DATE,
            HeaderName::from_static("x-mp-key"),
            HeaderName::from_static("x-mp-signature"),
        ])
        .expose_headers([HeaderName::from_static("x-mp-max-age"), header::RETRY_AFTER]);
    let identity = |op: IdentityOp| {
        move |state: State<AppState>, request: admit::Admitted<api::IdentityBody>| {
            api::identity(op, state, request)
        }
    };
    Router::new()
        .route("/v1/identify", post(identity(IdentityOp::Identify)))
        .route("/v1/search", post(identity(IdentityOp::Search)))
        .route("/v1/login", post(identity(IdentityOp::Login)))
        .route("/v1/logout", post(identity(IdentityOp::Logout)))
        .route("/v1/{mpid}/modify", post(api::modify))
        .route("/v1/identity/{api_key}/alias", post(api::alias_with_key))
        .route("/v1/identity/{api_key}/Alias", post(api::alias_with_key))
        .route("/v1/alias", post(api::alias))
        .route("/v1/admin/{mpid}/{action}", post(api::admin))
        .route("/v1/events", get(feed::events))
        .route("/v1/audit/profiles/{mpid}", get(audit_api::profile_as_of))
        .route("/v1/audit/search", post(audit_api::search_as_of))
        .route("/v1/audit/what-if", post(audit_api::what_if))
        .route("/v1/audit/profiles/{mpid}/history", get(audit_api::profile_history))
        .route(
            "/v1/audit/identities/{identity_type}/{value}/history",
            get(audit_api::identity_history),
        )
        .route("/v1/audit/entries/{seq}/explain", get(audit_api::explain_entry))
        .route("/v1/audit/explain", post(audit_api::explain_hypothetical))
        .route("/v1/audit/profiles/{mpid}/graph", get(audit_api::profile_graph))
        .route("/explorer", get(explorer::redirect))
        .route("/explorer/", get(explorer::index))
        .route("/explorer/{*file}", get(explorer::file))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route(
            "/openapi.json",
            get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON) }),
        )
        .fallback(|| async {
            wire::ApiError::new(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                "no such endpoint; see /openapi.json",
            )
        })
        .method_not_allowed_fallback(|method: Method| async move {
            wire::error_of_status(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{method} is not allowed here; see the Allow header and /openapi.json"),
            )
        })
        .layer(middleware::from_fn_with_state(state.clone(), forward::route))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .layer(RequestDecompressionLayer::new())
        // Outside the decompression layer, whose 415 is not JSON; inside CORS, whose headers
        // errors carry too.
        .layer(middleware::map_response(wire::json_errors))
        .layer(cors)
        .with_state(state)
}

/// Records metrics and a trace line for each request.
async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let endpoint = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().clone();
    let response = next.run(request).await;
    let latency = started.elapsed();
    state.metrics.record(&endpoint, response.status().as_u16(), latency);
    tracing::debug!(%method, endpoint, status = response.status().as_u16(), latency_us = latency.as_micros() as u64, "request");
    response
}

async fn healthz(State(state): State<AppState>) -> Response {
    let engine = Arc::clone(&state.engine);
    // The digest needs the projection's read lock: off the async workers.
    let digest = tokio::task::spawn_blocking(move || {
        engine.with_projection(|projection| projection.running_digest())
    })
    .await;
    let log = state.engine.log();
    let (written, indexed) = (log.last_seq(), log.indexed_seq());
    let body = serde_json::json!({
        "status": "ok",
        "role": state.cluster.as_ref().map_or("writer", |node| node.role().name()),
        "last_seq": log.assigned_seq().0,
        "written_seq": written.0,
        "durable_seq": log.durable_seq().0,
        "indexed_seq": indexed.0,
        "index_lag": written.0.saturating_sub(indexed.0),
        "running_digest": digest.map(|digest| format!("{:032x}", digest.0)).ok(),
    });
    (StatusCode::OK, axum::Json(body)).into_response()
}

async fn metrics(State(state): State<AppState>) -> Response {
    let log = state.engine.log();
    let text = state.metrics.render(
        [log.assigned_seq(), log.last_seq(), log.durable_seq(), log.indexed_seq()],
        log.stats(),
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// Serves until `shutdown` completes, then finishes in-flight requests, makes the log durable and
/// returns.
///
/// Shutdown is bounded by `config.shutdown_timeout` from the signal: connections still open at the
/// deadline (a request still running, a client still trickling its headers) are closed. Engine
/// calls run on the blocking pool and cannot be cancelled, so one whose request was abandoned may
/// still hold the engine: shutdown waits for them until the same deadline, then closes the log; if
/// some are still running then, it syncs the log and returns an error saying so.
pub async fn serve(
    config: ServerConfig,
    engine: Engine,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    serve_shared(config, Arc::new(engine), listener, shutdown).await
}

/// [`serve`], over an engine the caller may still look at (through a `Weak`) afterwards.
async fn serve_shared(
    config: ServerConfig,
    engine: Arc<Engine>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let mut state = AppState::new(Arc::clone(&engine), config.clone())?;
    if let Some(cluster_config) = &config.cluster {
        // A node's log is appended to only as the writer (through the replicator) or by
        // replication: nothing is decided here before this node wins the lease.
        engine.log().require_replicator();
        let url = format!("http://{}", listener.local_addr()?);
        let cluster = idgraph_cluster::Cluster::connect_at(cluster_config, &url).await?;
        let node =
            ClusterNode::join(cluster, Arc::clone(&engine), config.snapshot_every_entries).await?;
        tokio::spawn(Arc::clone(&node).run_or_exit());
        state.cluster = Some(node);
    }
    let pipeline = Arc::clone(&state.pipeline);
    let snapshots = tokio::spawn(snapshot_loop(Arc::clone(&engine), config.snapshot_every_entries));
    let flusher = tokio::spawn(flush_loop(Arc::clone(&engine)));
    let connections = accept_until(&config, router(state), listener, shutdown).await;
    let deadline = tokio::time::Instant::now() + config.shutdown_timeout;
    tracing::info!("stopped accepting; finishing in-flight requests");
    connections.drain(deadline).await;
    for task in [snapshots, flusher] {
        task.abort();
        let _ = task.await;
    }
    // Every request handed to the writer is decided and answered; then its threads let go of the
    // engine. Closing joins threads, so it runs off the async workers, and within the deadline:
    // a writer stuck in an engine call counts as an engine call still running (below).
    // (At least a moment, even past the deadline: an idle writer stops in microseconds.)
    let closing = tokio::task::spawn_blocking(move || pipeline.close());
    let pipeline_deadline = deadline.max(tokio::time::Instant::now() + PIPELINE_CLOSE_GRACE);
    if tokio::time::timeout_at(pipeline_deadline, closing).await.is_err() {
        tracing::warn!("the engine's writer was still busy at the shutdown deadline");
    }
    tracing::info!("flushing the log");
    close_engine(engine, deadline, config.shutdown_timeout).await
}

/// The connections being served: each a task, watched for graceful shutdown.
struct Connections {
    /// Tells every connection to finish its request in flight and close (idle ones close at
    /// once), and says when all have.
    graceful: GracefulShutdown,
    /// The connections' tasks, to abort those still open at the shutdown deadline (dropping a
    /// connection's task drops its requests, and their hold on the engine).
    tasks: JoinSet<()>,
}

/// Accepts connections and serves each on its own task until `shutdown` completes.
async fn accept_until(
    config: &ServerConfig,
    app: Router,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Connections {
    let mut http = hyper::server::conn::http1::Builder::new();
    // The header read timeout needs a timer; it runs from when the server starts reading a
    // request's head, so it also closes connections kept alive and idle that long.
    http.timer(TokioTimer::new()).header_read_timeout(config.header_read_timeout);
    let mut connections = Connections { graceful: GracefulShutdown::new(), tasks: JoinSet::new() };
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            // Reap finished connections, so that the set holds only open ones.
            Some(_) = connections.tasks.join_next(), if !connections.tasks.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    // Answers are written whole; Nagle's algorithm would only delay them.
                    let _ = stream.set_nodelay(true);
                    let service = TowerToHyperService::new(app.clone());
                    let connection = http.serve_connection(TokioIo::new(stream), service);
                    let connection = connections.graceful.watch(connection);
                    connections.tasks.spawn(async move {
                        if let Err(err) = connection.await {
                            tracing::debug!(error = %err, "connection closed with an error");
                        }
                    });
                }
                Err(err) => {
                    // Out of file descriptors, typically: wait for some to be released.
                    tracing::warn!(error = %err, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    connections
}

impl Connections {
    /// Lets the connections finish their requests in flight until `deadline`, then closes those
    /// still open.
    async fn drain(self, deadline: tokio::time::Instant) {
        let Connections { graceful, mut tasks } = self;
        if tokio::time::timeout_at(deadline, graceful.shutdown()).await.is_err() {
            tracing::warn!(
                n_connections = tasks.len(),
                "shutdown deadline reached: closing the connections still open"
            );
        }
        tasks.shutdown().await;
    }
}

/// Closes the log once no engine call holds the engine any more, waiting for them until
/// `deadline`; past it, syncs the log through the shared engine and answers an error.
async fn close_engine(
    engine: Arc<Engine>,
    deadline: tokio::time::Instant,
    shutdown_timeout: Duration,
) -> anyhow::Result<()> {
    // Every other holder (router, connections, background loops) is gone by now: what is left
    // are engine calls on the blocking pool, which cannot be cancelled.
    while Arc::strong_count(&engine) > 1 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    match Arc::try_unwrap(engine) {
        Ok(engine) => tokio::task::spawn_blocking(move || engine.close())
            .await?
            .map_err(|err| anyhow::anyhow!("closing the log failed: {err}")),
        Err(engine) => {
            let n_running = Arc::strong_count(&engine) - 1;
            let synced = tokio::task::spawn_blocking(move || engine.log().sync()).await?;
            let seq = synced.map_err(|err| anyhow::anyhow!("syncing the log failed: {err}"))?;
            Err(anyhow::anyhow!(
                "engine work still running {} ms after the shutdown signal (shutdown_timeout_ms; \
                 {n_running} holder(s): the writer's threads or engine calls): the log is synced \
                 up to sequence {seq} but not closed",
                shutdown_timeout.as_millis()
            ))
        }
    }
}

/// Answers that changed nothing are queued, not written (`Durability::Queued`); this writes the
/// queue every 50 ms so that quiet periods do not leave entries unwritten for long.
async fn flush_loop(engine: Arc<Engine>) {
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if engine.log().assigned_seq() == engine.log().last_seq() {
            continue;
        }
        let engine = Arc::clone(&engine);
        if let Ok(Err(err)) = tokio::task::spawn_blocking(move || engine.log().flush()).await {
            tracing::warn!(error = %err, "flushing queued entries failed");
        }
    }
}

/// Takes a snapshot whenever `every` entries have been appended since the last one.
async fn snapshot_loop(engine: Arc<Engine>, every: u64) {
    if every == 0 {
        return;
    }
    let mut last = engine
        .log()
        .snapshots_at_or_before(engine.log().last_seq())
        .ok()
        .and_then(|s| s.first().copied())
        .unwrap_or_default();
    loop {
        tokio::time::sleep(Duration::from_secs(10)).await;
        if engine.log().last_seq().0 < last.0 + every {
            continue;
        }
        let engine = Arc::clone(&engine);
        match tokio::task::spawn_blocking(move || engine.snapshot()).await {
            Ok(Ok(seq)) => {
                tracing::info!(%seq, "snapshot written");
                last = seq;
            }
            Ok(Err(err)) => tracing::warn!(error = %err, "snapshot failed"),
            Err(err) => tracing::warn!(error = %err, "snapshot task failed"),
        }
    }
}

/// Completes on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown signal received");
}

#[cfg(test)]
mod fuzz_tests;
#[cfg(test)]
mod http_tests;

#[cfg(test)]
mod scope_tests;

#[cfg(test)]
mod shutdown_tests;

#[cfg(test)]
mod tests {
    /// The routes of the router, as `(method, path)`, read from this file's source (the router
    /// offers no list of its routes).
    pub(crate) fn routes() -> Vec<(String, String)> {
        let source = include_str!("lib.rs");
        let mut routes = Vec::new();
        for (idx, _) in source.match_indices(".route(") {
            let rest = &source[idx..];
            let path = rest.split('"').nth(1).unwrap();
            let method = ["get", "post"]
                .into_iter()
                .min_by_key(|m| rest.find(&format!("{m}(")).unwrap_or(usize::MAX))
                .unwrap();
            if path.starts_with('/') {
                routes.push((method.to_owned(), path.to_owned()));
            }
        }
        routes
    }

    /// Every route the router serves is described in `docs/openapi.json` (with its method).
    #[test]
    fn every_route_is_in_the_openapi_document() {
        let document: serde_json::Value = serde_json::from_str(super::OPENAPI_JSON).unwrap();
        let mut n_routes = 0;
        for (method, path) in routes() {
            if path == "/v1/identity/{api_key}/Alias" {
                continue; // The SDKs' capitalised alias path; the same as the lower-case one.
            }
            let described = &document["paths"][&path][&method];
            assert!(described.is_object(), "{method} {path} is not in docs/openapi.json");
            n_routes += 1;
        }
        assert!(n_routes > 15, "found {n_routes} routes");
    }
}
