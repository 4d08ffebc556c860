//! # idgraph-test-support
//!
//! What idgraph's tests and benches would otherwise each write for themselves: a deterministic
//! [`MpidSource`] ([`CountingMpids`]), a manual clock at a fixed start ([`manual_clock`]), and
//! workspace and engine setup with the settings most tests use ([`resolver_config`],
//! [`workspace`], [`engine_config`], [`in_memory_engine`], [`meta`]).
//!
//! A dev-dependency only: no library or binary may depend on it (`tests/tidy.rs` checks). It sits
//! above the engine in the layering, so only integration tests and benches can use it (a unit test
//! of a crate below it would see a second copy of that crate's types).

use idgraph_engine::{Engine, EngineConfig, ManualClock, RequestMeta, Workspace};
use idgraph_model::{Environment, IdentityType, Timestamp};
use idgraph_query::{MpidSource, ResolverConfig, Strategy};

/// Deterministic MPIDs: counts up from a base (the engine skips values already in use).
#[derive(Debug, Clone, Default)]
pub struct CountingMpids {
    last: i64,
}

impl CountingMpids {
    /// A source whose first candidate is `base + 1`.
    pub fn after(base: i64) -> CountingMpids {
        CountingMpids { last: base }
    }
}

impl MpidSource for CountingMpids {
    fn next_candidate(&mut self) -> i64 {
        self.last += 1;
        self.last
    }
}

/// Where test clocks start: 2023-11-14T22:13:20Z.
pub const START: Timestamp = Timestamp(1_700_000_000_000_000);

/// A clock at [`START`] that moves `step_micros` forward on every reading.
pub fn manual_clock(step_micros: i64) -> ManualClock {
    ManualClock::new(START, step_micros)
}

/// The name and identity scope of the test workspace.
pub const WORKSPACE: &str = "shop";

/// The identity priority of the IDSync signup guide: customer ID, email, username (`other`),
/// phone number, and the device stamp every SDK request carries.
pub fn priority() -> Vec<IdentityType> {
    vec![
        IdentityType::CustomerId,
        IdentityType::Email,
        IdentityType::Other,
        IdentityType::MobileNumber,
        IdentityType::DeviceApplicationStamp,
    ]
}

/// A resolver configuration for `strategy` over [`priority`], with customer ID, email and
/// username as login and unique IDs (ignored by the `default` and `best_match` strategies).
pub fn resolver_config(strategy: Strategy) -> ResolverConfig {
    let login = [IdentityType::CustomerId, IdentityType::Email, IdentityType::Other];
    ResolverConfig::new(strategy, priority(), &login, &login, &[])
        .expect("the test resolver configuration is valid")
}

/// The workspace [`WORKSPACE`] (its own identity scope) resolving with `resolver`.
pub fn workspace(resolver: ResolverConfig) -> Workspace {
    Workspace { name: WORKSPACE.to_owned(), scope: WORKSPACE.to_owned(), resolver }
}

/// One [`workspace`] with `resolver`, and the engine's default settings.
pub fn engine_config(resolver: ResolverConfig) -> EngineConfig {
    EngineConfig::single(workspace(resolver))
}

/// An engine over an in-memory log: [`engine_config`], a [`manual_clock`] moving a millisecond per
/// reading, and MPIDs counted from 1.
pub fn in_memory_engine(resolver: ResolverConfig) -> Engine {
    Engine::in_memory(
        engine_config(resolver),
        Box::new(manual_clock(1_000)),
        Box::new(CountingMpids::default()),
    )
}

/// The request metadata of a request to [`WORKSPACE`].
pub fn meta(environment: Environment, request_id: Option<&str>) -> RequestMeta {
    RequestMeta {
        workspace: WORKSPACE.to_owned(),
        environment,
        request_id: request_id.map(str::to_owned),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mpids_count_up_and_the_engine_setup_is_valid() {
        let mut mpids = CountingMpids::after(1_000);
        assert_eq!([mpids.next_candidate(), mpids.next_candidate()], [1_001, 1_002]);
        for strategy in [Strategy::Default, Strategy::ProfileConversion, Strategy::BestMatch] {
            assert_eq!(resolver_config(strategy).strategy, strategy);
        }
        let config = engine_config(resolver_config(Strategy::ProfileLink));
        assert_eq!(config.workspaces.len(), 1);
        assert_eq!(meta(Environment::Production, Some("r")).request_id.as_deref(), Some("r"));
    }
}
