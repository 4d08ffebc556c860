//! Audit over HTTP (`docs/audit.md`): profile and identity history, the explanation of a stored
//! entry or of a hypothetical request, a profile or a search as of a sequence or time, and what-if.
//! All need the secret (HTTP Basic or a signature). Each handler parses, runs one of the engine's
//! audit use cases (`idgraph_engine::audit::Audit`, the same the CLI runs) for the caller's
//! workspace, and renders the report: the engine confines every answer to the caller's identity
//! scope.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use idgraph_engine::audit::{AsOf, Audit};
use idgraph_engine::whatif::ConfigChanges;
use idgraph_model::{Identity, IdentityType, Mpid, Seq, Timestamp};
use idgraph_query::{Answer, IdentityOp, IdentityQuery, Strategy};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::admit::{Admin, Admitted, Caller, Segments, WireBody, blocking};
use crate::api::{IdentityBody, optional_mpid};
use crate::wire::{ApiError, ok_json};

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

/// Runs audit use case `f` for `caller`'s workspace on the blocking pool (audit reads the log).
async fn audit<T: Send + 'static, A: crate::admit::Access>(
    state: &AppState,
    caller: &Caller<A>,
    f: impl FnOnce(Audit<'_>) -> Result<T, idgraph_engine::EngineError> + Send + 'static,
) -> Result<T, ApiError> {
    let name = caller.workspace().workspace.name.clone();
    let res = blocking(state, move |engine| Ok(f(engine.audit(&name)?)?)).await;
    caller.check(res)
}

/// `GET /v1/audit/profiles/{mpid}/history`.
pub(crate) async fn profile_history(
    State(state): State<AppState>,
    Segments(mpid): Segments<String>,
    caller: Caller<Admin>,
) -> Result<Response, ApiError> {
    let mpid = mpid_path(&mpid)?;
    let history = audit(&state, &caller, move |audit| audit.profile_history(mpid)).await?;
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
    Ok(ok_json(json!({
        "mpid": mpid.to_string(),
        "became_known_seq": history.became_known().map(|step| step.seq.0),
        "steps": steps,
        "text": history.to_string(),
    })))
}

/// `GET /v1/audit/identities/{type}/{value}/history`.
pub(crate) async fn identity_history(
    State(state): State<AppState>,
    Segments((identity_type, value)): Segments<(String, String)>,
    caller: Caller<Admin>,
) -> Result<Response, ApiError> {
    let identity_type: IdentityType = identity_type
        .parse()
        .map_err(|err| ApiError::new(StatusCode::BAD_REQUEST, "LOOKUP_ERROR", format!("{err}")))?;
    let identity = Identity::new(identity_type, value);
    let followed = identity.clone();
    let holdings = audit(&state, &caller, move |audit| audit.identity_history(&followed)).await?;
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
    Ok(ok_json(json!({"identity": identities_json(&[identity])[0], "holders": holders})))
}

/// `GET /v1/audit/entries/{seq}/explain`.
pub(crate) async fn explain_entry(
    State(state): State<AppState>,
    Segments(seq): Segments<u64>,
    caller: Caller<Admin>,
) -> Result<Response, ApiError> {
    let explained = audit(&state, &caller, move |audit| audit.explain_entry(Seq(seq))).await?;
    Ok(ok_json(json!({
        "seq": seq,
        "agrees": explained.agrees,
        "explanation": explained.explanation.to_string(),
    })))
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
/// from the entries that touched it.
pub(crate) async fn profile_as_of(
    State(state): State<AppState>,
    Segments(mpid): Segments<String>,
    query: Result<Query<AsOfQuery>, QueryRejection>,
    caller: Caller<Admin>,
) -> Result<Response, ApiError> {
    let Query(query) = query?;
    let mpid = mpid_path(&mpid)?;
    let as_of = query.as_of()?;
    let report = audit(&state, &caller, move |audit| audit.profile_as_of(mpid, as_of)).await?;
    let Some(profile) = report.profile else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND_ERROR",
            format!("MPID {mpid} did not exist as of sequence {}", report.as_of),
        ));
    };
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
    Ok(ok_json(json!({"as_of_seq": report.as_of.0, "mpid": mpid.to_string(), "profile": profile})))
}

/// `POST /v1/audit/search?seq=N` or `?time=RFC3339`: a search as it would have been answered
/// then, with its explanation, from the profiles that held the identities sent.
pub(crate) async fn search_as_of(
    State(state): State<AppState>,
    query: Result<Query<AsOfQuery>, QueryRejection>,
    Admitted { caller, body }: Admitted<IdentityBody, Admin>,
) -> Result<Response, ApiError> {
    let Query(query) = caller.check(query.map_err(ApiError::from))?;
    let as_of = caller.check(query.as_of())?;
    let (environment, _, known_identities) = caller.check(body.into_parts())?;
    let search = audit(&state, &caller, move |audit| {
        audit.search_as_of(environment, known_identities, as_of)
    })
    .await?;
    let (mpid, matched) = match search.answer {
        Answer::Resolved(answer) => {
            (Some(answer.mpid.to_string()), identities_json(&answer.matched_identities))
        }
        _ => (None, Value::Array(Vec::new())),
    };
    Ok(ok_json(json!({
        "as_of_seq": search.as_of.0,
        "mpid": mpid,
        "matched_identities": matched,
        "explanation": search.explanation.to_string(),
    })))
}

/// The body of `POST /v1/audit/what-if`: changes to the caller's configuration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WhatIfBody {
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

impl WireBody for WhatIfBody {}

/// `POST /v1/audit/what-if`: re-decides every recorded request of the caller's workspace under its
/// configuration with the changes given, and reports what would differ (`idgraph what-if`).
/// Reads the whole log: seconds per million entries.
pub(crate) async fn what_if(
    State(state): State<AppState>,
    Admitted { caller, body }: Admitted<WhatIfBody, Admin>,
) -> Result<Response, ApiError> {
    let strategy = match body.strategy.as_deref() {
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
        priority: types_field("identity_priority", body.identity_priority)?,
        login: types_field("login_ids", body.login_ids)?,
        unique: types_field("unique_ids", body.unique_ids)?,
    };
    let started = std::time::Instant::now();
    let report = audit(&state, &caller, move |audit| audit.what_if(&changes)).await?;
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
    Ok(ok_json(json!({
        "workspace": caller.workspace().workspace.name,
        "n_requests": report.n_requests,
        "n_different_mpid": report.n_different_mpid,
        "n_rejected": report.n_rejected,
        "n_profiles_recorded": report.n_profiles_recorded,
        "n_profiles_alternative": report.n_profiles_alternative,
        "seconds": started.elapsed().as_secs_f64(),
        "examples": examples,
    })))
}

/// An identify-shaped body with the operation to explain.
#[derive(Debug, Deserialize)]
pub(crate) struct HypotheticalBody {
    op: Option<String>,
    #[serde(flatten)]
    request: IdentityBody,
}

impl WireBody for HypotheticalBody {
    fn request_id(&self) -> Option<&str> {
        self.request.request_id()
    }
}

/// `POST /v1/audit/explain`: how a hypothetical identify / login / logout / search would be decided
/// against the current state. Nothing is recorded.
pub(crate) async fn explain_hypothetical(
    State(state): State<AppState>,
    Admitted { caller, body }: Admitted<HypotheticalBody, Admin>,
) -> Result<Response, ApiError> {
    let op = match body.op.as_deref().unwrap_or("identify") {
        "identify" => IdentityOp::Identify,
        "login" => IdentityOp::Login,
        "logout" => IdentityOp::Logout,
        "search" => IdentityOp::Search,
        other => {
            return Err(caller.check(Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "LOOKUP_ERROR",
                format!("op `{other}`: identify, login, logout or search"),
            )))?);
        }
    };
    let (environment, previous_mpid, known_identities) = caller.check(body.request.into_parts())?;
    let meta = caller.meta(environment);
    let query = IdentityQuery { op, known_identities, previous_mpid };
    let res = blocking(&state, move |engine| Ok(engine.explain_request(&meta, &query)?)).await;
    let (_, explanation) = caller.check(res)?;
    Ok(ok_json(json!({"explanation": explanation.to_string()})))
}

/// `GET /v1/audit/profiles/{mpid}/graph?seq=N` or `?time=RFC3339`: the profile as it was then, its
/// identities with the other profiles that held each up to then, and its aliases both ways, within
/// the engine's default limits (the answer says what it left out). The audit explorer draws it.
pub(crate) async fn profile_graph(
    State(state): State<AppState>,
    Segments(mpid): Segments<String>,
    query: Result<Query<AsOfQuery>, QueryRejection>,
    caller: Caller<Admin>,
) -> Result<Response, ApiError> {
    use idgraph_engine::audit::NeighbourhoodLimits;

    let Query(query) = query?;
    let mpid = mpid_path(&mpid)?;
    let as_of = query.as_of()?;
    let limits = NeighbourhoodLimits::DEFAULT;
    let graph =
        audit(&state, &caller, move |audit| audit.neighbourhood(mpid, as_of, limits)).await?;
    let identities: Vec<Value> = graph
        .identities
        .iter()
        .map(|n| {
            let others: Vec<Value> = n
                .others
                .iter()
                .map(|h| {
                    json!({
                        "mpid": h.mpid.to_string(), "from_seq": h.from.0.0, "from": h.from.1.to_string(),
                        "until_seq": h.until.as_ref().map(|u| u.0.0),
                        "until": h.until.as_ref().map(|u| u.1.to_string()),
                    })
                })
                .collect();
            json!({
                "identity_type": n.identity.identity_type.wire_name(), "value": n.identity.value,
                "held_since_seq": n.held_since.map(|(seq, _)| seq.0),
                "held_since": n.held_since.map(|(_, time)| time.to_string()),
                "others": others, "n_others_omitted": n.n_others_omitted,
            })
        })
        .collect();
    let profile = &graph.profile;
    Ok(ok_json(json!({
        "as_of_seq": graph.as_of.0,
        "mpid": mpid.to_string(),
        "profile": {
            "created": profile.created.to_string(),
            "last_seen": profile.last_seen.to_string(),
            "identities": identities_json(&profile.identities),
            "aliased_to": profile.aliased_to.iter().map(|a| alias_json(a.source, a.destination, a.seq, a.start, a.end)).collect::<Vec<_>>(),
        },
        "identities": identities,
        "n_identities_omitted": graph.n_identities_omitted,
        "aliases": graph.aliases.iter().map(|a| alias_json(a.source, a.destination, a.seq, a.start, a.end)).collect::<Vec<_>>(),
        "limits": {
            "identities_max": limits.identities_max,
            "holders_per_identity_max": limits.holders_per_identity_max,
        },
    })))
}

/// An alias record of the graph answer.
fn alias_json(
    source: Mpid,
    destination: Mpid,
    seq: Seq,
    start: Timestamp,
    end: Timestamp,
) -> Value {
    json!({"source": source.to_string(), "destination": destination.to_string(), "seq": seq.0,
           "start": start.to_string(), "end": end.to_string()})
}
