//! One line of a workload file: [`WorkloadRequest`], and the reference scheme ([`LineRef`]).
//!
//! A workload is replayed in order. Where a request needs an MPID that only the server can know
//! (the `previous_mpid` a client holds, the profile a modify targets), the line carries a
//! [`LineRef`] instead: `{"ref": 12}` means "the MPID returned for line 12". References always
//! point to an earlier line whose op is identify, login or logout (the result-bearing ops); see
//! [`crate::MpidBook`] for the runner's side.
//!
//! The generator renders lines straight from its compact `Draft` (see `render.rs`) without building
//! a `WorkloadRequest`; [`WorkloadRequest`] is the typed view for readers and for in-process
//! runners. A test checks that `serde_json` on a `WorkloadRequest` gives the same bytes as the fast
//! path, so the format has one definition: the serde attributes below.

use std::collections::BTreeMap;
use std::fmt;

use idgraph_model::{Environment, Identity, IdentityChange, IdentityType};
use serde::{Deserialize, Serialize};

/// The IDSync operation of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// `POST /v1/identify`.
    Identify,
    /// `POST /v1/login`.
    Login,
    /// `POST /v1/logout`.
    Logout,
    /// `POST /v1/search` (read-only; may answer 404, so never referenced).
    Search,
    /// `POST /v1/{mpid}/modify`.
    Modify,
}

impl Op {
    /// The wire name, as in the `op` field.
    pub const fn name(self) -> &'static str {
        match self {
            Op::Identify => "identify",
            Op::Login => "login",
            Op::Logout => "logout",
            Op::Search => "search",
            Op::Modify => "modify",
        }
    }

    /// Whether a successful request of this op returns an MPID that later lines may reference.
    /// Search is excluded because "not found" is a normal answer; modify because its MPID is the
    /// one it was given.
    pub const fn is_result_bearing(self) -> bool {
        matches!(self, Op::Identify | Op::Login | Op::Logout)
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// "The MPID returned for line `line`" (1-based line number of the same file), written
/// `{"ref": line}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineRef {
    /// The referenced line; always earlier than the referencing one.
    #[serde(rename = "ref")]
    pub line: u64,
}

/// One request of a workload: one JSON object on one line.
///
/// Fields appear in this order; optional ones are omitted when empty (and read back from either
/// absence or `null`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadRequest {
    /// The operation.
    pub op: Op,
    /// The IDSync environment (`production` or `development`).
    pub environment: Environment,
    /// identify, login, logout, search: the identities sent, keyed by IDSync wire name. At most one
    /// value per type, as IDSync requires. Empty (omitted) for modify.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub known_identities: BTreeMap<IdentityType, String>,
    /// identify, login, logout: the MPID the client holds, as a reference to the line that
    /// returned it. Omitted for a first visit or a fresh install, and always for search and modify.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_mpid: Option<LineRef>,
    /// modify only: the profile to change, as a reference to a line that returned it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mpid: Option<LineRef>,
    /// modify only: the changes. `old_value: null` adds, `new_value: null` removes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identity_changes: Vec<IdentityChange>,
    /// The client's request ID. A retried request repeats an earlier line's ID and body.
    pub request_id: String,
}

impl WorkloadRequest {
    /// `known_identities` as model identities, in identity-type order.
    pub fn identities(&self) -> Vec<Identity> {
        self.known_identities
            .iter()
            .map(|(identity_type, value)| Identity::new(*identity_type, value.clone()))
            .collect()
    }

    /// The request as one JSON line, with the trailing `\n`.
    pub fn to_json_line(&self) -> String {
        let mut line = serde_json::to_string(self).expect("a WorkloadRequest always serialises");
        line.push('\n');
        line
    }

    /// Every line this request references (`previous_mpid`, then `mpid`).
    pub fn references(&self) -> impl Iterator<Item = LineRef> + '_ {
        self.previous_mpid.iter().chain(self.mpid.iter()).copied()
    }
}
