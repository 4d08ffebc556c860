//! Explanations: why a request resolved the way it did. Built by the same code path that decides
//! (the priority walk records each step as it goes), so an explanation cannot disagree with the
//! decision it explains.

use std::fmt;

use idgraph_model::{IdentityType, Mpid};
use idgraph_projection::{ProfileId, Projection};

use crate::Answer;
use crate::config::{ResolverConfig, Strategy, TieBreak};
use crate::resolve::IdentityOp;

/// The rule that made the decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// The priority walk left exactly one eligible candidate.
    PriorityMatch,
    /// Several candidates were left after the whole priority; the tie-break chose.
    TieBreak(TieBreak),
    /// Nothing matched; a new profile was created.
    NoMatchCreatesProfile,
    /// Logout under Default, Profile Conversion or Profile Link always creates a new profile.
    LogoutCreatesNewProfile,
    /// Profile Link / Isolation: a login ID never seen creates a new known profile.
    NewLoginIdCreatesKnownProfile,
    /// Profile Conversion: a new login ID converted the client's anonymous `previous_mpid`.
    ConvertPreviousAnonymous,
    /// search: nothing matched.
    SearchNotFound,
    /// search with immutable IDs configured, but the request carries none.
    SearchNeedsImmutableId,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::PriorityMatch => f.write_str("priority match: one eligible profile left"),
            Rule::TieBreak(tie_break) => {
                write!(f, "tie after the whole priority, broken by {}", tie_break.name())
            }
            Rule::NoMatchCreatesProfile => f.write_str("no eligible profile matched: new profile"),
            Rule::LogoutCreatesNewProfile => {
                f.write_str("logout always creates a new profile under this strategy")
            }
            Rule::NewLoginIdCreatesKnownProfile => {
                f.write_str("a never-seen login ID creates a new known profile under this strategy")
            }
            Rule::ConvertPreviousAnonymous => f.write_str(
                "new login ID converts the anonymous previous_mpid (profile conversion)",
            ),
            Rule::SearchNotFound => f.write_str("search: no eligible profile matched"),
            Rule::SearchNeedsImmutableId => {
                f.write_str("search: immutable IDs are configured and the request has none")
            }
        }
    }
}

/// One step of the priority walk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The request identity looked up.
    pub identity_type: IdentityType,
    /// Its value.
    pub value: String,
    /// Every live profile holding it.
    pub holders: Vec<Mpid>,
    /// Holders excluded by login-ID protection (known profiles without a matching login ID).
    pub protected: Vec<Mpid>,
    /// The candidate set after this step (`None`: still unconstrained, nothing matched yet).
    pub candidates_after: Option<Vec<Mpid>>,
}

impl Step {
    pub(crate) fn unseen(identity_type: IdentityType, value: &str) -> Step {
        Step {
            identity_type,
            value: value.to_owned(),
            holders: Vec::new(),
            protected: Vec::new(),
            candidates_after: None,
        }
    }

    pub(crate) fn walked(
        projection: &Projection,
        identity_type: IdentityType,
        value: &str,
        holders: &[ProfileId],
        protected: &[ProfileId],
        candidates: Option<&[ProfileId]>,
    ) -> Step {
        let mpids = |profiles: &[ProfileId]| {
            let mut mpids: Vec<Mpid> =
                profiles.iter().map(|profile| projection.mpid(*profile)).collect();
            mpids.sort();
            mpids
        };
        Step {
            identity_type,
            value: value.to_owned(),
            holders: mpids(holders),
            protected: mpids(protected),
            candidates_after: candidates.map(mpids),
        }
    }
}

/// How a request was decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    /// The operation.
    pub op: IdentityOp,
    /// The strategy in force.
    pub strategy: Strategy,
    /// The identity priority in force.
    pub priority: Vec<IdentityType>,
    /// The walk, one step per prioritised request identity visited.
    pub steps: Vec<Step>,
    /// The deciding rule (absent when the request was rejected).
    pub rule: Option<Rule>,
    /// The answer.
    pub answer: Option<Answer>,
}

impl Explanation {
    pub(crate) fn new(config: &ResolverConfig, op: IdentityOp) -> Explanation {
        Explanation {
            op,
            strategy: config.strategy,
            priority: config.identity_priority.clone(),
            steps: Vec::new(),
            rule: None,
            answer: None,
        }
    }
}

fn list(mpids: &[Mpid]) -> String {
    let parts: Vec<String> = mpids.iter().map(Mpid::to_string).collect();
    format!("[{}]", parts.join(", "))
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let priority: Vec<&str> = self.priority.iter().map(|t| t.wire_name()).collect();
        writeln!(
            f,
            "{} under {} (priority {})",
            self.op.name(),
            self.strategy,
            priority.join(" > ")
        )?;
        for (idx, step) in self.steps.iter().enumerate() {
            write!(f, "  {}. {}={}: ", idx + 1, step.identity_type, step.value)?;
            if step.holders.is_empty() {
                write!(f, "no profile holds it")?;
            } else {
                write!(f, "held by {}", list(&step.holders))?;
            }
            if !step.protected.is_empty() {
                write!(f, ", login-ID protected {}", list(&step.protected))?;
            }
            match &step.candidates_after {
                Some(candidates) => writeln!(f, " -> candidates {}", list(candidates))?,
                None => writeln!(f, " -> skipped")?,
            }
        }
        if let Some(rule) = self.rule {
            writeln!(f, "  rule: {rule}")?;
        }
        match &self.answer {
            Some(Answer::Resolved(answer)) => {
                let created = if answer.created { " (new)" } else { "" };
                write!(f, "  answer: {}{created}, logged in: {}", answer.mpid, answer.is_logged_in)
            }
            Some(Answer::NotFound) => write!(f, "  answer: not found"),
            Some(other) => write!(f, "  answer: {other:?}"),
            None => write!(f, "  answer: rejected"),
        }
    }
}
