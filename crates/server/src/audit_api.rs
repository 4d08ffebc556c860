//! Audit over HTTP (`docs/audit.md`): profile and identity history, the explanation of a stored
//! entry or of a hypothetical request, and a profile as of a sequence or time. All need HTTP Basic
//! or a signature, and answer for the caller's identity scope only.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use idgraph_engine::whatif::ConfigChanges;
use idgraph_engine::{Engine, audit};
use idgraph_model::{Identity, IdentityType, Mpid, Seq, Timestamp};
use idgraph_query::history::{IdentityHistoryBuilder, ProfileHistoryBuilder};
use idgraph_query::{Answer, IdentityOp, IdentityQuery, Resolver, Strategy, World};
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

fn unavailable(err: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "SERVICE_UNAVAILABLE", err.to_string())
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
        let mut builder = ProfileHistoryBuilder::new(mpid, workspace.workspace.resolver.login_ids);
        let scope = workspace.workspace.scope.clone();
        let last = engine.log().last_seq();
        for (seq, entry) in
            audit::entries_of_profile(engine.log(), mpid, last).map_err(unavailable)?
        {
            if entry.request.scope == scope {
                builder.feed(seq, &entry);
            }
        }
        Ok(builder.finish())
    })
    .await?;
    if history.steps.is_empty() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND_ERROR",
            format!("no entry mentions MPID {mpid}"),
        ));
    }
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
        let scope = workspace.workspace.scope.clone();
        let mut builder = IdentityHistoryBuilder::new(followed.clone(), Some(scope.clone()));
        let last = engine.log().last_seq();
        for (seq, entry) in audit::entries_of_identity(engine.log(), &scope, &followed, last)
            .map_err(unavailable)?
        {
            builder.feed(seq, &entry);
        }
        Ok(builder.finish())
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
    let config = Arc::clone(&state.config);
    let explained = blocking(&state.engine, move |engine| {
        let entry = engine.log().get(Seq(seq)).map_err(unavailable)?.ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "NOT_FOUND_ERROR",
                format!("no entry at sequence {seq}"),
            )
        })?;
        if entry.request.scope != caller.workspace.scope {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "NOT_FOUND_ERROR",
                format!("no entry at sequence {seq} in this scope"),
            ));
        }
        let workspace = config
            .workspaces
            .iter()
            .find(|w| w.workspace.name == entry.request.workspace)
            .unwrap_or(&caller);
        audit::explain_entry(engine.log(), &workspace.workspace, Seq(seq)).map_err(unavailable)
    })
    .await?;
    let Some(explained) = explained else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "LOOKUP_ERROR",
            "only identify, login and logout entries are explained",
        ));
    };
    Ok((StatusCode::OK, axum::Json(json!({"seq": seq, "agrees": explained.agrees, "explanation": explained.explanation.to_string()}))).into_response())
}

#[derive(Debug, Deserialize)]
pub(crate) struct AsOfQuery {
    seq: Option<u64>,
    time: Option<String>,
}

impl AsOfQuery {
    /// The sequence asked for: `seq`, the last entry at or before `time`, or the end of the log.
    fn resolve(&self, engine: &Engine) -> Result<Seq, ApiError> {
        match (self.seq, &self.time) {
            (Some(_), Some(_)) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "INVALID_DATA",
                "give `seq` or `time`, not both",
            )),
            (Some(seq), None) => Ok(Seq(seq).min(engine.log().last_seq())),
            (None, Some(text)) => {
                let time = chrono::DateTime::parse_from_rfc3339(text).map_err(|_| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "INVALID_DATA",
                        format!("time `{text}` is not RFC 3339 (e.g. 2026-05-01T12:00:00Z)"),
                    )
                })?;
                engine.log().seq_at(Timestamp::from_datetime(time.to_utc())).map_err(unavailable)
            }
            (None, None) => Ok(engine.log().last_seq()),
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
    admitted(&state, &method, &uri, &headers)?;
    let Query(query) = query?;
    let mpid = mpid_path(&mpid)?;
    let (as_of, profile) = blocking(&state.engine, move |engine| {
        let as_of = query.resolve(engine)?;
        let projection =
            audit::profiles_as_of(engine.log(), &[mpid], as_of).map_err(unavailable)?;
        let profile = projection.profile_id(mpid).map(|id| {
            let view = projection.profile(id);
            let aliases: Vec<Value> = projection
                .aliases_from(mpid)
                .iter()
                .map(|a| json!({"destination": a.destination.to_string(), "seq": a.seq.0}))
                .collect();
            json!({
                "created": view.created.to_string(),
                "last_seen": view.last_seen.to_string(),
                "identities": identities_json(&projection.identities_of_sorted(id)),
                "aliased_to": aliases,
            })
        });
        Ok((as_of, profile))
    })
    .await?;
    match profile {
        Some(profile) => Ok((
            StatusCode::OK,
            axum::Json(json!({"as_of_seq": as_of.0, "mpid": mpid.to_string(), "profile": profile})),
        )
            .into_response()),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND_ERROR",
            format!("MPID {mpid} did not exist as of sequence {as_of}"),
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
    let (as_of, answer, text) = blocking(&state.engine, move |engine| {
        let as_of = query.resolve(engine)?;
        let scope = &workspace.workspace.scope;
        let projection = audit::lookup_as_of(engine.log(), scope, &known_identities, None, as_of)
            .map_err(unavailable)?;
        let resolver = Resolver { projection: &projection, config: &workspace.workspace.resolver };
        let world = World { scope: scope.clone(), environment };
        let query = IdentityQuery { op: IdentityOp::Search, known_identities, previous_mpid: None };
        let mut placeholder = idgraph_engine::RandomMpids;
        let (res, explanation) =
            resolver.explain_identity(&world, &query, projection.last_time(), &mut placeholder);
        let decision =
            res.map_err(|err| ApiError::from(idgraph_engine::EngineError::Request(err)))?;
        Ok((as_of, decision.answer, explanation.to_string()))
    })
    .await?;
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
    let alternative = changes
        .apply_to(&workspace.workspace.resolver)
        .map_err(|err| ApiError::new(StatusCode::BAD_REQUEST, "INVALID_DATA", err.to_string()))?;
    let name = workspace.workspace.name.clone();
    let started = std::time::Instant::now();
    let report = blocking(&state.engine, move |engine| {
        idgraph_engine::whatif::what_if(engine.log(), &name, &alternative).map_err(unavailable)
    })
    .await?;
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
    let text = blocking(&state.engine, move |engine| {
        Ok(engine.with_projection(|projection| {
            let resolver = Resolver { projection, config: &workspace.workspace.resolver };
            let world = World { scope: workspace.workspace.scope.clone(), environment };
            let query = IdentityQuery { op, known_identities, previous_mpid };
            // A hypothetical new profile gets a placeholder MPID; nothing is created.
            let mut placeholder = idgraph_engine::RandomMpids;
            let (res, explanation) =
                resolver.explain_identity(&world, &query, projection.last_time(), &mut placeholder);
            match res {
                Ok(_) => Ok(explanation.to_string()),
                Err(err) => Err(err),
            }
        }))
    })
    .await?;
    match text {
        Ok(text) => Ok((StatusCode::OK, axum::Json(json!({"explanation": text}))).into_response()),
        Err(err) => Err(ApiError::from(idgraph_engine::EngineError::Request(err))),
    }
}
