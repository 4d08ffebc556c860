//! The cluster crate against real NATS servers: each test starts its own 3-server JetStream
//! cluster on loopback (`harness.rs` over `servers.rs`, which the cli crate's end-to-end cluster
//! tests include too), one test at a time.
//!
//! - `connect.rs`: the stream and buckets, refusing other settings, the servers' durability
//!   settings, duplicate node names, unreachable servers.
//! - `lease.rs`: acquiring, renewing, expiry and takeover of the writer lease.
//! - `log.rs`: publishing and reading groups, fencing a stale writer and racing writers, a
//!   stream leader's SIGKILL.
//! - `snapshot.rs`: the snapshot store.

mod connect;
mod harness;
mod lease;
mod log;
mod servers;
mod snapshot;
