//! The traffic model: [`Generator`] decides, line by line, who does what.
//!
//! Each line is decided in a fixed order of random draws (repeat? which kind? junk? which user?),
//! so the output is a pure function of the spec. A decision produces a [`Draft`] (`draft.rs`): a
//! small `Copy` description of the request (whose login IDs, which device, which lines it
//! references). Drafts are rendered to JSON by `render.rs` without per-line allocation, or
//! converted into a [`WorkloadRequest`] for in-process use.
//!
//! The generator's memory is the user table (32 bytes per user seen, at most
//! [`WorkloadSpec::users`] of them) plus a constant: nothing grows with the number of requests.

use idgraph_model::Environment;

use crate::draft::{Draft, EmailChange, Login};
use crate::population::{Device, Keys, LOGGED_IN, UserState, environment};
use crate::render;
use crate::request::{Op, WorkloadRequest};
use crate::rng::SplitMix64;
use crate::spec::{SpecError, WorkloadSpec};
use crate::zipf::Zipf;

/// Zipf draws spent looking for a user in the state an operation wants (logged in, for a logout;
/// not logged in, for a login; signed up, for a modify) before settling for the last one drawn. A few tries keep the mix
/// exact (the op never changes) while making the wanted state the common case.
const PICK_TRIES: u32 = 4;

/// How many of the most recent original requests a repeat may copy. Retries follow their original
/// closely (a client times out and sends again), so a short window is realistic; it also bounds the
/// state kept for repeats.
pub(crate) const REPEAT_WINDOW: usize = 8;

/// What the generator has produced so far, by kind. Every field counts lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkloadStats {
    /// Lines generated.
    pub requests: u64,
    /// identify from a first-time visitor.
    pub new_visitors: u64,
    /// identify from a returning user's current device.
    pub browses: u64,
    /// login with login IDs the user never sent before (on their current device).
    pub signups: u64,
    /// login on the current device by a user who signed up before.
    pub relogins: u64,
    /// login from a device the user never used, with known login IDs.
    pub new_device_logins: u64,
    /// login on another user's current device.
    pub shared_device_logins: u64,
    /// logout (also from a device that is not logged in, when no logged-in user was found).
    pub logouts: u64,
    /// modify replacing a signed-up user's email on their known profile.
    pub email_changes: u64,
    /// modify adding an email to an anonymous user's profile (when no signed-up user was found).
    pub email_adds: u64,
    /// search.
    pub searches: u64,
    /// Re-sends of an earlier request (same body and `request_id`); not counted in the kinds above.
    pub repeats: u64,
    /// Original requests carrying a blocked placeholder value.
    pub junk: u64,
    /// New visitors that took over the slot of an existing user because the population was full.
    pub churned_users: u64,
}

/// The kinds of the mix, in the order of [`crate::Mix::weights`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Identify,
    NewVisitor,
    Login,
    Logout,
    Modify,
    Search,
}

const KINDS: [Kind; 6] =
    [Kind::Identify, Kind::NewVisitor, Kind::Login, Kind::Logout, Kind::Modify, Kind::Search];

/// A seeded, streaming workload: an iterator of [`WorkloadRequest`]s, or of JSON lines through
/// [`Generator::next_line`] (faster: no allocation per line).
#[derive(Clone)]
pub struct Generator {
    spec: WorkloadSpec,
    /// Every decision is drawn from this one stream, in a fixed order per line.
    rng: SplitMix64,
    keys: Keys,
    zipf: Zipf,
    /// The mix's weights, in [`KINDS`] order.
    kind_weights: [f64; 6],
    /// The people in each user slot; grows up to `spec.users`, in order of first appearance, so
    /// slot 0 (Zipf rank 1) is the oldest and most active user.
    users: Vec<UserState>,
    /// Persons created so far; the next person's ordinal.
    n_persons: u64,
    /// Lines generated so far; the number of the line being generated during a step.
    line: u64,
    /// The last [`REPEAT_WINDOW`] original drafts, for repeats (a ring once full). Visible to the
    /// crate's tests, which check that it stays bounded.
    pub(crate) recent: Vec<Draft>,
    recent_next: usize,
    stats: WorkloadStats,
}

impl Generator {
    /// A generator for `spec`, after checking its knobs.
    pub fn new(spec: &WorkloadSpec) -> Result<Generator, SpecError> {
        spec.validate()?;
        let kind_weights = spec.mix.weights().map(|(_, weight)| weight);
        Ok(Generator {
            spec: spec.clone(),
            rng: SplitMix64::new(spec.seed),
            keys: Keys::new(spec.seed),
            zipf: Zipf::new(spec.zipf_exponent),
            kind_weights,
            users: Vec::new(),
            n_persons: 0,
            line: 0,
            recent: Vec::with_capacity(REPEAT_WINDOW),
            recent_next: 0,
            stats: WorkloadStats::default(),
        })
    }

    /// The spec this generator follows.
    pub fn spec(&self) -> &WorkloadSpec {
        &self.spec
    }

    /// Counts of what was generated so far.
    pub fn stats(&self) -> WorkloadStats {
        self.stats
    }

    /// Lines generated so far (the number of the last line returned).
    pub fn lines_generated(&self) -> u64 {
        self.line
    }

    /// User slots currently held in memory (at most [`WorkloadSpec::users`]).
    pub fn users_in_memory(&self) -> u64 {
        self.users.len() as u64
    }

    /// Appends the next line (JSON and `\n`) to `out`; `false` when the workload is complete.
    pub fn next_line(&mut self, out: &mut Vec<u8>) -> bool {
        match self.next_draft() {
            Some(draft) => {
                render::write_json_line(&draft, out);
                true
            }
            None => false,
        }
    }

    /// Decides the next line.
    pub(crate) fn next_draft(&mut self) -> Option<Draft> {
        if self.line >= self.spec.requests {
            return None;
        }
        self.line += 1;
        self.stats.requests += 1;
        if !self.recent.is_empty() && self.rng.chance(self.spec.repeat_request_id_rate) {
            let draft = self.recent[self.rng.below(self.recent.len() as u64) as usize];
            self.stats.repeats += 1;
            return Some(draft);
        }
        let kind = self.pick_kind();
        let junk = self.rng.chance(self.spec.junk_rate);
        let mut draft = match kind {
            _ if self.users.is_empty() => self.new_visitor(),
            Kind::Identify => self.browse(),
            Kind::NewVisitor => self.new_visitor(),
            Kind::Login => self.login(),
            Kind::Logout => self.logout(),
            Kind::Modify => self.modify(junk),
            Kind::Search => self.search(),
        };
        if junk {
            self.stats.junk += 1;
            if draft.change.is_none() {
                let platform = draft.device.map(|device| device.platform);
                let choice = self.rng.below(Device::junk_choices(platform));
                draft.junk = Some(Device::junk_index(platform, choice));
            }
        }
        self.remember(draft);
        Some(draft)
    }

    fn pick_kind(&mut self) -> Kind {
        let total: f64 = self.kind_weights.iter().sum();
        let draw = self.rng.next_f64() * total;
        let mut cumulative = 0.0;
        for (kind, &weight) in KINDS.iter().zip(&self.kind_weights) {
            cumulative += weight;
            if draw < cumulative {
                return *kind;
            }
        }
        // Rounding left the draw at the very top: the last kind with any weight.
        let last = self.kind_weights.iter().rposition(|&weight| weight > 0.0);
        KINDS[last.expect("validation rejects an all-zero mix")]
    }

    fn remember(&mut self, draft: Draft) {
        if self.recent.len() < REPEAT_WINDOW {
            self.recent.push(draft);
        } else {
            self.recent[self.recent_next] = draft;
        }
        self.recent_next = (self.recent_next + 1) % REPEAT_WINDOW;
    }

    /// A seen user's slot, preferring one for which `wanted` holds (see [`PICK_TRIES`]).
    fn pick_user(&mut self, wanted: impl Fn(&UserState) -> bool) -> usize {
        let n_users = self.users.len() as u64;
        let mut slot = 0;
        for _ in 0..PICK_TRIES {
            slot = (self.zipf.sample(n_users, &mut self.rng) - 1) as usize;
            if wanted(&self.users[slot]) {
                break;
            }
        }
        slot
    }

    fn environment_of(&self, user: &UserState) -> Environment {
        environment(self.keys.person(user.ordinal), self.spec.development_rate)
    }

    fn login_of(&self, user: &UserState) -> Login {
        Login { person_key: self.keys.person(user.ordinal), email_version: user.email_version }
    }

    fn current_device_of(&self, user: &UserState) -> Device {
        Device::new(self.keys.device(user.ordinal, user.device_index), &self.spec.platforms)
    }

    /// A draft for `op` from `user`'s current device, carrying `login` and `previous`.
    fn device_draft(
        &self,
        op: Op,
        user: &UserState,
        login: Option<Login>,
        previous: Option<u64>,
    ) -> Draft {
        Draft {
            op,
            environment: self.environment_of(user),
            request_key: self.keys.request(self.line),
            login,
            device: Some(self.current_device_of(user)),
            previous,
            change: None,
            junk: None,
        }
    }

    /// First visit: a new person in a free slot, or in a random occupied one when the population is
    /// full (churn); anonymous identify with device IDs only.
    fn new_visitor(&mut self) -> Draft {
        let ordinal = self.n_persons;
        self.n_persons += 1;
        let user = UserState::first_visit(ordinal, self.line);
        if (self.users.len() as u64) < self.spec.users {
            self.users.push(user);
        } else {
            self.stats.churned_users += 1;
            let slot = self.rng.below(self.spec.users) as usize;
            self.users[slot] = user;
        }
        self.stats.new_visitors += 1;
        self.device_draft(Op::Identify, &user, None, None)
    }

    /// Browsing: identify from the current device, with login IDs when logged in there.
    fn browse(&mut self) -> Draft {
        let slot = self.pick_user(|_| true);
        let user = self.users[slot];
        let login = user.is_logged_in().then(|| self.login_of(&user));
        let draft = self.device_draft(Op::Identify, &user, login, Some(user.last_line));
        let user = &mut self.users[slot];
        user.last_line = self.line;
        if login.is_some() {
            user.known_line = self.line;
        }
        self.stats.browses += 1;
        draft
    }

    fn login(&mut self) -> Draft {
        let draw = self.rng.next_f64();
        let shared_rate = self.spec.shared_device_login_rate;
        let special = if draw < shared_rate {
            self.shared_device_login()
        } else if draw < shared_rate + self.spec.new_device_login_rate {
            self.new_device_login()
        } else {
            None
        };
        special.unwrap_or_else(|| self.current_device_login())
    }

    /// Signup or re-login on the current device, preferring a user who is not logged in.
    fn current_device_login(&mut self) -> Draft {
        let slot = self.pick_user(|user| !user.is_logged_in());
        let user = self.users[slot];
        if user.is_signed_up() {
            self.stats.relogins += 1;
        } else {
            self.stats.signups += 1;
        }
        let login = Some(self.login_of(&user));
        let draft = self.device_draft(Op::Login, &user, login, Some(user.last_line));
        let user = &mut self.users[slot];
        user.flags |= LOGGED_IN;
        user.last_line = self.line;
        user.known_line = self.line;
        draft
    }

    /// A signed-up user on a fresh install: known login IDs, a new device, no `previous_mpid`.
    /// `None` (fall back to a current-device login) when no signed-up user was found.
    fn new_device_login(&mut self) -> Option<Draft> {
        let slot = self.pick_user(UserState::is_signed_up);
        if !self.users[slot].is_signed_up() {
            return None;
        }
        let user = &mut self.users[slot];
        user.device_index = user.device_index.wrapping_add(1);
        user.flags |= LOGGED_IN;
        user.last_line = self.line;
        user.known_line = self.line;
        let user = *user;
        self.stats.new_device_logins += 1;
        Some(self.device_draft(Op::Login, &user, Some(self.login_of(&user)), None))
    }

    /// A user logs in on another user's current device (same environment). The device's session
    /// now belongs to the visitor, so its owner is no longer logged in there. `None` when no other
    /// user in the same environment was found.
    fn shared_device_login(&mut self) -> Option<Draft> {
        let visitor_slot = self.pick_user(|_| true);
        let visitor = self.users[visitor_slot];
        let visitor_environment = self.environment_of(&visitor);
        let (keys, development_rate) = (self.keys.clone(), self.spec.development_rate);
        let fits = move |owner: &UserState| {
            owner.ordinal != visitor.ordinal
                && environment(keys.person(owner.ordinal), development_rate) == visitor_environment
        };
        let owner_slot = self.pick_user(&fits);
        let owner = self.users[owner_slot];
        if !fits(&owner) {
            return None;
        }
        let login = Some(self.login_of(&visitor));
        let draft = self.device_draft(Op::Login, &owner, login, Some(owner.last_line));
        self.users[owner_slot].last_line = self.line;
        self.users[owner_slot].flags &= !LOGGED_IN;
        self.users[visitor_slot].known_line = self.line;
        self.stats.shared_device_logins += 1;
        Some(draft)
    }

    /// logout from the current device, preferring a logged-in user.
    fn logout(&mut self) -> Draft {
        let slot = self.pick_user(UserState::is_logged_in);
        let user = self.users[slot];
        let draft = self.device_draft(Op::Logout, &user, None, Some(user.last_line));
        let user = &mut self.users[slot];
        user.flags &= !LOGGED_IN;
        user.last_line = self.line;
        self.stats.logouts += 1;
        draft
    }

    /// modify, preferring a signed-up user: their email changes on their known profile (as a
    /// backend does, whatever the user's device session); a never-signed-up user's email is added
    /// to the profile of their device. A `junk` modify sends email `undefined` as the new value
    /// (the server rejects it), and the user's email stays as it was.
    fn modify(&mut self, junk: bool) -> Draft {
        let slot = self.pick_user(UserState::is_signed_up);
        let user = self.users[slot];
        let person_key = self.keys.person(user.ordinal);
        let change = if user.is_signed_up() {
            self.stats.email_changes += 1;
            let new_version = user.email_version.wrapping_add(1);
            if !junk {
                self.users[slot].email_version = new_version;
            }
            EmailChange {
                target: user.known_line,
                person_key,
                old_version: Some(user.email_version),
                new_version,
            }
        } else {
            self.stats.email_adds += 1;
            EmailChange {
                target: user.last_line,
                person_key,
                old_version: None,
                new_version: user.email_version,
            }
        };
        Draft {
            op: Op::Modify,
            environment: self.environment_of(&user),
            request_key: self.keys.request(self.line),
            login: None,
            device: None,
            previous: None,
            change: Some(change),
            junk: junk.then_some(0),
        }
    }

    /// search by login IDs (signed-up users) or by device IDs (anonymous ones).
    fn search(&mut self) -> Draft {
        let slot = self.pick_user(|_| true);
        let user = self.users[slot];
        self.stats.searches += 1;
        let mut draft = self.device_draft(Op::Search, &user, None, None);
        if user.is_signed_up() {
            draft.login = Some(self.login_of(&user));
            draft.device = None;
        }
        draft
    }
}

/// Summarises instead of deriving: the user table can hold millions of entries.
impl std::fmt::Debug for Generator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generator")
            .field("spec", &self.spec)
            .field("lines_generated", &self.line)
            .field("users_in_memory", &self.users.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Iterator for Generator {
    type Item = WorkloadRequest;

    fn next(&mut self) -> Option<WorkloadRequest> {
        self.next_draft().map(|draft| render::to_request(&draft))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let remaining = usize::try_from(self.spec.requests - self.line).unwrap_or(usize::MAX);
        (remaining, Some(remaining))
    }
}
