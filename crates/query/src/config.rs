//! Per-workspace resolution configuration: strategy, identity priority, login / unique / immutable
//! identity types, tie-break and guardrails.

use std::fmt;

use idgraph_model::{IdentityType, IdentityTypeSet};

/// The five IDSync identity strategies (spec §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Strategy {
    /// Profile Conversion with login = unique = immutable = `customerid`, fixed.
    Default,
    /// A new login ID converts the current anonymous profile into a known one (same MPID).
    ProfileConversion,
    /// A new login ID creates a new known profile; every logout creates a new anonymous profile.
    ProfileLink,
    /// A new login ID creates a new known profile; logout returns to the device's anonymous one.
    ProfileIsolation,
    /// No login or unique IDs: the best match by priority, multi-valued identity types.
    BestMatch,
}

impl Strategy {
    /// Every strategy.
    pub const ALL: [Strategy; 5] = [
        Strategy::Default,
        Strategy::ProfileConversion,
        Strategy::ProfileLink,
        Strategy::ProfileIsolation,
        Strategy::BestMatch,
    ];

    /// The configuration name (`profile_conversion`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Default => "default",
            Strategy::ProfileConversion => "profile_conversion",
            Strategy::ProfileLink => "profile_link",
            Strategy::ProfileIsolation => "profile_isolation",
            Strategy::BestMatch => "best_match",
        }
    }

    /// The strategy with this configuration name.
    pub fn from_name(name: &str) -> Option<Strategy> {
        Strategy::ALL.into_iter().find(|strategy| strategy.name() == name)
    }

    /// The name IDSync error messages use ("ProfileLinkStrategy login action is missing ...").
    pub fn display_name(self) -> &'static str {
        match self {
            Strategy::Default => "DefaultStrategy",
            Strategy::ProfileConversion => "ProfileConversionStrategy",
            Strategy::ProfileLink => "ProfileLinkStrategy",
            Strategy::ProfileIsolation => "ProfileIsolationStrategy",
            Strategy::BestMatch => "BestMatchStrategy",
        }
    }

    /// Whether alias requests are accepted (spec §4.9: Default, Conversion and Link only).
    pub fn supports_alias(self) -> bool {
        matches!(self, Strategy::Default | Strategy::ProfileConversion | Strategy::ProfileLink)
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How a tie left after the whole priority walk is broken (spec §8.3; undocumented by IDSync).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TieBreak {
    /// The candidate a request resolved to (or modified) most recently; then the newest.
    MostRecentlySeen,
    /// The candidate created most recently.
    MostRecentlyCreated,
    /// The candidate with the lowest MPID (stable, arbitrary).
    LowestMpid,
}

impl TieBreak {
    /// The configuration name.
    pub fn name(self) -> &'static str {
        match self {
            TieBreak::MostRecentlySeen => "most_recently_seen",
            TieBreak::MostRecentlyCreated => "most_recently_created",
            TieBreak::LowestMpid => "lowest_mpid",
        }
    }

    /// The tie-break with this configuration name.
    pub fn from_name(name: &str) -> Option<TieBreak> {
        [TieBreak::MostRecentlySeen, TieBreak::MostRecentlyCreated, TieBreak::LowestMpid]
            .into_iter()
            .find(|tie_break| tie_break.name() == name)
    }
}

/// Protections against junk identifiers that IDSync lacks and peers have (peers.md §9).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guardrails {
    /// Values ignored for every type, compared case-insensitively after trimming: placeholders
    /// that SDKs and broken integrations send (`null`, `undefined`, ...). A request identity with a
    /// blocked value is dropped from matching and never attached.
    pub blocked_values: Vec<String>,
    /// Values ignored for one type only (e.g. the all-zero advertising ID).
    pub blocked_values_by_type: Vec<(IdentityType, String)>,
    /// Most identities of one type a profile may hold; further ones are not attached (a shared
    /// device in Best Match would otherwise collect unbounded emails).
    pub identities_per_type_max: u32,
    /// Longest accepted identity value, in bytes; longer ones are rejected with a 400.
    pub value_bytes_max: usize,
}

/// The all-zero advertising ID sent when a user limits ad tracking.
pub const ZERO_AD_ID: &str = "00000000-0000-0000-0000-000000000000";

impl Default for Guardrails {
    fn default() -> Guardrails {
        let blocked = [
            "",
            "null",
            "undefined",
            "none",
            "nil",
            "nan",
            "0",
            "-1",
            "unknown",
            "n/a",
            "[object object]",
        ];
        Guardrails {
            blocked_values: blocked.iter().map(|value| (*value).to_owned()).collect(),
            blocked_values_by_type: [
                IdentityType::IosIdfa,
                IdentityType::AndroidAaid,
                IdentityType::FireAid,
                IdentityType::RokuAid,
                IdentityType::IosIdfv,
            ]
            .into_iter()
            .map(|identity_type| (identity_type, ZERO_AD_ID.to_owned()))
            .collect(),
            identities_per_type_max: 32,
            value_bytes_max: 1024,
        }
    }
}

impl Guardrails {
    /// Whether `value` is blocked for `identity_type`.
    pub fn is_blocked(&self, identity_type: IdentityType, value: &str) -> bool {
        let value = value.trim();
        self.blocked_values.iter().any(|blocked| blocked.eq_ignore_ascii_case(value))
            || self
                .blocked_values_by_type
                .iter()
                .any(|(t, blocked)| *t == identity_type && blocked.eq_ignore_ascii_case(value))
    }
}

/// How one workspace resolves identities.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolverConfig {
    /// The strategy.
    pub strategy: Strategy,
    /// Identity types in priority order. Only these are matched and attached.
    pub identity_priority: Vec<IdentityType>,
    /// Login ID types: a profile holding one is *known* and is returned only to requests that carry
    /// one of its login ID values.
    pub login_ids: IdentityTypeSet,
    /// Unique ID types: at most one profile holds a value; modify moves it.
    pub unique_ids: IdentityTypeSet,
    /// Immutable ID types: never changed once set; search resolves only through them.
    pub immutable_ids: IdentityTypeSet,
    /// Rule for ties left after the whole priority.
    pub tie_break: TieBreak,
    /// Profile Link only: record an alias from the anonymous profile to the new known one at login.
    pub auto_alias: bool,
    /// Junk protection.
    pub guardrails: Guardrails,
}

/// The default identity hierarchy (spec §1.4) restricted to types the Identity API has keys for
/// (Microsoft publisher and advertising IDs have none).
pub const DEFAULT_PRIORITY: [IdentityType; 16] = [
    IdentityType::CustomerId,
    IdentityType::MobileNumber,
    IdentityType::Email,
    IdentityType::Other,
    IdentityType::Facebook,
    IdentityType::Google,
    IdentityType::Twitter,
    IdentityType::Microsoft,
    IdentityType::Yahoo,
    IdentityType::IosIdfa,
    IdentityType::IosIdfv,
    IdentityType::AndroidAaid,
    IdentityType::AndroidUuid,
    IdentityType::RokuAid,
    IdentityType::RokuPublisherId,
    IdentityType::DeviceApplicationStamp,
];

/// A configuration that cannot work, with what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl ResolverConfig {
    /// The `default` strategy as IDSync ships it.
    pub fn default_strategy() -> ResolverConfig {
        ResolverConfig::new(Strategy::Default, DEFAULT_PRIORITY.to_vec(), &[], &[], &[])
            .expect("the default strategy is valid")
    }

    /// A configuration, checked. For [`Strategy::Default`] the login, unique and immutable types
    /// are `customerid` whatever is passed; for [`Strategy::BestMatch`] there are none.
    pub fn new(
        strategy: Strategy,
        identity_priority: Vec<IdentityType>,
        login_ids: &[IdentityType],
        unique_ids: &[IdentityType],
        immutable_ids: &[IdentityType],
    ) -> Result<ResolverConfig, ConfigError> {
        let set = |types: &[IdentityType]| types.iter().copied().collect::<IdentityTypeSet>();
        let (login, unique, immutable) = match strategy {
            Strategy::Default => {
                let cid = set(&[IdentityType::CustomerId]);
                (cid, cid, cid)
            }
            Strategy::BestMatch => {
                (IdentityTypeSet::EMPTY, IdentityTypeSet::EMPTY, IdentityTypeSet::EMPTY)
            }
            _ => (set(login_ids), set(unique_ids), set(immutable_ids)),
        };
        let config = ResolverConfig {
            strategy,
            identity_priority,
            login_ids: login,
            unique_ids: unique,
            immutable_ids: immutable,
            tie_break: TieBreak::MostRecentlySeen,
            auto_alias: false,
            guardrails: Guardrails::default(),
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks the rules IDSync states for a configuration.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.identity_priority.is_empty() {
            return Err(ConfigError(
                "identity_priority is empty: at least one identity type is needed".into(),
            ));
        }
        let mut seen = IdentityTypeSet::EMPTY;
        for t in &self.identity_priority {
            if seen.contains(*t) {
                return Err(ConfigError(format!("identity_priority lists `{t}` twice")));
            }
            seen.insert(*t);
        }
        for (name, types) in [
            ("login_ids", self.login_ids),
            ("unique_ids", self.unique_ids),
            ("immutable_ids", self.immutable_ids),
        ] {
            if let Some(t) = types.iter().find(|t| !seen.contains(*t)) {
                return Err(ConfigError(format!(
                    "{name} lists `{t}`, which is not in identity_priority (only prioritised types are looked up)"
                )));
            }
        }
        if let Some(t) = self
            .immutable_ids
            .iter()
            .find(|t| !self.login_ids.contains(*t) || !self.unique_ids.contains(*t))
        {
            return Err(ConfigError(format!(
                "immutable_ids lists `{t}`, but an immutable ID must also be a login ID and a unique ID"
            )));
        }
        if matches!(self.strategy, Strategy::ProfileLink | Strategy::ProfileIsolation)
            && self.login_ids.is_empty()
        {
            return Err(ConfigError(format!(
                "the {} strategy needs at least one login ID",
                self.strategy
            )));
        }
        if self.auto_alias && self.strategy != Strategy::ProfileLink {
            return Err(ConfigError("auto_alias applies to the profile_link strategy only".into()));
        }
        if self.guardrails.value_bytes_max > usize::from(u16::MAX) {
            return Err(ConfigError("value_bytes_max is at most 65535".into()));
        }
        if self.guardrails.identities_per_type_max == 0 {
            return Err(ConfigError("identities_per_type_max must be at least 1".into()));
        }
        Ok(())
    }

    /// The position of `identity_type` in the priority, if prioritised.
    pub fn priority_of(&self, identity_type: IdentityType) -> Option<usize> {
        self.identity_priority.iter().position(|t| *t == identity_type)
    }
}
