//! The audit explorer (`docs/audit.md`, "Explorer"): a page at `GET /explorer/` that signs in with a
//! workspace's key and secret and calls the audit endpoints from the browser. Its files
//! (`crates/server/explorer/`: HTML, plain JavaScript, CSS and the vendored Cytoscape.js) are
//! compiled into the binary, so the page needs no network beyond this server and no build step.
//!
//! Every file is answered with its content type, `Cache-Control: no-cache` and an `ETag` computed
//! at compile time (a browser revalidates and gets a 304 until the binary changes), and a strict
//! Content-Security-Policy: scripts, styles and connections from this origin only, no inline
//! script, no framing. The one inline style allowed, by its hash, is the single rule Cytoscape.js
//! inserts into the page (`.__________cytoscape_container { position: relative; }`).

use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};

use crate::wire::ApiError;

/// One embedded file.
struct Asset {
    /// Its path under `/explorer/`.
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
    /// A strong validator of `body`, computed at compile time.
    etag: &'static str,
}

/// FNV-1a (64 bits) of `bytes`, as a quoted hexadecimal `ETag` value. Not a security hash: the
/// files are ours, it only tells versions apart.
const fn etag_of(bytes: &[u8]) -> [u8; 18] {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut idx = 0;
    while idx < bytes.len() {
        hash ^= bytes[idx] as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
        idx += 1;
    }
    let digits = b"0123456789abcdef";
    let mut out = [b'"'; 18];
    let mut pos = 0;
    while pos < 16 {
        out[1 + pos] = digits[((hash >> (60 - 4 * pos)) & 0xf) as usize];
        pos += 1;
    }
    out
}

macro_rules! asset {
    ($path:literal, $content_type:literal) => {{
        const BODY: &[u8] = include_bytes!(concat!("../explorer/", $path));
        const ETAG: [u8; 18] = etag_of(BODY);
        Asset {
            path: $path,
            content_type: $content_type,
            body: BODY,
            etag: match std::str::from_utf8(&ETAG) {
                Ok(etag) => etag,
                Err(_) => panic!("an ETag is ASCII"),
            },
        }
    }};
}

/// Every file the explorer serves. Anything else under `/explorer/` is 404.
static ASSETS: [Asset; 6] = [
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("explorer.js", "text/javascript; charset=utf-8"),
    asset!("explorer.css", "text/css; charset=utf-8"),
    asset!("vendor/cytoscape.min.js", "text/javascript; charset=utf-8"),
    asset!("vendor/LICENSE-cytoscape", "text/plain; charset=utf-8"),
    asset!("vendor/README.md", "text/plain; charset=utf-8"),
];

/// The page's policy: nothing from elsewhere, no inline script, no plugins, no framing. The style
/// hash is that of the rule Cytoscape.js inserts (see the module documentation).
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self' 'sha256-pgvDUBa4IjFA2yuSJ2cqcyxmNYJMborsd0ORcRv9vw8='; \
     img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// `GET /explorer`: the page lives at `/explorer/` (its files are relative to it).
pub(crate) async fn redirect() -> Redirect {
    Redirect::permanent("/explorer/")
}

/// `GET /explorer/`: the page.
pub(crate) async fn index(headers: HeaderMap) -> Response {
    serve(&ASSETS[0], &headers)
}

/// `GET /explorer/{*file}`: one of the page's files.
pub(crate) async fn file(Path(path): Path<String>, headers: HeaderMap) -> Response {
    match ASSETS.iter().find(|asset| asset.path == path) {
        Some(asset) => serve(asset, &headers),
        None => ApiError::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!("the explorer has no file `{path}`"),
        )
        .into_response(),
    }
}

fn serve(asset: &Asset, request: &HeaderMap) -> Response {
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|tag| tag.trim() == asset.etag));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, asset.content_type)], asset.body).into_response()
    };
    let headers = response.headers_mut();
    headers.insert(header::ETAG, HeaderValue::from_static(asset.etag));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers
        .insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn files_are_served_with_their_type_policy_and_validator() {
        let response = index(HeaderMap::new()).await;
        assert_eq!(response.status(), StatusCode::OK);
        let headers = response.headers();
        assert_eq!(headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
        assert!(
            headers[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap()
                .contains("script-src 'self';")
        );
        let etag = headers[header::ETAG].clone();
        assert_eq!(etag.len(), 18);

        let mut revalidate = HeaderMap::new();
        revalidate.insert(header::IF_NONE_MATCH, etag);
        assert_eq!(index(revalidate).await.status(), StatusCode::NOT_MODIFIED);

        let script = file(Path("vendor/cytoscape.min.js".to_owned()), HeaderMap::new()).await;
        assert_eq!(script.headers()[header::CONTENT_TYPE], "text/javascript; charset=utf-8");
        assert_ne!(
            script.headers()[header::ETAG],
            index(HeaderMap::new()).await.headers()[header::ETAG]
        );
        let missing = file(Path("../Cargo.toml".to_owned()), HeaderMap::new()).await;
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    }

    /// The page loads no script inline and nothing from elsewhere (the policy would refuse it).
    #[test]
    fn the_page_has_no_inline_script_and_no_remote_file() {
        let html = std::str::from_utf8(ASSETS[0].body).unwrap();
        for tag in html.split("<script").skip(1) {
            assert!(tag.trim_start().starts_with("src="), "an inline script: <script{tag}");
        }
        assert!(!html.contains("http://") && !html.contains("https://"), "a remote URL");
        assert!(!html.contains(" style=") && !html.contains("<style"), "an inline style");
    }
}
