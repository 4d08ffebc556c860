//! idgraph's cluster mode, the NATS side: a JetStream stream as the replicated log of commit
//! groups, a writer lease and node presence in a JetStream key-value bucket, and snapshots in a
//! JetStream object store (`docs/cluster.md`; the choice: `docs/adr/0002`).
//!
//! A commit group is opaque here: `(first_seq, last_seq, bytes)`, one stream message. The crate
//! knows nothing of entries, the engine or the log crate; the engine builds on it.
//!
//! - [`Cluster::connect`]: connect (bounded time), create or check the stream and the buckets,
//!   register this node's name (a second live node of the same name is refused).
//! - [`Cluster::acquire_lease`], [`Cluster::renew_lease`], [`Cluster::keep_lease`]: the writer
//!   lease, identified by its term.
//! - [`Cluster::publish_group`]: append a group on condition that the stream's last sequence is
//!   the expected one (the fence); [`Cluster::read_from`], [`Cluster::last_stream_seq`]: read.
//! - [`Cluster::put_snapshot`], [`Cluster::newest_snapshot`]: snapshots for joining nodes.
//!
//! Files: `config.rs` (the `[cluster]` section), `layout.rs` (names, settings and their check),
//! `presence.rs`, `lease.rs`, `groups.rs` (publish and read), `snapshot.rs`, `limits.rs` (every
//! timing and size), `error.rs`.

mod config;
mod error;
mod groups;
mod layout;
mod lease;
pub mod limits;
mod presence;
mod snapshot;

use std::fmt;

use async_nats::jetstream::{self, kv, object_store, stream};
use async_nats::{ConnectOptions, ServerAddr};

pub use config::ClusterConfig;
pub use error::ClusterError;
pub use groups::{Committed, Group};
pub use layout::{
    HEADER_FIRST_SEQ, HEADER_LAST_SEQ, HEADER_TERM, HEADER_WRITER, LEASE_KEY, PRESENCE_PREFIX,
};
pub use lease::{Acquired, Lease, LeaseKeeper};

use crate::layout::Names;
use crate::limits::{CONNECT_TIMEOUT, LEADER_WAIT, REQUEST_TIMEOUT};
use crate::presence::Presence;

/// A node's connection to the cluster: the log stream, the coordination bucket and the snapshot
/// store, with this node registered under its name for as long as the value lives (a background
/// task renews the registration; dropping the `Cluster` stops it, and the name is free again
/// [`limits::KEY_TTL`] later, or at once after [`Cluster::shutdown`]).
pub struct Cluster {
    config: ClusterConfig,
    names: Names,
    client: async_nats::Client,
    js: jetstream::Context,
    kv: kv::Store,
    objects: object_store::ObjectStore,
    presence: Presence,
}

impl fmt::Debug for Cluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cluster")
            .field("node", &self.config.node)
            .field("stream", &self.config.stream)
            .field("replicas", &self.config.replicas)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Connects to NATS, creates the stream and buckets or checks that the existing ones have
    /// the settings this node needs, and registers this node's name.
    ///
    /// Fails, with a message naming the problem, on: a bad configuration
    /// ([`ClusterError::Config`]), no server reachable within [`limits::CONNECT_TIMEOUT`]
    /// ([`ClusterError::Unreachable`], naming the URLs), an existing stream or bucket with other
    /// settings ([`ClusterError::Settings`], naming the setting and both values), a stream
    /// without a Raft leader after [`limits::LEADER_WAIT`] ([`ClusterError::NoLeader`]), or another
    /// live node of the same name ([`ClusterError::DuplicateNode`]; a node that has just
    /// stopped without [`Cluster::shutdown`] frees its name within [`limits::KEY_TTL`], and
    /// `connect` waits that long for it).
    pub async fn connect(config: &ClusterConfig) -> Result<Cluster, ClusterError> {
        Cluster::connect_at(config, "").await
    }

    /// [`Cluster::connect`], registering `url` (where this node answers HTTP) with this node's
    /// name, for the others to find with [`Cluster::url_of`].
    pub async fn connect_at(config: &ClusterConfig, url: &str) -> Result<Cluster, ClusterError> {
        config.validate()?;
        let names = Names::new(config);
        let client = connect_client(config).await?;
        let js = jetstream::ContextBuilder::new().timeout(REQUEST_TIMEOUT).build(client.clone());

        // Setting up right after the streams were created (or a server failed) meets
        // transient failures: no leader yet, or a server that has not yet learnt which server
        // answers a subject ("no responders"). Every step is idempotent, so retry them all.
        let started = tokio::time::Instant::now();
        let (kv, objects, presence) = loop {
            match set_up(&js, config, &names, url).await {
                Ok(parts) => break parts,
                Err(ClusterError::Nats { .. }) if started.elapsed() < LEADER_WAIT => {
                    tokio::time::sleep(LEADER_WAIT / 50).await;
                }
                Err(err) => return Err(err),
            }
        };
        Ok(Cluster { config: config.clone(), names, client, js, kv, objects, presence })
    }

    /// This node's configuration.
    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.config.node
    }

    /// False once this node's presence key was taken over by another process of the same name
    /// (this one was paused or cut off for longer than [`limits::KEY_TTL`]). Such a node must
    /// stop: two nodes now answer to one name.
    pub fn is_registered(&self) -> bool {
        self.presence.is_live()
    }

    /// The URL a live node registered with ([`Cluster::connect_at`]), if it did.
    pub async fn url_of(&self, node: &str) -> Result<Option<String>, ClusterError> {
        presence::url_of(&self.kv, node).await
    }

    /// The names of the nodes currently registered (this one included), sorted.
    pub async fn live_nodes(&self) -> Result<Vec<String>, ClusterError> {
        presence::live_nodes(&self.kv).await
    }

    /// The name of the JetStream server currently leading the log stream's Raft group, if it
    /// has one (for operators and tests).
    pub async fn stream_leader(&self) -> Result<Option<String>, ClusterError> {
        let info = self.stream_info().await?;
        Ok(info.cluster.and_then(|cluster| cluster.leader))
    }

    async fn stream_info(&self) -> Result<stream::Info, ClusterError> {
        let stream = self
            .js
            .get_stream(&self.names.stream)
            .await
            .map_err(|err| ClusterError::nats("stream info", err))?;
        Ok(stream.cached_info().clone())
    }

    /// Unregisters this node (its name is free at once) and closes the connection. Dropping a
    /// `Cluster` instead leaves the name taken until its key expires.
    pub async fn shutdown(self) -> Result<(), ClusterError> {
        self.presence.unregister(&self.kv).await?;
        self.client.flush().await.map_err(|err| ClusterError::nats("flush", err))?;
        Ok(())
    }
}

/// Creates or checks the stream and the buckets, waits for their leaders, registers the node.
async fn set_up(
    js: &jetstream::Context,
    config: &ClusterConfig,
    names: &Names,
    url: &str,
) -> Result<(kv::Store, object_store::ObjectStore, Presence), ClusterError> {
    ensure_stream(js, config, names).await?;
    let kv = ensure_kv(js, config, names).await?;
    let objects = ensure_object_store(js, config, names).await?;
    // A stream just created has no Raft leader for a moment; until it has, every request to it
    // fails with "no responders".
    for stream in [
        names.stream.clone(),
        format!("KV_{}", names.kv_bucket),
        format!("OBJ_{}", names.object_bucket),
    ] {
        wait_for_leader(js, &stream).await?;
    }
    let presence = Presence::register(&kv, config, names, url).await?;
    Ok((kv, objects, presence))
}

/// Connects to the first server of `config.nats` that answers, within [`CONNECT_TIMEOUT`].
async fn connect_client(config: &ClusterConfig) -> Result<async_nats::Client, ClusterError> {
    let mut addrs = Vec::with_capacity(config.nats.len());
    for url in &config.nats {
        let addr: ServerAddr = url.parse().map_err(|err| ClusterError::Config {
            message: format!("cluster.nats has an invalid URL {url:?}: {err}"),
        })?;
        addrs.push(addr);
    }
    let unreachable = |reason: String| ClusterError::Unreachable {
        urls: config.nats.clone(),
        timeout_s: CONNECT_TIMEOUT.as_secs(),
        reason,
    };
    let options = ConnectOptions::new()
        .name(format!("idgraph-{}", config.node))
        .connection_timeout(CONNECT_TIMEOUT)
        .request_timeout(Some(REQUEST_TIMEOUT));
    match tokio::time::timeout(CONNECT_TIMEOUT, options.connect(addrs)).await {
        Err(_elapsed) => Err(unreachable("timed out".to_owned())),
        Ok(Err(err)) => Err(unreachable(err.to_string())),
        Ok(Ok(client)) => Ok(client),
    }
}

/// Waits, up to [`LEADER_WAIT`], until the stream reports a Raft leader.
async fn wait_for_leader(js: &jetstream::Context, name: &str) -> Result<(), ClusterError> {
    let started = tokio::time::Instant::now();
    loop {
        if let Ok(stream) = js.get_stream(name).await {
            let leader = stream.cached_info().cluster.as_ref().and_then(|c| c.leader.as_ref());
            if leader.is_some_and(|leader| !leader.is_empty()) {
                return Ok(());
            }
        }
        if started.elapsed() >= LEADER_WAIT {
            return Err(ClusterError::NoLeader {
                stream: name.to_owned(),
                waited_s: LEADER_WAIT.as_secs(),
            });
        }
        tokio::time::sleep(LEADER_WAIT / 50).await;
    }
}

/// The stream's configuration, if it exists.
async fn existing_stream_config(
    js: &jetstream::Context,
    name: &str,
) -> Result<Option<stream::Config>, ClusterError> {
    match js.get_stream(name).await {
        Ok(stream) => Ok(Some(stream.cached_info().config.clone())),
        Err(err) => match err.kind() {
            jetstream::context::GetStreamErrorKind::JetStream(js_err)
                if js_err.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND =>
            {
                Ok(None)
            }
            _ => Err(ClusterError::nats("stream info", err)),
        },
    }
}

/// Creates something unless it exists; on a failed create (another node may have created it
/// with other settings in between), checks what exists, so the error names the setting. A
/// create that fails while nothing exists is tried again for up to [`LEADER_WAIT`]: a cluster
/// that has just started refuses placements ("no suitable peers") until its servers have
/// exchanged their JetStream statistics. The last error is returned after that.
async fn ensure<T, Create, Created, Check>(
    js: &jetstream::Context,
    stream_name: &str,
    check: Check,
    mut create: Create,
) -> Result<(), ClusterError>
where
    Check: Fn(&stream::Config) -> Result<(), ClusterError>,
    Create: FnMut() -> Created,
    Created: Future<Output = Result<T, ClusterError>>,
{
    let started = tokio::time::Instant::now();
    loop {
        if let Some(existing) = existing_stream_config(js, stream_name).await? {
            return check(&existing);
        }
        match create().await {
            Ok(_) => return Ok(()),
            Err(err) => {
                if let Some(existing) = existing_stream_config(js, stream_name).await? {
                    return check(&existing);
                }
                if started.elapsed() >= LEADER_WAIT {
                    return Err(err);
                }
                tokio::time::sleep(LEADER_WAIT / 20).await;
            }
        }
    }
}

async fn ensure_stream(
    js: &jetstream::Context,
    config: &ClusterConfig,
    names: &Names,
) -> Result<(), ClusterError> {
    let wanted = layout::stream_config(config, names);
    ensure(
        js,
        &names.stream,
        |existing| layout::check_stream(existing, &wanted),
        || async {
            js.create_stream(wanted.clone())
                .await
                .map_err(|err| ClusterError::nats("create the log stream", err))
        },
    )
    .await
}

async fn ensure_kv(
    js: &jetstream::Context,
    config: &ClusterConfig,
    names: &Names,
) -> Result<kv::Store, ClusterError> {
    let wanted = layout::kv_config(config, names);
    ensure(
        js,
        &format!("KV_{}", names.kv_bucket),
        |existing| layout::check_kv(existing, &wanted),
        || async {
            js.create_key_value(wanted.clone())
                .await
                .map_err(|err| ClusterError::nats("create the key-value bucket", err))
        },
    )
    .await?;
    js.get_key_value(&names.kv_bucket)
        .await
        .map_err(|err| ClusterError::nats("open the key-value bucket", err))
}

async fn ensure_object_store(
    js: &jetstream::Context,
    config: &ClusterConfig,
    names: &Names,
) -> Result<object_store::ObjectStore, ClusterError> {
    let wanted = layout::object_config(config, names);
    ensure(
        js,
        &format!("OBJ_{}", names.object_bucket),
        |existing| layout::check_object_store(existing, &wanted),
        || async {
            js.create_object_store(wanted.clone())
                .await
                .map_err(|err| ClusterError::nats("create the snapshot store", err))
        },
    )
    .await?;
    js.get_object_store(&names.object_bucket)
        .await
        .map_err(|err| ClusterError::nats("open the snapshot store", err))
}
