//! A decided request before rendering: [`Draft`] and its parts ([`Login`], [`EmailChange`]).
//!
//! The generator (`generator.rs`) produces drafts and the renderer (`render.rs`) consumes them.
//! Both import them from here, so imports point one way: `generator → render → draft` (and
//! `generator → draft`). A draft is small and `Copy`, so a repeat is a copy of one.

use idgraph_model::Environment;

use crate::population::{Device, Identities, JUNK, Value};
use crate::request::Op;

/// A decided request, before rendering. Everything needed to render it is here, so a repeat is a
/// copy of its draft.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Draft {
    pub(crate) op: Op,
    pub(crate) environment: Environment,
    /// The key behind `request_id` (derived from the line the request was first sent on).
    pub(crate) request_key: u64,
    /// Whose login IDs the request carries.
    pub(crate) login: Option<Login>,
    /// Which device's identifiers the request carries.
    pub(crate) device: Option<Device>,
    /// `previous_mpid`, as a line number.
    pub(crate) previous: Option<u64>,
    /// modify: the email change.
    pub(crate) change: Option<EmailChange>,
    /// Index into `JUNK` of the placeholder this request carries (modify: its new email).
    pub(crate) junk: Option<usize>,
}

/// A person's login IDs as of one request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Login {
    pub(crate) person_key: u64,
    pub(crate) email_version: u16,
}

/// A modify's single change, to the `email` of `person_key`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EmailChange {
    /// The line whose result is the profile to modify.
    pub(crate) target: u64,
    pub(crate) person_key: u64,
    /// `None` adds the email; otherwise the version replaced.
    pub(crate) old_version: Option<u16>,
    pub(crate) new_version: u16,
}

impl Draft {
    /// The identities the request carries, junk applied.
    pub(crate) fn identities(&self) -> Identities {
        let mut identities = Identities::new();
        if let Some(login) = self.login {
            identities.add_login(login.person_key, login.email_version);
        }
        if let Some(device) = self.device {
            identities.add_device(device);
        }
        if let (Some(junk_idx), None) = (self.junk, self.change) {
            let (identity_type, text) = JUNK[junk_idx];
            identities.set(identity_type, Value::Fixed(text));
        }
        identities
    }
}
