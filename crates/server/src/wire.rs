//! Errors on the wire: [`ApiError`], its IDSync-shaped JSON body, and the one place that maps the
//! engine's and the log's errors to HTTP statuses.
//!
//! Every failure a handler meets becomes an `ApiError`, and every `ApiError` is rendered by
//! [`ApiError::into_response`], which also logs the server's own failures (5xx): the mapping below
//! decides the status from the *kind* of the error (as each variant's documentation in
//! `idgraph_engine::EngineError` and `idgraph_log::Error` prescribes), never from its text.
//!
//! | error | status | code |
//! | --- | --- | --- |
//! | `EngineError::Request` | the resolver's (400, 403, 404) | the resolver's |
//! | `EngineError::UnknownWorkspace` | 401 | `UNAUTHORIZED` |
//! | `EngineError::NotFound` | 404 | `NOT_FOUND_ERROR` |
//! | `EngineError::Invalid` | 400 | `INVALID_DATA` |
//! | `EngineError::RequestIdReused` | 422 | `REQUEST_ID_REUSED` |
//! | `EngineError::Overloaded` | 503 with `Retry-After: 1` | `SERVICE_UNAVAILABLE` |
//! | `EngineError::NotWriter` (cluster mode) | 503 with `Retry-After: 1` | `SERVICE_UNAVAILABLE` |
//! | `EngineError::Fold` (the log cannot be folded) | 500 | `INTERNAL_ERROR` |
//! | `EngineError::Halted` | 503 | `SERVICE_UNAVAILABLE` |
//! | `log::Error::Rejected` (a bug in the caller) | 500 | `INTERNAL_ERROR` |
//! | `log::Error::Poisoned` | 503 | `SERVICE_UNAVAILABLE` |
//! | `log::Error::Corrupt`, `log::Error::Gap` (stop serving, restore) | 500 | `INTERNAL_ERROR` |
//! | `log::Error::Storage` | 503 | `SERVICE_UNAVAILABLE` |

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use idgraph_engine::EngineError;
use idgraph_query::Answer;
use serde::Serialize;
use serde_json::json;

/// The code of a failure of the service itself (500).
const INTERNAL_ERROR: &str = "INTERNAL_ERROR";
/// The code of a failure of the storage below the service (503): retrying later may succeed.
const SERVICE_UNAVAILABLE: &str = "SERVICE_UNAVAILABLE";

/// An error response in the shape real IDSync servers send:
/// `{"Errors":[{"code","message"}],"ErrorCode","StatusCode","RequestId"}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// The client's `request_id`, echoed as `RequestId`; a fresh UUID is sent when there is none.
    request_id: Option<String>,
    /// Sent as `Retry-After` (429, and 503 for a full submission queue).
    retry_after_seconds: Option<u64>,
}

impl ApiError {
    /// An error with this status, IDSync code and message.
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

    /// A 400 with this code.
    pub(crate) fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// A 500: the service failed (a bug, or a log it cannot serve from).
    pub(crate) fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, INTERNAL_ERROR, message)
    }

    /// A 429 asking the client to retry after this many seconds.
    pub(crate) fn too_many_requests(
        message: impl Into<String>,
        retry_after_seconds: u64,
    ) -> ApiError {
        let mut err = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "TOO_MANY_REQUESTS", message);
        err.retry_after_seconds = Some(retry_after_seconds);
        err
    }

    /// A 503 asking the client to retry in a second (a cluster node without a writer to relay
    /// to, or not yet at the sequence asked for).
    pub(crate) fn unavailable(message: impl Into<String>) -> ApiError {
        let mut err = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, SERVICE_UNAVAILABLE, message);
        err.retry_after_seconds = Some(1);
        err
    }

    /// The engine answered a command with an answer of another command's kind: a bug, a 500.
    pub(crate) fn unexpected(answer: &Answer) -> ApiError {
        ApiError::internal(format!("unexpected answer {answer:?}"))
    }

    /// The same error, echoing the client's `request_id`.
    pub(crate) fn with_request_id(mut self, request_id: Option<String>) -> ApiError {
        self.request_id = request_id;
        self
    }

    /// The HTTP status.
    #[cfg(test)]
    pub(crate) fn status(&self) -> StatusCode {
        self.status
    }

    /// The IDSync error code.
    #[cfg(test)]
    pub(crate) fn code(&self) -> &'static str {
        self.code
    }
}

/// A 200 with this JSON body.
pub(crate) fn ok_json(body: impl Serialize) -> Response {
    (StatusCode::OK, axum::Json(body)).into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let request_id = self.request_id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        if self.status.is_server_error() {
            // The client's failures are the client's to read; the service's are the operator's.
            tracing::error!(
                status = self.status.as_u16(),
                code = self.code,
                message = %self.message,
                request_id = %request_id,
                "request failed"
            );
        }
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

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> ApiError {
        ApiError::bad_request("INVALID_DATA", format!("query string: {}", rejection.body_text()))
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> ApiError {
        let message = format!("path: {}", rejection.body_text());
        if rejection.status().is_server_error() {
            // The route and its handler disagree on the parameters: a bug.
            ApiError::internal(message)
        } else {
            ApiError::bad_request("INVALID_DATA", message)
        }
    }
}

/// The IDSync code of an error status that no handler chose (axum's and tower-http's own answers).
fn code_of_status(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "INVALID_DATA",
        StatusCode::UNAUTHORIZED => "UNAUTHORIZED",
        StatusCode::NOT_FOUND => "NOT_FOUND",
        StatusCode::METHOD_NOT_ALLOWED => "METHOD_NOT_ALLOWED",
        StatusCode::REQUEST_TIMEOUT => "REQUEST_TIMEOUT",
        StatusCode::PAYLOAD_TOO_LARGE => "PAYLOAD_TOO_LARGE",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "UNSUPPORTED_MEDIA_TYPE",
        StatusCode::TOO_MANY_REQUESTS => "TOO_MANY_REQUESTS",
        StatusCode::SERVICE_UNAVAILABLE => SERVICE_UNAVAILABLE,
        status if status.is_server_error() => INTERNAL_ERROR,
        _ => "INVALID_DATA",
    }
}

/// An error for `status` in the IDSync shape, for answers no handler made.
pub(crate) fn error_of_status(status: StatusCode, message: impl Into<String>) -> ApiError {
    ApiError::new(status, code_of_status(status), message)
}

/// Most bytes of a non-JSON error body kept as the message of the JSON one that replaces it.
const FOREIGN_ERROR_BYTES_MAX: usize = 1024;

/// Middleware (`axum::middleware::map_response`): any 4xx or 5xx answer that is not JSON (axum's
/// own rejections, tower-http's 415 for an unsupported `Content-Encoding`, ...) becomes the IDSync
/// error body with the same status; its text, if any, is the message. Other headers (`Allow`,
/// `Retry-After`) are kept. The server's guarantee that every error is an IDSync body rests on
/// this, not on every layer's good behaviour.
pub(crate) async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = match axum::body::to_bytes(body, FOREIGN_ERROR_BYTES_MAX).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).trim().to_owned(),
        Err(_) => String::new(),
    };
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_owned()
    } else {
        text
    };
    let (json_parts, json_body) = error_of_status(status, message).into_response().into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.remove(header::CONTENT_ENCODING);
    for (name, value) in &json_parts.headers {
        parts.headers.insert(name, value.clone());
    }
    Response::from_parts(parts, json_body)
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
            EngineError::NotFound(message) => {
                ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND_ERROR", message)
            }
            EngineError::Invalid(message) => ApiError::bad_request("INVALID_DATA", message),
            EngineError::Log(err) => ApiError::from(err),
            err @ EngineError::Halted { .. } => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, SERVICE_UNAVAILABLE, err.to_string())
            }
            // The log cannot be folded: handled as corruption.
            err @ EngineError::Fold(_) => ApiError::internal(err.to_string()),
            // The client reused an id for another request: its request is unprocessable as sent
            // (the IETF Idempotency-Key draft's status for a reused key with another payload).
            err @ EngineError::RequestIdReused { .. } => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "REQUEST_ID_REUSED",
                err.to_string(),
            ),
            // The submission queue is full, or this cluster node is not the writer: nothing was
            // queued; the client retries shortly.
            err @ (EngineError::Overloaded { .. } | EngineError::NotWriter) => {
                let mut api = ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    SERVICE_UNAVAILABLE,
                    err.to_string(),
                );
                api.retry_after_seconds = Some(1);
                api
            }
        }
    }
}

impl From<idgraph_log::Error> for ApiError {
    fn from(err: idgraph_log::Error) -> ApiError {
        use idgraph_log::Error;
        match err {
            // The storage failed, or failed earlier and the writer refuses appends since: the
            // service is unavailable until the operator fixes the cause and restarts.
            Error::Poisoned { .. } | Error::Storage { .. } => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, SERVICE_UNAVAILABLE, err.to_string())
            }
            // `Rejected` is a bug in the engine; `Corrupt` and `Gap` mean the log must be restored
            // before it is served from; retrying does not help with either.
            Error::Rejected { .. } | Error::Corrupt { .. } | Error::Gap { .. } => {
                ApiError::internal(err.to_string())
            }
            // A kind a later log adds, until it is given its own status here.
            err => ApiError::internal(err.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use idgraph_engine::EngineError;
    use idgraph_model::Seq;
    use idgraph_projection::OutOfSequence;
    use idgraph_query::RequestError;

    use super::ApiError;

    #[track_caller]
    fn check(err: impl Into<ApiError>, expected: (u16, &str)) {
        let err = err.into();
        assert_eq!((err.status().as_u16(), err.code()), expected, "{err:?}");
    }

    /// Each kind of engine and log error maps to the status its documentation prescribes (r13).
    #[test]
    fn errors_map_by_kind() {
        use idgraph_log::Error as LogError;
        let storage = LogError::Storage { message: "disk gone".into() };
        let corrupt = LogError::Corrupt { seq: Seq(7), detail: "checksum".into() };
        check(EngineError::Request(RequestError::invalid_data("x")), (400, "INVALID_DATA"));
        check(
            EngineError::Fold(OutOfSequence { last: Seq(2), given: Seq(4) }),
            (500, "INTERNAL_ERROR"),
        );
        check(EngineError::UnknownWorkspace("shop".into()), (401, "UNAUTHORIZED"));
        check(EngineError::NotFound("no entry".into()), (404, "NOT_FOUND_ERROR"));
        check(EngineError::Invalid("not explained".into()), (400, "INVALID_DATA"));
        let reused = EngineError::RequestIdReused { request_id: "r".into(), operation: "identify" };
        check(reused, (422, "REQUEST_ID_REUSED"));
        check(EngineError::Overloaded { queue_capacity: 8 }, (503, "SERVICE_UNAVAILABLE"));
        check(EngineError::NotWriter, (503, "SERVICE_UNAVAILABLE"));
        check(EngineError::Halted { cause: "sync".into() }, (503, "SERVICE_UNAVAILABLE"));
        check(EngineError::Log(corrupt.clone()), (500, "INTERNAL_ERROR"));
        check(EngineError::Log(storage.clone()), (503, "SERVICE_UNAVAILABLE"));
        check(corrupt, (500, "INTERNAL_ERROR"));
        check(storage, (503, "SERVICE_UNAVAILABLE"));
        check(LogError::Gap { missing: Seq(3) }, (500, "INTERNAL_ERROR"));
        check(LogError::Rejected { reason: "too large".into() }, (500, "INTERNAL_ERROR"));
        check(LogError::Poisoned { cause: "fsync".into() }, (503, "SERVICE_UNAVAILABLE"));
    }
}
