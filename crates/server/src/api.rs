//! The Identity API handlers (spec §4.3-4.9): each maps an admitted, parsed request (`admit.rs`) to
//! an engine command and renders the engine's answer in IDSync's shape; errors are `wire.rs`'s.
//!
//! The request-body helpers here (`IdentityBody`, `environment`, `optional_mpid`,
//! `known_identities`) are shared with the audit handlers.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use idgraph_engine::Command;
use idgraph_model::{
    AdminCorrection, Environment, Identity, IdentityChange, IdentityType, Mpid, Timestamp,
};
use idgraph_query::{AliasQuery, Answer, IdentityOp, IdentityQuery};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::admit::{Access, Admin, Admitted, KeyInPath, Segments, WireBody};
use crate::wire::ApiError;
use crate::wire::ok_json;

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

impl WireBody for IdentityBody {
    fn request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }
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

fn identity_response(
    state: &AppState,
    answer: Answer,
    op: IdentityOp,
) -> Result<Response, ApiError> {
    match answer {
        Answer::Resolved(answer) => {
            let matched: serde_json::Map<String, Value> = answer
                .matched_identities
                .iter()
                .map(|i| (i.identity_type.wire_name().to_owned(), Value::String(i.value.clone())))
                .collect();
            let mut response = ok_json(json!({
                "context": null,
                "matched_identities": matched,
                "is_ephemeral": false,
                "mpid": answer.mpid.to_string(),
                "is_logged_in": answer.is_logged_in,
            }));
            if op != IdentityOp::Search {
                response
                    .headers_mut()
                    .insert("x-mp-max-age", HeaderValue::from(state.config.max_age_seconds));
            }
            Ok(response)
        }
        Answer::NotFound => {
            Err(ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND_ERROR", "No match"))
        }
        other => Err(ApiError::unexpected(&other)),
    }
}

/// `POST /v1/identify`, `/v1/search`, `/v1/login`, `/v1/logout`.
pub(crate) async fn identity(
    op: IdentityOp,
    State(state): State<AppState>,
    Admitted { caller, body }: Admitted<IdentityBody>,
) -> Result<Response, ApiError> {
    let (environment, previous_mpid, known_identities) = caller.check(body.into_parts())?;
    let command = Command::Identity(IdentityQuery { op, known_identities, previous_mpid });
    caller.run(&state, environment, command, |answer| identity_response(&state, answer, op)).await
}

#[derive(Debug, Deserialize)]
pub(crate) struct ModifyBody {
    environment: Option<String>,
    request_id: Option<String>,
    identity_changes: Option<Vec<ChangeBody>>,
}

impl WireBody for ModifyBody {
    fn request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }
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
    Segments(mpid): Segments<String>,
    Admitted { caller, body }: Admitted<ModifyBody>,
) -> Result<Response, ApiError> {
    let (environment, command) = caller.check(modify_command(&mpid, body))?;
    caller
        .run(&state, environment, command, |answer| match answer {
            Answer::Modified { change_results, .. } => {
                let results: Vec<Value> = change_results
                    .iter()
                    .map(|c| json!({"identity_type": c.identity_type.wire_name(), "modified_mpid": c.modified_mpid.to_string()}))
                    .collect();
                Ok(ok_json(json!({ "change_results": results })))
            }
            other => Err(ApiError::unexpected(&other)),
        })
        .await
}

fn modify_command(mpid: &str, body: ModifyBody) -> Result<(Environment, Command), ApiError> {
    let mpid = optional_mpid("the MPID in the path", &Value::String(mpid.to_owned()))?.ok_or_else(
        || ApiError::bad_request("LOOKUP_ERROR", "modify() requires a non-zero MPID"),
    )?;
    let environment = environment(body.environment.as_deref())?;
    let changes = body
        .identity_changes
        .ok_or_else(|| ApiError::bad_request("LOOKUP_ERROR", "identity_changes is required"))?;
    let mut identity_changes = Vec::with_capacity(changes.len());
    for (idx, change) in changes.into_iter().enumerate() {
        let name = change.identity_type.ok_or_else(|| {
            ApiError::bad_request(
                "LOOKUP_ERROR",
                format!("identity_changes[{idx}].identity_type is required"),
            )
        })?;
        let identity_type = name.parse().map_err(|err| {
            ApiError::bad_request("LOOKUP_ERROR", format!("identity_changes[{idx}]: {err}"))
        })?;
        identity_changes.push(IdentityChange {
            identity_type,
            old_value: change.old_value,
            new_value: change.new_value,
        });
    }
    Ok((environment, Command::Modify { mpid, identity_changes }))
}

#[derive(Debug, Deserialize)]
pub(crate) struct AliasBody {
    environment: Option<String>,
    request_id: Option<String>,
    data: Option<AliasData>,
}

impl WireBody for AliasBody {
    fn request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }
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
    request: Admitted<AliasBody, KeyInPath>,
) -> Result<Response, ApiError> {
    alias_impl(&state, request).await
}

/// `POST /v1/alias`.
pub(crate) async fn alias(
    State(state): State<AppState>,
    request: Admitted<AliasBody>,
) -> Result<Response, ApiError> {
    alias_impl(&state, request).await
}

async fn alias_impl<A: Access>(
    state: &AppState,
    Admitted { caller, body }: Admitted<AliasBody, A>,
) -> Result<Response, ApiError> {
    let (environment, query) = caller.check(alias_query(body))?;
    // 202 whether the alias was applied or ignored under IDSync's rules (recorded either way).
    caller
        .run(
            state,
            environment,
            Command::Alias(query),
            |_| Ok(StatusCode::ACCEPTED.into_response()),
        )
        .await
}

fn alias_query(body: AliasBody) -> Result<(Environment, AliasQuery), ApiError> {
    let environment = environment(body.environment.as_deref())?;
    let data = body.data.ok_or_else(|| {
        ApiError::bad_request(
            "INVALID_DATA",
            "The request JSON is malformed or is missing required fields: data",
        )
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
    let query = AliasQuery {
        source: mpid("source_mpid", &data.source_mpid)?,
        destination: mpid("destination_mpid", &data.destination_mpid)?,
        start: data.start_unixtime_ms.map(Timestamp::from_unix_millis),
        end: data.end_unixtime_ms.map(Timestamp::from_unix_millis),
    };
    Ok((environment, query))
}

#[derive(Debug, Deserialize)]
pub(crate) struct AdminBody {
    environment: Option<String>,
    request_id: Option<String>,
    identities: Option<BTreeMap<String, Value>>,
    actor: Option<String>,
    reason: Option<String>,
}

impl WireBody for AdminBody {
    fn request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }
}

/// `POST /v1/admin/{mpid}/detach` and `/v1/admin/{mpid}/split`.
pub(crate) async fn admin(
    State(state): State<AppState>,
    Segments((mpid, action)): Segments<(String, String)>,
    Admitted { caller, body }: Admitted<AdminBody, Admin>,
) -> Result<Response, ApiError> {
    let (mpid, environment, command) = caller.check(admin_command(&mpid, &action, body))?;
    caller
        .run(&state, environment, command, |answer| match answer {
            Answer::Admin { new_mpid } => Ok(ok_json(
                json!({ "mpid": mpid.to_string(), "new_mpid": new_mpid.map(|m| m.to_string()) }),
            )),
            other => Err(ApiError::unexpected(&other)),
        })
        .await
}

/// The profile corrected, and the command.
fn admin_command(
    mpid: &str,
    action: &str,
    body: AdminBody,
) -> Result<(Mpid, Environment, Command), ApiError> {
    let mpid = optional_mpid("the MPID in the path", &Value::String(mpid.to_owned()))?
        .ok_or_else(|| ApiError::bad_request("LOOKUP_ERROR", "the MPID must not be 0"))?;
    let environment = environment(body.environment.as_deref())?;
    let identities = known_identities(body.identities)?;
    let required = |field: &str, value: Option<String>| {
        value.filter(|v| !v.trim().is_empty()).ok_or_else(|| {
            ApiError::bad_request(
                "INVALID_DATA",
                format!("{field} is required: corrections are audited"),
            )
        })
    };
    let actor = required("actor", body.actor)?;
    let reason = required("reason", body.reason)?;
    let correction = AdminCorrection { mpid, identities, actor, reason };
    let command = match action {
        "detach" => Command::AdminDetach(correction),
        "split" => Command::AdminSplit(correction),
        other => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                format!("unknown admin action `{other}` (detach or split)"),
            ));
        }
    };
    Ok((mpid, environment, command))
}
