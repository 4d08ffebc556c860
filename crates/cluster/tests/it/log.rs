//! The log: groups published with the expected-last-sequence condition come back in order with
//! their headers; a retried publish is not stored twice; a writer that lost its lease cannot
//! append after the new writer has (fenced), even when it was paused past its lease; the
//! stream survives a SIGKILL of its Raft leader.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use idgraph_cluster::limits::{GROUP_BYTES_MAX, KEY_TTL};
use idgraph_cluster::{Acquired, Cluster, ClusterError, Committed, Group};

use crate::harness::{cluster_test, transient};
use crate::lease::take_over;

/// A group of entries `first..=last` with a recognisable payload of `len` bytes.
fn group(first: u64, last: u64, len: usize) -> Group {
    let bytes = (0..len).map(|i| (first as usize + i) as u8).collect();
    Group { first_seq: first, last_seq: last, bytes }
}

/// Publishes, retrying transient failures (the way a writer is meant to).
async fn publish(
    cluster: &Cluster,
    term: u64,
    expected: u64,
    group: &Group,
) -> Result<u64, ClusterError> {
    transient("publish", || cluster.publish_group(term, expected, group)).await
}

async fn last(cluster: &Cluster) -> u64 {
    transient("last_stream_seq", || cluster.last_stream_seq()).await.unwrap()
}

/// The first `count` groups from stream sequence `from` (transient errors skipped: the stream
/// goes on after them).
async fn read(cluster: &Cluster, from: u64, count: usize) -> Vec<Committed> {
    let stream = transient("read_from", || cluster.read_from(from)).await.unwrap();
    let groups = stream
        .filter_map(|item| async move {
            match item {
                Ok(committed) => Some(committed),
                Err(ClusterError::Nats { .. }) => None,
                Err(err) => panic!("{err}"),
            }
        })
        .take(count)
        .collect::<Vec<_>>();
    tokio::time::timeout(Duration::from_secs(20), groups).await.expect("the groups arrive")
}

#[test]
fn groups_are_read_back_in_order_and_a_retry_is_not_stored_twice() {
    let Some((nats, runtime, _serial)) = cluster_test() else { return };
    runtime.block_on(async {
        let n1 = Cluster::connect(&nats.config("n1")).await.unwrap();
        let Acquired::Won(lease) = n1.acquire_lease().await.unwrap() else { panic!() };
        assert_eq!(last(&n1).await, 0);

        let mut published = Vec::new();
        let mut next_entry = 1;
        for i in 0..100u64 {
            let entries = 1 + i % 5;
            let group = group(next_entry, next_entry + entries - 1, (i as usize * 97) % 5000);
            next_entry += entries;
            let seq = publish(&n1, lease.term(), i, &group).await.unwrap();
            assert_eq!(seq, i + 1);
            published.push(group);
        }
        assert_eq!(last(&n1).await, 100);

        let all = read(&n1, 1, 100).await;
        for (i, committed) in all.iter().enumerate() {
            assert_eq!(committed.stream_seq, i as u64 + 1);
            assert_eq!((committed.writer.as_str(), committed.term), ("n1", lease.term()));
            assert_eq!(committed.group, published[i]);
        }
        // From the middle (what a node does after loading a snapshot).
        let tail = read(&n1, 60, 41).await;
        assert_eq!(tail[0].stream_seq, 60);
        assert_eq!(tail.last().unwrap().group, published[99]);

        // A retry of the last publish (say its acknowledgement was lost) gets the same sequence
        // and stores nothing; anything else at that position is fenced.
        assert_eq!(publish(&n1, lease.term(), 99, &published[99]).await.unwrap(), 100);
        assert_eq!(last(&n1).await, 100);
        let other = group(published[99].first_seq, published[99].last_seq, 3);
        let err = publish(&n1, lease.term(), 99, &other).await.unwrap_err();
        assert!(matches!(err, ClusterError::Fenced { expected: 99, actual: Some(100) }), "{err:?}");

        // Expecting an empty stream is a condition too (0 is not "no condition").
        let err = publish(&n1, lease.term(), 0, &group(1000, 1000, 1)).await.unwrap_err();
        assert!(matches!(err, ClusterError::Fenced { expected: 0, actual: Some(100) }), "{err:?}");

        // A group too large for one message is refused before it is sent.
        let huge = Group { first_seq: 1000, last_seq: 1000, bytes: vec![0; GROUP_BYTES_MAX + 1] };
        let err = publish(&n1, lease.term(), 100, &huge).await.unwrap_err();
        assert!(matches!(err, ClusterError::GroupTooLarge { .. }), "{err:?}");
        assert_eq!(last(&n1).await, 100);

        // A reader waiting at the end gets the next group when it lands.
        let mut waiting = n1.read_from(101).await.unwrap();
        let next = group(next_entry, next_entry, 10);
        publish(&n1, lease.term(), 100, &next).await.unwrap();
        let committed = tokio::time::timeout(Duration::from_secs(10), waiting.next()).await;
        assert_eq!(committed.unwrap().unwrap().unwrap().group, next);
    });
}

#[test]
fn a_writer_paused_past_its_lease_is_fenced_after_the_new_writer_appends() {
    let Some((nats, runtime, _serial)) = cluster_test() else { return };
    runtime.block_on(async {
        let n1 = Cluster::connect(&nats.config("n1")).await.unwrap();
        let n2 = Cluster::connect(&nats.config("n2")).await.unwrap();

        let Acquired::Won(mut lease1) = n1.acquire_lease().await.unwrap() else { panic!() };
        assert_eq!(publish(&n1, lease1.term(), 0, &group(1, 3, 10)).await.unwrap(), 1);
        // n1 decides its next group against stream sequence 1, checks its lease (live) and is
        // then paused, past the lease's life.
        assert!(lease1.is_live());
        let decided = group(4, 4, 10);

        let (lease2, took) = take_over(&n2, KEY_TTL * 4).await;
        eprintln!("n2 took the lease over after {took:?}");
        let seen = last(&n2).await;
        assert_eq!(seen, 1);
        assert_eq!(publish(&n2, lease2.term(), seen, &group(4, 5, 10)).await.unwrap(), 2);

        // n1 wakes up and publishes what it decided: refused, nothing stored.
        let err = publish(&n1, lease1.term(), 1, &decided).await.unwrap_err();
        assert!(matches!(err, ClusterError::Fenced { expected: 1, actual: Some(2) }), "{err:?}");
        assert!(matches!(n1.renew_lease(&mut lease1).await, Err(ClusterError::LeaseLost { .. })));

        let log = read(&n2, 1, 2).await;
        assert_eq!(
            log.iter().map(|c| (c.writer.as_str(), c.term)).collect::<Vec<_>>(),
            [("n1", lease1.term()), ("n2", lease2.term())]
        );
        assert_eq!(last(&n2).await, 2);
    });
}

#[test]
fn a_stale_writer_that_appends_first_fences_the_new_writer_instead() {
    // The fence is the log position, not the lease: if the old writer's group lands before the
    // new writer's first, it was decided against the true last sequence and stands; the new
    // writer is the one refused, reads it, and decides again on top of it. Either way no group
    // is appended on top of a sequence its writer did not see.
    let Some((nats, runtime, _serial)) = cluster_test() else { return };
    runtime.block_on(async {
        let n1 = Cluster::connect(&nats.config("n1")).await.unwrap();
        let n2 = Cluster::connect(&nats.config("n2")).await.unwrap();
        let Acquired::Won(lease1) = n1.acquire_lease().await.unwrap() else { panic!() };
        assert_eq!(publish(&n1, lease1.term(), 0, &group(1, 1, 10)).await.unwrap(), 1);

        let (lease2, _) = take_over(&n2, KEY_TTL * 4).await;
        let seen = last(&n2).await;

        // The old writer, paused past its lease, appends before the new one does.
        assert_eq!(publish(&n1, lease1.term(), 1, &group(2, 2, 10)).await.unwrap(), 2);

        let err = publish(&n2, lease2.term(), seen, &group(2, 3, 10)).await.unwrap_err();
        assert!(matches!(err, ClusterError::Fenced { expected: 1, actual: Some(2) }), "{err:?}");
        // n2 folds what it missed and decides again.
        let missed = read(&n2, seen + 1, 1).await;
        assert_eq!(missed[0].group.last_seq, 2);
        assert_eq!(publish(&n2, lease2.term(), 2, &group(3, 3, 10)).await.unwrap(), 3);
        // From now on the old writer can never append again: its view is behind.
        let err = publish(&n1, lease1.term(), 2, &group(3, 3, 11)).await.unwrap_err();
        assert!(matches!(err, ClusterError::Fenced { expected: 2, actual: Some(3) }), "{err:?}");
    });
}

#[test]
fn publishing_goes_on_after_the_stream_leader_is_killed() {
    let Some((mut nats, runtime, _serial)) = cluster_test() else { return };
    runtime.block_on(async {
        let n1 = Cluster::connect(&nats.config("n1")).await.unwrap();
        let Acquired::Won(lease) = n1.acquire_lease().await.unwrap() else { panic!() };
        let term = lease.term();
        let keeper = n1.keep_lease(lease);
        for i in 0..10u64 {
            publish(&n1, term, i, &group(i + 1, i + 1, 100)).await.unwrap();
        }
        let leader = n1.stream_leader().await.unwrap().expect("the stream has a leader");
        eprintln!("killing the stream leader {leader} (SIGKILL)");
        nats.kill(&leader);

        // Retry the same publish until it is acknowledged: a timeout's outcome is unknown, and
        // the retry either stores it or is answered with the first attempt's sequence.
        let killed = Instant::now();
        let next = group(11, 11, 100);
        let mut attempts = 0;
        let mut errors = std::collections::BTreeSet::new();
        let seq = loop {
            attempts += 1;
            match n1.publish_group(term, 10, &next).await {
                Ok(seq) => break seq,
                Err(err @ ClusterError::Nats { .. }) => {
                    errors.insert(err.to_string());
                    assert!(killed.elapsed() < Duration::from_secs(30), "no publish within 30 s");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(err) => panic!("{err:?}"),
            }
        };
        let took = killed.elapsed();
        eprintln!(
            "FAILOVER: publish acknowledged {took:?} after SIGKILL of the stream leader \
             ({attempts} attempts); new leader {:?}; errors meanwhile: {errors:?}",
            n1.stream_leader().await.unwrap()
        );
        assert_eq!(seq, 11);
        assert!(took < Duration::from_secs(30));

        // Nothing lost, nothing doubled.
        let log = read(&n1, 1, 11).await;
        assert_eq!(
            log.iter().map(|c| c.group.last_seq).collect::<Vec<_>>(),
            (1..=11).collect::<Vec<_>>()
        );

        // The lease bucket elects a new leader too, which can take longer than the lease's TTL
        // (the Raft election timeout is seconds): then the writer lost its lease and a node,
        // likely itself, acquires it again. Either way it is held again in bounded time.
        let term = if keeper.is_live() {
            eprintln!("FAILOVER: the writer kept its lease");
            term
        } else {
            let (lease, took) = take_over(&n1, KEY_TTL * 4).await;
            eprintln!(
                "FAILOVER: the writer's lease lapsed during the election; re-acquired {:?} \
                 after the kill (term {} -> {})",
                killed.elapsed(),
                term,
                lease.term()
            );
            assert!(took < KEY_TTL * 4);
            lease.term()
        };

        // The killed server comes back and the stream goes on with all three.
        nats.restart(&leader);
        assert_eq!(publish(&n1, term, 11, &group(12, 12, 100)).await.unwrap(), 12);
    });
}

#[test]
fn of_two_writers_publishing_at_the_same_position_at_once_exactly_one_succeeds() {
    // The fence under contention: two nodes (two connections) race 30 times for the same
    // position; each time one group is stored and the other is refused.
    let Some((nats, runtime, _serial)) = cluster_test() else { return };
    runtime.block_on(async {
        let n1 = Cluster::connect(&nats.config("n1")).await.unwrap();
        let n2 = Cluster::connect(&nats.config("n2")).await.unwrap();
        let mut wins = [0; 2];
        for position in 0..30u64 {
            let entry = position + 1;
            let (group1, group2) = (group(entry, entry, 8), group(entry, entry, 9));
            let (a, b) = tokio::join!(
                publish(&n1, 1, position, &group1),
                publish(&n2, 2, position, &group2),
            );
            match (a, b) {
                (Ok(seq), Err(ClusterError::Fenced { .. })) => {
                    assert_eq!(seq, position + 1);
                    wins[0] += 1;
                }
                (Err(ClusterError::Fenced { .. }), Ok(seq)) => {
                    assert_eq!(seq, position + 1);
                    wins[1] += 1;
                }
                other => panic!("position {position}: {other:?}"),
            }
        }
        eprintln!("contended positions won by n1 / n2: {wins:?}");
        assert_eq!(last(&n1).await, 30);
        let log = read(&n1, 1, 30).await;
        assert!(log.iter().enumerate().all(|(i, c)| c.group.first_seq == i as u64 + 1));
    });
}
