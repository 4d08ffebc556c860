//! Admission: the steps every API request takes before a handler maps it. Read the body (at most
//! `body_bytes_max`, after decompression), authenticate it, take a rate-limit token, parse its JSON;
//! then, for a handler, run the engine on the blocking pool and echo the client's `request_id` in
//! every error.
//!
//! The axum extractors [`Admitted`] (a request with a JSON body) and [`Caller`] (a request whose
//! body is ignored, the `GET`s) do the first steps; [`Caller::run`] the last. Which credentials a
//! request needs is in its type, as an [`Access`] marker: [`Client`], [`KeyInPath`] or [`Admin`].
//! A failure before the body is parsed carries no request id (there is none yet); every failure
//! after it does.

use std::marker::PhantomData;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use idgraph_engine::{Command, Engine, RequestMeta};
use idgraph_model::Environment;
use idgraph_query::{Answer, IdentityOp};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::AppState;
use crate::auth::{Credentials, authenticate};
use crate::config::{ServerConfig, WorkspaceConfig};
use crate::wire::ApiError;

/// Which credentials a request needs, as a type parameter of [`Admitted`] and [`Caller`].
pub(crate) trait Access: Send + Sync + 'static {
    /// The secret is required (HTTP Basic or a signature): a key alone never suffices, even where
    /// the workspace allows key-only identity calls.
    const SECRET_REQUIRED: bool;
    /// The API key may come in the route's `{api_key}` segment (the SDKs' alias path).
    const KEY_IN_PATH: bool;
}

/// The Identity API's requests: any of the three ways to authenticate (`docs/api.md`).
#[derive(Debug)]
pub(crate) enum Client {}

impl Access for Client {
    const SECRET_REQUIRED: bool = false;
    const KEY_IN_PATH: bool = false;
}

/// `POST /v1/identity/{api_key}/alias`: as [`Client`], with the key in the path as well.
#[derive(Debug)]
pub(crate) enum KeyInPath {}

impl Access for KeyInPath {
    const SECRET_REQUIRED: bool = false;
    const KEY_IN_PATH: bool = true;
}

/// Administrative requests (corrections, the change feed, audit): the secret is required.
#[derive(Debug)]
pub(crate) enum Admin {}

impl Access for Admin {
    const SECRET_REQUIRED: bool = true;
    const KEY_IN_PATH: bool = false;
}

/// A JSON request body. Its `request_id`, if it has one, is echoed by every error after parsing.
pub(crate) trait WireBody: DeserializeOwned + Send {
    /// The client's `request_id`.
    fn request_id(&self) -> Option<&str> {
        None
    }
}

/// Who an admitted request comes from: its workspace and its `request_id`.
#[derive(Debug)]
pub(crate) struct Caller<A: Access = Client> {
    /// The configuration the workspace belongs to (shared, not copied per request).
    config: Arc<ServerConfig>,
    /// The workspace's position in `config.workspaces`.
    workspace_idx: usize,
    /// The client's `request_id`, echoed by errors (`RequestId`) and given to the engine for
    /// idempotency.
    request_id: Option<String>,
    access: PhantomData<A>,
}

/// An admitted request and its parsed body.
#[derive(Debug)]
pub(crate) struct Admitted<B, A: Access = Client> {
    /// Who asks.
    pub(crate) caller: Caller<A>,
    /// What was sent.
    pub(crate) body: B,
}

impl<A: Access> Caller<A> {
    /// The caller's workspace.
    pub(crate) fn workspace(&self) -> &WorkspaceConfig {
        &self.config.workspaces[self.workspace_idx]
    }

    /// What the engine needs to know of the request besides its command.
    pub(crate) fn meta(&self, environment: Environment) -> RequestMeta {
        RequestMeta {
            workspace: self.workspace().workspace.name.clone(),
            environment,
            request_id: self.request_id.clone(),
        }
    }

    /// `res`, its error echoing the request's id.
    pub(crate) fn check<T>(&self, res: Result<T, ApiError>) -> Result<T, ApiError> {
        res.map_err(|err| err.with_request_id(self.request_id.clone()))
    }

    /// Runs `command` on the engine and renders its answer; every error, the engine's or
    /// `render`'s (which answers [`ApiError::unexpected`] for an answer of the wrong kind), echoes
    /// the request's id. A command that records goes to the engine's submission pipeline and is
    /// awaited there (no thread hand-off per request; a full queue is 503 with `Retry-After`); a
    /// search, which records nothing, reads the projection on the blocking pool: its read lock
    /// waits while the writer decides a group, which must not hold an async worker.
    pub(crate) async fn run(
        &self,
        state: &AppState,
        environment: Environment,
        command: Command,
        render: impl FnOnce(Answer) -> Result<Response, ApiError>,
    ) -> Result<Response, ApiError> {
        let meta = self.meta(environment);
        let is_search =
            matches!(&command, Command::Identity(query) if query.op == IdentityOp::Search);
        let res = if is_search {
            blocking(state, move |engine| Ok(engine.handle(&meta, command)?)).await
        } else {
            match state.pipeline.submit(meta, command) {
                Ok(ticket) => ticket.await.map_err(ApiError::from),
                Err(err) => Err(ApiError::from(err)),
            }
        };
        self.check(res.and_then(render))
    }
}

/// Runs `f` on tokio's blocking pool: engine calls wait for fsync or read storage, which must not
/// hold an async worker.
pub(crate) async fn blocking<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&Engine) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let engine = Arc::clone(&state.engine);
    tokio::task::spawn_blocking(move || f(&engine))
        .await
        .map_err(|err| ApiError::internal(format!("request task failed: {err}")))?
}

impl<B: WireBody, A: Access> FromRequest<AppState> for Admitted<B, A> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ApiError> {
        let (mut parts, body) = request.into_parts();
        let key_in_path =
            if A::KEY_IN_PATH { Some(key_in_path(&mut parts, state).await?) } else { None };
        let bytes = read_body(state, body).await?;
        let workspace_idx = admit_as::<A>(state, &parts, &bytes, key_in_path.as_deref())?;
        let body: B = parse_json(&bytes)?;
        let caller = Caller {
            config: Arc::clone(&state.config),
            workspace_idx,
            request_id: body.request_id().map(str::to_owned),
            access: PhantomData,
        };
        Ok(Admitted { caller, body })
    }
}

/// A request whose body is not read (the `GET`s): it is authenticated as having an empty body.
impl FromRequestParts<AppState> for Caller<Admin> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let workspace_idx = admit_as::<Admin>(state, parts, b"", None)?;
        Ok(Caller {
            config: Arc::clone(&state.config),
            workspace_idx,
            request_id: None,
            access: PhantomData,
        })
    }
}

/// The route's path parameters, as axum's `Path` extracts them, with a bad value (of the wrong
/// type, or not UTF-8 once percent-decoded) answered as a 400 `INVALID_DATA` IDSync error instead
/// of axum's plain text.
#[derive(Debug)]
pub(crate) struct Segments<T>(pub(crate) T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Segments<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(segments) = Path::<T>::from_request_parts(parts, state).await?;
        Ok(Segments(segments))
    }
}

async fn key_in_path(parts: &mut Parts, state: &AppState) -> Result<String, ApiError> {
    let Segments(key) = Segments::<String>::from_request_parts(parts, state).await?;
    Ok(key)
}

/// Authenticates and rate-limits a request for access `A`; the workspace's position in the
/// configuration.
fn admit_as<A: Access>(
    state: &AppState,
    parts: &Parts,
    body: &[u8],
    key_in_path: Option<&str>,
) -> Result<usize, ApiError> {
    let workspace = admit(
        state,
        &parts.method,
        &parts.uri,
        &parts.headers,
        body,
        key_in_path,
        A::SECRET_REQUIRED,
    )?;
    // `authenticate` answers a reference into `workspaces`: it is there.
    let workspaces = &state.config.workspaces;
    workspaces
        .iter()
        .position(|w| std::ptr::eq(w, workspace))
        .ok_or_else(|| ApiError::internal("the authenticated workspace is not configured"))
}

/// Reads the (already decompressed) body, refusing more than the configured bytes and a body
/// that takes longer than `body_read_timeout` to arrive (408).
pub(crate) async fn read_body(state: &AppState, body: Body) -> Result<Bytes, ApiError> {
    let timeout = state.config.body_read_timeout;
    let read = axum::body::to_bytes(body, state.config.body_bytes_max);
    let res = tokio::time::timeout(timeout, read).await.map_err(|_| {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "REQUEST_TIMEOUT",
            format!("the request body did not arrive within {} ms", timeout.as_millis()),
        )
    })?;
    res.map_err(|err| {
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

/// Authenticates and rate-limits a request. With `secret_required`, only a credential that proves
/// the secret (HTTP Basic or a signature) is accepted: a key alone never suffices, even where the
/// workspace allows key-only identity calls.
fn admit<'s>(
    state: &'s AppState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    key_in_path: Option<&str>,
    secret_required: bool,
) -> Result<&'s WorkspaceConfig, ApiError> {
    let credentials = Credentials {
        headers,
        method: method.as_str(),
        path_and_query: uri.path_and_query().map(|pq| pq.as_str()).unwrap_or(uri.path()),
        body,
        key_in_path,
    };
    let unauthorized =
        |message: String| ApiError::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", message);
    let (workspace, credential) =
        authenticate(&state.config.workspaces, &credentials, chrono::Utc::now())
            .map_err(|err| unauthorized(err.0))?;
    if secret_required && !credential.proves_secret() {
        return Err(unauthorized(
            "administrative endpoints need HTTP Basic or a signature".to_owned(),
        ));
    }
    if let Err(retry_after_seconds) =
        state.rate_limiter.admit(&workspace.api_key, workspace.rate_limit_per_second)
    {
        return Err(ApiError::too_many_requests(
            format!(
                "more than {} requests per second for this API key",
                workspace.rate_limit_per_second
            ),
            retry_after_seconds,
        ));
    }
    Ok(workspace)
}

/// Parses a JSON body; a 400 `INVALID_DATA` naming what is wrong.
pub(crate) fn parse_json<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|err| {
        ApiError::bad_request(
            "INVALID_DATA",
            format!("The request JSON is malformed or has a wrong type: {err}"),
        )
    })
}
