//! Opening a data folder: the newest snapshot that verifies plus a fold of the log after it, and the
//! replay that folds a log into a projection (on two threads, or on one).

use std::ops::ControlFlow;

use idgraph_log::Log;
use idgraph_model::{EntryView, Seq};
use idgraph_projection::{Projection, ReplaySizing};

use crate::{EngineError, OpenReport};

/// Records per batch handed from the reading thread to the folding thread during replay.
const REPLAY_BATCH_ENTRIES: usize = 4_096;
/// Batches in flight between the two threads: bounds replay memory to a few megabytes.
const REPLAY_BATCHES_IN_FLIGHT: usize = 4;

/// Folds every entry after the projection's last sequence into it, and returns how many.
///
/// Two threads: one reads the log (RocksDB iteration, checksums, copying payloads into batches),
/// the other decodes borrowed views and folds them, with a bounded channel of batches between
/// them. The fold stays single-threaded and in log order, so the result is exactly that of a
/// sequential replay.
pub fn replay_into(log: &Log, projection: &mut Projection) -> Result<u64, EngineError> {
    replay_until(log, projection, Seq(u64::MAX), &mut |_| {})
}

/// [`replay_into`], stopping after entry `until`, calling `progress` with the last sequence folded
/// after each batch.
pub fn replay_until(
    log: &Log,
    projection: &mut Projection,
    until: Seq,
    progress: &mut dyn FnMut(Seq),
) -> Result<u64, EngineError> {
    let from = projection.last_seq().next();
    let mut sizing = replay_sizing(log, projection, until);
    let (sender, receiver) =
        std::sync::mpsc::sync_channel::<idgraph_log::RecordBatch>(REPLAY_BATCHES_IN_FLIGHT);
    std::thread::scope(|scope| {
        let reader = scope.spawn(move || {
            log.scan_batches(from, REPLAY_BATCH_ENTRIES, |batch| {
                // The folder stops at `until`; reading past it by less than a batch is harmless.
                let past_until = batch.last_seq().is_some_and(|last| last >= until);
                if sender.send(batch).is_err() || past_until {
                    return ControlFlow::Break(()); // The folder stopped, or `until` is read.
                }
                ControlFlow::Continue(())
            })
        });
        let mut n_replayed = 0u64;
        let mut failure = None;
        for batch in receiver.iter() {
            match fold_batch(projection, &batch, until) {
                Ok(n) => n_replayed += n,
                Err(reason) => failure = Some(reason),
            }
            sizing.after_batch(projection);
            if failure.is_some() || projection.last_seq() >= until {
                break;
            }
            progress(projection.last_seq());
        }
        drop(receiver);
        // The reader only iterates and copies; a panic there is a bug, so it is passed on.
        let read = reader.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        read?;
        match failure {
            Some(err) => Err(err),
            None => Ok(n_replayed),
        }
    })
}

/// The projection's sizing for a replay from `projection`'s last sequence to `until`.
fn replay_sizing(log: &Log, projection: &Projection, until: Seq) -> ReplaySizing {
    let n_entries = until.min(log.last_seq()).0.saturating_sub(projection.last_seq().0);
    ReplaySizing::new(projection, n_entries)
}

/// [`replay_until`] on the calling thread alone: scan, checksum, decode and fold in turn, for
/// machines with one core to spare (and to measure replay on one core).
pub fn replay_until_on_one_thread(
    log: &Log,
    projection: &mut Projection,
    until: Seq,
    progress: &mut dyn FnMut(Seq),
) -> Result<u64, EngineError> {
    let mut n_replayed = 0u64;
    let mut failure = None;
    let mut sizing = replay_sizing(log, projection, until);
    log.scan_batches(projection.last_seq().next(), REPLAY_BATCH_ENTRIES, |batch| {
        match fold_batch(projection, &batch, until) {
            Ok(n) => n_replayed += n,
            Err(reason) => failure = Some(reason),
        }
        sizing.after_batch(projection);
        if failure.is_some() || projection.last_seq() >= until {
            return ControlFlow::Break(());
        }
        progress(projection.last_seq());
        ControlFlow::Continue(())
    })?;
    match failure {
        Some(err) => Err(err),
        None => Ok(n_replayed),
    }
}

/// Entries decoded and warmed up together ([`Projection::apply_run`]) before they are folded: enough
/// for the processor to overlap many cache misses, few enough that what they touch is still in
/// cache when they are folded.
const WARM_UP_ENTRIES: usize = 1_024;

/// Folds the entries of `batch` up to `until`, a run of [`WARM_UP_ENTRIES`] at a time, and returns
/// how many. On a record that does not decode, the entries before it are folded and the error
/// returned.
fn fold_batch(
    projection: &mut Projection,
    batch: &idgraph_log::RecordBatch,
    until: Seq,
) -> Result<u64, EngineError> {
    let mut run = Vec::with_capacity(WARM_UP_ENTRIES);
    let mut n_folded = 0u64;
    let mut failure = None;
    let mut fold_run = |projection: &mut Projection, run: &mut Vec<(Seq, EntryView<'_>)>| {
        let (n, folded) = projection.apply_run(run);
        n_folded += n as u64;
        run.clear();
        folded.map_err(EngineError::from)
    };
    let read = batch.for_each_view(|seq, entry| {
        if seq > until {
            return ControlFlow::Break(());
        }
        run.push((seq, entry));
        if run.len() == WARM_UP_ENTRIES
            && let Err(reason) = fold_run(projection, &mut run)
        {
            failure = Some(reason);
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    });
    if failure.is_none()
        && let Err(reason) = fold_run(projection, &mut run)
    {
        failure = Some(reason);
    }
    match (failure, read) {
        (Some(reason), _) => Err(reason),
        (None, Err(err)) => Err(err.into()),
        (None, Ok(())) => Ok(n_folded),
    }
}

/// Loads the newest snapshot that verifies and folds the log after it; a bad snapshot is discarded
/// (reported) and the next older one, or a full replay, is used instead.
pub fn load_projection(log: &Log) -> Result<(Projection, OpenReport), EngineError> {
    let (projection, snapshots_discarded) = newest_good_snapshot(log, log.last_seq())?;
    let mut report = OpenReport {
        snapshot_seq: projection.as_ref().map(Projection::last_seq),
        snapshots_discarded,
        n_replayed: 0,
    };
    let mut projection = projection.unwrap_or_default();
    report.n_replayed = replay_into(log, &mut projection)?;
    projection.shrink_leaving_room();
    Ok((projection, report))
}

/// What [`newest_good_snapshot`] found: the snapshot loaded, if any, and the snapshots discarded on
/// the way, newest first, with why.
pub type GoodSnapshot = (Option<Projection>, Vec<(Seq, String)>);

/// The one snapshot loader: the newest snapshot at or before `seq` whose checksum and content
/// digest verify and whose sequence is the one it is stored under (`None`: there is none, fold
/// from the start), and the snapshots found bad on the way, newest first, with why.
pub fn newest_good_snapshot(log: &Log, seq: Seq) -> Result<GoodSnapshot, EngineError> {
    let mut discarded = Vec::new();
    for snapshot_seq in log.snapshots_at_or_before(seq)? {
        let bytes = match log.load_snapshot(snapshot_seq) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => {
                discarded.push((snapshot_seq, "vanished while being read".to_owned()));
                continue;
            }
            Err(err) => {
                discarded.push((snapshot_seq, err.to_string()));
                continue;
            }
        };
        match Projection::from_snapshot(&bytes) {
            Ok(loaded) if loaded.last_seq() == snapshot_seq => {
                return Ok((Some(loaded), discarded));
            }
            Ok(loaded) => discarded.push((
                snapshot_seq,
                format!(
                    "it holds sequence {} but is stored under {snapshot_seq}",
                    loaded.last_seq()
                ),
            )),
            Err(err) => discarded.push((snapshot_seq, err.to_string())),
        }
    }
    Ok((None, discarded))
}
