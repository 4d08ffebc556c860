//! Snapshots: none at first; the newest comes back whole (several chunks); only the newest two
//! are kept.

use idgraph_cluster::Cluster;

use crate::harness::{cluster_test, transient};

#[test]
fn the_newest_snapshot_comes_back_and_old_ones_are_pruned() {
    let Some((nats, runtime, _serial)) = cluster_test() else { return };
    runtime.block_on(async {
        let n1 = Cluster::connect(&nats.config("n1")).await.unwrap();
        assert_eq!(n1.newest_snapshot().await.unwrap(), None);

        let small = b"snapshot at 10".to_vec();
        // Over three 1 MiB chunks, with a pattern that shows misplaced chunks.
        let large: Vec<u8> = (0..3_500_000u32).map(|i| (i % 251) as u8).collect();
        transient("put_snapshot", || n1.put_snapshot(10, &small)).await.unwrap();
        assert_eq!(n1.newest_snapshot().await.unwrap(), Some((10, small.clone())));
        transient("put_snapshot", || n1.put_snapshot(20, &large)).await.unwrap();
        // Compared without printing 3.5 MB on a failure.
        let newest = n1.newest_snapshot().await.unwrap().map(|(seq, bytes)| (seq, bytes == large));
        assert_eq!(newest, Some((20, true)), "stored: {:?}", n1.snapshot_seqs().await);

        transient("put_snapshot", || n1.put_snapshot(30, b"snapshot at 30")).await.unwrap();
        assert_eq!(n1.snapshot_seqs().await.unwrap(), [20, 30]);

        // Another node sees the same.
        let n2 = Cluster::connect(&nats.config("n2")).await.unwrap();
        assert_eq!(n2.newest_snapshot().await.unwrap(), Some((30, b"snapshot at 30".to_vec())));
    });
}
