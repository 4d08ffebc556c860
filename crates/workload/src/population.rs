//! The simulated people and devices: what is stored per user, and how identifier values are derived.
//!
//! Only what changes is stored ([`UserState`], 32 bytes per user slot). Everything else about a
//! person or a device (customer ID, email, platform, device identifiers, environment) is a pure
//! function of the seed and a few integers, recomputed when a request is rendered.
//!
//! ## Uniqueness
//! A *person* is numbered by the order of first appearance (its ordinal, below
//! [`crate::REQUESTS_MAX`] < 2^48). A *device* is numbered `ordinal << 16 | device_index`. Every
//! value is rendered from `mix64(number ^ key)`, and `mix64` is a bijection on `u64`, so two people
//! never share a customer ID or an email, and two devices never share a device identifier: a
//! collision in the workload would otherwise merge profiles that the traffic model keeps apart.

use idgraph_model::{Environment, IdentityType};

use crate::rng::{derive_key, mix64, unit_from_hash};
use crate::spec::Platforms;

/// Share of iOS devices whose users allow tracking (App Tracking Transparency), which is when the
/// SDK sends a real `ios_idfa`. Public opt-in surveys put it at a quarter to a third.
const IOS_IDFA_SHARE: f64 = 0.25;

/// Share of Android devices that send an `android_aaid` (the rest have opted out or lack Google
/// Play services).
const ANDROID_AAID_SHARE: f64 = 0.9;

/// The all-zero advertising ID that iOS and Android report when tracking is limited.
pub(crate) const ZERO_AD_ID: &str = "00000000-0000-0000-0000-000000000000";

/// Blocked placeholder values the generator injects (see `docs/resolution.md`, Guardrails): the
/// first [`JUNK_ANY_PLATFORM`] apply to every request, then one per platform that has an
/// advertising ID. A junk modify always uses entry 0 (email `undefined`).
pub(crate) const JUNK: [(IdentityType, &str); 6] = [
    (IdentityType::Email, "undefined"),
    (IdentityType::Email, "null"),
    (IdentityType::CustomerId, "0"),
    (IdentityType::CustomerId, "[object Object]"),
    (IdentityType::IosIdfa, ZERO_AD_ID),
    (IdentityType::AndroidAaid, ZERO_AD_ID),
];
const JUNK_ANY_PLATFORM: usize = 4;
const JUNK_IOS: usize = 4;
const JUNK_ANDROID: usize = 5;

/// Bit in [`UserState::flags`]: the person's current device holds their logged-in session, so the
/// result of [`UserState::last_line`] is their known profile.
pub(crate) const LOGGED_IN: u8 = 1;

/// What the generator remembers about the person in one user slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UserState {
    /// Which person occupies the slot (changes when a new visitor takes the slot over).
    pub(crate) ordinal: u64,
    /// The last line whose result is the MPID the person's current device holds: the
    /// `previous_mpid` of its next request. Always a line with a result-bearing operation.
    pub(crate) last_line: u64,
    /// The last line that carried the person's login IDs (and so returned their known profile);
    /// 0 while they have never signed up. The target of their modify requests.
    pub(crate) known_line: u64,
    /// The person's current device. Wraps after 65 536 devices, reusing old device identifiers.
    pub(crate) device_index: u16,
    /// How many times the email changed; part of the email value. Wraps, like `device_index`.
    pub(crate) email_version: u16,
    /// [`LOGGED_IN`].
    pub(crate) flags: u8,
}

const _: () = assert!(std::mem::size_of::<UserState>() == 32, "docs promise 32 bytes per user");

impl UserState {
    /// A person seen for the first time, on `line`, from their first device.
    pub(crate) fn first_visit(ordinal: u64, line: u64) -> UserState {
        UserState {
            ordinal,
            last_line: line,
            known_line: 0,
            device_index: 0,
            email_version: 0,
            flags: 0,
        }
    }

    pub(crate) fn is_logged_in(&self) -> bool {
        self.flags & LOGGED_IN != 0
    }

    /// Whether the person has ever sent login IDs.
    pub(crate) fn is_signed_up(&self) -> bool {
        self.known_line != 0
    }
}

/// Per-purpose keys derived from the seed, so that different kinds of values look unrelated.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    person: u64,
    device: u64,
    request: u64,
}

impl Keys {
    pub(crate) fn new(seed: u64) -> Keys {
        Keys {
            person: derive_key(seed, 1),
            device: derive_key(seed, 2),
            request: derive_key(seed, 3),
        }
    }

    /// The key all of a person's values derive from; unique per ordinal.
    pub(crate) fn person(&self, ordinal: u64) -> u64 {
        mix64(ordinal ^ self.person)
    }

    /// The key of a person's device; unique per `(ordinal, device_index)`.
    pub(crate) fn device(&self, ordinal: u64, device_index: u16) -> u64 {
        mix64(((ordinal << 16) | u64::from(device_index)) ^ self.device)
    }

    /// The key behind the `request_id` of the request first sent on `line`; unique per line.
    pub(crate) fn request(&self, line: u64) -> u64 {
        mix64(line ^ self.request)
    }
}

/// Salts that separate the values derived from one key.
mod salt {
    pub(super) const CUSTOMER_ID: u64 = 0x11;
    pub(super) const EMAIL: u64 = 0x12;
    pub(super) const ENVIRONMENT: u64 = 0x13;
    pub(super) const PLATFORM: u64 = 0x21;
    pub(super) const AD_ID_ALLOWED: u64 = 0x22;
    pub(super) const IOS_IDFV: u64 = 0x31;
    pub(super) const IOS_IDFA: u64 = 0x32;
    pub(super) const STAMP: u64 = 0x33;
    pub(super) const ANDROID_UUID: u64 = 0x34;
    pub(super) const ANDROID_AAID: u64 = 0x35;
    pub(super) const UUID_HIGH: u64 = 0x41;
}

/// The environment all of a person's requests go to.
pub(crate) fn environment(person_key: u64, development_rate: f64) -> Environment {
    if unit_from_hash(mix64(person_key ^ salt::ENVIRONMENT)) < development_rate {
        Environment::Development
    } else {
        Environment::Production
    }
}

/// A device's platform, which decides its identity types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Platform {
    Ios,
    Android,
    Web,
}

/// A device, with the attributes derived from its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Device {
    pub(crate) key: u64,
    pub(crate) platform: Platform,
    /// Whether the device sends a real advertising ID (`ios_idfa` or `android_aaid`).
    pub(crate) sends_ad_id: bool,
}

impl Device {
    pub(crate) fn new(key: u64, platforms: &Platforms) -> Device {
        let total = platforms.ios + platforms.android + platforms.web;
        let draw = unit_from_hash(mix64(key ^ salt::PLATFORM)) * total;
        let platform = if draw < platforms.ios {
            Platform::Ios
        } else if draw < platforms.ios + platforms.android || platforms.web == 0.0 {
            Platform::Android
        } else {
            Platform::Web
        };
        let ad_id_share = match platform {
            Platform::Ios => IOS_IDFA_SHARE,
            Platform::Android => ANDROID_AAID_SHARE,
            Platform::Web => 0.0,
        };
        let sends_ad_id = unit_from_hash(mix64(key ^ salt::AD_ID_ALLOWED)) < ad_id_share;
        Device { key, platform, sends_ad_id }
    }

    /// The index in [`JUNK`] of the `choice`-th junk value this device can carry, where `choice`
    /// is below [`Device::junk_choices`].
    pub(crate) fn junk_index(platform: Option<Platform>, choice: u64) -> usize {
        match (platform, choice as usize) {
            (_, idx) if idx < JUNK_ANY_PLATFORM => idx,
            (Some(Platform::Ios), _) => JUNK_IOS,
            (Some(Platform::Android), _) => JUNK_ANDROID,
            (_, idx) => unreachable!("junk choice {idx} beyond the platform's"),
        }
    }

    /// How many junk values a request from this platform (or with no device) can carry.
    pub(crate) fn junk_choices(platform: Option<Platform>) -> u64 {
        match platform {
            Some(Platform::Ios | Platform::Android) => JUNK_ANY_PLATFORM as u64 + 1,
            Some(Platform::Web) | None => JUNK_ANY_PLATFORM as u64,
        }
    }
}

/// One identity value, described by the integers it derives from and rendered on demand. Copying
/// it is free; rendering writes straight into an output buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Value {
    /// `c` and 16 hex digits.
    CustomerId { person_key: u64 },
    /// `u` and 16 hex digits, `.version` when the email changed, `@example.com`.
    Email { person_key: u64, version: u16 },
    /// A UUID-shaped identifier; `upper` for Apple's upper-case style.
    Uuid { key: u64, salt: u64, upper: bool },
    /// 16 lower-case hex digits (the shape of `Settings.Secure.ANDROID_ID`).
    Hex16 { key: u64, salt: u64 },
    /// A fixed string: a junk placeholder.
    Fixed(&'static str),
}

impl Value {
    /// Appends the value's characters, unquoted. Every rendered value is printable ASCII that
    /// needs no JSON escaping (a test checks this for the fixed ones).
    pub(crate) fn render(self, out: &mut Vec<u8>) {
        match self {
            Value::CustomerId { person_key } => {
                out.push(b'c');
                push_hex16(out, mix64(person_key ^ salt::CUSTOMER_ID));
            }
            Value::Email { person_key, version } => {
                out.push(b'u');
                push_hex16(out, mix64(person_key ^ salt::EMAIL));
                if version > 0 {
                    out.push(b'.');
                    push_decimal(out, u64::from(version));
                }
                out.extend_from_slice(b"@example.com");
            }
            Value::Uuid { key, salt, upper } => {
                // The low half is a bijection of the (unique) key, so the UUID is unique too.
                let low = mix64(key ^ salt);
                push_uuid(out, mix64(low ^ salt::UUID_HIGH), low, upper);
            }
            Value::Hex16 { key, salt } => push_hex16(out, mix64(key ^ salt)),
            Value::Fixed(text) => out.extend_from_slice(text.as_bytes()),
        }
    }

    /// The value as a `String` (for [`crate::WorkloadRequest`]).
    pub(crate) fn to_string_value(self) -> String {
        let mut bytes = Vec::with_capacity(40);
        self.render(&mut bytes);
        String::from_utf8(bytes).expect("rendered values are ASCII")
    }
}

/// The identities of one request, in identity-type code order (the order a `BTreeMap` keyed by
/// [`IdentityType`] iterates in, so both renderings agree). At most one value per type.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Identities {
    items: [(IdentityType, Value); IDENTITIES_PER_REQUEST_MAX],
    len: usize,
}

/// Most identities one generated request carries: two login IDs, three device IDs, one junk.
const IDENTITIES_PER_REQUEST_MAX: usize = 6;

impl Identities {
    pub(crate) fn new() -> Identities {
        Identities { items: [(IdentityType::Other, Value::Fixed("")); 6], len: 0 }
    }

    /// The person's login IDs: `customerid` and `email`.
    pub(crate) fn add_login(&mut self, person_key: u64, email_version: u16) {
        self.set(IdentityType::CustomerId, Value::CustomerId { person_key });
        self.set(IdentityType::Email, Value::Email { person_key, version: email_version });
    }

    /// The device's identifiers, by platform.
    pub(crate) fn add_device(&mut self, device: Device) {
        let key = device.key;
        let stamp = Value::Uuid { key, salt: salt::STAMP, upper: false };
        self.set(IdentityType::DeviceApplicationStamp, stamp);
        match device.platform {
            Platform::Ios => {
                self.set(
                    IdentityType::IosIdfv,
                    Value::Uuid { key, salt: salt::IOS_IDFV, upper: true },
                );
                if device.sends_ad_id {
                    let idfa = Value::Uuid { key, salt: salt::IOS_IDFA, upper: true };
                    self.set(IdentityType::IosIdfa, idfa);
                }
            }
            Platform::Android => {
                self.set(IdentityType::AndroidUuid, Value::Hex16 { key, salt: salt::ANDROID_UUID });
                if device.sends_ad_id {
                    let aaid = Value::Uuid { key, salt: salt::ANDROID_AAID, upper: false };
                    self.set(IdentityType::AndroidAaid, aaid);
                }
            }
            Platform::Web => {}
        }
    }

    /// Sets (or replaces) the value of `identity_type`, keeping code order.
    pub(crate) fn set(&mut self, identity_type: IdentityType, value: Value) {
        if let Some(item) = self.items[..self.len].iter_mut().find(|(t, _)| *t == identity_type) {
            item.1 = value;
            return;
        }
        assert!(self.len < IDENTITIES_PER_REQUEST_MAX, "too many identities in one request");
        let mut idx = self.len;
        while idx > 0 && self.items[idx - 1].0 > identity_type {
            self.items[idx] = self.items[idx - 1];
            idx -= 1;
        }
        self.items[idx] = (identity_type, value);
        self.len += 1;
    }

    pub(crate) fn as_slice(&self) -> &[(IdentityType, Value)] {
        &self.items[..self.len]
    }
}

const HEX_LOWER: &[u8; 16] = b"0123456789abcdef";
const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// The 16 hex digits of `value`, most significant first.
fn hex_digits(value: u64, upper: bool) -> [u8; 16] {
    let alphabet = if upper { HEX_UPPER } else { HEX_LOWER };
    let mut digits = [0u8; 16];
    for (idx, digit) in digits.iter_mut().enumerate() {
        *digit = alphabet[((value >> ((15 - idx) * 4)) & 0xf) as usize];
    }
    digits
}

/// Appends the 16 lower-case hex digits of `value`.
fn push_hex16(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(&hex_digits(value, false));
}

/// Appends `high` and `low` as a UUID: 8-4-4-4-12 hex digits. Assembled on the stack and appended
/// at once, because identifiers are most of a workload's bytes.
pub(crate) fn push_uuid(out: &mut Vec<u8>, high: u64, low: u64, upper: bool) {
    let (high, low) = (hex_digits(high, upper), hex_digits(low, upper));
    let mut uuid = [b'-'; 36];
    uuid[0..8].copy_from_slice(&high[0..8]);
    uuid[9..13].copy_from_slice(&high[8..12]);
    uuid[14..18].copy_from_slice(&high[12..16]);
    uuid[19..23].copy_from_slice(&low[0..4]);
    uuid[24..36].copy_from_slice(&low[4..16]);
    out.extend_from_slice(&uuid);
}

/// Appends `value` in decimal.
pub(crate) fn push_decimal(out: &mut Vec<u8>, mut value: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(value: Value) -> String {
        value.to_string_value()
    }

    #[test]
    fn values_have_their_documented_shapes() {
        let keys = Keys::new(0);
        let person_key = keys.person(7);
        let customer_id = render(Value::CustomerId { person_key });
        assert!(customer_id.starts_with('c') && customer_id.len() == 17, "{customer_id}");
        let email = render(Value::Email { person_key, version: 3 });
        assert!(email.starts_with('u') && email.ends_with(".3@example.com"), "{email}");
        let uuid = render(Value::Uuid { key: keys.device(7, 0), salt: 1, upper: true });
        assert_eq!(uuid.len(), 36);
        assert_eq!(uuid.matches('-').count(), 4);
        assert_eq!(uuid, uuid.to_uppercase());
        let mut decimal = Vec::new();
        push_decimal(&mut decimal, 0);
        push_decimal(&mut decimal, u64::MAX);
        assert_eq!(decimal, b"018446744073709551615");
    }

    #[test]
    fn fixed_values_need_no_json_escaping() {
        for (_, text) in JUNK {
            assert_eq!(serde_json::to_string(text).unwrap(), format!("\"{text}\""));
        }
    }

    #[test]
    fn identities_stay_in_code_order_with_one_value_per_type() {
        let keys = Keys::new(5);
        let mut identities = Identities::new();
        let device = Device { key: keys.device(1, 0), platform: Platform::Ios, sends_ad_id: true };
        identities.add_device(device);
        identities.add_login(keys.person(1), 0);
        identities.set(IdentityType::IosIdfa, Value::Fixed(ZERO_AD_ID));
        let types: Vec<&str> = identities.as_slice().iter().map(|(t, _)| t.wire_name()).collect();
        assert_eq!(
            types,
            ["customerid", "email", "ios_idfa", "ios_idfv", "device_application_stamp"]
        );
        assert_eq!(identities.as_slice()[2].1, Value::Fixed(ZERO_AD_ID));
    }

    #[test]
    fn platforms_follow_their_weights() {
        let keys = Keys::new(9);
        let platforms = Platforms { ios: 1.0, android: 1.0, web: 2.0 };
        let n_web = (0..10_000u64)
            .filter(|&ordinal| {
                Device::new(keys.device(ordinal, 0), &platforms).platform == Platform::Web
            })
            .count();
        assert!((4_700..5_300).contains(&n_web), "{n_web}");
        let only_web = Platforms { ios: 0.0, android: 0.0, web: 1.0 };
        assert_eq!(Device::new(keys.device(3, 0), &only_web).platform, Platform::Web);
    }
}
