//! Tests of the projection as a whole: folds of fixed and generated logs against what they must
//! give (lookups, diagnostics, digests, snapshots), folding in warmed-up runs against folding entry
//! by entry, and properties of any log. Tests of one module's parts sit in that module.

use idgraph_model::{
    DetachReason, Entry, EntryView, Environment, Event, Identity, IdentityRequest, IdentityType,
    Mpid, Operation, Outcome, Request, Seq, Timestamp,
};
use proptest::prelude::*;

use super::*;

fn mpid(n: i64) -> Mpid {
    Mpid::new(n).unwrap()
}

fn entry(scope: &str, time: i64, events: Vec<Event>, outcome: Outcome) -> Entry {
    Entry {
        recorded_at: Timestamp(time),
        request: Request {
            request_id: None,
            workspace: scope.into(),
            scope: scope.into(),
            environment: Environment::Production,
            operation: Operation::Identify(IdentityRequest {
                known_identities: vec![],
                previous_mpid: None,
            }),
        },
        events,
        outcome,
    }
}

fn resolved(n: i64) -> Outcome {
    Outcome::Resolved { mpid: mpid(n), is_logged_in: false, matched: vec![] }
}

fn email(value: &str) -> Identity {
    Identity::new(IdentityType::Email, value)
}

pub(crate) fn fold(entries: &[Entry]) -> Projection {
    let mut projection = Projection::new();
    for (idx, entry) in entries.iter().enumerate() {
        projection.apply(Seq(idx as u64 + 1), entry).unwrap();
    }
    projection
}

fn lookups(projection: &Projection, scope: &str, identity: &Identity) -> Vec<i64> {
    let Some(world) = projection.world(scope, Environment::Production) else { return vec![] };
    let Some(id) = projection.identity_id(world, identity.identity_type, &identity.value) else {
        return vec![];
    };
    projection.profiles_of(id).iter().map(|p| projection.mpid(*p).get()).collect()
}

#[test]
fn attach_detach_and_move_update_lookups_and_indexes() {
    let a = email("a@x");
    let entries = vec![
        entry(
            "shop",
            10,
            vec![
                Event::ProfileCreated { mpid: mpid(1) },
                Event::IdentityAttached { mpid: mpid(1), identity: a.clone() },
            ],
            resolved(1),
        ),
        entry("shop", 20, vec![Event::ProfileCreated { mpid: mpid(2) }], resolved(2)),
        entry(
            "shop",
            30,
            vec![
                Event::IdentityDetached {
                    mpid: mpid(1),
                    identity: a.clone(),
                    reason: DetachReason::MovedTo { mpid: mpid(2) },
                },
                Event::IdentityAttached { mpid: mpid(2), identity: a.clone() },
            ],
            Outcome::Modified { mpid: mpid(2) },
        ),
        entry("shop", 40, vec![], resolved(2)),
    ];
    let projection = fold(&entries);
    assert_eq!(lookups(&projection, "shop", &a), [2]);
    assert_eq!(lookups(&projection, "other", &a), Vec::<i64>::new(), "scopes are separate worlds");
    let p1 = projection.profile(projection.profile_id(mpid(1)).unwrap());
    let p2 = projection.profile(projection.profile_id(mpid(2)).unwrap());
    assert!(p1.is_orphaned());
    assert!(!p2.is_orphaned());
    assert!(p2.types.contains(IdentityType::Email));
    assert!(!p1.types.contains(IdentityType::Email));
    assert_eq!((p2.created, p2.last_seen), (Timestamp(20), Timestamp(40)));
    assert_eq!(projection.diagnostics().1, 0);
    assert_eq!(projection.n_lookups(), 1);
}

#[test]
fn bad_data_becomes_a_diagnostic_with_its_sequence() {
    let entries = vec![
        entry(
            "shop",
            1,
            vec![Event::IdentityAttached { mpid: mpid(9), identity: email("x") }],
            resolved(9),
        ),
        entry(
            "shop",
            2,
            vec![Event::ProfileCreated { mpid: mpid(1) }, Event::ProfileCreated { mpid: mpid(1) }],
            resolved(1),
        ),
        entry(
            "other",
            3,
            vec![Event::IdentityAttached { mpid: mpid(1), identity: email("y") }],
            resolved(1),
        ),
        entry(
            "shop",
            4,
            vec![Event::IdentityDetached {
                mpid: mpid(1),
                identity: email("z"),
                reason: DetachReason::Modified,
            }],
            resolved(1),
        ),
    ];
    let projection = fold(&entries);
    let (diagnostics, n) = projection.diagnostics();
    let seqs: Vec<u64> = diagnostics.iter().map(|d| d.seq.0).collect();
    assert_eq!(seqs, [1, 1, 2, 3, 4]);
    assert_eq!(n, 5);
    assert!(diagnostics[0].message.contains("unknown MPID 9"), "{diagnostics:?}");
    assert!(diagnostics[3].message.contains("crosses worlds"), "{diagnostics:?}");
    assert_eq!(projection.n_profiles(), 1);
}

/// Folds `entries` with [`Projection::apply_run`], in runs of `run_len`.
fn fold_in_runs(entries: &[Entry], run_len: usize) -> Projection {
    let mut projection = Projection::new();
    let views: Vec<(Seq, EntryView<'_>)> =
        entries.iter().enumerate().map(|(idx, e)| (Seq(idx as u64 + 1), e.into())).collect();
    for run in views.chunks(run_len) {
        let (n_folded, folded) = projection.apply_run(run);
        folded.unwrap();
        assert_eq!(n_folded, run.len());
    }
    projection
}

#[test]
fn folding_in_warmed_runs_equals_folding_entry_by_entry() {
    // Runs in which identities and profiles are created and then attached, detached, moved and
    // aliased again (what warm-up cannot have found), and bad data (what it finds nothing for).
    let mut entries = generated(5, 6_000);
    let a = email("a@x");
    let time = entries.last().unwrap().recorded_at.0;
    entries.extend([
        entry("shop", time, vec![Event::ProfileCreated { mpid: mpid(1) }], resolved(1)),
        entry(
            "shop",
            time,
            vec![
                Event::IdentityAttached { mpid: mpid(1), identity: a.clone() },
                Event::ProfileCreated { mpid: mpid(1) },
                Event::IdentityAttached { mpid: mpid(9), identity: email("x") },
            ],
            resolved(1),
        ),
        entry(
            "shop",
            time,
            vec![Event::IdentityDetached {
                mpid: mpid(1),
                identity: a.clone(),
                reason: DetachReason::Modified,
            }],
            resolved(1),
        ),
        entry(
            "shop",
            time,
            vec![Event::IdentityAttached { mpid: mpid(1), identity: a }],
            resolved(1),
        ),
    ]);
    let one_by_one = fold(&entries);
    assert_ne!(one_by_one.diagnostics().1, 0, "the bad data is diagnosed");
    for run_len in [1, 7, 1_024, 10_000] {
        let in_runs = fold_in_runs(&entries, run_len);
        assert_eq!(in_runs.content_digest(), one_by_one.content_digest(), "runs of {run_len}");
        assert_eq!(in_runs.running_digest(), one_by_one.running_digest(), "runs of {run_len}");
        assert_eq!(in_runs.to_snapshot(), one_by_one.to_snapshot(), "runs of {run_len}");
        assert_eq!(in_runs.diagnostics(), one_by_one.diagnostics(), "runs of {run_len}");
    }
}

#[test]
fn a_run_stops_at_the_first_entry_out_of_sequence() {
    let entries = generated(3, 10);
    let mut views: Vec<(Seq, EntryView<'_>)> =
        entries.iter().enumerate().map(|(idx, e)| (Seq(idx as u64 + 1), e.into())).collect();
    views[6].0 = Seq(42);
    let mut projection = Projection::new();
    let (n_folded, folded) = projection.apply_run(&views);
    assert_eq!(n_folded, 6);
    assert_eq!(folded, Err(OutOfSequence { last: Seq(6), given: Seq(42) }));
    assert_eq!(projection.last_seq(), Seq(6));
    assert_eq!(projection.running_digest(), fold(&entries[..6]).running_digest());
}

#[test]
fn entries_apply_only_in_sequence() {
    let mut projection = Projection::new();
    let e = entry("shop", 1, vec![], Outcome::AliasAccepted);
    assert_eq!(projection.apply(Seq(2), &e), Err(OutOfSequence { last: Seq(0), given: Seq(2) }));
    projection.apply(Seq(1), &e).unwrap();
    assert!(projection.apply(Seq(1), &e).is_err());
}

pub(crate) fn generated(seed: u64, n: usize) -> Vec<Entry> {
    crate::generate::LogGenerator::new(seed).take(n).collect()
}

#[test]
fn generated_logs_are_valid_and_snapshots_round_trip() {
    let entries = generated(7, 5_000);
    let projection = fold(&entries);
    assert_eq!(projection.diagnostics().1, 0, "{:?}", projection.diagnostics().0.first());
    assert!(!projection.aliases().is_empty());
    let bytes = projection.to_snapshot();
    let restored = Projection::from_snapshot(&bytes).unwrap();
    assert_eq!(restored.content_digest(), projection.content_digest());
    assert_eq!(restored.running_digest(), projection.running_digest());
    assert_eq!(restored.last_seq(), projection.last_seq());
    assert_eq!(restored.to_snapshot(), bytes, "a restored projection snapshots to the same bytes");

    // Folding the tail on top of the snapshot equals folding everything.
    let more = generated(7, 6_000);
    let mut tail_folded = restored;
    for (idx, entry) in more.iter().enumerate().skip(5_000) {
        tail_folded.apply(Seq(idx as u64 + 1), entry).unwrap();
    }
    let full = fold(&more);
    assert_eq!(tail_folded.content_digest(), full.content_digest());
    assert_eq!(tail_folded.running_digest(), full.running_digest());
}

#[test]
fn type_counts_agree_with_the_profiles_identities_live_and_after_a_snapshot() {
    // Detaches, moves and attaches across 5,000 entries: the counts must follow all of them.
    let live = fold(&generated(11, 5_000));
    let restored = Projection::from_snapshot(&live.to_snapshot()).unwrap();
    for projection in [&live, &restored] {
        let mut n_shared = 0;
        for profile in (0..projection.n_profiles() as u32).map(crate::ProfileId) {
            let held = projection.identities_of(profile);
            let view = projection.profile(profile);
            assert_eq!(view.n_identities as usize, held.len());
            let types: idgraph_model::IdentityTypeSet =
                held.iter().map(|id| projection.identity(*id).0).collect();
            assert_eq!(view.types, types, "profile {}", view.mpid);
            for &identity_type in idgraph_model::IdentityType::ALL {
                let expected =
                    held.iter().filter(|id| projection.identity(**id).0 == identity_type).count();
                assert_eq!(projection.n_identities_of_type(profile, identity_type), expected);
                n_shared += usize::from(expected > 1);
            }
        }
        assert!(n_shared > 100, "the log gives profiles several identities of a type: {n_shared}");
    }
}

#[test]
fn damaged_snapshots_are_rejected_not_loaded() {
    let bytes = fold(&generated(3, 500)).to_snapshot();
    for cut in [0, 7, 8, 100, bytes.len() - 1] {
        assert!(Projection::from_snapshot(&bytes[..cut]).is_err(), "truncated at {cut}");
    }
    // A flipped byte anywhere is caught.
    for position in (0..bytes.len()).step_by(37) {
        let mut damaged = bytes.clone();
        damaged[position] ^= 0x5A;
        assert!(Projection::from_snapshot(&damaged).is_err(), "flip at {position} accepted");
    }
}

proptest! {
    /// Any prefix of any log (valid or not) folds without panic, and the digests of a prefix are a
    /// function of that prefix alone.
    #[test]
    fn any_prefix_folds_and_its_digest_depends_on_the_prefix_only(
        entries in proptest::collection::vec(idgraph_model::arbitrary::entry(), 0..30),
        cut in any::<prop::sample::Index>(),
    ) {
        let cut = cut.index(entries.len() + 1);
        let a = fold(&entries[..cut]);
        let b = fold(&entries[..cut]);
        prop_assert_eq!(a.running_digest(), b.running_digest());
        prop_assert_eq!(a.content_digest(), b.content_digest());
        let whole = fold(&entries);
        let mut resumed = Projection::from_snapshot(&a.to_snapshot()).unwrap();
        for (idx, entry) in entries.iter().enumerate().skip(cut) {
            resumed.apply(Seq(idx as u64 + 1), entry).unwrap();
        }
        prop_assert_eq!(resumed.running_digest(), whole.running_digest());
        prop_assert_eq!(resumed.content_digest(), whole.content_digest());
    }

    #[test]
    fn valid_generated_prefixes_fold_cleanly(seed in any::<u64>(), n in 0usize..400) {
        let projection = fold(&generated(seed, n));
        prop_assert_eq!(projection.diagnostics().1, 0);
    }
}

/// The running digest is part of the on-disk snapshot format and of what operators compare across
/// machines: its value for a fixed log must never change by accident.
#[test]
fn the_running_digest_of_a_fixed_log_is_pinned() {
    let mut projection = Projection::new();
    for (idx, entry) in generated(11, 2_000).iter().enumerate() {
        projection.apply(Seq(idx as u64 + 1), entry).unwrap();
    }
    assert_eq!(projection.running_digest().to_string(), "c51bcef701a244c9b3f566a6b8321536");
}

/// Snapshot bytes are an on-disk format, and a partial fold must answer as the full one does:
/// neither may change by accident (pinned when the crate was split into modules, issue #13).
#[test]
fn the_snapshots_of_a_fixed_log_and_of_a_partial_fold_of_it_are_pinned() {
    let entries = generated(11, 3_000);
    let projection = fold(&entries);
    let bytes = projection.to_snapshot();
    assert_eq!(projection.content_digest().to_string(), "bbe4a383719eb8cca1012fe495ab7335");
    assert_eq!(bytes.len(), 115_459);
    assert_eq!(
        Digest(xxhash_rust::xxh3::xxh3_128(&bytes)).to_string(),
        "306cf6dde651463baa803cc0d2d22d01"
    );

    // Every seventh profile, folded from every entry (the caller normally gives only theirs).
    let mut partial = PartialProjection::new();
    let keep: Vec<Mpid> = (0..projection.n_profiles() as u32)
        .step_by(7)
        .map(|p| projection.mpid(ProfileId(p)))
        .collect();
    for (idx, entry) in entries.iter().enumerate() {
        partial.apply_selected(Seq(idx as u64 + 1), entry, |mpid| keep.contains(&mpid)).unwrap();
    }
    let bytes = partial.to_snapshot();
    assert_eq!(partial.n_events_applied(), 523);
    assert_eq!(bytes.len(), 16_884);
    assert_eq!(
        Digest(xxhash_rust::xxh3::xxh3_128(&bytes)).to_string(),
        "e66f40854a1f331b2e54d46b1916caa2"
    );
}
