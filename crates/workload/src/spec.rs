//! The knobs of a workload ([`WorkloadSpec`]), their defaults, their validation and their limits.
//!
//! A spec plus the crate version fully determines the output: the same spec always yields the same
//! bytes. Every knob is documented here and in `docs/workloads.md`; keep the two in step.

use std::fmt;

/// Most users a spec may ask for. The generator keeps 32 bytes per user it has seen (see
/// `population.rs`), so this caps its memory at about 3.2 GB, beyond any benchmark we run.
pub const USERS_MAX: u64 = 100_000_000;

/// Most requests a spec may ask for. Person ordinals stay below this, which keeps them within the
/// 48 bits that device identifiers reserve for them (see `population.rs`).
pub const REQUESTS_MAX: u64 = 1 << 40;

/// Largest Zipf exponent. Beyond it virtually all traffic comes from one user, which no longer
/// models anything; the limit also keeps the sampler's arithmetic far from overflow.
pub const ZIPF_EXPONENT_MAX: f64 = 10.0;

/// Everything that determines a workload. Build it with struct-update syntax over
/// [`WorkloadSpec::default`], which is the benchmark's standard mix.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkloadSpec {
    /// Seeds every decision and every identifier value. Default `0`.
    pub seed: u64,
    /// Requests (lines) to generate. Default `100_000`; at most [`REQUESTS_MAX`].
    pub requests: u64,
    /// The user population: at most this many people are active at once, and the generator's
    /// memory is bounded by it (32 bytes per user seen). New visitors fill it in order; once it
    /// is full, each new visitor replaces a uniformly chosen existing user (churn). Default
    /// `1_000_000`; between 1 and [`USERS_MAX`].
    pub users: u64,
    /// Skew of activity across users: the `k`-th oldest user is picked with probability
    /// proportional to `k^-zipf_exponent`. `0` is uniform; `1` is classic Zipf. Default `0.9`:
    /// heavy-tailed, while the most active of a million users makes a few percent of the returning
    /// traffic, not a bot's share. Between 0 and [`ZIPF_EXPONENT_MAX`].
    pub zipf_exponent: f64,
    /// What kinds of requests are sent, as relative weights. Default [`Mix::default`].
    pub mix: Mix,
    /// Of logins, the share from a user logging in on a device they have never used (a new phone, a
    /// new browser): known login IDs with new device IDs and no `previous_mpid`. Default `0.15`.
    pub new_device_login_rate: f64,
    /// Of logins, the share from a user logging in on another user's device (a shared family
    /// tablet): the login carries the other user's device IDs and `previous_mpid`. Default `0.05`.
    pub shared_device_login_rate: f64,
    /// What kind of device a new device is. Default [`Platforms::default`].
    pub platforms: Platforms,
    /// Share of requests that carry one blocked placeholder value (email `undefined`, customer ID
    /// `0`, the all-zero advertising ID, ...), the way broken integrations send them. Default
    /// `0.01`.
    pub junk_rate: f64,
    /// Share of requests that are a re-send of one of the last few requests, with the same body and
    /// the same `request_id` (an SDK retry after a timeout). Default `0.01`.
    pub repeat_request_id_rate: f64,
    /// Share of users whose traffic goes to the `development` environment rather than
    /// `production`. A user's requests all go to one environment. Default `0.05`.
    pub development_rate: f64,
}

impl Default for WorkloadSpec {
    fn default() -> WorkloadSpec {
        WorkloadSpec {
            seed: 0,
            requests: 100_000,
            users: 1_000_000,
            zipf_exponent: 0.9,
            mix: Mix::default(),
            new_device_login_rate: 0.15,
            shared_device_login_rate: 0.05,
            platforms: Platforms::default(),
            junk_rate: 0.01,
            repeat_request_id_rate: 0.01,
            development_rate: 0.05,
        }
    }
}

/// Relative weights of the kinds of requests. They need not sum to 1; each kind's share is its
/// weight over the sum. Repeated requests (see [`WorkloadSpec::repeat_request_id_rate`]) are drawn
/// before the mix and copy an earlier request, so they keep the mix's proportions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Mix {
    /// `identify` from a returning user's current device (browsing). Carries the device IDs, plus
    /// the login IDs when the user is logged in there, and the device's last MPID. Default `0.70`.
    pub identify: f64,
    /// `identify` from a first-time visitor: device IDs only, no `previous_mpid`. Default `0.10`.
    pub new_visitor: f64,
    /// `login`: a signup (an anonymous user's first login IDs), a re-login, a login from a new
    /// device or a login on a shared device. Default `0.10`.
    pub login: f64,
    /// `logout` from a user's current device: device IDs and the device's last MPID. Default `0.05`.
    pub logout: f64,
    /// `modify`: a logged-in user changes their email, or an anonymous one adds it. Default `0.05`.
    pub modify: f64,
    /// `search`: a read-only lookup by a user's login IDs (or device IDs when anonymous). Default
    /// `0.0` (the benchmark mix has none).
    pub search: f64,
}

impl Default for Mix {
    fn default() -> Mix {
        Mix {
            identify: 0.70,
            new_visitor: 0.10,
            login: 0.10,
            logout: 0.05,
            modify: 0.05,
            search: 0.0,
        }
    }
}

impl Mix {
    /// The weights with their knob names, in a fixed order (the order the generator draws in).
    pub(crate) fn weights(&self) -> [(&'static str, f64); 6] {
        [
            ("mix.identify", self.identify),
            ("mix.new_visitor", self.new_visitor),
            ("mix.login", self.login),
            ("mix.logout", self.logout),
            ("mix.modify", self.modify),
            ("mix.search", self.search),
        ]
    }
}

/// Relative weights of device platforms, which decide a device's identity types:
///
/// | platform | identities |
/// | --- | --- |
/// | iOS | `ios_idfv`, `device_application_stamp`, and `ios_idfa` for users who allow tracking |
/// | Android | `android_uuid`, `device_application_stamp`, and usually `android_aaid` |
/// | web | `device_application_stamp` only |
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Platforms {
    /// Default `0.40`.
    pub ios: f64,
    /// Default `0.35`.
    pub android: f64,
    /// Default `0.25`.
    pub web: f64,
}

impl Default for Platforms {
    fn default() -> Platforms {
        Platforms { ios: 0.40, android: 0.35, web: 0.25 }
    }
}

/// A knob with a value the generator cannot use.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SpecError {
    /// The knob, as named in `docs/workloads.md` (e.g. `junk_rate`, `mix.login`).
    pub knob: &'static str,
    /// What is wrong with it.
    pub message: String,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid workload knob `{}`: {}", self.knob, self.message)
    }
}

impl std::error::Error for SpecError {}

impl WorkloadSpec {
    /// Checks every knob; [`crate::Generator::new`] calls it.
    pub fn validate(&self) -> Result<(), SpecError> {
        let error = |knob: &'static str, message: String| Err(SpecError { knob, message });
        if self.requests > REQUESTS_MAX {
            return error(
                "requests",
                format!("{} is above the limit {REQUESTS_MAX}", self.requests),
            );
        }
        if self.users == 0 || self.users > USERS_MAX {
            return error("users", format!("{} is not between 1 and {USERS_MAX}", self.users));
        }
        if !(0.0..=ZIPF_EXPONENT_MAX).contains(&self.zipf_exponent) {
            return error(
                "zipf_exponent",
                format!("{} is not between 0 and {ZIPF_EXPONENT_MAX}", self.zipf_exponent),
            );
        }
        let rates = [
            ("new_device_login_rate", self.new_device_login_rate),
            ("shared_device_login_rate", self.shared_device_login_rate),
            ("junk_rate", self.junk_rate),
            ("repeat_request_id_rate", self.repeat_request_id_rate),
            ("development_rate", self.development_rate),
        ];
        for (knob, rate) in rates {
            if !(0.0..=1.0).contains(&rate) {
                return error(knob, format!("{rate} is not a share between 0 and 1"));
            }
        }
        if self.new_device_login_rate + self.shared_device_login_rate > 1.0 {
            return error(
                "shared_device_login_rate",
                "new_device_login_rate + shared_device_login_rate exceeds 1".to_owned(),
            );
        }
        check_weights(&self.mix.weights(), "mix")?;
        let platforms = self.platforms;
        check_weights(
            &[
                ("platforms.ios", platforms.ios),
                ("platforms.android", platforms.android),
                ("platforms.web", platforms.web),
            ],
            "platforms",
        )
    }
}

/// Weights must be finite and non-negative, and not all zero.
fn check_weights(weights: &[(&'static str, f64)], group: &'static str) -> Result<(), SpecError> {
    for &(knob, weight) in weights {
        if !(weight.is_finite() && weight >= 0.0) {
            return Err(SpecError {
                knob,
                message: format!("{weight} is not a finite non-negative weight"),
            });
        }
    }
    if weights.iter().map(|&(_, weight)| weight).sum::<f64>() <= 0.0 {
        return Err(SpecError { knob: group, message: "every weight is zero".to_owned() });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_knobs_are_named() {
        assert_eq!(WorkloadSpec::default().validate(), Ok(()));
        let bad = WorkloadSpec { junk_rate: 1.5, ..WorkloadSpec::default() };
        assert_eq!(bad.validate().map_err(|err| err.knob), Err("junk_rate"));
        let bad = WorkloadSpec { users: 0, ..WorkloadSpec::default() };
        assert_eq!(bad.validate().map_err(|err| err.knob), Err("users"));
        let bad = WorkloadSpec { zipf_exponent: f64::NAN, ..WorkloadSpec::default() };
        assert_eq!(bad.validate().map_err(|err| err.knob), Err("zipf_exponent"));
        let zero_mix = Mix {
            identify: 0.0,
            new_visitor: 0.0,
            login: 0.0,
            logout: 0.0,
            modify: 0.0,
            search: 0.0,
        };
        let bad = WorkloadSpec { mix: zero_mix, ..WorkloadSpec::default() };
        assert_eq!(bad.validate().map_err(|err| err.knob), Err("mix"));
        let bad =
            WorkloadSpec { mix: Mix { login: -1.0, ..Mix::default() }, ..WorkloadSpec::default() };
        assert_eq!(bad.validate().map_err(|err| err.knob), Err("mix.login"));
        let message = bad.validate().unwrap_err().to_string();
        assert_eq!(
            message,
            "invalid workload knob `mix.login`: -1 is not a finite non-negative weight"
        );
    }
}
