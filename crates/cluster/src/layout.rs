//! The NATS layout: the names of the stream, its subject, the headers, the KV bucket and its
//! keys, the object store; the settings each is created with; and the check that an existing
//! stream or bucket has the settings this node relies on (`docs/cluster.md`, "Layout").

use std::time::Duration;

use async_nats::jetstream::{kv, object_store, stream};

use crate::config::ClusterConfig;
use crate::error::ClusterError;
use crate::limits::{DUPLICATE_WINDOW, KEY_TTL};

/// Header: the first entry sequence in a group.
pub const HEADER_FIRST_SEQ: &str = "Idgraph-First-Seq";
/// Header: the last entry sequence in a group.
pub const HEADER_LAST_SEQ: &str = "Idgraph-Last-Seq";
/// Header: the node that wrote the group.
pub const HEADER_WRITER: &str = "Idgraph-Writer";
/// Header: the writer's lease term (the KV revision at which it acquired the lease).
pub const HEADER_TERM: &str = "Idgraph-Term";

/// The KV key of the writer lease.
pub const LEASE_KEY: &str = "writer";
/// The KV key prefix of node presence: `nodes.<node>`.
pub const PRESENCE_PREFIX: &str = "nodes.";

/// The names derived from a configuration.
#[derive(Clone, Debug)]
pub(crate) struct Names {
    pub(crate) stream: String,
    pub(crate) subject: String,
    pub(crate) kv_bucket: String,
    pub(crate) object_bucket: String,
    pub(crate) presence_key: String,
}

impl Names {
    pub(crate) fn new(config: &ClusterConfig) -> Names {
        Names {
            stream: config.stream.clone(),
            subject: format!("{}.groups", config.stream),
            kv_bucket: format!("{}-cluster", config.stream),
            object_bucket: format!("{}-snapshots", config.stream),
            presence_key: format!("{PRESENCE_PREFIX}{}", config.node),
        }
    }
}

/// The log stream: file storage, `replicas` copies, one subject, kept forever (no limits, and
/// `discard: new` so that a limit someone adds refuses appends rather than dropping the oldest
/// groups), deletes and purges denied, a duplicate window for retried publishes.
pub(crate) fn stream_config(config: &ClusterConfig, names: &Names) -> stream::Config {
    stream::Config {
        name: names.stream.clone(),
        description: Some("idgraph commit groups (the log of record)".to_owned()),
        subjects: vec![names.subject.clone()],
        storage: stream::StorageType::File,
        num_replicas: config.replicas,
        retention: stream::RetentionPolicy::Limits,
        discard: stream::DiscardPolicy::New,
        max_messages: -1,
        max_bytes: -1,
        max_age: Duration::ZERO,
        max_messages_per_subject: -1,
        duplicate_window: DUPLICATE_WINDOW,
        deny_delete: true,
        deny_purge: true,
        allow_rollup: false,
        ..Default::default()
    }
}

/// The coordination bucket (lease and presence): one value per key, each expiring
/// [`KEY_TTL`] after its last write.
pub(crate) fn kv_config(config: &ClusterConfig, names: &Names) -> kv::Config {
    kv::Config {
        bucket: names.kv_bucket.clone(),
        description: "idgraph writer lease and node presence".to_owned(),
        history: 1,
        max_age: KEY_TTL,
        storage: stream::StorageType::File,
        num_replicas: config.replicas,
        ..Default::default()
    }
}

/// The snapshot bucket.
pub(crate) fn object_config(config: &ClusterConfig, names: &Names) -> object_store::Config {
    object_store::Config {
        bucket: names.object_bucket.clone(),
        description: Some("idgraph projection snapshots".to_owned()),
        storage: stream::StorageType::File,
        num_replicas: config.replicas,
        ..Default::default()
    }
}

/// `0` and negative limits both mean "none" to JetStream.
fn limit(value: i64) -> String {
    if value <= 0 { "unlimited".to_owned() } else { value.to_string() }
}

fn age(value: Duration) -> String {
    if value.is_zero() { "unlimited".to_owned() } else { format!("{value:?}") }
}

/// One setting to compare: its name in the stream configuration and its two renderings.
struct Setting {
    name: &'static str,
    existing: String,
    wanted: String,
}

fn setting(name: &'static str, existing: impl ToString, wanted: impl ToString) -> Setting {
    Setting { name, existing: existing.to_string(), wanted: wanted.to_string() }
}

fn first_difference(what: String, settings: Vec<Setting>) -> Result<(), ClusterError> {
    match settings.into_iter().find(|setting| setting.existing != setting.wanted) {
        None => Ok(()),
        Some(Setting { name, existing, wanted }) => {
            Err(ClusterError::Settings { what, setting: name, existing, wanted })
        }
    }
}

fn persistence(mode: Option<stream::PersistenceMode>) -> &'static str {
    match mode {
        None | Some(stream::PersistenceMode::Default) => "default",
        Some(stream::PersistenceMode::Async) => "async",
    }
}

/// The log stream as it exists against the one this node would create: every setting the log's
/// durability, order or completeness depends on. The first difference is the error.
pub(crate) fn check_stream(
    existing: &stream::Config,
    wanted: &stream::Config,
) -> Result<(), ClusterError> {
    first_difference(
        format!("stream {:?}", wanted.name),
        vec![
            setting("storage", format!("{:?}", existing.storage), format!("{:?}", wanted.storage)),
            setting("num_replicas", existing.num_replicas, wanted.num_replicas),
            setting(
                "subjects",
                format!("{:?}", existing.subjects),
                format!("{:?}", wanted.subjects),
            ),
            setting(
                "retention",
                format!("{:?}", existing.retention),
                format!("{:?}", wanted.retention),
            ),
            setting("discard", format!("{:?}", existing.discard), format!("{:?}", wanted.discard)),
            setting("max_msgs", limit(existing.max_messages), limit(wanted.max_messages)),
            setting("max_bytes", limit(existing.max_bytes), limit(wanted.max_bytes)),
            setting("max_age", age(existing.max_age), age(wanted.max_age)),
            setting(
                "max_msgs_per_subject",
                limit(existing.max_messages_per_subject),
                limit(wanted.max_messages_per_subject),
            ),
            setting(
                "duplicate_window",
                format!("{:?}", existing.duplicate_window),
                format!("{:?}", wanted.duplicate_window),
            ),
            setting("deny_delete", existing.deny_delete, wanted.deny_delete),
            setting("deny_purge", existing.deny_purge, wanted.deny_purge),
            setting("allow_rollup_hdrs", existing.allow_rollup, wanted.allow_rollup),
            setting("sealed", existing.sealed, wanted.sealed),
            setting("mirror", existing.mirror.is_some(), false),
            setting("sources", existing.sources.as_ref().is_some_and(|s| !s.is_empty()), false),
            setting(
                "persist_mode",
                persistence(existing.persist_mode),
                persistence(wanted.persist_mode),
            ),
        ],
    )
}

/// The coordination bucket's stream (`KV_<bucket>`): the lease's expiry is its `max_age`.
pub(crate) fn check_kv(existing: &stream::Config, wanted: &kv::Config) -> Result<(), ClusterError> {
    first_difference(
        format!("key-value bucket {:?}", wanted.bucket),
        vec![
            setting("storage", format!("{:?}", existing.storage), format!("{:?}", wanted.storage)),
            setting("num_replicas", existing.num_replicas, wanted.num_replicas),
            setting("max_age", age(existing.max_age), age(wanted.max_age)),
            setting("history", existing.max_messages_per_subject, wanted.history),
        ],
    )
}

/// The snapshot bucket's stream (`OBJ_<bucket>`).
pub(crate) fn check_object_store(
    existing: &stream::Config,
    wanted: &object_store::Config,
) -> Result<(), ClusterError> {
    first_difference(
        format!("object store {:?}", wanted.bucket),
        vec![
            setting("storage", format!("{:?}", existing.storage), format!("{:?}", wanted.storage)),
            setting("num_replicas", existing.num_replicas, wanted.num_replicas),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> (ClusterConfig, Names) {
        let config = ClusterConfig::new(vec!["nats://127.0.0.1:4222".into()], "n1");
        let names = Names::new(&config);
        (config, names)
    }

    #[test]
    fn names_follow_the_stream() {
        let (_, names) = config();
        assert_eq!(names.subject, "idgraph.groups");
        assert_eq!(names.kv_bucket, "idgraph-cluster");
        assert_eq!(names.object_bucket, "idgraph-snapshots");
        assert_eq!(names.presence_key, "nodes.n1");
    }

    #[test]
    fn the_wanted_stream_passes_its_own_check() {
        let (config, names) = config();
        let wanted = stream_config(&config, &names);
        check_stream(&wanted, &wanted).unwrap();
        // The server reports "no limit" as -1 where we may have sent 0.
        let reported = stream::Config { max_messages: 0, max_bytes: 0, ..wanted.clone() };
        check_stream(&reported, &wanted).unwrap();
    }

    #[test]
    fn a_difference_is_named_with_both_values() {
        let (config, names) = config();
        let wanted = stream_config(&config, &names);
        let cases = [
            (stream::Config { num_replicas: 1, ..wanted.clone() }, "num_replicas = 1", "= 3"),
            (
                stream::Config { storage: stream::StorageType::Memory, ..wanted.clone() },
                "storage = Memory",
                "= File",
            ),
            (
                stream::Config { max_age: Duration::from_secs(60), ..wanted.clone() },
                "max_age = 60s",
                "= unlimited",
            ),
            (
                stream::Config { deny_delete: false, ..wanted.clone() },
                "deny_delete = false",
                "= true",
            ),
        ];
        for (existing, has, needs) in cases {
            let message = check_stream(&existing, &wanted).unwrap_err().to_string();
            assert!(message.contains(has), "{message}");
            assert!(
                message.contains(&format!("needs {}", &has[..has.find(' ').unwrap()])),
                "{message}"
            );
            assert!(message.contains(needs), "{message}");
        }
    }
}
