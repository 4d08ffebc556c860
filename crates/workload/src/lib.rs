//! # idgraph-workload
//!
//! Seeded, reproducible, streaming generation of realistic IDSync traffic, for `idgraph gen` (which
//! writes it as JSON Lines) and `idgraph bench` (which replays it). The format, the reference
//! scheme, the traffic model and every knob are described in `docs/workloads.md`.
//!
//! Principal types: [`WorkloadSpec`] (the knobs, with the benchmark mix as default),
//! [`Generator`] (an iterator of [`WorkloadRequest`]s, plus a fast line writer used by
//! [`write_jsonl`]), [`Reader`] / [`read_jsonl_line`] (reading files back), [`MpidBook`]
//! (resolving `{"ref": line}` references while replaying) and [`run`] (the runner behind
//! `idgraph bench`: concurrent clients replaying a workload against a [`Target`], measured and
//! reported as a [`Report`]).
//!
//! ## Key design decision: derive, don't store
//! A workload of 50 million requests must stream in constant memory, yet later requests must be
//! consistent with earlier ones (a returning user sends the same device IDs and the MPID their
//! device got last time). The generator therefore stores only what changes, per user slot
//! (32 bytes: who occupies it, the last line of their device and of their known profile, current
//! device, email version, logged-in flag),
//! and recomputes everything else, every identifier value included, by hashing the seed with stable
//! integers through a bijective mixer (so values are also guaranteed unique). Memory is bounded by
//! [`WorkloadSpec::users`], never by [`WorkloadSpec::requests`].
//!
//! MPIDs are chosen by the server, so the workload cannot contain them: where a request needs one
//! it names the earlier line whose answer carries it, and the runner resolves it ([`MpidBook`]).
//!
//! ## API themes
//! - Determinism: the same spec gives byte-identical output, on every platform (the runner, which
//!   measures time on several threads, is the one part that is not deterministic). No `HashMap`, no
//!   clock, no third-party RNG; randomness is one SplitMix64 stream drawn in a fixed order, and
//!   floating point uses only correctly rounded IEEE operations (`math.rs`).
//! - The serde attributes of [`WorkloadRequest`] define the line format; the fast writer is tested
//!   to produce the same bytes.
//! - Errors: [`SpecError`] names the bad knob; [`ReadError`] carries the line number.
//! - Limits are named constants: [`USERS_MAX`], [`REQUESTS_MAX`], [`ZIPF_EXPONENT_MAX`].

mod book;
mod draft;
mod generator;
mod jsonl;
mod math;
mod population;
mod render;
mod request;
mod rng;
mod runner;
mod spec;
mod zipf;

#[cfg(test)]
mod tests;

pub use crate::book::{MpidBook, Unresolved};
pub use crate::generator::{Generator, WorkloadStats};
pub use crate::jsonl::{ReadError, ReadErrorKind, Reader, read_jsonl_line, write_jsonl};
pub use crate::request::{LineRef, Op, WorkloadRequest};
pub use crate::runner::{
    Chunk, Feed, LATENCY_US_MAX, Multiplexed, Outcome, Ready, Report, Resources, RunOptions,
    RunStats, Target, run, run_multiplexed,
};
pub use crate::spec::{
    Mix, Platforms, REQUESTS_MAX, SpecError, USERS_MAX, WorkloadSpec, ZIPF_EXPONENT_MAX,
};
