//! The HTTP target of `idgraph bench --url`: each request is one blocking `POST` to the Identity
//! API (HTTP Basic authentication), one connection pool per client thread. Kept apart so the
//! client can be replaced (an async one is planned) without touching the runner.

use idgraph_workload::{Outcome, Ready, Target};

/// An Identity API endpoint and its credentials.
#[derive(Debug)]
pub(super) struct Http {
    /// Without a trailing `/`.
    url: String,
    api_key: String,
    api_secret: String,
}

impl Http {
    pub(super) fn new(url: &str, api_key: &str, api_secret: &str) -> Http {
        Http {
            url: url.trim_end_matches('/').to_owned(),
            api_key: api_key.to_owned(),
            api_secret: api_secret.to_owned(),
        }
    }

    fn post(&self, client: &reqwest::blocking::Client, ready: &Ready<'_>) -> Outcome {
        let (path, body) = path_and_body(ready);
        let response = client
            .post(format!("{}{path}", self.url))
            .basic_auth(&self.api_key, Some(&self.api_secret))
            .json(&body)
            .send();
        match response {
            Ok(response) if response.status().is_success() => {
                let mpid = response
                    .json::<serde_json::Value>()
                    .ok()
                    .and_then(|v| v["mpid"].as_str().and_then(|m| m.parse().ok()));
                Outcome::Answered(mpid)
            }
            Ok(response)
                if response.status().as_u16() == 400 || response.status().as_u16() == 404 =>
            {
                Outcome::Rejected
            }
            Ok(response) => Outcome::Failed(format!("HTTP {}", response.status())),
            Err(err) => Outcome::Failed(err.to_string()),
        }
    }
}

impl Target for Http {
    type Client = reqwest::blocking::Client;

    fn client(&self) -> reqwest::blocking::Client {
        reqwest::blocking::Client::new()
    }

    fn send(&self, client: &mut reqwest::blocking::Client, requests: &[Ready<'_>]) -> Vec<Outcome> {
        requests.iter().map(|ready| self.post(client, ready)).collect()
    }
}

/// The API path and JSON body of a request (`docs/api.md`).
fn path_and_body(ready: &Ready<'_>) -> (String, serde_json::Value) {
    match *ready {
        Ready::Modify { request, mpid } => {
            let changes: Vec<serde_json::Value> = request
                .identity_changes
                .iter()
                .map(|c| serde_json::json!({"identity_type": c.identity_type.wire_name(), "old_value": c.old_value, "new_value": c.new_value}))
                .collect();
            (
                format!("/v1/{mpid}/modify"),
                serde_json::json!({"environment": request.environment.wire_name(), "request_id": request.request_id, "identity_changes": changes}),
            )
        }
        Ready::Identity { request, previous_mpid } => {
            let identities: serde_json::Map<String, serde_json::Value> = request
                .known_identities
                .iter()
                .map(|(t, v)| (t.wire_name().to_owned(), serde_json::Value::String(v.clone())))
                .collect();
            let previous = previous_mpid.map(|m| m.to_string());
            (
                format!("/v1/{}", request.op.name()),
                serde_json::json!({"environment": request.environment.wire_name(), "request_id": request.request_id, "previous_mpid": previous, "known_identities": identities}),
            )
        }
    }
}
