//! The `[cluster]` section of the configuration: which NATS servers, this node's name, the
//! stream's name and replication. Parsed with serde (defaults filled in) and checked by
//! [`ClusterConfig::validate`] before anything connects.

use serde::Deserialize;

use crate::error::ClusterError;
use crate::limits::{NAME_BYTES_MAX, REPLICAS_MAX};

/// How this node joins the cluster.
///
/// ```toml
/// [cluster]
/// nats = ["nats://127.0.0.1:4222", "nats://127.0.0.1:4223", "nats://127.0.0.1:4224"]
/// node = "n1"          # unique per node
/// stream = "idgraph"   # the default
/// replicas = 3         # the default
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// The NATS servers to connect to (any one that answers will do; the client learns the
    /// others from it and reconnects to them when one fails).
    pub nats: Vec<String>,
    /// This node's name: unique among the live nodes, `[A-Za-z0-9_-]`, at most
    /// [`NAME_BYTES_MAX`] bytes. It names the node in the presence registry and in every
    /// commit group it writes.
    pub node: String,
    /// The JetStream stream that holds the log (subject `<stream>.groups`); it also names the
    /// key-value bucket `<stream>-cluster` and the object store `<stream>-snapshots`.
    #[serde(default = "default_stream")]
    pub stream: String,
    /// How many servers store each message of the stream and the buckets (1 to 5; a majority
    /// of them must store a message before its publish is acknowledged, so 3 survives the loss
    /// of one server and 5 of two, while 2 and 4 survive no more than 1 and 3).
    #[serde(default = "default_replicas")]
    pub replicas: usize,
}

fn default_stream() -> String {
    "idgraph".to_owned()
}

fn default_replicas() -> usize {
    3
}

impl ClusterConfig {
    /// A configuration with the default stream and replicas.
    pub fn new(nats: Vec<String>, node: impl Into<String>) -> ClusterConfig {
        ClusterConfig {
            nats,
            node: node.into(),
            stream: default_stream(),
            replicas: default_replicas(),
        }
    }

    /// Checks what can be checked without a server: at least one URL, and names that NATS and
    /// the headers accept. The error ([`ClusterError::Config`]) names the field and the value.
    pub fn validate(&self) -> Result<(), ClusterError> {
        if self.nats.is_empty() {
            return Err(config_error("cluster.nats is empty: list at least one NATS server URL"));
        }
        if let Some(url) = self.nats.iter().find(|url| url.trim().is_empty()) {
            return Err(config_error(format!("cluster.nats has an empty URL ({url:?})")));
        }
        check_name("cluster.node", &self.node)?;
        check_name("cluster.stream", &self.stream)?;
        if !(1..=REPLICAS_MAX).contains(&self.replicas) {
            return Err(config_error(format!(
                "cluster.replicas is {}: it must be from 1 to {REPLICAS_MAX} (3 survives one \
                 server's failure, 5 two)",
                self.replicas
            )));
        }
        Ok(())
    }
}

fn config_error(message: impl Into<String>) -> ClusterError {
    ClusterError::Config { message: message.into() }
}

/// Names become NATS subjects, KV keys, bucket names and header values, so they are restricted
/// to the characters all of those accept.
fn check_name(field: &str, name: &str) -> Result<(), ClusterError> {
    if name.is_empty() {
        return Err(config_error(format!("{field} is empty")));
    }
    if name.len() > NAME_BYTES_MAX {
        return Err(config_error(format!(
            "{field} is {} bytes long ({name:?}): at most {NAME_BYTES_MAX}",
            name.len()
        )));
    }
    if let Some(bad) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        return Err(config_error(format!(
            "{field} = {name:?} has the character {bad:?}: only ASCII letters, digits, '-' and \
             '_' are allowed"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ClusterConfig, String> {
        #[derive(Deserialize)]
        struct File {
            cluster: ClusterConfig,
        }
        let file: File = toml::from_str(text).map_err(|err| err.to_string())?;
        file.cluster.validate().map_err(|err| err.to_string())?;
        Ok(file.cluster)
    }

    #[test]
    fn defaults_fill_stream_and_replicas() {
        let config =
            parse("[cluster]\nnats = [\"nats://127.0.0.1:4222\"]\nnode = \"n1\"\n").unwrap();
        assert_eq!(config, ClusterConfig::new(vec!["nats://127.0.0.1:4222".into()], "n1"));
        assert_eq!(config.stream, "idgraph");
        assert_eq!(config.replicas, 3);
    }

    #[test]
    fn bad_values_are_named() {
        let cases = [
            ("nats = []\nnode = \"n1\"", "cluster.nats is empty"),
            ("nats = [\"x\"]\nnode = \"\"", "cluster.node is empty"),
            ("nats = [\"x\"]\nnode = \"n.1\"", "cluster.node = \"n.1\" has the character '.'"),
            ("nats = [\"x\"]\nnode = \"n1\"\nstream = \"a b\"", "cluster.stream = \"a b\""),
            ("nats = [\"x\"]\nnode = \"n1\"\nreplicas = 0", "cluster.replicas is 0"),
            ("nats = [\"x\"]\nnode = \"n1\"\nreplicas = 6", "cluster.replicas is 6"),
            ("nats = [\"x\"]\nnode = \"n1\"\nreplica = 3", "unknown field `replica`"),
        ];
        for (body, expected) in cases {
            let err = parse(&format!("[cluster]\n{body}\n")).unwrap_err();
            assert!(err.contains(expected), "{body:?}: {err}");
        }
    }
}
