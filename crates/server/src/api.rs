//! The Identity API handlers: body limits, authentication, rate limits, JSON in and out, and the
//! mapping of engine answers and errors to IDSync's HTTP shapes (spec §4.3-4.9).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use idgraph_engine::{Command, EngineError, RequestMeta};
use idgraph_model::{
    AdminCorrection, Environment, Identity, IdentityChange, IdentityType, Mpid, Timestamp,
};
use idgraph_query::{AliasQuery, Answer, IdentityOp, IdentityQuery};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::auth::{Credentials, authenticate};
use crate::config::WorkspaceConfig;

/// An error response in the shape real IDSync servers send.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    request_id: Option<String>,
    retry_after_seconds: Option<u64>,
}

impl ApiError {
    pub(crate) fn new(
        status: StatusCode,
        code: &'static str,
        message: impl Into<String>,
    ) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            request_id: None,
            retry_after_seconds: None,
        }
    }

    fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    fn with_request_id(mut self, request_id: Option<String>) -> ApiError {
        self.request_id = request_id;
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let request_id = self.request_id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let body = json!({
            "Errors": [{"code": self.code, "message": self.message}],
            "ErrorCode": self.code,
            "StatusCode": self.status.as_u16(),
            "RequestId": request_id,
        });
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(seconds) = self.retry_after_seconds {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<axum::extract::rejection::QueryRejection> for ApiError {
    fn from(rejection: axum::extract::rejection::QueryRejection) -> ApiError {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_DATA",
            format!("query string: {}", rejection.body_text()),
        )
    }
}

impl From<EngineError> for ApiError {
    fn from(err: EngineError) -> ApiError {
        match err {
            EngineError::Request(err) => {
                let status =
                    StatusCode::from_u16(err.code.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
                ApiError::new(status, err.code.as_str(), err.message)
            }
            EngineError::UnknownWorkspace(name) => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "UNAUTHORIZED",
                format!("workspace `{name}` is not configured"),
            ),
            other => {
                tracing::error!(error = %other, "engine unavailable");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "SERVICE_UNAVAILABLE",
                    other.to_string(),
                )
            }
        }
    }
}

/// Reads the (already decompressed) body, refusing more than the configured bytes.
pub(crate) async fn read_body(state: &AppState, body: Body) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, state.config.body_bytes_max).await.map_err(|err| {
        // axum does not re-export http-body-util's LengthLimitError; its text is stable.
        let too_large = format!("{err:?}").contains("LengthLimitError")
            || err.to_string().contains("length limit");
        if too_large {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "PAYLOAD_TOO_LARGE",
                format!("the request body is larger than {} bytes", state.config.body_bytes_max),
            )
        } else {
            ApiError::bad_request("INVALID_DATA", format!("cannot read the request body: {err}"))
        }
    })
}

/// Authenticates and rate-limits a request.
fn admit<'s>(
    state: &'s AppState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    key_in_path: Option<&str>,
) -> Result<&'s WorkspaceConfig, ApiError> {
    let credentials = Credentials {
        headers,
        method: method.as_str(),
        path_and_query: uri.path_and_query().map(|pq| pq.as_str()).unwrap_or(uri.path()),
        path: uri.path(),
        body,
        key_in_path,
    };
    let workspace = authenticate(&state.config.workspaces, &credentials, chrono::Utc::now())
        .map_err(|err| ApiError::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", err.0))?;
    if let Err(retry_after_seconds) =
        state.rate_limiter.admit(&workspace.api_key, workspace.rate_limit_per_second)
    {
        let mut err = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "TOO_MANY_REQUESTS",
            format!(
                "more than {} requests per second for this API key",
                workspace.rate_limit_per_second
            ),
        );
        err.retry_after_seconds = Some(retry_after_seconds);
        return Err(err);
    }
    Ok(workspace)
}

pub(crate) fn parse_json<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|err| {
        ApiError::bad_request(
            "INVALID_DATA",
            format!("The request JSON is malformed or has a wrong type: {err}"),
        )
    })
}

/// Fields of identify / search / login / logout bodies; unknown fields (client_sdk, context,
/// request_timestamp_ms, ...) are accepted and ignored, as SDKs send them.
#[derive(Debug, Deserialize)]
pub(crate) struct IdentityBody {
    pub(crate) environment: Option<String>,
    pub(crate) request_id: Option<String>,
    #[serde(default)]
    pub(crate) previous_mpid: Value,
    pub(crate) known_identities: Option<BTreeMap<String, Value>>,
}

impl IdentityBody {
    /// The checked environment, previous MPID and identities.
    pub(crate) fn into_parts(self) -> Result<(Environment, Option<Mpid>, Vec<Identity>), ApiError> {
        let environment = environment(self.environment.as_deref())?;
        let previous_mpid = optional_mpid("previous_mpid", &self.previous_mpid)?;
        Ok((environment, previous_mpid, known_identities(self.known_identities)?))
    }
}

pub(crate) fn environment(value: Option<&str>) -> Result<Environment, ApiError> {
    let value = value.ok_or_else(|| {
        ApiError::bad_request("LOOKUP_ERROR", "environment is required (production or development)")
    })?;
    Environment::from_wire_name(value).ok_or_else(|| {
        ApiError::bad_request(
            "LOOKUP_ERROR",
            format!("environment `{value}` is neither production nor development"),
        )
    })
}

/// An MPID given as a JSON string, number or null; 0 means none (SDKs use 0 for "no user").
pub(crate) fn optional_mpid(field: &str, value: &Value) -> Result<Option<Mpid>, ApiError> {
    let parsed = match value {
        Value::Null => return Ok(None),
        Value::String(s) if s.is_empty() => return Ok(None),
        Value::String(s) => s.trim().parse::<i64>().ok(),
        Value::Number(n) => n.as_i64(),
        _ => None,
    };
    match parsed {
        Some(n) => Ok(Mpid::new(n)),
        None => Err(ApiError::bad_request(
            "INVALID_DATA",
            format!("{field} must be a 64-bit integer, as a string or a number"),
        )),
    }
}

pub(crate) fn known_identities(
    map: Option<BTreeMap<String, Value>>,
) -> Result<Vec<Identity>, ApiError> {
    let map =
        map.ok_or_else(|| ApiError::bad_request("LOOKUP_ERROR", "known_identities is required"))?;
    let mut identities = Vec::with_capacity(map.len());
    for (key, value) in map {
        let identity_type: IdentityType = key.parse().map_err(|err| {
            ApiError::bad_request("LOOKUP_ERROR", format!("known_identities: {err}"))
        })?;
        match value {
            // SDKs drop empty identities; a null is the same as absent.
            Value::Null => {}
            Value::String(value) => identities.push(Identity::new(identity_type, value)),
            other => {
                return Err(ApiError::bad_request(
                    "LOOKUP_ERROR",
                    format!("known_identities.{key} must be a string, not {other}"),
                ));
            }
        }
    }
    Ok(identities)
}

async fn run_engine(
    state: &AppState,
    meta: RequestMeta,
    command: Command,
) -> Result<Answer, ApiError> {
    let engine = Arc::clone(&state.engine);
    let request_id = meta.request_id.clone();
    // The engine blocks on fsync: keep it off the async workers.
    let res = tokio::task::spawn_blocking(move || engine.handle(&meta, command)).await.map_err(
        |err| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL_ERROR",
                format!("request task failed: {err}"),
            )
        },
    )?;
    res.map_err(|err| ApiError::from(err).with_request_id(request_id))
}

fn identity_response(state: &AppState, answer: Answer, op: IdentityOp) -> Response {
    match answer {
        Answer::Resolved(answer) => {
            let matched: serde_json::Map<String, Value> = answer
                .matched_identities
                .iter()
                .map(|i| (i.identity_type.wire_name().to_owned(), Value::String(i.value.clone())))
                .collect();
            let body = json!({
                "context": null,
                "matched_identities": matched,
                "is_ephemeral": false,
                "mpid": answer.mpid.to_string(),
                "is_logged_in": answer.is_logged_in,
            });
            let mut response = (StatusCode::OK, axum::Json(body)).into_response();
            if op != IdentityOp::Search {
                response
                    .headers_mut()
                    .insert("x-mp-max-age", HeaderValue::from(state.config.max_age_seconds));
            }
            response
        }
        Answer::NotFound => {
            ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND_ERROR", "No match").into_response()
        }
        other => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL_ERROR",
            format!("unexpected answer {other:?}"),
        )
        .into_response(),
    }
}

/// `POST /v1/identify`, `/v1/search`, `/v1/login`, `/v1/logout`.
pub(crate) async fn identity(
    op: IdentityOp,
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(&state, body).await?;
    let workspace = admit(&state, &method, &uri, &headers, &bytes, None)?;
    let parsed: IdentityBody = parse_json(&bytes)?;
    let request_id = parsed.request_id.clone();
    let fail = |err: ApiError| err.with_request_id(request_id.clone());
    let request_id_sent = parsed.request_id.clone();
    let (environment, previous_mpid, known_identities) = parsed.into_parts().map_err(fail)?;
    let meta = RequestMeta {
        workspace: workspace.workspace.name.clone(),
        environment,
        request_id: request_id_sent,
    };
    let answer = run_engine(
        &state,
        meta,
        Command::Identity(IdentityQuery { op, known_identities, previous_mpid }),
    )
    .await?;
    Ok(identity_response(&state, answer, op))
}

#[derive(Debug, Deserialize)]
struct ModifyBody {
    environment: Option<String>,
    request_id: Option<String>,
    identity_changes: Option<Vec<ChangeBody>>,
}

#[derive(Debug, Deserialize)]
struct ChangeBody {
    identity_type: Option<String>,
    #[serde(default)]
    old_value: Option<String>,
    #[serde(default)]
    new_value: Option<String>,
}

/// `POST /v1/{mpid}/modify`.
pub(crate) async fn modify(
    State(state): State<AppState>,
    Path(mpid): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(&state, body).await?;
    let workspace = admit(&state, &method, &uri, &headers, &bytes, None)?;
    let parsed: ModifyBody = parse_json(&bytes)?;
    let request_id = parsed.request_id.clone();
    let fail = |err: ApiError| err.with_request_id(request_id.clone());
    let mpid =
        match optional_mpid("the MPID in the path", &Value::String(mpid.clone())).map_err(fail)? {
            Some(mpid) => mpid,
            None => {
                return Err(fail(ApiError::bad_request(
                    "LOOKUP_ERROR",
                    "modify() requires a non-zero MPID",
                )));
            }
        };
    let environment = environment(parsed.environment.as_deref()).map_err(fail)?;
    let changes = parsed.identity_changes.ok_or_else(|| {
        fail(ApiError::bad_request("LOOKUP_ERROR", "identity_changes is required"))
    })?;
    let mut identity_changes = Vec::with_capacity(changes.len());
    for (idx, change) in changes.into_iter().enumerate() {
        let name = change.identity_type.ok_or_else(|| {
            fail(ApiError::bad_request(
                "LOOKUP_ERROR",
                format!("identity_changes[{idx}].identity_type is required"),
            ))
        })?;
        let identity_type = name.parse().map_err(|err| {
            fail(ApiError::bad_request("LOOKUP_ERROR", format!("identity_changes[{idx}]: {err}")))
        })?;
        identity_changes.push(IdentityChange {
            identity_type,
            old_value: change.old_value,
            new_value: change.new_value,
        });
    }
    let meta = RequestMeta {
        workspace: workspace.workspace.name.clone(),
        environment,
        request_id: parsed.request_id,
    };
    match run_engine(&state, meta, Command::Modify { mpid, identity_changes }).await? {
        Answer::Modified { change_results, .. } => {
            let results: Vec<Value> = change_results
                .iter()
                .map(|c| json!({"identity_type": c.identity_type.wire_name(), "modified_mpid": c.modified_mpid.to_string()}))
                .collect();
            Ok((StatusCode::OK, axum::Json(json!({ "change_results": results }))).into_response())
        }
        other => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL_ERROR",
            format!("unexpected answer {other:?}"),
        )),
    }
}

#[derive(Debug, Deserialize)]
struct AliasBody {
    environment: Option<String>,
    request_id: Option<String>,
    data: Option<AliasData>,
}

#[derive(Debug, Deserialize)]
struct AliasData {
    #[serde(default)]
    source_mpid: Value,
    #[serde(default)]
    destination_mpid: Value,
    start_unixtime_ms: Option<i64>,
    end_unixtime_ms: Option<i64>,
}

/// `POST /v1/identity/{api_key}/alias` (key in the path, as the SDKs send it).
pub(crate) async fn alias_with_key(
    State(state): State<AppState>,
    Path(api_key): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    alias_impl(state, Some(api_key), method, uri, headers, body).await
}

/// `POST /v1/alias`.
pub(crate) async fn alias(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    alias_impl(state, None, method, uri, headers, body).await
}

async fn alias_impl(
    state: AppState,
    key_in_path: Option<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(&state, body).await?;
    let workspace = admit(&state, &method, &uri, &headers, &bytes, key_in_path.as_deref())?;
    let parsed: AliasBody = parse_json(&bytes)?;
    let request_id = parsed.request_id.clone();
    let fail = |err: ApiError| err.with_request_id(request_id.clone());
    let environment = environment(parsed.environment.as_deref()).map_err(fail)?;
    let data = parsed.data.ok_or_else(|| {
        fail(ApiError::bad_request(
            "INVALID_DATA",
            "The request JSON is malformed or is missing required fields: data",
        ))
    })?;
    let mpid = |field: &str, value: &Value| {
        optional_mpid(field, value)?.ok_or_else(|| {
            ApiError::bad_request(
                "INVALID_DATA",
                format!(
                    "The request JSON is malformed or is missing required fields: data.{field}"
                ),
            )
        })
    };
    let source = mpid("source_mpid", &data.source_mpid).map_err(fail)?;
    let destination = mpid("destination_mpid", &data.destination_mpid).map_err(fail)?;
    let query = AliasQuery {
        source,
        destination,
        start: data.start_unixtime_ms.map(Timestamp::from_unix_millis),
        end: data.end_unixtime_ms.map(Timestamp::from_unix_millis),
    };
    let meta = RequestMeta {
        workspace: workspace.workspace.name.clone(),
        environment,
        request_id: parsed.request_id,
    };
    run_engine(&state, meta, Command::Alias(query)).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

/// Administrative requests need the secret (HTTP Basic or a signature): a key alone never
/// suffices, even where the workspace allows key-only identity calls.
pub(crate) fn admit_admin<'s>(
    state: &'s AppState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<&'s WorkspaceConfig, ApiError> {
    if headers.get("authorization").is_none() && headers.get("x-mp-signature").is_none() {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "administrative endpoints need HTTP Basic or a signature",
        ));
    }
    admit(state, method, uri, headers, body, None)
}

#[derive(Debug, Deserialize)]
struct AdminBody {
    environment: Option<String>,
    request_id: Option<String>,
    identities: Option<BTreeMap<String, Value>>,
    actor: Option<String>,
    reason: Option<String>,
}

/// `POST /v1/admin/{mpid}/detach` and `/v1/admin/{mpid}/split`.
pub(crate) async fn admin(
    State(state): State<AppState>,
    Path((mpid, action)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(&state, body).await?;
    let workspace = admit_admin(&state, &method, &uri, &headers, &bytes)?;
    let parsed: AdminBody = parse_json(&bytes)?;
    let request_id = parsed.request_id.clone();
    let fail = |err: ApiError| err.with_request_id(request_id.clone());
    let mpid = optional_mpid("the MPID in the path", &Value::String(mpid))
        .map_err(fail)?
        .ok_or_else(|| fail(ApiError::bad_request("LOOKUP_ERROR", "the MPID must not be 0")))?;
    let environment = environment(parsed.environment.as_deref()).map_err(fail)?;
    let identities = known_identities(parsed.identities).map_err(fail)?;
    let required = |field: &str, value: Option<String>| {
        value.filter(|v| !v.trim().is_empty()).ok_or_else(|| {
            ApiError::bad_request(
                "INVALID_DATA",
                format!("{field} is required: corrections are audited"),
            )
        })
    };
    let actor = required("actor", parsed.actor).map_err(fail)?;
    let reason = required("reason", parsed.reason).map_err(fail)?;
    let command = match action.as_str() {
        "detach" => Command::AdminDetach(AdminCorrection { mpid, identities, actor, reason }),
        "split" => Command::AdminSplit(AdminCorrection { mpid, identities, actor, reason }),
        other => {
            return Err(fail(ApiError::new(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                format!("unknown admin action `{other}` (detach or split)"),
            )));
        }
    };
    let meta = RequestMeta {
        workspace: workspace.workspace.name.clone(),
        environment,
        request_id: parsed.request_id,
    };
    match run_engine(&state, meta, command).await? {
        Answer::Admin { new_mpid } => Ok((
            StatusCode::OK,
            axum::Json(
                json!({ "mpid": mpid.to_string(), "new_mpid": new_mpid.map(|m| m.to_string()) }),
            ),
        )
            .into_response()),
        other => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL_ERROR",
            format!("unexpected answer {other:?}"),
        )),
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct FeedQuery {
    #[serde(default)]
    after: u64,
    limit: Option<usize>,
    wait_ms: Option<u64>,
}

/// Most entries per change-feed page.
const FEED_PAGE_ENTRIES_MAX: usize = 1_000;
/// Longest long-poll wait.
const FEED_WAIT_MS_MAX: u64 = 30_000;

/// `GET /v1/events?after=SEQ&limit=N&wait_ms=MS`: log entries after SEQ, in order, only durable
/// ones (a follower never sees an entry a crash could take back); with `wait_ms`, waits (long
/// poll) until there is at least one. Entries are in the JSON form of `idgraph log show`; resume
/// with `after` = the last `seq` received.
pub(crate) async fn events(
    State(state): State<AppState>,
    query: Result<axum::extract::Query<FeedQuery>, axum::extract::rejection::QueryRejection>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let workspace = admit_admin(&state, &method, &uri, &headers, b"")?;
    let axum::extract::Query(query) = query?;
    let limit = query.limit.unwrap_or(100).clamp(1, FEED_PAGE_ENTRIES_MAX);
    let deadline = std::time::Instant::now()
        + std::time::Duration::from_millis(query.wait_ms.unwrap_or(0).min(FEED_WAIT_MS_MAX));
    loop {
        let durable = state.engine.log().durable_seq();
        if durable.0 > query.after || std::time::Instant::now() >= deadline {
            let engine = Arc::clone(&state.engine);
            let scope = workspace.workspace.scope.clone();
            let after = query.after;
            let page = tokio::task::spawn_blocking(move || {
                engine.log().read_range(idgraph_model::Seq(after.saturating_add(1)), limit)
            })
            .await
            .map_err(|err| {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR", err.to_string())
            })?
            .map_err(|err| {
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "SERVICE_UNAVAILABLE",
                    err.to_string(),
                )
            })?;
            let mut last = query.after;
            let mut entries = Vec::new();
            for (seq, entry) in page.into_iter().take_while(|(seq, _)| *seq <= durable) {
                last = seq.0;
                // A workspace sees the entries of its own scope only.
                if entry.request.scope == scope {
                    entries.push(json!({ "seq": seq.0, "entry": entry }));
                }
            }
            return Ok((
                StatusCode::OK,
                axum::Json(json!({ "entries": entries, "next_after": last })),
            )
                .into_response());
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
