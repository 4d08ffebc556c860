//! identify, login, logout and search: the priority walk (spec §2.2), login-ID protection (§2.3),
//! the immutable-ID search restriction (§2.4) and the per-strategy rules of §3.

use idgraph_model::{Event, Identity, IdentityType, Mpid, Outcome, Timestamp};
use idgraph_projection::{IdentityId, ProfileId, Projection, WorldId};
use smallvec::SmallVec;

use crate::config::{ResolverConfig, Strategy, TieBreak};
use crate::explain::{Explanation, Rule, Step};
use crate::{Answer, Decision, ErrorCode, MpidSource, RequestError, ResolvedAnswer, World};

/// The four identity operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdentityOp {
    /// `/identify`
    Identify,
    /// `/login`
    Login,
    /// `/logout`
    Logout,
    /// `/search` (read-only)
    Search,
}

impl IdentityOp {
    /// The operation's name.
    pub fn name(self) -> &'static str {
        match self {
            IdentityOp::Identify => "identify",
            IdentityOp::Login => "login",
            IdentityOp::Logout => "logout",
            IdentityOp::Search => "search",
        }
    }
}

/// An identify, login, logout or search request, validated by [`crate::validate_identities`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityQuery {
    /// Which operation.
    pub op: IdentityOp,
    /// The known identities (one value per type).
    pub known_identities: Vec<Identity>,
    /// The client's current MPID.
    pub previous_mpid: Option<Mpid>,
}

/// One request identity that takes part in resolution (its type is prioritised).
#[derive(Debug, Clone, Copy)]
struct RequestIdentity<'a> {
    identity_type: IdentityType,
    value: &'a str,
    /// The interned id, when the identity has been seen in this world.
    id: Option<IdentityId>,
}

/// The request's prioritised identities in priority order.
fn prioritised<'a>(
    projection: &Projection,
    world: Option<WorldId>,
    config: &ResolverConfig,
    identities: &'a [Identity],
) -> SmallVec<[RequestIdentity<'a>; 8]> {
    let mut ids: SmallVec<[RequestIdentity<'a>; 8]> = identities
        .iter()
        .filter(|identity| config.priority_of(identity.identity_type).is_some())
        .filter(|identity| !config.guardrails.is_blocked(identity.identity_type, &identity.value))
        .map(|identity| RequestIdentity {
            identity_type: identity.identity_type,
            value: &identity.value,
            id: world.and_then(|world| {
                projection.identity_id(world, identity.identity_type, &identity.value)
            }),
        })
        .collect();
    ids.sort_by_key(|id| config.priority_of(id.identity_type));
    ids
}

/// Who may be returned: anonymous profiles always; a known profile only when the request carries
/// one of its login ID values (login-ID protection); under `anonymous_only`, never a known one.
struct Eligibility<'a> {
    projection: &'a Projection,
    config: &'a ResolverConfig,
    request_login_ids: SmallVec<[IdentityId; 4]>,
    anonymous_only: bool,
}

impl Eligibility<'_> {
    fn is_known(&self, profile: ProfileId) -> bool {
        let types = self.projection.profile(profile).types;
        self.config.login_ids.intersects(types)
    }

    fn allows(&self, profile: ProfileId) -> bool {
        if !self.is_known(profile) {
            return true;
        }
        !self.anonymous_only
            && self.request_login_ids.iter().any(|id| self.projection.holds(profile, *id))
    }
}

/// The priority walk: narrow the candidates type by type; a type whose value matches no eligible
/// candidate is skipped; stop when one is left. Returns the candidates left (empty: no match).
fn walk(
    projection: &Projection,
    ids: &[RequestIdentity<'_>],
    eligibility: &Eligibility<'_>,
    mut explanation: Option<&mut Explanation>,
) -> SmallVec<[ProfileId; 4]> {
    let mut candidates: Option<SmallVec<[ProfileId; 4]>> = None;
    for request_identity in ids {
        let Some(id) = request_identity.id else {
            if let Some(explanation) = explanation.as_deref_mut() {
                explanation
                    .steps
                    .push(Step::unseen(request_identity.identity_type, request_identity.value));
            }
            continue;
        };
        let holders = projection.profiles_of(id);
        let mut protected = SmallVec::<[ProfileId; 4]>::new();
        let hits: SmallVec<[ProfileId; 4]> = holders
            .iter()
            .copied()
            .filter(|profile| candidates.as_ref().is_none_or(|c| c.contains(profile)))
            .filter(|profile| {
                let allowed = eligibility.allows(*profile);
                if !allowed {
                    protected.push(*profile);
                }
                allowed
            })
            .collect();
        if !hits.is_empty() {
            candidates = Some(hits);
        }
        if let Some(explanation) = explanation.as_deref_mut() {
            explanation.steps.push(Step::walked(
                projection,
                request_identity.identity_type,
                request_identity.value,
                &holders,
                &protected,
                candidates.as_deref(),
            ));
        }
        if candidates.as_ref().is_some_and(|c| c.len() == 1) {
            break;
        }
    }
    candidates.unwrap_or_default()
}

/// Picks one of several candidates by the configured tie-break; deterministic for any input.
pub(crate) fn tie_break(
    projection: &Projection,
    config: &ResolverConfig,
    candidates: &[ProfileId],
) -> Option<ProfileId> {
    candidates.iter().copied().max_by(|a, b| {
        let (pa, pb) = (projection.profile(*a), projection.profile(*b));
        match config.tie_break {
            TieBreak::MostRecentlySeen => pa.last_seen.cmp(&pb.last_seen).then(a.cmp(b)),
            TieBreak::MostRecentlyCreated => pa.created.cmp(&pb.created).then(a.cmp(b)),
            TieBreak::LowestMpid => pb.mpid.cmp(&pa.mpid),
        }
    })
}

/// Decides an identity request. Pure: reads the projection, draws MPIDs from `mpids`.
pub(crate) fn decide(
    projection: &Projection,
    config: &ResolverConfig,
    world: &World,
    query: &IdentityQuery,
    now: Timestamp,
    mpids: &mut dyn MpidSource,
    mut explanation: Option<&mut Explanation>,
) -> Result<Decision, RequestError> {
    let world_id = projection.world(&world.scope, world.environment);
    let ids = prioritised(projection, world_id, config, &query.known_identities);
    let has_login_id = ids.iter().any(|id| config.login_ids.contains(id.identity_type));
    let op = effective_op(config.strategy, query.op);
    if op == IdentityOp::Login
        && !has_login_id
        && matches!(config.strategy, Strategy::ProfileLink | Strategy::ProfileIsolation)
    {
        return Err(RequestError::new(
            ErrorCode::LookupError,
            format!(
                "{} login action is missing the login identity type.",
                config.strategy.display_name()
            ),
        ));
    }
    let request_login_ids: SmallVec<[IdentityId; 4]> = ids
        .iter()
        .filter(|id| config.login_ids.contains(id.identity_type))
        .filter_map(|id| id.id)
        .collect();
    let login_id_known = request_login_ids.iter().any(|id| !projection.profiles_of(*id).is_empty());
    let eligibility = Eligibility {
        projection,
        config,
        request_login_ids,
        anonymous_only: op == IdentityOp::Logout && config.strategy == Strategy::ProfileIsolation,
    };

    if op == IdentityOp::Search {
        return Ok(search(projection, config, &ids, &eligibility, query, explanation));
    }
    let always_new = op == IdentityOp::Logout
        && matches!(
            config.strategy,
            Strategy::Default | Strategy::ProfileConversion | Strategy::ProfileLink
        );
    let new_known = has_login_id
        && !login_id_known
        && matches!(config.strategy, Strategy::ProfileLink | Strategy::ProfileIsolation);

    let (target, rule) = if always_new {
        (None, Rule::LogoutCreatesNewProfile)
    } else if new_known {
        (None, Rule::NewLoginIdCreatesKnownProfile)
    } else {
        let candidates = walk(projection, &ids, &eligibility, explanation.as_deref_mut());
        match tie_break(projection, config, &candidates) {
            Some(profile) if candidates.len() > 1 => {
                (Some(profile), Rule::TieBreak(config.tie_break))
            }
            Some(profile) => (Some(profile), Rule::PriorityMatch),
            None => match conversion_fallback(
                projection,
                config,
                world_id,
                op,
                has_login_id,
                query.previous_mpid,
                &eligibility,
            ) {
                Some(profile) => (Some(profile), Rule::ConvertPreviousAnonymous),
                None => (None, Rule::NoMatchCreatesProfile),
            },
        }
    };
    let (mut decision, created) = build(projection, config, &ids, target, mpids);
    if let (Some(Outcome::Resolved { mpid, is_logged_in: true, .. }), true, IdentityOp::Login) =
        (&decision.outcome, created && config.auto_alias, query.op)
        && let Some((source, start)) =
            auto_alias_source(projection, world_id, query.previous_mpid, config)
    {
        let destination = *mpid;
        decision.events.push(Event::AliasRecorded { source, destination, start, end: now });
    }
    if let Some(explanation) = explanation {
        explanation.rule = Some(rule);
    }
    Ok(decision)
}

/// Best Match has no login or logout (spec §3.5); they are treated as identify.
fn effective_op(strategy: Strategy, op: IdentityOp) -> IdentityOp {
    match (strategy, op) {
        (Strategy::BestMatch, IdentityOp::Login | IdentityOp::Logout) => IdentityOp::Identify,
        _ => op,
    }
}

/// Profile Conversion: a login with a new login ID and no device match converts the client's
/// current profile (`previous_mpid`) when it is anonymous and live in this world.
fn conversion_fallback(
    projection: &Projection,
    config: &ResolverConfig,
    world: Option<WorldId>,
    op: IdentityOp,
    has_login_id: bool,
    previous_mpid: Option<Mpid>,
    eligibility: &Eligibility<'_>,
) -> Option<ProfileId> {
    if op != IdentityOp::Login
        || !has_login_id
        || !matches!(config.strategy, Strategy::Default | Strategy::ProfileConversion)
    {
        return None;
    }
    let profile = projection.profile_id(previous_mpid?)?;
    let view = projection.profile(profile);
    (Some(view.world) == world && !view.is_orphaned() && !eligibility.is_known(profile))
        .then_some(profile)
}

fn search(
    projection: &Projection,
    config: &ResolverConfig,
    ids: &[RequestIdentity<'_>],
    eligibility: &Eligibility<'_>,
    query: &IdentityQuery,
    mut explanation: Option<&mut Explanation>,
) -> Decision {
    // With immutable IDs configured, search resolves only through them (spec §2.4, §8.5).
    let immutable: SmallVec<[RequestIdentity<'_>; 8]> = if config.immutable_ids.is_empty() {
        ids.iter().copied().collect()
    } else {
        ids.iter().copied().filter(|id| config.immutable_ids.contains(id.identity_type)).collect()
    };
    let candidates = walk(projection, &immutable, eligibility, explanation.as_deref_mut());
    let target = tie_break(projection, config, &candidates);
    if let Some(explanation) = explanation {
        explanation.rule = Some(match target {
            None if !config.immutable_ids.is_empty() && immutable.is_empty() => {
                Rule::SearchNeedsImmutableId
            }
            None => Rule::SearchNotFound,
            Some(_) if candidates.len() > 1 => Rule::TieBreak(config.tie_break),
            Some(_) => Rule::PriorityMatch,
        });
    }
    let answer = match target {
        None => Answer::NotFound,
        Some(profile) => {
            let view = projection.profile(profile);
            let matched = query
                .known_identities
                .iter()
                .filter(|identity| {
                    ids.iter().any(|id| {
                        id.identity_type == identity.identity_type
                            && id.id.is_some_and(|id| projection.holds(profile, id))
                    })
                })
                .cloned()
                .collect();
            Answer::Resolved(ResolvedAnswer {
                mpid: view.mpid,
                is_logged_in: config.login_ids.intersects(view.types),
                matched_identities: matched,
                created: false,
            })
        }
    };
    Decision { events: Vec::new(), outcome: None, answer }
}

/// Turns the chosen target (or a new profile) into events and an answer.
fn build(
    projection: &Projection,
    config: &ResolverConfig,
    ids: &[RequestIdentity<'_>],
    target: Option<ProfileId>,
    mpids: &mut dyn MpidSource,
) -> (Decision, bool) {
    let mut events = Vec::new();
    let (mpid, created) = match target {
        Some(profile) => (projection.mpid(profile), false),
        None => {
            let mpid = mpids.draw(projection);
            events.push(Event::ProfileCreated { mpid });
            (mpid, true)
        }
    };
    let mut types = target.map(|profile| projection.profile(profile).types).unwrap_or_default();
    let mut matched = Vec::new();
    for request_identity in ids {
        if let (Some(profile), Some(id)) = (target, request_identity.id)
            && projection.holds(profile, id)
        {
            matched.push(Identity::new(request_identity.identity_type, request_identity.value));
            continue;
        }
        if !attachable(projection, config, target, request_identity, &types) {
            continue;
        }
        types.insert(request_identity.identity_type);
        events.push(Event::IdentityAttached {
            mpid,
            identity: Identity::new(request_identity.identity_type, request_identity.value),
        });
    }
    let is_logged_in = config.login_ids.intersects(types);
    matched.sort();
    let outcome = Outcome::Resolved {
        mpid,
        is_logged_in,
        matched: matched.iter().map(|identity| identity.identity_type).collect(),
    };
    let answer = Answer::Resolved(ResolvedAnswer {
        mpid,
        is_logged_in,
        matched_identities: matched,
        created,
    });
    (Decision { events, outcome: Some(outcome), answer }, created)
}

/// Whether a request identity may be attached to the target (or the new profile).
fn attachable(
    projection: &Projection,
    config: &ResolverConfig,
    target: Option<ProfileId>,
    request_identity: &RequestIdentity<'_>,
    types: &idgraph_model::IdentityTypeSet,
) -> bool {
    let identity_type = request_identity.identity_type;
    // A unique value held elsewhere is neither moved nor copied on identify/login (spec §2.6).
    if config.unique_ids.contains(identity_type)
        && request_identity.id.is_some_and(|id| !projection.profiles_of(id).is_empty())
    {
        return false;
    }
    // An immutable type, once set, never gains another value.
    if config.immutable_ids.contains(identity_type) && types.contains(identity_type) {
        return false;
    }
    let Some(profile) = target else { return true };
    projection.n_identities_of_type(profile, identity_type)
        < config.guardrails.identities_per_type_max as usize
}

/// The anonymous profile a Profile Link login came from, for `auto_alias`.
/// Returns the source and the window start (its creation, at most 90 days back).
fn auto_alias_source(
    projection: &Projection,
    world: Option<WorldId>,
    previous_mpid: Option<Mpid>,
    config: &ResolverConfig,
) -> Option<(Mpid, Timestamp)> {
    let profile = projection.profile_id(previous_mpid?)?;
    let view = projection.profile(profile);
    let anonymous = !config.login_ids.intersects(view.types);
    let usable = Some(view.world) == world
        && anonymous
        && !view.was_alias_destination
        && !view.was_alias_source;
    usable.then_some((view.mpid, view.created))
}
