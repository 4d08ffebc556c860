//! The writer lease: one holder at a time, kept by renewals past its TTL, taken over by another
//! node once renewals stop, with a larger term; the old holder's renewal then fails.

use std::time::{Duration, Instant};

use idgraph_cluster::limits::{KEY_TTL, RENEW_INTERVAL};
use idgraph_cluster::{Acquired, Cluster, ClusterError, Lease};

use crate::harness::{cluster_test, transient};

fn won(acquired: Acquired) -> Lease {
    match acquired {
        Acquired::Won(lease) => lease,
        Acquired::Held { holder } => panic!("the lease is held by {holder:?}"),
    }
}

/// Polls `acquire_lease` until it wins; returns the lease and how long it took.
pub async fn take_over(cluster: &Cluster, limit: Duration) -> (Lease, Duration) {
    let started = Instant::now();
    loop {
        let acquired = transient("acquire_lease", || cluster.acquire_lease()).await;
        if let Acquired::Won(lease) = acquired.unwrap() {
            return (lease, started.elapsed());
        }
        assert!(started.elapsed() < limit, "no takeover within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn lease_is_renewed_expires_and_is_taken_over_with_a_larger_term() {
    let Some((nats, runtime, _serial)) = cluster_test() else { return };
    runtime.block_on(async {
        let n1 = Cluster::connect(&nats.config("n1")).await.unwrap();
        let n2 = Cluster::connect(&nats.config("n2")).await.unwrap();

        let mut lease = won(n1.acquire_lease().await.unwrap());
        assert!(lease.is_live());
        assert_eq!(n2.acquire_lease().await.unwrap(), Acquired::Held { holder: "n1".to_owned() });
        assert_eq!(n2.lease_holder().await.unwrap().as_deref(), Some("n1"));

        // Renewed for twice the TTL, it stays n1's.
        let started = Instant::now();
        while started.elapsed() < KEY_TTL * 2 {
            tokio::time::sleep(RENEW_INTERVAL).await;
            n1.renew_lease(&mut lease).await.unwrap();
            assert!(matches!(n2.acquire_lease().await.unwrap(), Acquired::Held { .. }));
        }
        assert!(lease.revision() > lease.term());

        // n1 stops renewing (paused); n2 takes over once the key expires.
        let last_renewal = Instant::now();
        let (lease2, _) = take_over(&n2, KEY_TTL * 4).await;
        let after = last_renewal.elapsed();
        eprintln!("lease taken over {after:?} after the last renewal (TTL {KEY_TTL:?})");
        assert!(after >= KEY_TTL - Duration::from_millis(500), "{after:?}");
        assert!(lease2.term() > lease.term());
        assert!(!lease.is_live(), "n1's own clock says its lease is over by now");

        // n1 wakes up: its renewal is refused and names the new holder.
        let err = n1.renew_lease(&mut lease).await.unwrap_err();
        assert!(
            matches!(&err, ClusterError::LeaseLost { term, holder: Some(holder) }
                if *term == lease.term() && holder == "n2"),
            "{err:?}"
        );
    });
}

#[test]
fn a_kept_lease_outlives_its_ttl_and_a_released_one_is_free_at_once() {
    let Some((nats, runtime, _serial)) = cluster_test() else { return };
    runtime.block_on(async {
        let n1 = Cluster::connect(&nats.config("n1")).await.unwrap();
        let n2 = Cluster::connect(&nats.config("n2")).await.unwrap();

        let keeper = n1.keep_lease(won(n1.acquire_lease().await.unwrap()));
        tokio::time::sleep(KEY_TTL * 2).await;
        assert!(keeper.is_live());
        assert!(matches!(n2.acquire_lease().await.unwrap(), Acquired::Held { .. }));

        let term = keeper.term();
        n1.release_lease(keeper.stop().await).await.unwrap();
        // At once, give or take a replica's lag (the holder is read from any replica).
        let (lease, took) = take_over(&n2, Duration::from_secs(1)).await;
        eprintln!("released lease acquired by another node after {took:?}");
        assert!(lease.term() > term);

        // n2's keeper notices when the lease is taken from it: here, deleted by an operator.
        let mut keeper = n2.keep_lease(lease);
        let client = async_nats::connect(nats.urls()).await.unwrap();
        let kv = async_nats::jetstream::new(client).get_key_value("idgraph-cluster").await.unwrap();
        kv.delete("writer").await.unwrap();
        let reason = tokio::time::timeout(KEY_TTL, keeper.lost()).await.unwrap();
        eprintln!("keeper: {reason}");
        assert!(reason.contains("lost"), "{reason}");
        assert!(!keeper.is_live());
    });
}
