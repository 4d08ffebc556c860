//! A seeded generator of *valid* logs (feature `generate`): every event names profiles that exist
//! in its world and detaches only identities that are attached. For tests and benchmarks of the
//! projection; the request-level workload generator lives in the CLI (`idgraph gen`).

use idgraph_model::{
    DetachReason, Entry, Environment, Event, Identity, IdentityRequest, IdentityType, Mpid,
    Operation, Outcome, Request, Timestamp,
};

/// splitmix64: tiny, seeded, and good enough for test data.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator with this seed.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number below `n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

#[derive(Debug)]
struct GenProfile {
    mpid: Mpid,
    world: usize,
    identities: Vec<Identity>,
}

/// A stream of valid entries: iterate it for as many as you need (constant memory per profile).
#[derive(Debug)]
pub struct LogGenerator {
    rng: Rng,
    time: i64,
    profiles: Vec<GenProfile>,
    n_values: u64,
}

const WORLDS: [(&str, Environment); 3] = [
    ("shop", Environment::Production),
    ("shop", Environment::Development),
    ("couriers", Environment::Production),
];

impl LogGenerator {
    /// A generator with this seed.
    pub fn new(seed: u64) -> LogGenerator {
        LogGenerator {
            rng: Rng::new(seed),
            time: 1_700_000_000_000_000,
            profiles: Vec::new(),
            n_values: 0,
        }
    }

    fn fresh_identity(&mut self) -> Identity {
        self.n_values += 1;
        let n = self.n_values;
        match self.rng.below(4) {
            0 => Identity::new(IdentityType::Email, format!("user{n}@example.com")),
            1 => Identity::new(IdentityType::CustomerId, format!("C{n:08}")),
            2 => Identity::new(
                IdentityType::IosIdfv,
                format!("{:016X}-{n:08X}", self.rng.next_u64()),
            ),
            _ => Identity::new(IdentityType::DeviceApplicationStamp, format!("das-{n:012x}")),
        }
    }

    fn fresh_mpid(&mut self) -> Mpid {
        // Collisions among random 64-bit values are negligible at the sizes generated (a 10M-profile
        // log has a chance of about 3e-6); 0 is skipped.
        loop {
            if let Some(mpid) = Mpid::new(self.rng.next_u64() as i64) {
                return mpid;
            }
        }
    }

    fn next_entry(&mut self) -> Entry {
        self.time += 1 + self.rng.below(1_000) as i64;
        let roll = self.rng.below(100);
        let (world, events, outcome_idx) = if self.profiles.is_empty() || roll < 35 {
            self.create()
        } else {
            let idx = self.rng.below(self.profiles.len() as u64) as usize;
            match roll {
                35..=74 => (self.profiles[idx].world, Vec::new(), idx),
                75..=87 => self.attach(idx),
                88..=94 => self.detach(idx),
                95..=97 => self.steal(idx),
                _ => self.alias(idx),
            }
        };
        let (scope, environment) = WORLDS[world];
        let outcome_mpid = self.profiles[outcome_idx].mpid;
        let known_identities =
            self.profiles[outcome_idx].identities.iter().take(2).cloned().collect();
        Entry {
            recorded_at: Timestamp(self.time),
            request: Request {
                request_id: Some(format!("r{:x}", self.rng.next_u64())),
                workspace: scope.to_owned(),
                scope: scope.to_owned(),
                environment,
                operation: Operation::Identify(IdentityRequest {
                    known_identities,
                    previous_mpid: None,
                }),
            },
            events,
            outcome: Outcome::Resolved {
                mpid: outcome_mpid,
                is_logged_in: false,
                matched: Vec::new(),
            },
        }
    }

    fn create(&mut self) -> (usize, Vec<Event>, usize) {
        let world = if self.rng.below(10) == 0 { 1 + self.rng.below(2) as usize } else { 0 };
        let mpid = self.fresh_mpid();
        let mut events = vec![Event::ProfileCreated { mpid }];
        let mut identities = Vec::new();
        for _ in 0..1 + self.rng.below(2) {
            let identity = self.fresh_identity();
            events.push(Event::IdentityAttached { mpid, identity: identity.clone() });
            identities.push(identity);
        }
        self.profiles.push(GenProfile { mpid, world, identities });
        (world, events, self.profiles.len() - 1)
    }

    fn attach(&mut self, idx: usize) -> (usize, Vec<Event>, usize) {
        let identity = self.fresh_identity();
        let profile = &mut self.profiles[idx];
        profile.identities.push(identity.clone());
        (profile.world, vec![Event::IdentityAttached { mpid: profile.mpid, identity }], idx)
    }

    fn detach(&mut self, idx: usize) -> (usize, Vec<Event>, usize) {
        let replacement = self.fresh_identity();
        let profile = &mut self.profiles[idx];
        let mut events = Vec::new();
        if let Some(identity) = profile.identities.pop() {
            events.push(Event::IdentityDetached {
                mpid: profile.mpid,
                identity,
                reason: DetachReason::Modified,
            });
        }
        events.push(Event::IdentityAttached { mpid: profile.mpid, identity: replacement.clone() });
        profile.identities.push(replacement);
        (profile.world, events, idx)
    }

    /// Moves a unique identity from another profile of the same world to this one.
    fn steal(&mut self, idx: usize) -> (usize, Vec<Event>, usize) {
        let (world, mpid) = (self.profiles[idx].world, self.profiles[idx].mpid);
        let donor =
            (0..8).map(|_| self.rng.below(self.profiles.len() as u64) as usize).find(|&d| {
                d != idx
                    && self.profiles[d].world == world
                    && !self.profiles[d].identities.is_empty()
            });
        let Some(donor) = donor else { return (world, Vec::new(), idx) };
        let donor_profile = &mut self.profiles[donor];
        let identity = donor_profile.identities.remove(0);
        let events = vec![
            Event::IdentityDetached {
                mpid: donor_profile.mpid,
                identity: identity.clone(),
                reason: DetachReason::MovedTo { mpid },
            },
            Event::IdentityAttached { mpid, identity: identity.clone() },
        ];
        self.profiles[idx].identities.push(identity);
        (world, events, idx)
    }

    fn alias(&mut self, idx: usize) -> (usize, Vec<Event>, usize) {
        let (world, destination) = (self.profiles[idx].world, self.profiles[idx].mpid);
        let source = (0..8)
            .map(|_| self.rng.below(self.profiles.len() as u64) as usize)
            .find(|&s| s != idx && self.profiles[s].world == world);
        let Some(source) = source else { return (world, Vec::new(), idx) };
        let source = self.profiles[source].mpid;
        let start = Timestamp(self.time - 1_000_000);
        let events =
            vec![Event::AliasRecorded { source, destination, start, end: Timestamp(self.time) }];
        (world, events, idx)
    }
}

impl Iterator for LogGenerator {
    type Item = Entry;
    fn next(&mut self) -> Option<Entry> {
        Some(self.next_entry())
    }
}
