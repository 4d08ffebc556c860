//! Identity types, identities and the MPID.
//!
//! An *identity* is a `(type, value)` pair such as `email=ed.hyde@example.com`. The set of types is
//! closed: it is the set IDSync accepts in `known_identities` (spec §1.7). Every type has a wire name
//! (what the HTTP API and configuration files say) and a stable one-byte code (what the log stores).
//! Codes are part of the on-disk format and never change meaning; user-identity codes equal the
//! SDK enum values so that a reader of a raw log can cross-check them with SDK documentation.

use std::fmt;
use std::num::NonZeroI64;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

macro_rules! identity_types {
    ($($variant:ident = $code:literal, $wire:literal, $kind:ident;)*) => {
        /// The kind of an identifier, as IDSync names it.
        ///
        /// Serialised as its wire name in human-readable formats (JSON, TOML) and as its one-byte
        /// code in the binary log format.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[repr(u8)]
        pub enum IdentityType {
            $(#[doc = concat!("`", $wire, "`")] $variant = $code,)*
        }

        impl IdentityType {
            /// Every identity type, in code order.
            pub const ALL: &'static [IdentityType] = &[$(IdentityType::$variant,)*];

            /// The name used in IDSync requests and responses, e.g. `customerid`.
            pub const fn wire_name(self) -> &'static str {
                match self { $(IdentityType::$variant => $wire,)* }
            }

            /// The stable one-byte code stored in the log.
            pub const fn code(self) -> u8 {
                self as u8
            }

            /// The type with this code, if any.
            pub const fn from_code(code: u8) -> Option<IdentityType> {
                match code { $($code => Some(IdentityType::$variant),)* _ => None }
            }

            /// The type with this wire name, if any. Wire names are case-sensitive, as in IDSync.
            pub fn from_wire_name(name: &str) -> Option<IdentityType> {
                match name { $($wire => Some(IdentityType::$variant),)* _ => None }
            }

            /// Whether SDKs collect this identifier from the device (as opposed to a user identity
            /// the app sets).
            pub const fn is_device(self) -> bool {
                match self { $(IdentityType::$variant => identity_types!(@kind $kind),)* }
            }
        }
    };
    (@kind user) => { false };
    (@kind device) => { true };
}

identity_types! {
    Other = 0, "other", user;
    CustomerId = 1, "customerid", user;
    Facebook = 2, "facebook", user;
    Twitter = 3, "twitter", user;
    Google = 4, "google", user;
    Microsoft = 5, "microsoft", user;
    Yahoo = 6, "yahoo", user;
    Email = 7, "email", user;
    FacebookCustomAudienceId = 9, "facebookcustomaudienceid", user;
    Other2 = 10, "other2", user;
    Other3 = 11, "other3", user;
    Other4 = 12, "other4", user;
    Other5 = 13, "other5", user;
    Other6 = 14, "other6", user;
    Other7 = 15, "other7", user;
    Other8 = 16, "other8", user;
    Other9 = 17, "other9", user;
    Other10 = 18, "other10", user;
    MobileNumber = 19, "mobile_number", user;
    PhoneNumber2 = 20, "phone_number_2", user;
    PhoneNumber3 = 21, "phone_number_3", user;
    IosIdfa = 22, "ios_idfa", device;
    IosIdfv = 23, "ios_idfv", device;
    PushToken = 24, "push_token", device;
    DeviceApplicationStamp = 25, "device_application_stamp", device;
    AndroidAaid = 26, "android_aaid", device;
    AndroidUuid = 27, "android_uuid", device;
    FireAid = 28, "fire_aid", device;
    RokuAid = 29, "roku_aid", device;
    RokuPublisherId = 30, "roku_publisher_id", device;
    AmpId = 31, "amp_id", device;
}

/// The number of identity types; codes are below 32, so a `u32` bit set holds any set of types.
pub const IDENTITY_TYPE_COUNT: usize = IdentityType::ALL.len();
const _: () = assert!(IDENTITY_TYPE_COUNT == 31);

/// An unknown identity type name, with the name as given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown identity type `{0}` (expected one of: customerid, email, other, other2..other10, mobile_number, phone_number_2, phone_number_3, facebook, facebookcustomaudienceid, google, microsoft, yahoo, twitter, ios_idfa, ios_idfv, android_aaid, android_uuid, push_token, fire_aid, roku_aid, roku_publisher_id, amp_id, device_application_stamp)"
)]
pub struct UnknownIdentityType(pub String);

impl FromStr for IdentityType {
    type Err = UnknownIdentityType;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        IdentityType::from_wire_name(s).ok_or_else(|| UnknownIdentityType(s.to_owned()))
    }
}

impl fmt::Display for IdentityType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.wire_name())
    }
}

impl Serialize for IdentityType {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(self.wire_name())
        } else {
            serializer.serialize_u8(self.code())
        }
    }
}

impl<'de> Deserialize<'de> for IdentityType {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        if deserializer.is_human_readable() {
            let name = String::deserialize(deserializer)?;
            IdentityType::from_wire_name(&name)
                .ok_or_else(|| D::Error::custom(UnknownIdentityType(name)))
        } else {
            let code = u8::deserialize(deserializer)?;
            IdentityType::from_code(code)
                .ok_or_else(|| D::Error::custom(format!("unknown identity type code {code}")))
        }
    }
}

/// A set of identity types, as a bit set over their codes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IdentityTypeSet(u32);

impl IdentityTypeSet {
    /// The empty set.
    pub const EMPTY: IdentityTypeSet = IdentityTypeSet(0);

    /// Whether `identity_type` is in the set.
    pub const fn contains(self, identity_type: IdentityType) -> bool {
        self.0 & (1 << identity_type.code()) != 0
    }

    /// Adds `identity_type` to the set.
    pub fn insert(&mut self, identity_type: IdentityType) {
        self.0 |= 1 << identity_type.code();
    }

    /// Removes `identity_type` from the set.
    pub fn remove(&mut self, identity_type: IdentityType) {
        self.0 &= !(1 << identity_type.code());
    }

    /// Whether the two sets share a member (one AND, not a walk over the types).
    pub const fn intersects(self, other: IdentityTypeSet) -> bool {
        self.0 & other.0 != 0
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The members, in code order.
    pub fn iter(self) -> impl Iterator<Item = IdentityType> {
        IdentityType::ALL.iter().copied().filter(move |t| self.contains(*t))
    }
}

impl FromIterator<IdentityType> for IdentityTypeSet {
    fn from_iter<I: IntoIterator<Item = IdentityType>>(iter: I) -> Self {
        let mut set = IdentityTypeSet::EMPTY;
        for identity_type in iter {
            set.insert(identity_type);
        }
        set
    }
}

/// One identifier: a type and a value. Values are compared byte for byte (no case folding);
/// normalisation, where configured, happens before an identity enters the log.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Identity {
    /// What kind of identifier this is.
    pub identity_type: IdentityType,
    /// The identifier itself, e.g. an email address.
    pub value: String,
}

impl Identity {
    /// An identity of `identity_type` with `value`.
    pub fn new(identity_type: IdentityType, value: impl Into<String>) -> Identity {
        Identity { identity_type, value: value.into() }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.identity_type, self.value)
    }
}

/// An mParticle ID: the identifier of a profile. A signed 64-bit integer that is never 0 (SDKs use
/// 0 to mean "no user yet"). On the HTTP wire it is a decimal string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Mpid(NonZeroI64);

impl Mpid {
    /// The MPID with this value, or `None` for 0.
    pub const fn new(value: i64) -> Option<Mpid> {
        match NonZeroI64::new(value) {
            Some(value) => Some(Mpid(value)),
            None => None,
        }
    }

    /// The MPID as an integer (never 0).
    pub const fn get(self) -> i64 {
        self.0.get()
    }
}

impl fmt::Display for Mpid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Why a string is not an MPID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MpidError {
    /// Not a decimal 64-bit signed integer.
    #[error("`{0}` is not a 64-bit signed decimal integer")]
    NotAnInteger(String),
    /// 0 means "no user" and is never an MPID.
    #[error("0 is not a valid MPID")]
    Zero,
}

impl FromStr for Mpid {
    type Err = MpidError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let value: i64 = s.trim().parse().map_err(|_| MpidError::NotAnInteger(s.to_owned()))?;
        Mpid::new(value).ok_or(MpidError::Zero)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_round_trip_and_codes_are_unique() {
        let mut codes = std::collections::BTreeSet::new();
        for &t in IdentityType::ALL {
            assert_eq!(IdentityType::from_wire_name(t.wire_name()), Some(t));
            assert_eq!(IdentityType::from_code(t.code()), Some(t));
            assert!(codes.insert(t.code()), "duplicate code {}", t.code());
            assert!(t.code() < 32);
        }
        assert_eq!(IdentityType::from_wire_name("fire_tv"), None);
        assert_eq!(IdentityType::from_wire_name("other_2"), None);
        assert_eq!(IdentityType::from_code(8), None, "8 is the legacy `alias` type");
    }

    #[test]
    fn device_types_are_the_device_identities_of_spec_1_7() {
        let device: Vec<&str> =
            IdentityType::ALL.iter().filter(|t| t.is_device()).map(|t| t.wire_name()).collect();
        assert_eq!(
            device,
            [
                "ios_idfa",
                "ios_idfv",
                "push_token",
                "device_application_stamp",
                "android_aaid",
                "android_uuid",
                "fire_aid",
                "roku_aid",
                "roku_publisher_id",
                "amp_id"
            ]
        );
    }

    #[test]
    fn mpid_rejects_zero_and_garbage() {
        assert_eq!("0".parse::<Mpid>(), Err(MpidError::Zero));
        assert!(matches!("12x".parse::<Mpid>(), Err(MpidError::NotAnInteger(_))));
        assert_eq!("-42".parse::<Mpid>().map(Mpid::get), Ok(-42));
        assert_eq!(Mpid::new(i64::MIN).map(|m| m.to_string()), Some(i64::MIN.to_string()));
    }

    #[test]
    fn type_set_holds_every_type() {
        let all: IdentityTypeSet = IdentityType::ALL.iter().copied().collect();
        assert_eq!(all.iter().count(), IDENTITY_TYPE_COUNT);
        let mut set = IdentityTypeSet::EMPTY;
        set.insert(IdentityType::AmpId);
        assert!(set.contains(IdentityType::AmpId));
        assert!(!set.contains(IdentityType::Other));
    }
}
