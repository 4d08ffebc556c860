//! Connecting: the stream and buckets are created with the layout of `docs/cluster.md`, an
//! existing stream with other settings is refused with the setting named, the servers fsync
//! every write, a second live node of the same name is refused, unreachable servers are
//! reported in bounded time.

use std::time::{Duration, Instant};

use async_nats::jetstream::stream;
use idgraph_cluster::limits::{CONNECT_TIMEOUT, KEY_TTL, PRESENCE_WAIT};
use idgraph_cluster::{Cluster, ClusterConfig, ClusterError};

use crate::harness::{cluster_test, runtime, serial};

#[test]
fn connect_creates_the_stream_and_buckets_with_the_layout() {
    let Some((nats, runtime, _serial)) = cluster_test() else { return };
    runtime.block_on(async {
        let cluster = Cluster::connect(&nats.config("n1")).await.unwrap();
        // Connecting again (another node) finds them and accepts them.
        let other = Cluster::connect(&nats.config("n2")).await.unwrap();

        let client = async_nats::connect(nats.urls()).await.unwrap();
        let js = async_nats::jetstream::new(client);
        let info = js.get_stream("idgraph").await.unwrap().cached_info().clone();
        let config = info.config;
        assert_eq!(config.subjects, ["idgraph.groups"]);
        assert_eq!(config.storage, stream::StorageType::File);
        assert_eq!(config.num_replicas, 3);
        assert_eq!(config.retention, stream::RetentionPolicy::Limits);
        assert_eq!(config.discard, stream::DiscardPolicy::New);
        assert!(config.max_messages <= 0 && config.max_bytes <= 0 && config.max_age.is_zero());
        assert!(config.deny_delete && config.deny_purge);
        assert_eq!(config.duplicate_window, Duration::from_secs(120));
        let kv = js.get_stream("KV_idgraph-cluster").await.unwrap().cached_info().config.clone();
        assert_eq!(
            (kv.num_replicas, kv.max_age, kv.storage),
            (3, KEY_TTL, stream::StorageType::File)
        );
        let objects =
            js.get_stream("OBJ_idgraph-snapshots").await.unwrap().cached_info().config.clone();
        assert_eq!((objects.num_replicas, objects.storage), (3, stream::StorageType::File));

        assert_eq!(cluster.live_nodes().await.unwrap(), ["n1", "n2"]);
        assert!(cluster.stream_leader().await.unwrap().is_some());
        other.shutdown().await.unwrap();
        assert_eq!(cluster.live_nodes().await.unwrap(), ["n1"]);
    });
}

#[test]
fn every_server_fsyncs_every_write() {
    let Some((nats, runtime, _serial)) = cluster_test() else { return };
    runtime.block_on(async {
        for (name, port) in nats.monitor_ports() {
            let varz = nats.monitor(port, "/varz").unwrap();
            assert_eq!(varz["jetstream"]["config"]["sync_always"], true, "{name}: {varz}");
            assert_eq!(varz["max_payload"], 8 * 1024 * 1024, "{name}");
        }
    });
}

#[test]
fn a_stream_with_other_settings_is_refused_and_named() {
    let Some((nats, runtime, _serial)) = cluster_test() else { return };
    runtime.block_on(async {
        // An operator's stream of the same name with one replica in memory.
        let client = async_nats::connect(nats.urls()).await.unwrap();
        let js = async_nats::jetstream::new(client);
        js.create_stream(stream::Config {
            name: "mem".to_owned(),
            subjects: vec!["mem.groups".to_owned()],
            storage: stream::StorageType::Memory,
            num_replicas: 1,
            ..Default::default()
        })
        .await
        .unwrap();
        let config = ClusterConfig { stream: "mem".to_owned(), ..nats.config("n1") };
        let err = Cluster::connect(&config).await.unwrap_err();
        assert!(matches!(err, ClusterError::Settings { setting: "storage", .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "stream \"mem\" exists with storage = Memory, but this node needs storage = File \
             (change the [cluster] configuration or the stream \"mem\"; idgraph does not change it)"
        );

        // Two nodes that disagree on the replication.
        let first = Cluster::connect(&nats.config("n1")).await.unwrap();
        let config = ClusterConfig { replicas: 1, ..nats.config("n2") };
        let err = Cluster::connect(&config).await.unwrap_err();
        assert!(
            err.to_string().starts_with(
                "stream \"idgraph\" exists with num_replicas = 3, but this node needs num_replicas = 1"
            ),
            "{err}"
        );
        drop(first);
    });
}

#[test]
fn a_second_live_node_with_the_same_name_is_refused() {
    let Some((nats, runtime, _serial)) = cluster_test() else { return };
    runtime.block_on(async {
        let first = Cluster::connect(&nats.config("n1")).await.unwrap();
        let started = Instant::now();
        let err = Cluster::connect(&nats.config("n1")).await.unwrap_err();
        let waited = started.elapsed();
        assert!(
            matches!(&err, ClusterError::DuplicateNode { node, .. } if node == "n1"),
            "{err:?}"
        );
        assert!(err.to_string().contains("node name \"n1\" is already in use"), "{err}");
        eprintln!("duplicate node name refused after {waited:?}");
        assert!(waited <= PRESENCE_WAIT + Duration::from_secs(1), "{waited:?}");

        // After a clean shutdown the name is free at once.
        first.shutdown().await.unwrap();
        let second = Cluster::connect(&nats.config("n1")).await.unwrap();
        assert!(second.is_registered());

        // After a crash (dropped without shutdown), once its key expires.
        drop(second);
        let started = Instant::now();
        let third = Cluster::connect(&nats.config("n1")).await.unwrap();
        eprintln!("name of a crashed node free again after {:?}", started.elapsed());
        assert!(third.is_registered());
    });
}

#[test]
fn unreachable_nats_is_refused_in_bounded_time() {
    let _serial = serial();
    let runtime = runtime();
    // Closed ports on loopback (refused at once), and an address nothing answers from.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    for urls in [
        vec![format!("nats://127.0.0.1:{closed}")],
        vec!["nats://10.255.255.1:4222".to_owned(), format!("nats://127.0.0.1:{closed}")],
    ] {
        let config = ClusterConfig::new(urls.clone(), "n1");
        let started = Instant::now();
        let err = runtime.block_on(Cluster::connect(&config)).unwrap_err();
        let took = started.elapsed();
        eprintln!("unreachable {urls:?} refused after {took:?}: {err}");
        assert!(matches!(err, ClusterError::Unreachable { .. }), "{err:?}");
        assert!(err.to_string().starts_with(&format!("cannot reach NATS at {}", urls.join(", "))));
        assert!(took <= CONNECT_TIMEOUT + Duration::from_secs(1), "{took:?}");
    }
}
