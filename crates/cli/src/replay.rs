//! `idgraph replay`: rebuild the projection from the log (one thread decoding, one folding; or
//! `--threads 1`),
//! compare it with what loading (snapshot + tail) gives, and report the digests and throughput.

use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use idgraph_log::Log;
use idgraph_model::{Seq, Timestamp};
use idgraph_projection::Projection;

pub(crate) fn run(
    data_dir: &Path,
    full: bool,
    until: Option<String>,
    threads: u8,
) -> anyhow::Result<()> {
    let log = Log::open(data_dir.join("log"))
        .with_context(|| format!("cannot open {}", data_dir.display()))?;
    let until = match until.as_deref() {
        None => Seq(u64::MAX),
        Some(text) => match text.parse::<u64>() {
            Ok(seq) => Seq(seq),
            Err(_) => {
                let time = chrono::DateTime::parse_from_rfc3339(text)
                    .with_context(|| format!("--until {text}: a sequence or an RFC 3339 time"))?;
                log.seq_at(Timestamp::from_datetime(time.to_utc()))?
            }
        },
    };
    let total = log.last_seq().min(until);
    let progress = indicatif::ProgressBar::new(total.0);
    progress.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} entries, {per_sec}, eta {eta}",
        )
        .expect("valid template"),
    );
    let started = Instant::now();
    let mut projection = Projection::new();
    let replay = if threads == 1 {
        idgraph_engine::replay_until_on_one_thread
    } else {
        idgraph_engine::replay_until
    };
    replay(&log, &mut projection, until, &mut |seq| progress.set_position(seq.0))?;
    progress.finish_and_clear();
    let n_events = projection.n_events_applied();
    let elapsed = started.elapsed().as_secs_f64();
    let n_entries = projection.last_seq().0;
    outln!(
        "replayed {n_entries} entries ({n_events} events) in {elapsed:.3} s: {:.0} entries/s, {:.0} events/s",
        n_entries as f64 / elapsed.max(1e-9),
        n_events as f64 / elapsed.max(1e-9)
    );
    outln!(
        "profiles {}, identities {}, lookups {}, aliases {}",
        projection.n_profiles(),
        projection.n_identities(),
        projection.n_lookups(),
        projection.aliases().len()
    );
    let (diagnostics, n_diagnostics) = projection.diagnostics();
    for diagnostic in diagnostics.iter().take(10) {
        outln!("diagnostic at sequence {}: {}", diagnostic.seq, diagnostic.message);
    }
    if n_diagnostics > 0 {
        outln!("{n_diagnostics} diagnostics in all");
    }
    outln!("running digest {}", projection.running_digest());
    outln!("content digest {}", projection.content_digest());
    if !full && until == Seq(u64::MAX) {
        let (loaded, report) = idgraph_engine::load_projection(&log)?;
        let agree = loaded.running_digest() == projection.running_digest()
            && loaded.content_digest() == projection.content_digest();
        match report.snapshot_seq {
            Some(seq) => outln!(
                "snapshot at {seq} + {} entries: {}",
                report.n_replayed,
                if agree { "agrees" } else { "DIFFERS" }
            ),
            None => outln!("no snapshot"),
        }
        for (seq, reason) in &report.snapshots_discarded {
            outln!("snapshot at {seq} discarded: {reason}");
        }
        anyhow::ensure!(agree, "the state loaded from the snapshot differs from a full replay");
    }
    Ok(())
}
