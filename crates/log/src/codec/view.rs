//! The borrowed view decoder of the replay path: a payload to an [`EntryView`] whose strings point
//! into the record, by hand, in bincode's format (described in the module docs of `codec.rs`).
//! Parts the fold does not read are walked over; nothing is allocated for entries of up to two
//! events. It is a second reader of the schema, kept in step with serde's by the property tests of
//! `codec/tests.rs` and with the bytes on disk by the golden fixtures.

use idgraph_model::{
    DetachReason, EntryView, Environment, EventView, IdentityType, IdentityView, Mpid, OutcomeView,
    RequestView, Timestamp,
};
use smallvec::SmallVec;

use super::{DecodeError, Field};

/// Decodes a borrowed view of an entry (strings point into `payload`), rejecting trailing bytes.
/// The request id, the workspace and the operation's arguments are walked over, not checked as
/// UTF-8 (the record's checksum already vouches for them; [`decode`](super::decode) checks
/// everything).
pub(crate) fn decode_view(payload: &[u8]) -> Result<EntryView<'_>, DecodeError> {
    let mut r = Reader { bytes: payload, at: 0 };
    let view = r.entry()?;
    if r.at != payload.len() {
        return Err(DecodeError::TrailingBytes { n_bytes: payload.len() - r.at });
    }
    Ok(view)
}

/// A cursor over an entry's bytes, in bincode's format (see the module docs).
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

type Decoded<T> = Result<T, DecodeError>;

fn invalid<T>(field: Field, value: impl Into<u64>, at: usize) -> Decoded<T> {
    Err(DecodeError::Invalid { field, value: value.into(), at: Some(at) })
}

impl<'a> Reader<'a> {
    #[inline]
    fn take(&mut self, n: usize) -> Decoded<&'a [u8]> {
        let taken = self.at.checked_add(n).and_then(|end| self.bytes.get(self.at..end));
        let Some(taken) = taken else {
            let n_bytes_left = self.bytes.len().saturating_sub(self.at);
            return Err(DecodeError::Truncated {
                n_bytes_missing: n.saturating_sub(n_bytes_left) as u64,
            });
        };
        self.at += n;
        Ok(taken)
    }

    #[inline]
    fn u8(&mut self) -> Decoded<u8> {
        let [byte] = self.array()?;
        Ok(byte)
    }

    #[inline]
    fn array<const N: usize>(&mut self) -> Decoded<[u8; N]> {
        let mut array = [0; N];
        array.copy_from_slice(self.take(N)?);
        Ok(array)
    }

    #[inline]
    fn varint(&mut self) -> Decoded<u64> {
        match self.u8()? {
            small @ 0..=250 => Ok(u64::from(small)),
            251 => Ok(u64::from(u16::from_le_bytes(self.array()?))),
            252 => Ok(u64::from(u32::from_le_bytes(self.array()?))),
            253 => Ok(u64::from_le_bytes(self.array()?)),
            marker => invalid(Field::IntegerMarker, marker, self.at - 1),
        }
    }

    #[inline]
    fn i64(&mut self) -> Decoded<i64> {
        let zigzag = self.varint()?;
        Ok((zigzag >> 1) as i64 ^ -((zigzag & 1) as i64))
    }

    /// An enum's variant index, below `n_variants`.
    #[inline]
    fn variant(&mut self, n_variants: u64, field: Field) -> Decoded<u64> {
        let at = self.at;
        match self.varint()? {
            index if index < n_variants => Ok(index),
            index => invalid(field, index, at),
        }
    }

    #[inline]
    fn len(&mut self) -> Decoded<usize> {
        let len = self.varint()?;
        match usize::try_from(len) {
            Ok(len) if len <= self.bytes.len() - self.at => Ok(len),
            _ => Err(DecodeError::LengthPastEnd { len, at: self.at }),
        }
    }

    #[inline]
    fn bool(&mut self) -> Decoded<bool> {
        self.zero_or_one(Field::Bool)
    }

    /// An `Option`'s tag: whether a value follows.
    #[inline]
    fn some(&mut self) -> Decoded<bool> {
        self.zero_or_one(Field::OptionTag)
    }

    /// A byte that must be 0 or 1 (`field` names it in the error).
    #[inline]
    fn zero_or_one(&mut self, field: Field) -> Decoded<bool> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            byte => invalid(field, byte, self.at - 1),
        }
    }

    #[inline]
    fn bytes(&mut self) -> Decoded<&'a [u8]> {
        let len = self.len()?;
        self.take(len)
    }

    #[inline]
    fn str(&mut self) -> Decoded<&'a str> {
        let at = self.at;
        let bytes = self.bytes()?;
        std::str::from_utf8(bytes).map_err(|_| DecodeError::NotUtf8 { at: Some(at) })
    }

    #[inline]
    fn timestamp(&mut self) -> Decoded<Timestamp> {
        Ok(Timestamp(self.i64()?))
    }

    #[inline]
    fn mpid(&mut self) -> Decoded<Mpid> {
        let at = self.at;
        Mpid::new(self.i64()?).map_or_else(|| invalid(Field::Mpid, 0u8, at), Ok)
    }

    #[inline]
    fn identity_type(&mut self) -> Decoded<IdentityType> {
        let code = self.u8()?;
        IdentityType::from_code(code)
            .map_or_else(|| invalid(Field::IdentityTypeCode, code, self.at - 1), Ok)
    }

    #[inline]
    fn identity(&mut self) -> Decoded<IdentityView<'a>> {
        Ok(IdentityView { identity_type: self.identity_type()?, value: self.str()? })
    }

    /// A `Vec<Identity>`, walked over.
    #[inline]
    fn skip_identities(&mut self) -> Decoded<()> {
        for _ in 0..self.len()? {
            self.identity_type()?;
            self.bytes()?;
        }
        Ok(())
    }

    /// An `Option<String>`, walked over.
    #[inline]
    fn skip_optional_string(&mut self) -> Decoded<()> {
        if self.some()? {
            self.bytes()?;
        }
        Ok(())
    }

    fn entry(&mut self) -> Decoded<EntryView<'a>> {
        let recorded_at = self.timestamp()?;
        let request = self.request()?;
        let n_events = self.len()?;
        let mut events = SmallVec::with_capacity(n_events);
        for _ in 0..n_events {
            events.push(self.event()?);
        }
        let outcome = self.outcome()?;
        Ok(EntryView { recorded_at, request, events, outcome })
    }

    fn request(&mut self) -> Decoded<RequestView<'a>> {
        self.skip_optional_string()?; // request id
        self.bytes()?; // workspace
        let scope = self.str()?;
        let environment = match self.variant(2, Field::EnvironmentVariant)? {
            0 => Environment::Production,
            _ => Environment::Development,
        };
        self.skip_operation()?;
        Ok(RequestView { scope, environment })
    }

    fn skip_operation(&mut self) -> Decoded<()> {
        match self.variant(7, Field::OperationVariant)? {
            // Identify, Login, Logout (an `IdentityRequest`).
            0..=2 => {
                self.skip_identities()?;
                if self.some()? {
                    self.mpid()?;
                }
            }
            // Modify.
            3 => {
                self.mpid()?;
                for _ in 0..self.len()? {
                    self.identity_type()?;
                    self.skip_optional_string()?;
                    self.skip_optional_string()?;
                }
            }
            // Alias.
            4 => {
                self.mpid()?;
                self.mpid()?;
                self.timestamp()?;
                self.timestamp()?;
            }
            // AdminDetach, AdminSplit (an `AdminCorrection`).
            _ => {
                self.mpid()?;
                self.skip_identities()?;
                self.bytes()?; // actor
                self.bytes()?; // reason
            }
        }
        Ok(())
    }

    fn event(&mut self) -> Decoded<EventView<'a>> {
        Ok(match self.variant(4, Field::EventVariant)? {
            0 => EventView::ProfileCreated { mpid: self.mpid()? },
            1 => EventView::IdentityAttached { mpid: self.mpid()?, identity: self.identity()? },
            2 => EventView::IdentityDetached {
                mpid: self.mpid()?,
                identity: self.identity()?,
                reason: match self.variant(4, Field::DetachReasonVariant)? {
                    0 => DetachReason::Modified,
                    1 => DetachReason::MovedTo { mpid: self.mpid()? },
                    2 => DetachReason::AdminDetached,
                    _ => DetachReason::SplitTo { mpid: self.mpid()? },
                },
            },
            _ => EventView::AliasRecorded {
                source: self.mpid()?,
                destination: self.mpid()?,
                start: self.timestamp()?,
                end: self.timestamp()?,
            },
        })
    }

    fn outcome(&mut self) -> Decoded<OutcomeView> {
        let seen_mpid = match self.variant(5, Field::OutcomeVariant)? {
            // Resolved.
            0 => {
                let mpid = self.mpid()?;
                self.bool()?; // is_logged_in
                for _ in 0..self.len()? {
                    self.identity_type()?; // matched
                }
                Some(mpid)
            }
            // Modified.
            1 => Some(self.mpid()?),
            // AliasAccepted.
            2 => None,
            // AliasIgnored.
            3 => {
                self.bytes()?;
                None
            }
            // AdminApplied.
            _ => {
                if self.some()? {
                    self.mpid()?;
                }
                None
            }
        };
        Ok(OutcomeView { seen_mpid })
    }
}
