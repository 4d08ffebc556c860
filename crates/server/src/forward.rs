//! Cluster mode at the HTTP edge (`docs/cluster.md`): a node that is not the writer forwards
//! recorded requests to the writer and relays its answer; every answer says the sequence this
//! node had applied (`Idgraph-Seq`), and a request may ask to be answered only once the node has
//! applied a sequence (`Idgraph-Min-Seq`, read-your-writes across nodes).
//!
//! Forwarding is at the HTTP level, before admission: the writer authenticates, rate-limits,
//! decides and answers as if the client had asked it, and this node only relays. A forwarded
//! answer carries `Idgraph-Forwarded-To` with the writer's URL.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use idgraph_model::Seq;

use crate::AppState;
use crate::cluster_node::Role;
use crate::wire::ApiError;

/// The sequence this node had applied when it answered.
pub const SEQ_HEADER: HeaderName = HeaderName::from_static("idgraph-seq");
/// Answer only once this node has applied this sequence.
pub const MIN_SEQ_HEADER: HeaderName = HeaderName::from_static("idgraph-min-seq");
/// On a relayed answer: the writer it came from.
pub const FORWARDED_TO_HEADER: HeaderName = HeaderName::from_static("idgraph-forwarded-to");

/// How long a request waits for this node to apply its `Idgraph-Min-Seq`.
const MIN_SEQ_WAIT: Duration = Duration::from_secs(5);

/// The routes whose requests are recorded in the log: decided by the writer only.
const RECORDED_ROUTES: [&str; 8] = [
    "/v1/identify",
    "/v1/login",
    "/v1/logout",
    "/v1/{mpid}/modify",
    "/v1/identity/{api_key}/alias",
    "/v1/identity/{api_key}/Alias",
    "/v1/alias",
    "/v1/admin/{mpid}/{action}",
];

/// The middleware: waits for `Idgraph-Min-Seq`, forwards recorded requests when this node is not
/// the writer, and stamps `Idgraph-Seq` on every answer. Does nothing in single-node mode.
pub(crate) async fn route(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(node) = state.cluster.clone() else {
        return next.run(request).await;
    };
    if let Some(min_seq) = request.headers().get(&MIN_SEQ_HEADER) {
        let Some(min_seq) = min_seq.to_str().ok().and_then(|text| text.parse::<u64>().ok()) else {
            let message =
                format!("header {MIN_SEQ_HEADER} must be a sequence number (an unsigned integer)");
            return ApiError::bad_request("INVALID_DATA", message).into_response();
        };
        if !node.wait_applied(Seq(min_seq), MIN_SEQ_WAIT).await {
            return ApiError::unavailable(format!(
                "this node has applied up to sequence {}, not yet {min_seq} (waited {} s); \
                 retry, or ask another node",
                state.engine.log().last_seq(),
                MIN_SEQ_WAIT.as_secs()
            ))
            .into_response();
        }
    }
    let recorded = request.method() == Method::POST
        && request
            .extensions()
            .get::<MatchedPath>()
            .is_some_and(|path| RECORDED_ROUTES.contains(&path.as_str()));
    let mut response = if recorded && node.role() != Role::Writer {
        forward(&state, request).await
    } else {
        next.run(request).await
    };
    if !response.headers().contains_key(&SEQ_HEADER) {
        let seq = state.engine.log().last_seq();
        response.headers_mut().insert(SEQ_HEADER, HeaderValue::from(seq.0));
    }
    response
}

/// Relays `request` to the writer and its answer back; 503 with `Retry-After` if there is no
/// writer or it cannot be reached (the client retries; `request_id` makes that safe).
async fn forward(state: &AppState, request: Request) -> Response {
    let unavailable = |message: String| ApiError::unavailable(message).into_response();
    let Some(node) = &state.cluster else { return unavailable("not in a cluster".into()) };
    let writer = match node.writer_url().await {
        Ok(Some(url)) => url,
        Ok(None) => return unavailable("the cluster has no writer right now; retry".into()),
        Err(err) => return unavailable(format!("cannot find the cluster's writer: {err}")),
    };
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, state.config.body_bytes_max).await {
        Ok(body) => body,
        Err(err) => {
            let message = format!("cannot read the request body: {err}");
            return ApiError::bad_request("INVALID_DATA", message).into_response();
        }
    };
    let path = parts.uri.path_and_query().map_or("/", |path| path.as_str());
    let mut outgoing = state.forwarder.request(parts.method.clone(), format!("{writer}{path}"));
    for (name, value) in &parts.headers {
        if !is_hop_by_hop(name) {
            outgoing = outgoing.header(name, value);
        }
    }
    let answer = match outgoing.body(body).send().await {
        Ok(answer) => answer,
        Err(err) => {
            node.forget_writer();
            return unavailable(format!("cannot reach the writer at {writer}: {err}"));
        }
    };
    let status = answer.status();
    if status == axum::http::StatusCode::SERVICE_UNAVAILABLE {
        // It may have stepped down (or be a follower now): look the writer up again next time.
        node.forget_writer();
    }
    let headers = answer.headers().clone();
    let bytes = match answer.bytes().await {
        Ok(bytes) => bytes,
        Err(err) => {
            node.forget_writer();
            return unavailable(format!("the writer at {writer} broke off: {err}"));
        }
    };
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    for (name, value) in &headers {
        // This node's own CORS layer sets the CORS headers of the relayed answer.
        let cors = name == "vary" || name.as_str().starts_with("access-control-");
        if !is_hop_by_hop(name) && !cors {
            response.headers_mut().append(name, value.clone());
        }
    }
    if let Ok(value) = HeaderValue::from_str(&writer) {
        response.headers_mut().insert(FORWARDED_TO_HEADER, value);
    }
    response
}

/// Headers that belong to one connection, not to the request or answer (RFC 9110, 7.6.1), and
/// the ones the relay recomputes.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
            | "host"
            | "content-length"
    )
}
