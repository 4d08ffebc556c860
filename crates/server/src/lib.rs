//! # idgraph-server
//!
//! The HTTP Identity API, compatible with mParticle IDSync clients (spec §4): `POST /v1/identify`,
//! `/v1/search`, `/v1/login`, `/v1/logout`, `/v1/{mpid}/modify`, `/v1/identity/{api_key}/alias` and
//! `/v1/alias`; plus `GET /healthz`, `/metrics` (Prometheus) and `/openapi.json`.
//!
//! ## Architecture invariants
//! - The only crate that knows HTTP and JSON: it converts requests into engine commands by hand
//!   and answers with its own JSON shapes; the engine's types are not serialisable.
//! - Engine calls block (they wait for fsync), so they run on tokio's blocking pool, never on an
//!   async worker.
//! - Every error is an IDSync-shaped JSON body with a 4xx/5xx status; handlers never panic on
//!   input.
//!
//! ## Map
//! - `admit.rs`: the steps every request takes (body limit, authentication, rate limit, JSON) as
//!   the extractors `Admitted` and `Caller`, and running the engine on the blocking pool.
//! - `wire.rs`: `ApiError`, its IDSync-shaped body, and the one mapping of engine and log errors
//!   to statuses.
//! - `api.rs`: the Identity API handlers; `audit_api.rs`: audit; `feed.rs`: the change feed and its
//!   JSON types.
//! - `auth.rs`, `rate_limit.rs`, `metrics.rs`, `config.rs`.

mod admit;
mod api;
mod audit_api;
pub mod auth;
pub mod config;
mod feed;
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
use idgraph_engine::{Engine, EngineConfig};
use idgraph_query::IdentityOp;
use tokio::net::TcpListener;
use tower_http::cors::{Any, CorsLayer};
use tower_http::decompression::RequestDecompressionLayer;

pub use crate::config::{ServerConfig, WorkspaceConfig};
use crate::metrics::Metrics;
use crate::rate_limit::RateLimiter;

/// The OpenAPI document, kept in the repository at `docs/openapi.json`.
pub const OPENAPI_JSON: &str = include_str!("../../../docs/openapi.json");

/// Shared state of the handlers.
#[derive(Debug, Clone)]
pub(crate) struct AppState {
    engine: Arc<Engine>,
    config: Arc<ServerConfig>,
    metrics: Arc<Metrics>,
    rate_limiter: Arc<RateLimiter>,
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
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .layer(RequestDecompressionLayer::new())
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
    let log = state.engine.log();
    let body = serde_json::json!({"status": "ok", "last_seq": log.assigned_seq().0, "written_seq": log.last_seq().0, "durable_seq": log.durable_seq().0});
    (StatusCode::OK, axum::Json(body)).into_response()
}

async fn metrics(State(state): State<AppState>) -> Response {
    let log = state.engine.log();
    let text =
        state.metrics.render([log.assigned_seq(), log.last_seq(), log.durable_seq()], log.stats());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// Serves until `shutdown` completes, then finishes in-flight requests, makes the log durable and
/// returns.
pub async fn serve(
    config: ServerConfig,
    engine: Engine,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let engine = Arc::new(engine);
    let state = AppState {
        engine: Arc::clone(&engine),
        config: Arc::new(config.clone()),
        metrics: Arc::default(),
        rate_limiter: Arc::default(),
    };
    let snapshots = tokio::spawn(snapshot_loop(Arc::clone(&engine), config.snapshot_every_entries));
    let flusher = tokio::spawn(flush_loop(Arc::clone(&engine)));
    axum::serve(listener, router(state)).with_graceful_shutdown(shutdown).await?;
    for task in [snapshots, flusher] {
        task.abort();
        let _ = task.await;
    }
    tracing::info!("stopped accepting; flushing the log");
    let engine =
        Arc::try_unwrap(engine).map_err(|_| anyhow::anyhow!("engine still in use at shutdown"))?;
    tokio::task::spawn_blocking(move || engine.close()).await??;
    Ok(())
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
mod http_tests;

#[cfg(test)]
mod tests {
    /// Every route the router serves is described in `docs/openapi.json` (with its method).
    #[test]
    fn every_route_is_in_the_openapi_document() {
        let document: serde_json::Value = serde_json::from_str(super::OPENAPI_JSON).unwrap();
        let source = include_str!("lib.rs");
        let mut n_routes = 0;
        for (idx, _) in source.match_indices(".route(") {
            let rest = &source[idx..];
            let path = rest.split('"').nth(1).unwrap();
            let method = ["get", "post"]
                .into_iter()
                .min_by_key(|m| rest.find(&format!("{m}(")).unwrap_or(usize::MAX))
                .unwrap();
            if path == "/v1/identity/{api_key}/Alias" || !path.starts_with('/') {
                continue; // The SDKs' capitalised alias path; the same as the lower-case one.
            }
            let described = &document["paths"][path][method];
            assert!(described.is_object(), "{method} {path} is not in docs/openapi.json");
            n_routes += 1;
        }
        assert!(n_routes > 15, "found {n_routes} routes");
    }
}
