//! The TOML configuration file (see `docs/configuration.md`). Parsing is strict: an unknown key, a
//! wrong type or an inconsistent workspace is an error that names the file, the key and the
//! problem, and the server does not start.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use idgraph_engine::Workspace;
use idgraph_model::IdentityType;
use idgraph_query::{DEFAULT_PRIORITY, ResolverConfig, Strategy, TieBreak};
use serde::Deserialize;

/// The server's configuration.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// The data folder (the log lives in `data_dir/log`).
    pub data_dir: PathBuf,
    /// The workspaces, with their credentials.
    pub workspaces: Vec<WorkspaceConfig>,
    /// Largest accepted request body, after decompression, in bytes.
    pub body_bytes_max: usize,
    /// `X-MP-Max-Age` sent with identify and login answers, in seconds.
    pub max_age_seconds: u64,
    /// Entries between automatic snapshots (0: never).
    pub snapshot_every_entries: u64,
    /// How long a connection may take to send a request's line and headers (counted from when
    /// the server starts reading them, so it also bounds how long a kept-alive connection idles);
    /// then it is closed. Trickling clients cannot hold connections (and shutdown) forever.
    pub header_read_timeout: Duration,
    /// How long a request's body may take to arrive, once its headers have; then 408.
    pub body_read_timeout: Duration,
    /// How long shutdown waits for in-flight requests and engine calls once the signal came; then
    /// the connections left are closed and the log is synced.
    pub shutdown_timeout: Duration,
    /// Cluster mode (`docs/cluster.md`): the `[cluster]` section, if any. Without it the node is
    /// a single node, as always.
    pub cluster: Option<idgraph_cluster::ClusterConfig>,
}

/// One workspace as configured: credentials and resolution settings.
#[derive(Debug, Clone)]
pub struct WorkspaceConfig {
    /// The engine's view of it.
    pub workspace: Workspace,
    /// The API key clients send.
    pub api_key: String,
    /// The secret for HTTP Basic and HMAC signatures.
    pub api_secret: String,
    /// Accept `x-mp-key` without a signature (browser SDKs).
    pub allow_key_only: bool,
    /// Requests per second allowed for this key (0: unlimited).
    pub rate_limit_per_second: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    body_bytes_max: Option<usize>,
    max_age_seconds: Option<u64>,
    snapshot_every_entries: Option<u64>,
    header_read_timeout_ms: Option<u64>,
    body_read_timeout_ms: Option<u64>,
    shutdown_timeout_ms: Option<u64>,
    #[serde(default)]
    workspace: Vec<RawWorkspace>,
    cluster: Option<idgraph_cluster::ClusterConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorkspace {
    name: String,
    api_key: String,
    api_secret: String,
    scope: Option<String>,
    strategy: Option<String>,
    identity_priority: Option<Vec<String>>,
    login_ids: Option<Vec<String>>,
    unique_ids: Option<Vec<String>>,
    immutable_ids: Option<Vec<String>>,
    #[serde(default)]
    allow_key_only: bool,
    tie_break: Option<String>,
    #[serde(default)]
    auto_alias: bool,
    #[serde(default)]
    rate_limit_per_second: u32,
    blocked_values: Option<Vec<String>>,
    identities_per_type_max: Option<u32>,
    value_bytes_max: Option<usize>,
}

/// Defaults.
pub const LISTEN_DEFAULT: &str = "127.0.0.1:8080";
/// Default data folder.
pub const DATA_DIR_DEFAULT: &str = "idgraph-data";
/// Default body limit: 64 KiB is far above any identity request (SDK requests are under 2 KiB).
pub const BODY_BYTES_MAX_DEFAULT: usize = 64 * 1024;
/// Default `X-MP-Max-Age`: one day, what real IDSync servers send.
pub const MAX_AGE_SECONDS_DEFAULT: u64 = 86_400;
/// Default snapshot interval.
pub const SNAPSHOT_EVERY_ENTRIES_DEFAULT: u64 = 1_000_000;
/// Default header read timeout: 10 s, far above what any client on a working network needs to
/// send a request head of a few hundred bytes.
pub const HEADER_READ_TIMEOUT_MS_DEFAULT: u64 = 10_000;
/// Default body read timeout: 10 s, for bodies of at most `body_bytes_max` (64 KiB by default).
pub const BODY_READ_TIMEOUT_MS_DEFAULT: u64 = 10_000;
/// Default shutdown deadline: 10 s, under the 30 s most supervisors (systemd, Kubernetes) allow
/// between SIGTERM and SIGKILL, with room for the final fsync.
pub const SHUTDOWN_TIMEOUT_MS_DEFAULT: u64 = 10_000;
/// Largest accepted timeout: an hour. A longer one is almost certainly a mistake of units, and
/// would let a client or shutdown hang practically for good.
pub const TIMEOUT_MS_MAX: u64 = 3_600_000;

impl ServerConfig {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> anyhow::Result<ServerConfig> {
        let text = std::fs::read_to_string(path)
            .map_err(|err| anyhow::anyhow!("{}: cannot read: {err}", path.display()))?;
        ServerConfig::parse(&text).map_err(|err| anyhow::anyhow!("{}: {err}", path.display()))
    }

    /// Parses and checks configuration text.
    pub fn parse(text: &str) -> Result<ServerConfig, String> {
        let raw: RawConfig =
            toml::from_str(text).map_err(|err| err.to_string().trim().replace('\n', " "))?;
        let listen = raw.listen.as_deref().unwrap_or(LISTEN_DEFAULT);
        let listen = listen.parse().map_err(|err| {
            format!("key `listen`: `{listen}` is not an address like 127.0.0.1:8080 ({err})")
        })?;
        if raw.workspace.is_empty() {
            return Err("no [[workspace]]: configure at least one".to_owned());
        }
        let header_read_timeout = timeout(
            "header_read_timeout_ms",
            raw.header_read_timeout_ms,
            HEADER_READ_TIMEOUT_MS_DEFAULT,
        )?;
        let body_read_timeout = timeout(
            "body_read_timeout_ms",
            raw.body_read_timeout_ms,
            BODY_READ_TIMEOUT_MS_DEFAULT,
        )?;
        let shutdown_timeout =
            timeout("shutdown_timeout_ms", raw.shutdown_timeout_ms, SHUTDOWN_TIMEOUT_MS_DEFAULT)?;
        let mut names = BTreeSet::new();
        let mut keys = BTreeSet::new();
        let mut workspaces = Vec::new();
        for (idx, raw_workspace) in raw.workspace.into_iter().enumerate() {
            let at = format!("[[workspace]] #{} (`{}`)", idx + 1, raw_workspace.name);
            let workspace = workspace(raw_workspace).map_err(|err| format!("{at}: {err}"))?;
            if !names.insert(workspace.workspace.name.clone()) {
                return Err(format!("{at}: key `name`: another workspace has the same name"));
            }
            if !keys.insert(workspace.api_key.clone()) {
                return Err(format!("{at}: key `api_key`: another workspace uses the same key"));
            }
            workspaces.push(workspace);
        }
        Ok(ServerConfig {
            listen,
            data_dir: raw.data_dir.unwrap_or_else(|| PathBuf::from(DATA_DIR_DEFAULT)),
            workspaces,
            body_bytes_max: raw.body_bytes_max.unwrap_or(BODY_BYTES_MAX_DEFAULT),
            max_age_seconds: raw.max_age_seconds.unwrap_or(MAX_AGE_SECONDS_DEFAULT),
            snapshot_every_entries: raw
                .snapshot_every_entries
                .unwrap_or(SNAPSHOT_EVERY_ENTRIES_DEFAULT),
            header_read_timeout,
            body_read_timeout,
            shutdown_timeout,
            cluster: match raw.cluster {
                Some(cluster) => {
                    cluster.validate().map_err(|err| format!("[cluster]: {err}"))?;
                    Some(cluster)
                }
                None => None,
            },
        })
    }

    /// The configuration used when no file is given: one workspace on the `default` strategy, with
    /// a development key (key-only allowed, so browser SDKs work out of the box).
    pub fn development(listen: SocketAddr, data_dir: PathBuf) -> ServerConfig {
        let workspace = Workspace {
            name: "default".into(),
            scope: "default".into(),
            resolver: ResolverConfig::default_strategy(),
        };
        ServerConfig {
            listen,
            data_dir,
            workspaces: vec![WorkspaceConfig {
                workspace,
                api_key: "dev-key".into(),
                api_secret: "dev-secret".into(),
                allow_key_only: true,
                rate_limit_per_second: 0,
            }],
            body_bytes_max: BODY_BYTES_MAX_DEFAULT,
            max_age_seconds: MAX_AGE_SECONDS_DEFAULT,
            snapshot_every_entries: SNAPSHOT_EVERY_ENTRIES_DEFAULT,
            header_read_timeout: Duration::from_millis(HEADER_READ_TIMEOUT_MS_DEFAULT),
            body_read_timeout: Duration::from_millis(BODY_READ_TIMEOUT_MS_DEFAULT),
            shutdown_timeout: Duration::from_millis(SHUTDOWN_TIMEOUT_MS_DEFAULT),
            cluster: None,
        }
    }
}

/// A timeout key in milliseconds: at least 1, at most [`TIMEOUT_MS_MAX`].
fn timeout(key: &str, value: Option<u64>, default: u64) -> Result<Duration, String> {
    match value.unwrap_or(default) {
        0 => Err(format!("key `{key}`: 0 ms would refuse every request; give at least 1")),
        ms if ms > TIMEOUT_MS_MAX => {
            Err(format!("key `{key}`: {ms} ms is more than an hour ({TIMEOUT_MS_MAX})"))
        }
        ms => Ok(Duration::from_millis(ms)),
    }
}

fn types(key: &str, names: &[String]) -> Result<Vec<IdentityType>, String> {
    names
        .iter()
        .map(|name| name.parse::<IdentityType>().map_err(|err| format!("key `{key}`: {err}")))
        .collect()
}

fn workspace(raw: RawWorkspace) -> Result<WorkspaceConfig, String> {
    if raw.name.trim().is_empty() {
        return Err("key `name` is empty".to_owned());
    }
    if raw.api_key.is_empty() || raw.api_secret.is_empty() {
        return Err("keys `api_key` and `api_secret` must not be empty".to_owned());
    }
    let strategy_name = raw.strategy.as_deref().unwrap_or("default");
    let strategy = Strategy::from_name(strategy_name).ok_or_else(|| {
        format!("key `strategy`: unknown strategy `{strategy_name}` (expected default, profile_conversion, profile_link, profile_isolation or best_match)")
    })?;
    let priority = match &raw.identity_priority {
        Some(names) => types("identity_priority", names)?,
        None => DEFAULT_PRIORITY.to_vec(),
    };
    let fixed = matches!(strategy, Strategy::Default | Strategy::BestMatch);
    for (key, value) in [
        ("login_ids", &raw.login_ids),
        ("unique_ids", &raw.unique_ids),
        ("immutable_ids", &raw.immutable_ids),
    ] {
        if fixed && value.as_ref().is_some_and(|v| !v.is_empty()) {
            return Err(format!(
                "key `{key}`: the {strategy} strategy fixes its login, unique and immutable IDs; remove the key"
            ));
        }
    }
    let login = types("login_ids", raw.login_ids.as_deref().unwrap_or(&[]))?;
    let unique = types("unique_ids", raw.unique_ids.as_deref().unwrap_or(&[]))?;
    let immutable = types("immutable_ids", raw.immutable_ids.as_deref().unwrap_or(&[]))?;
    let mut resolver = ResolverConfig::new(strategy, priority, &login, &unique, &immutable)
        .map_err(|err| err.to_string())?;
    if let Some(name) = &raw.tie_break {
        resolver.tie_break = TieBreak::from_name(name)
            .ok_or_else(|| format!("key `tie_break`: unknown `{name}` (expected most_recently_seen, most_recently_created or lowest_mpid)"))?;
    }
    resolver.auto_alias = raw.auto_alias;
    if let Some(values) = raw.blocked_values {
        resolver.guardrails.blocked_values = values;
    }
    if let Some(max) = raw.identities_per_type_max {
        resolver.guardrails.identities_per_type_max = max;
    }
    if let Some(max) = raw.value_bytes_max {
        resolver.guardrails.value_bytes_max = max;
    }
    resolver.validate().map_err(|err| err.to_string())?;
    let scope = raw.scope.unwrap_or_else(|| raw.name.clone());
    Ok(WorkspaceConfig {
        workspace: Workspace { name: raw.name, scope, resolver },
        api_key: raw.api_key,
        api_secret: raw.api_secret,
        allow_key_only: raw.allow_key_only,
        rate_limit_per_second: raw.rate_limit_per_second,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
listen = "127.0.0.1:8080"
data_dir = "idgraph-data"

[[workspace]]
name = "shop"
api_key = "shop-key"
api_secret = "shop-secret"
strategy = "profile_conversion"
identity_priority = ["customerid", "email", "ios_idfv", "roku_aid"]
login_ids = ["customerid", "email"]
unique_ids = ["customerid", "email"]
immutable_ids = []
allow_key_only = false
"#;

    #[test]
    fn the_documented_example_parses() {
        let config = ServerConfig::parse(GOOD).unwrap();
        assert_eq!(config.workspaces.len(), 1);
        let workspace = &config.workspaces[0];
        assert_eq!(workspace.workspace.resolver.strategy, Strategy::ProfileConversion);
        assert_eq!(workspace.workspace.scope, "shop");
        assert!(!workspace.allow_key_only);
    }

    #[track_caller]
    fn check_error(text: &str, expected: &[&str]) {
        let err = ServerConfig::parse(text).unwrap_err();
        for part in expected {
            assert!(err.contains(part), "`{err}` lacks `{part}`");
        }
    }

    #[test]
    fn errors_name_the_key_and_the_problem() {
        check_error(&GOOD.replace("profile_conversion", "unique_id"), &["strategy", "unique_id"]);
        check_error(
            &GOOD.replace("\"roku_aid\"", "\"roku\""),
            &["identity_priority", "unknown identity type `roku`"],
        );
        check_error(
            &GOOD.replace(
                "login_ids = [\"customerid\", \"email\"]",
                "login_ids = [\"customerid\", \"android_aaid\"]",
            ),
            &["login_ids", "android_aaid", "identity_priority"],
        );
        check_error(
            &GOOD.replace("immutable_ids = []", "immutable_ids = [\"ios_idfv\"]"),
            &["immutable", "ios_idfv"],
        );
        check_error(
            &GOOD.replace("allow_key_only = false", "allow_key_only = \"yes\""),
            &["allow_key_only"],
        );
        check_error(&GOOD.replace("allow_key_only", "allow_keys_only"), &["allow_keys_only"]);
        check_error(&GOOD.replace("127.0.0.1:8080", "localhost"), &["listen", "localhost"]);
        check_error(
            &format!(
                "{GOOD}\n[[workspace]]\nname = \"b\"\napi_key = \"shop-key\"\napi_secret = \"s\"\n"
            ),
            &["api_key", "same key"],
        );
        check_error("listen = \"127.0.0.1:1\"\n", &["no [[workspace]]"]);
        check_error(&format!("shutdown_timeout_ms = 0\n{GOOD}"), &["shutdown_timeout_ms", "0 ms"]);
        check_error(
            &format!("header_read_timeout_ms = 3600001\n{GOOD}"),
            &["header_read_timeout_ms", "more than an hour"],
        );
        check_error(&format!("body_read_timeout_ms = -1\n{GOOD}"), &["body_read_timeout_ms"]);
    }

    #[test]
    fn timeouts_default_to_ten_seconds_and_can_be_set() {
        let config = ServerConfig::parse(GOOD).unwrap();
        let ten_seconds = Duration::from_secs(10);
        assert_eq!(
            (config.header_read_timeout, config.body_read_timeout, config.shutdown_timeout),
            (ten_seconds, ten_seconds, ten_seconds)
        );
        let text = format!(
            "header_read_timeout_ms = 500\nbody_read_timeout_ms = 700\nshutdown_timeout_ms = 2000\n{GOOD}"
        );
        let config = ServerConfig::parse(&text).unwrap();
        assert_eq!(config.header_read_timeout, Duration::from_millis(500));
        assert_eq!(config.body_read_timeout, Duration::from_millis(700));
        assert_eq!(config.shutdown_timeout, Duration::from_secs(2));
    }
}
