//! Every limit of the log, named, with its unit and the reason for its value.

/// Largest encoded entry payload. An entry records one request: even a modify with hundreds of
/// identity changes stays far below this, so anything larger is a bug or an attack, and bounding
/// it bounds the memory a corrupt length field can make a reader allocate.
pub const ENTRY_PAYLOAD_BYTES_MAX: usize = 1 << 20;

/// Most entries in one `append_batch` call. Bulk imports cut their input into batches; a bound keeps
/// one RocksDB write batch (and the memory behind it) small enough to commit in well under a second.
pub const BATCH_ENTRIES_MAX: usize = 65_536;

/// Most entries left queued by [`crate::Durability::Queued`] appends before one of them writes the
/// queue itself: bounds the memory, and the entries a crash can lose, when no other append comes.
pub const QUEUED_ENTRIES_MAX: usize = 1_024;

/// Most entries in one stored commit group (one record, `docs/log-format.md`). A group commit with
/// more queued is stored as several records, in the same atomic write.
pub const GROUP_ENTRIES_MAX: usize = 4_096;

/// Most payload bytes the writer puts in one commit group before starting another (a single entry
/// larger than this still gets a group of its own). Keeps a point read, which verifies the whole
/// group, cheap.
pub const GROUP_PAYLOAD_BYTES_MAX: usize = 4 << 20;

/// Entries indexed per write of the indexer (`docs/log-format.md`, "The `index` column family").
pub const INDEX_BATCH_ENTRIES: usize = 10_000;

const _: () = assert!(ENTRY_PAYLOAD_BYTES_MAX <= u32::MAX as usize, "length is framed as u32");
