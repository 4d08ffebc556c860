//! Audit over HTTP (`docs/audit.md`): profile and identity history, the explanation of a stored
//! entry or of a hypothetical request, and a profile as of a sequence or time. All need HTTP Basic
//! or a signature, and answer for the caller's identity scope only.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use idgraph_engine::audit::AsOf;
use idgraph_engine::whatif::ConfigChanges;
use idgraph_engine::{Engine, RequestMeta};
use idgraph_model::{Identity, IdentityType, Mpid, Seq, Timestamp};
use idgraph_query::{Answer, IdentityOp, IdentityQuery, Strategy};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::api::{ApiError, IdentityBody, admit_admin, optional_mpid, parse_json, read_body};
use crate::config::WorkspaceConfig;

fn identities_json(identities: &[Identity]) -> Value {
    Value::Array(
        identities
            .iter()
            .map(|i| json!({"identity_type": i.identity_type.wire_name(), "value": i.value}))
            .collect(),
    )
}

fn mpid_path(mpid: &str) -> Result<Mpid, ApiError> {
    optional_mpid("the MPID in the path", &Value::String(mpid.to_owned()))?.ok_or_else(|| {
        ApiError::new(StatusCode::BAD_REQUEST, "INVALID_DATA", "the MPID must not be 0")
    })
}

async fn blocking<T: Send + 'static>(
    engine: &Arc<Engine>,
    f: impl FnOnce(&Engine) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let engine = Arc::clone(engine);
    tokio::task::spawn_blocking(move || f(&engine)).await.map_err(|err| {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR", err.to_string())
    })?
}

fn admitted<'s>(
    state: &'s AppState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<&'s WorkspaceConfig, ApiError> {
    admit_admin(state, method, uri, headers, b"")
}

/// `GET /v1/audit/profiles/{mpid}/history`.
pub(crate) async fn profile_history(
    State(state): State<AppState>,
    Path(mpid): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let workspace = admitted(&state, &method, &uri, &headers)?.clone();
    let mpid = mpid_path(&mpid)?;
    let history = blocking(&state.engine, move |engine| {
        Ok(engine.audit(&workspace.workspace.name)?.profile_history(mpid)?)
    })
    .await?;
    let steps: Vec<Value> = history
        .steps
        .iter()
        .map(|step| {
            json!({
                "seq": step.seq.0, "recorded_at": step.recorded_at.to_string(), "operation": step.operation,
                "request_id": step.request_id, "identities": identities_json(&step.identities),
                "resolved_mpid": step.resolved.map(|m| m.to_string()),
                "changes": step.changes.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
            })
        })
        .collect();
    let body = json!({
        "mpid": mpid.to_string(),
        "became_known_seq": history.became_known().map(|step| step.seq.0),
        "steps": steps,
        "text": history.to_string(),
    });
    Ok((StatusCode::OK, axum::Json(body)).into_response())
}

/// `GET /v1/audit/identities/{type}/{value}/history`.
pub(crate) async fn identity_history(
    State(state): State<AppState>,
    Path((identity_type, value)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let workspace = admitted(&state, &method, &uri, &headers)?.clone();
    let identity_type: IdentityType = identity_type
        .parse()
        .map_err(|err| ApiError::new(StatusCode::BAD_REQUEST, "LOOKUP_ERROR", format!("{err}")))?;
    let identity = Identity::new(identity_type, value);
    let followed = identity.clone();
    let holdings = blocking(&state.engine, move |engine| {
        Ok(engine.audit(&workspace.workspace.name)?.identity_history(&followed)?)
    })
    .await?;
    let holders: Vec<Value> = holdings
        .iter()
        .map(|h| {
            json!({
                "mpid": h.mpid.to_string(), "from_seq": h.from.0.0, "from": h.from.1.to_string(),
                "until_seq": h.until.as_ref().map(|u| u.0.0), "until": h.until.as_ref().map(|u| u.1.to_string()),
                "reason": h.until.as_ref().map(|u| format!("{:?}", u.2)),
            })
        })
        .collect();
    Ok((
        StatusCode::OK,
        axum::Json(json!({"identity": identities_json(&[identity])[0], "holders": holders})),
    )
        .into_response())
}

/// `GET /v1/audit/entries/{seq}/explain`.
pub(crate) async fn explain_entry(
    State(state): State<AppState>,
    Path(seq): Path<u64>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let caller = admitted(&state, &method, &uri, &headers)?.clone();
    let explained = blocking(&state.engine, move |engine| {
        Ok(engine.audit(&caller.workspace.name)?.explain_entry(Seq(seq))?)
    })
    .await?;
    Ok((StatusCode::OK, axum::Json(json!({"seq": seq, "agrees": explained.agrees, "explanation": explained.explanation.to_string()}))).into_response())
}

#[derive(Debug, Deserialize)]
pub(crate) struct AsOfQuery {
    seq: Option<u64>,
    time: Option<String>,
}

impl AsOfQuery {
    /// The point asked for: `seq`, the last entry at or before `time`, or the end of the log.
    fn as_of(&self) -> Result<AsOf, ApiError> {
        match (self.seq, &self.time) {
            (Some(_), Some(_)) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "INVALID_DATA",
                "give `seq` or `time`, not both",
            )),
            (Some(seq), None) => Ok(AsOf::Seq(Seq(seq))),
            (None, Some(text)) => {
                let time = chrono::DateTime::parse_from_rfc3339(text).map_err(|_| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "INVALID_DATA",
                        format!("time `{text}` is not RFC 3339 (e.g. 2026-05-01T12:00:00Z)"),
                    )
                })?;
                Ok(AsOf::Time(Timestamp::from_datetime(time.to_utc())))
            }
            (None, None) => Ok(AsOf::Now),
        }
    }
}

/// `GET /v1/audit/profiles/{mpid}?seq=N` or `?time=RFC3339`: the profile as it was then, rebuilt
/// from the entries that touched it (`audit::profiles_as_of`).
pub(crate) async fn profile_as_of(
    State(state): State<AppState>,
    Path(mpid): Path<String>,
    query: Result<Query<AsOfQuery>, QueryRejection>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let workspace = admitted(&state, &method, &uri, &headers)?.clone();
    let Query(query) = query?;
    let mpid = mpid_path(&mpid)?;
    let as_of = query.as_of()?;
    let report = blocking(&state.engine, move |engine| {
        Ok(engine.audit(&workspace.workspace.name)?.profile_as_of(mpid, as_of)?)
    })
    .await?;
    match report.profile {
        Some(profile) => {
            let aliases: Vec<Value> = profile
                .aliased_to
                .iter()
                .map(|a| json!({"destination": a.destination.to_string(), "seq": a.seq.0}))
                .collect();
            let profile = json!({
                "created": profile.created.to_string(),
                "last_seen": profile.last_seen.to_string(),
                "identities": identities_json(&profile.identities),
                "aliased_to": aliases,
            });
            let body = json!({"as_of_seq": report.as_of.0, "mpid": mpid.to_string(), "profile": profile});
            Ok((StatusCode::OK, axum::Json(body)).into_response())
        }
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND_ERROR",
            format!("MPID {mpid} did not exist as of sequence {}", report.as_of),
        )),
    }
}

/// `POST /v1/audit/search?seq=N` or `?time=RFC3339`: a search as it would have been answered
/// then, with its explanation, from the profiles that held the identities sent
/// (`audit::lookup_as_of`).
pub(crate) async fn search_as_of(
    State(state): State<AppState>,
    query: Result<Query<AsOfQuery>, QueryRejection>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(&state, body).await?;
    let workspace = admit_admin(&state, &method, &uri, &headers, &bytes)?.clone();
    let Query(query) = query?;
    let (environment, _, known_identities) = parse_json::<IdentityBody>(&bytes)?.into_parts()?;
    let as_of = query.as_of()?;
    let search = blocking(&state.engine, move |engine| {
        let audit = engine.audit(&workspace.workspace.name)?;
        Ok(audit.search_as_of(environment, known_identities, as_of)?)
    })
    .await?;
    let (as_of, answer, text) = (search.as_of, search.answer, search.explanation.to_string());
    let (mpid, matched) = match answer {
        Answer::Resolved(answer) => {
            (Some(answer.mpid.to_string()), identities_json(&answer.matched_identities))
        }
        _ => (None, Value::Array(Vec::new())),
    };
    let body = json!({"as_of_seq": as_of.0, "mpid": mpid, "matched_identities": matched, "explanation": text});
    Ok((StatusCode::OK, axum::Json(body)).into_response())
}

/// The body of `POST /v1/audit/what-if`: changes to the caller's configuration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WhatIfBody {
    strategy: Option<String>,
    identity_priority: Option<Vec<String>>,
    login_ids: Option<Vec<String>>,
    unique_ids: Option<Vec<String>>,
}

fn types_field(
    field: &str,
    names: Option<Vec<String>>,
) -> Result<Option<Vec<IdentityType>>, ApiError> {
    let Some(names) = names else { return Ok(None) };
    names
        .iter()
        .map(|name| {
            name.parse().map_err(|err| {
                ApiError::new(StatusCode::BAD_REQUEST, "INVALID_DATA", format!("{field}: {err}"))
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// `POST /v1/audit/what-if`: re-decides every recorded request of the caller's workspace under its
/// configuration with the changes given, and reports what would differ (`idgraph what-if`).
/// Reads the whole log: seconds per million entries.
pub(crate) async fn what_if(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(&state, body).await?;
    let workspace = admit_admin(&state, &method, &uri, &headers, &bytes)?.clone();
    let parsed: WhatIfBody = parse_json(&bytes)?;
    let strategy = match parsed.strategy.as_deref() {
        None => None,
        Some(name) => Some(Strategy::from_name(name).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "INVALID_DATA",
                format!(
                    "strategy `{name}`: expected one of {}",
                    Strategy::ALL.map(|s| s.name()).join(", ")
                ),
            )
        })?),
    };
    let changes = ConfigChanges {
        strategy,
        priority: types_field("identity_priority", parsed.identity_priority)?,
        login: types_field("login_ids", parsed.login_ids)?,
        unique: types_field("unique_ids", parsed.unique_ids)?,
    };
    let name = workspace.workspace.name.clone();
    let started = std::time::Instant::now();
    let report =
        blocking(&state.engine, move |engine| Ok(engine.audit(&name)?.what_if(&changes)?)).await?;
    let examples: Vec<Value> = report
        .examples
        .iter()
        .map(|e| {
            json!({
                "seq": e.seq.0, "operation": e.operation, "recorded_mpid": e.recorded.to_string(),
                "alternative_mpid": e.alternative.map(|m| m.to_string()), "explanation": e.explanation,
            })
        })
        .collect();
    let body = json!({
        "workspace": workspace.workspace.name,
        "n_requests": report.n_requests,
        "n_different_mpid": report.n_different_mpid,
        "n_rejected": report.n_rejected,
        "n_profiles_recorded": report.n_profiles_recorded,
        "n_profiles_alternative": report.n_profiles_alternative,
        "seconds": started.elapsed().as_secs_f64(),
        "examples": examples,
    });
    Ok((StatusCode::OK, axum::Json(body)).into_response())
}

/// An identify-shaped body with the operation to explain.
#[derive(Debug, Deserialize)]
struct HypotheticalBody {
    op: Option<String>,
    #[serde(flatten)]
    request: IdentityBody,
}

/// `POST /v1/audit/explain`: how a hypothetical identify / login / logout / search would be decided
/// against the current state. Nothing is recorded.
pub(crate) async fn explain_hypothetical(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(&state, body).await?;
    let workspace = admit_admin(&state, &method, &uri, &headers, &bytes)?.clone();
    let parsed: HypotheticalBody = parse_json(&bytes)?;
    let op = match parsed.op.as_deref().unwrap_or("identify") {
        "identify" => IdentityOp::Identify,
        "login" => IdentityOp::Login,
        "logout" => IdentityOp::Logout,
        "search" => IdentityOp::Search,
        other => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "LOOKUP_ERROR",
                format!("op `{other}`: identify, login, logout or search"),
            ));
        }
    };
    let (environment, previous_mpid, known_identities) = parsed.request.into_parts()?;
    let meta = RequestMeta {
        workspace: workspace.workspace.name.clone(),
        environment,
        request_id: None,
    };
    let query = IdentityQuery { op, known_identities, previous_mpid };
    let (_, explanation) =
        blocking(&state.engine, move |engine| Ok(engine.explain_request(&meta, &query)?)).await?;
    Ok((StatusCode::OK, axum::Json(json!({"explanation": explanation.to_string()}))).into_response())
}
