//! # idgraph
//!
//! The facade of the idgraph workspace: it re-exports the library crates under one name and owns
//! the workspace-level `benches/` (criterion) and `tests/` (end to end). See `docs/ARCHITECTURE.md`.

pub use idgraph_engine as engine;
pub use idgraph_log as log;
pub use idgraph_model as model;
pub use idgraph_projection as projection;
pub use idgraph_query as query;
