//! Authentication per workspace (spec §4.2): HTTP Basic (`api_key:api_secret`), the HMAC signature
//! (`x-mp-key`, `Date`, `x-mp-signature` = hex HMAC-SHA256 of `METHOD\nDATE\nPATH+BODY`), and
//! key-only where the workspace allows it. Secrets and signatures are compared in constant time.
//!
//! A credential header that is present is used or refused, never ignored: one that is not valid
//! UTF-8 is a 401 naming it (treating it as absent once let a key-only request through to what
//! needs the secret, r14). [`authenticate`] says which [`Credential`] was used, so that admission
//! can require one that proves the secret.

use axum::http::HeaderMap;
use base64::Engine as _;
use chrono::{DateTime, NaiveDateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::config::WorkspaceConfig;

/// How far a signed request's `Date` may be from the server's clock: 15 minutes, a common bound
/// for signed HTTP requests (clients' clocks drift; replays of old captures are refused).
pub const SIGNATURE_SKEW_SECONDS_MAX: i64 = 15 * 60;

/// Why a request is not authenticated (always a 401).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthError(pub String);

/// The parts of a request that authentication looks at.
#[derive(Debug)]
pub struct Credentials<'a> {
    /// Request headers.
    pub headers: &'a HeaderMap,
    /// The HTTP method, upper case.
    pub method: &'a str,
    /// The path and query (if any), as the client must have signed it.
    pub path_and_query: &'a str,
    /// The (decompressed) body.
    pub body: &'a [u8],
    /// An API key given in the URL (the alias endpoint), if any.
    pub key_in_path: Option<&'a str>,
}

/// The headers authentication reads.
const CREDENTIAL_HEADERS: [&str; 4] = ["authorization", "x-mp-key", "x-mp-signature", "date"];

/// How a request authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    /// HTTP Basic: the key and the secret.
    Basic,
    /// The HMAC signature: made with the secret.
    Signature,
    /// The key alone (where the workspace allows it): no proof of the secret.
    KeyOnly,
}

impl Credential {
    /// Whether the request proved it holds the workspace's secret.
    pub fn proves_secret(self) -> bool {
        match self {
            Credential::Basic | Credential::Signature => true,
            Credential::KeyOnly => false,
        }
    }
}

/// A header's text; `None` if absent, an error naming it if present but not valid UTF-8.
fn header<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, AuthError> {
    match headers.get(name) {
        None => Ok(None),
        Some(value) => std::str::from_utf8(value.as_bytes())
            .map(Some)
            .map_err(|_| AuthError(format!("header `{name}` is not valid UTF-8"))),
    }
}

/// Finds the workspace the request authenticates as, and how it did.
pub fn authenticate<'w>(
    workspaces: &'w [WorkspaceConfig],
    credentials: &Credentials<'_>,
    now: DateTime<Utc>,
) -> Result<(&'w WorkspaceConfig, Credential), AuthError> {
    // Every credential header present must be readable, whichever of them this request uses.
    for name in CREDENTIAL_HEADERS {
        header(credentials.headers, name)?;
    }
    let by_key =
        |key: &str| workspaces.iter().find(|w| w.api_key.as_bytes().ct_eq(key.as_bytes()).into());
    if let Some(authorization) = header(credentials.headers, "authorization")? {
        let encoded = authorization.strip_prefix("Basic ").ok_or_else(|| {
            AuthError("Authorization must be `Basic base64(api_key:api_secret)`".into())
        })?;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|_| AuthError("Authorization is not valid base64".into()))?;
        let decoded = String::from_utf8(decoded)
            .map_err(|_| AuthError("Authorization is not UTF-8".into()))?;
        let (key, secret) = decoded
            .split_once(':')
            .ok_or_else(|| AuthError("Authorization must hold api_key:api_secret".into()))?;
        let workspace = by_key(key).ok_or_else(|| AuthError("unknown API key".into()))?;
        if !bool::from(workspace.api_secret.as_bytes().ct_eq(secret.as_bytes())) {
            return Err(AuthError("wrong API secret".into()));
        }
        return Ok((workspace, Credential::Basic));
    }
    let key =
        header(credentials.headers, "x-mp-key")?.or(credentials.key_in_path).ok_or_else(|| {
            AuthError("missing credentials: send Authorization (Basic) or x-mp-key".into())
        })?;
    let workspace = by_key(key).ok_or_else(|| AuthError("unknown API key".into()))?;
    match header(credentials.headers, "x-mp-signature")? {
        Some(signature) => {
            let date = header(credentials.headers, "date")?
                .ok_or_else(|| AuthError("x-mp-signature needs a Date header".into()))?;
            check_date(date, now)?;
            verify_signature(workspace, credentials, date, signature)?;
            Ok((workspace, Credential::Signature))
        }
        None if workspace.allow_key_only => Ok((workspace, Credential::KeyOnly)),
        None => Err(AuthError(
            "this workspace requires a signature (x-mp-signature) or HTTP Basic authentication"
                .into(),
        )),
    }
}

fn check_date(date: &str, now: DateTime<Utc>) -> Result<(), AuthError> {
    let parsed = DateTime::parse_from_rfc2822(date)
        .map(|d| d.with_timezone(&Utc))
        .or_else(|_| NaiveDateTime::parse_from_str(date, "%Y%m%dT%H%M%SZ").map(|d| d.and_utc()))
        .map_err(|_| {
            AuthError(format!(
                "Date `{date}` is neither RFC 1123 nor ISO 8601 basic (20170712T224127Z)"
            ))
        })?;
    if (now - parsed).num_seconds().abs() > SIGNATURE_SKEW_SECONDS_MAX {
        return Err(AuthError(format!(
            "Date `{date}` is more than {SIGNATURE_SKEW_SECONDS_MAX} s from the server's clock"
        )));
    }
    Ok(())
}

fn verify_signature(
    workspace: &WorkspaceConfig,
    credentials: &Credentials<'_>,
    date: &str,
    signature: &str,
) -> Result<(), AuthError> {
    let signature =
        hex::decode(signature.trim()).map_err(|_| AuthError("x-mp-signature is not hex".into()))?;
    // The signature covers the path and its query string: a request with a query must have signed
    // it (the secret-only GETs carry their parameters there: which feed page, which point in
    // time), so a captured signature cannot be replayed with another query.
    let mut mac = Hmac::<Sha256>::new_from_slice(workspace.api_secret.as_bytes())
        .expect("HMAC takes any key length");
    mac.update(credentials.method.as_bytes());
    mac.update(b"\n");
    mac.update(date.as_bytes());
    mac.update(b"\n");
    mac.update(credentials.path_and_query.as_bytes());
    mac.update(credentials.body);
    mac.verify_slice(&signature)
        .map_err(|_| AuthError("x-mp-signature does not match the request".into()))
}

/// The signature a client computes, for tests and documentation examples.
pub fn sign(secret: &str, method: &str, date: &str, path: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(format!("{method}\n{date}\n{path}").as_bytes());
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;
    use crate::config::ServerConfig;

    fn workspaces(allow_key_only: bool) -> Vec<WorkspaceConfig> {
        let mut config = ServerConfig::development("127.0.0.1:0".parse().unwrap(), "x".into());
        config.workspaces[0].allow_key_only = allow_key_only;
        config.workspaces
    }

    fn check(
        headers: &[(&str, String)],
        body: &[u8],
        allow_key_only: bool,
    ) -> Result<(), AuthError> {
        let headers: Vec<(&str, &[u8])> =
            headers.iter().map(|(name, value)| (*name, value.as_bytes())).collect();
        check_raw(&headers, body, allow_key_only).map(|_| ())
    }

    fn check_raw(
        headers: &[(&str, &[u8])],
        body: &[u8],
        allow_key_only: bool,
    ) -> Result<Credential, AuthError> {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.insert(
                axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_bytes(value).unwrap(),
            );
        }
        let workspaces = workspaces(allow_key_only);
        let credentials = Credentials {
            headers: &map,
            method: "POST",
            path_and_query: "/v1/identify",
            body,
            key_in_path: None,
        };
        authenticate(&workspaces, &credentials, Utc::now()).map(|(_, credential)| credential)
    }

    #[test]
    fn basic_auth_accepts_the_secret_and_nothing_else() {
        let basic = |pair: &str| {
            (
                "authorization",
                format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair)),
            )
        };
        assert_eq!(check(&[basic("dev-key:dev-secret")], b"", false), Ok(()));
        assert!(check(&[basic("dev-key:wrong")], b"", false).is_err());
        assert!(check(&[basic("other:dev-secret")], b"", false).is_err());
    }

    #[test]
    fn a_signature_covers_the_query_string_so_it_cannot_be_replayed_with_another() {
        let date = Utc::now().to_rfc2822().replace("+0000", "GMT");
        let workspaces = workspaces(false);
        let verify = |signed_path: &str| {
            let mut headers = HeaderMap::new();
            let signature = sign("dev-secret", "GET", &date, signed_path, b"");
            for (name, value) in
                [("x-mp-key", "dev-key"), ("date", &date), ("x-mp-signature", &signature)]
            {
                headers.insert(name, HeaderValue::from_str(value).unwrap());
            }
            let credentials = Credentials {
                headers: &headers,
                method: "GET",
                path_and_query: "/v1/events?after=0&limit=1000",
                body: b"",
                key_in_path: None,
            };
            authenticate(&workspaces, &credentials, Utc::now()).map(|_| ())
        };
        assert!(verify("/v1/events?after=0&limit=1000").is_ok());
        assert!(verify("/v1/events").is_err(), "the path alone does not cover the query");
        assert!(verify("/v1/events?after=9000").is_err(), "another query is refused");
    }

    #[test]
    fn signatures_cover_method_date_path_and_body_in_both_date_formats() {
        let body = br#"{"environment":"development"}"#;
        for date in [
            Utc::now().to_rfc2822().replace("+0000", "GMT"),
            Utc::now().format("%Y%m%dT%H%M%SZ").to_string(),
        ] {
            let signature = sign("dev-secret", "POST", &date, "/v1/identify", body);
            let headers = [
                ("x-mp-key", "dev-key".to_owned()),
                ("date", date.clone()),
                ("x-mp-signature", signature),
            ];
            assert_eq!(check(&headers, body, false), Ok(()), "date {date}");
            let mut flipped = body.to_vec();
            flipped[3] ^= 1;
            assert!(check(&headers, &flipped, false).is_err(), "a flipped body byte is refused");
        }
        let stale = (Utc::now() - chrono::Duration::hours(1)).to_rfc2822();
        let signature = sign("dev-secret", "POST", &stale, "/v1/identify", body);
        let err = check(
            &[("x-mp-key", "dev-key".into()), ("date", stale), ("x-mp-signature", signature)],
            body,
            false,
        )
        .unwrap_err();
        assert!(err.0.contains("from the server's clock"), "{err:?}");
    }

    #[test]
    fn key_only_is_accepted_only_where_allowed() {
        assert_eq!(check(&[("x-mp-key", "dev-key".into())], b"", true), Ok(()));
        assert!(check(&[("x-mp-key", "dev-key".into())], b"", false).is_err());
        assert!(check(&[("x-mp-key", "nope".into())], b"", true).is_err());
        assert!(check(&[], b"", true).is_err());
        assert_eq!(check_raw(&[("x-mp-key", b"dev-key")], b"", true), Ok(Credential::KeyOnly));
    }

    /// r14: a credential header that is not valid UTF-8 is refused, naming it, whatever else the
    /// request sends; it is never taken as absent (which made a key-only request of one that
    /// also sent a garbled `Authorization`).
    #[test]
    fn an_undecodable_credential_header_is_refused_naming_it() {
        let date = Utc::now().to_rfc2822();
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("dev-key:dev-secret")
        );
        for bad in CREDENTIAL_HEADERS {
            let mut headers: Vec<(&str, &[u8])> =
                vec![("x-mp-key", b"dev-key"), ("date", date.as_bytes())];
            if bad != "authorization" {
                headers.push(("authorization", basic.as_bytes()));
            }
            headers.retain(|(name, _)| *name != bad);
            headers.push((bad, b"\xff"));
            let err = check_raw(&headers, b"", true).unwrap_err();
            assert!(err.0.contains(bad), "{bad}: {err:?}");
        }
        let basic: (&str, &[u8]) = ("authorization", basic.as_bytes());
        assert_eq!(check_raw(&[basic], b"", false), Ok(Credential::Basic));
    }
}
