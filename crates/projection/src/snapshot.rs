//! Snapshots: the projection at sequence N as bytes, so a restart folds only the tail of the log.
//!
//! A snapshot is an optimisation, never truth. The format is private to this crate and versioned by
//! its magic; the log stores it framed and checksummed, and [`Projection::from_snapshot`] also checks
//! that the content digest recomputed after loading equals the one recorded at save time. Any
//! mismatch is an error, and the caller replays the log instead.
//!
//! Layout (all integers little endian; `str` = u32 length + UTF-8 bytes):
//! ```text
//! magic "IDGSNAP1"
//! last_seq u64 | last_time i64 | running_digest u128 | content_digest u128
//! worlds:     u32 count, then per world:   scope str | environment u8 (0 production, 1 development)
//! identities: u32 count, then per identity (in IdentityId order): world u16 | type u8 | value str
//! profiles:   u32 count, then per profile (in ProfileId order):
//!             mpid i64 | world u16 | created i64 | last_seen i64 | flags u8 (1 source, 2 destination)
//! nodes:      u32 count, then per node (in node index order): kind u8 (0 identity, 1 profile) | id u32
//! lookups:    u32 count, then per lookup: identity id u32 | profile id u32
//! aliases:    u32 count, then per alias: source profile u32 | destination profile u32
//!             | start i64 | end i64 | seq u64
//! diagnostics: u64 total | u32 kept, then per diagnostic: seq u64 | message str
//! checksum:   u128, XXH3-128 of every byte before it
//! ```

use idgraph_model::{Environment, IdentityType, IdentityTypeSet, Mpid, Seq, Timestamp};
use petgraph::graph::NodeIndex;

use crate::interner::Key;
use crate::packed::{Edge, Node};
use crate::{AliasRecord, Diagnostic, Digest, IdentityId, Profile, ProfileId, Projection, WorldId};

const MAGIC: &[u8; 8] = b"IDGSNAP1";

/// Why a snapshot could not be loaded.
///
/// ### Handling
/// Every kind means the same to a caller: the snapshot is an optimisation, never truth, so it is
/// discarded (and reported) and the projection is rebuilt from an older snapshot or from the log.
/// The kinds say what an operator should look at: damage on disk ([`SnapshotError::Truncated`],
/// [`SnapshotError::ChecksumMismatch`]), a format this build does not read
/// ([`SnapshotError::UnknownVersion`]), or a writer that saved a wrong snapshot
/// ([`SnapshotError::Malformed`], [`SnapshotError::DigestMismatch`]: a bug to report).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// The bytes end before the snapshot does (a cut copy, or a write that did not finish).
    #[error("bad snapshot: truncated")]
    Truncated,
    /// The checksum over the bytes does not match them: they changed after saving.
    #[error("bad snapshot: checksum mismatch")]
    ChecksumMismatch,
    /// The checksum matches but the bytes do not start with this format's magic: not an idgraph
    /// snapshot, or a format version this build does not read.
    #[error("bad snapshot: not an idgraph snapshot, or an unknown version (magic)")]
    UnknownVersion,
    /// The checksum matches but the content is not a valid projection.
    #[error("bad snapshot: {0}")]
    Malformed(#[from] Malformed),
    /// The content loaded, but its digest recomputed differs from the one recorded at save time.
    #[error("bad snapshot: content digest differs from the one recorded at save time")]
    DigestMismatch,
}

/// What is wrong with the content of a [`SnapshotError::Malformed`] snapshot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Malformed {
    /// A string is not UTF-8.
    #[error("string is not UTF-8")]
    NotUtf8,
    /// A count of items exceeds what the remaining bytes can hold.
    #[error("count {count} exceeds the remaining bytes")]
    CountTooLarge {
        /// The count read.
        count: u32,
    },
    /// More worlds than a world id can name.
    #[error("too many worlds")]
    TooManyWorlds,
    /// A world's environment code is unknown.
    #[error("environment code {0}")]
    EnvironmentCode(u8),
    /// Two worlds with the same scope and environment.
    #[error("duplicate world")]
    DuplicateWorld,
    /// An identity or a profile names a world that is not listed.
    #[error("{0} in an unknown world")]
    UnknownWorld(&'static str),
    /// An identity's type code is unknown.
    #[error("identity type code {0}")]
    IdentityTypeCode(u8),
    /// Two identities with the same world, type and value.
    #[error("duplicate identity")]
    DuplicateIdentity,
    /// The identities do not fit the interner's arena.
    #[error("identity arena overflow")]
    ArenaOverflow,
    /// A profile's MPID is 0.
    #[error("MPID 0")]
    ZeroMpid,
    /// Two profiles with the same MPID.
    #[error("duplicate MPID {0}")]
    DuplicateMpid(Mpid),
    /// The node count differs from the identities and profiles.
    #[error("node count differs from identities + profiles")]
    NodeCount,
    /// A node of an unknown kind, for an unknown id, or for an id that already has one.
    #[error("bad node")]
    BadNode,
    /// A lookup names an identity or a profile that is not listed.
    #[error("lookup names an unknown node")]
    LookupUnknownNode,
    /// The same lookup twice.
    #[error("duplicate lookup")]
    DuplicateLookup,
    /// An alias names a profile that is not listed.
    #[error("alias names an unknown profile")]
    AliasUnknownProfile,
    /// Bytes after the last section.
    #[error("trailing bytes")]
    TrailingBytes,
}

struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u128(&mut self, v: u128) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn str(&mut self, v: &str) {
        self.u32(v.len() as u32);
        self.0.extend_from_slice(v.as_bytes());
    }
    fn count(&mut self, n: usize) {
        self.u32(u32::try_from(n).expect("counts fit u32: ids are u32"));
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], SnapshotError> {
        if self.0.len() < n {
            return Err(SnapshotError::Truncated);
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], SnapshotError> {
        Ok(self.take(N)?.try_into().expect("take returns N bytes"))
    }
    fn u8(&mut self) -> Result<u8, SnapshotError> {
        Ok(self.array::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, SnapshotError> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, SnapshotError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, SnapshotError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    fn i64(&mut self) -> Result<i64, SnapshotError> {
        Ok(i64::from_le_bytes(self.array()?))
    }
    fn u128(&mut self) -> Result<u128, SnapshotError> {
        Ok(u128::from_le_bytes(self.array()?))
    }
    fn str(&mut self) -> Result<&'a str, SnapshotError> {
        let len = self.u32()? as usize;
        std::str::from_utf8(self.take(len)?).map_err(|_| Malformed::NotUtf8.into())
    }
    /// A count of items at least `item_len_min` bytes each, bounded by the bytes left so that a
    /// damaged count cannot make us allocate wildly.
    fn count(&mut self, item_len_min: usize) -> Result<usize, SnapshotError> {
        let n = self.u32()? as usize;
        if n.saturating_mul(item_len_min) > self.0.len() {
            return Err(Malformed::CountTooLarge { count: n as u32 }.into());
        }
        Ok(n)
    }
}

impl Projection {
    /// The projection as snapshot bytes.
    pub fn to_snapshot(&self) -> Vec<u8> {
        let mut w = Writer(Vec::with_capacity(self.heap_bytes() / 2));
        w.0.extend_from_slice(MAGIC);
        w.u64(self.last_seq.0);
        w.i64(self.last_time.0);
        w.u128(self.running_digest.0);
        w.u128(self.content_digest().0);
        w.count(self.worlds.len());
        for (scope, environment) in &self.worlds {
            w.str(scope);
            w.u8(match environment {
                Environment::Production => 0,
                Environment::Development => 1,
            });
        }
        w.count(self.interner.len());
        for id in self.interner.ids() {
            let key = self.interner.resolve(id);
            w.u16(key.world.0);
            w.u8(key.identity_type.code());
            w.str(key.value);
        }
        w.count(self.profiles.len());
        for profile in self.profiles.iter() {
            w.i64(profile.mpid.get());
            w.u16(profile.world.0);
            w.i64(profile.created.0);
            w.i64(profile.last_seen.0);
            w.u8(u8::from(profile.was_alias_source) | u8::from(profile.was_alias_destination) << 1);
        }
        w.count(self.graph.node_count());
        for node in self.graph.node_weights() {
            match node.unpack() {
                Node::Identity(id) => {
                    w.u8(0);
                    w.u32(id.0);
                }
                Node::Profile(id) => {
                    w.u8(1);
                    w.u32(id.0);
                }
            }
        }
        let lookups: Vec<(u32, u32)> = self
            .graph
            .raw_edges()
            .iter()
            .filter(|edge| edge.weight.is_lookup())
            .map(|edge| {
                match (self.graph[edge.source()].unpack(), self.graph[edge.target()].unpack()) {
                    (Node::Identity(identity), Node::Profile(profile)) => (identity.0, profile.0),
                    _ => unreachable!("lookups go from an identity to a profile"),
                }
            })
            .collect();
        w.count(lookups.len());
        for (identity, profile) in lookups {
            w.u32(identity);
            w.u32(profile);
        }
        w.count(self.aliases.len());
        for alias in &self.aliases {
            w.u32(self.profile_id(alias.source).expect("an alias names known profiles").0);
            w.u32(self.profile_id(alias.destination).expect("an alias names known profiles").0);
            w.i64(alias.start.0);
            w.i64(alias.end.0);
            w.u64(alias.seq.0);
        }
        w.u64(self.n_diagnostics);
        w.count(self.diagnostics.len());
        for diagnostic in &self.diagnostics {
            w.u64(diagnostic.seq.0);
            w.str(&diagnostic.message);
        }
        let checksum = xxhash_rust::xxh3::xxh3_128(&w.0);
        w.u128(checksum);
        w.0
    }

    /// Loads a projection from snapshot bytes, checking its structure and its content digest.
    pub fn from_snapshot(bytes: &[u8]) -> Result<Projection, SnapshotError> {
        let (body, checksum) = bytes
            .split_at_checked(bytes.len().saturating_sub(16))
            .ok_or(SnapshotError::Truncated)?;
        let checksum: [u8; 16] = checksum.try_into().map_err(|_| SnapshotError::Truncated)?;
        if xxhash_rust::xxh3::xxh3_128(body) != u128::from_le_bytes(checksum) {
            return Err(SnapshotError::ChecksumMismatch);
        }
        let mut r = Reader(body);
        if r.take(MAGIC.len())? != MAGIC {
            return Err(SnapshotError::UnknownVersion);
        }
        let mut projection = Projection {
            last_seq: Seq(r.u64()?),
            last_time: Timestamp(r.i64()?),
            running_digest: Digest(r.u128()?),
            ..Projection::default()
        };
        let content_digest = Digest(r.u128()?);
        load_worlds(&mut r, &mut projection)?;
        let identity_ids = load_identities(&mut r, &mut projection)?;
        load_profiles(&mut r, &mut projection)?;
        load_nodes(&mut r, &mut projection, &identity_ids)?;
        load_lookups(&mut r, &mut projection, &identity_ids)?;
        load_aliases(&mut r, &mut projection)?;
        projection.n_diagnostics = r.u64()?;
        for _ in 0..r.count(12)? {
            let seq = Seq(r.u64()?);
            projection.diagnostics.push(Diagnostic { seq, message: r.str()?.to_owned() });
        }
        if !r.0.is_empty() {
            return Err(Malformed::TrailingBytes.into());
        }
        if projection.content_digest() != content_digest {
            return Err(SnapshotError::DigestMismatch);
        }
        Ok(projection)
    }
}

fn load_worlds(r: &mut Reader<'_>, projection: &mut Projection) -> Result<(), SnapshotError> {
    let n = r.count(5)?;
    if n > usize::from(u16::MAX) {
        return Err(Malformed::TooManyWorlds.into());
    }
    for idx in 0..n {
        let scope = r.str()?.to_owned();
        let environment = match r.u8()? {
            0 => Environment::Production,
            1 => Environment::Development,
            other => return Err(Malformed::EnvironmentCode(other).into()),
        };
        if projection
            .world_index
            .insert((scope.clone(), environment), WorldId(idx as u16))
            .is_some()
        {
            return Err(Malformed::DuplicateWorld.into());
        }
        projection.worlds.push((scope, environment));
    }
    Ok(())
}

/// Interns the identities (their nodes come later) and returns their ids, ascending.
fn load_identities(
    r: &mut Reader<'_>,
    projection: &mut Projection,
) -> Result<Vec<u32>, SnapshotError> {
    let n = r.count(7)?;
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        let world = WorldId(r.u16()?);
        if usize::from(world.0) >= projection.worlds.len() {
            return Err(Malformed::UnknownWorld("identity").into());
        }
        let code = r.u8()?;
        let identity_type =
            IdentityType::from_code(code).ok_or(Malformed::IdentityTypeCode(code))?;
        let value = r.str()?;
        let key = Key { world, identity_type, value };
        if projection.interner.get(key).is_some() {
            return Err(Malformed::DuplicateIdentity.into());
        }
        if !projection.interner.fits(key) {
            return Err(Malformed::ArenaOverflow.into());
        }
        // The node is set when the node list is read.
        let id = projection
            .interner
            .insert(key, NodeIndex::end())
            .map_err(|_| Malformed::ArenaOverflow)?;
        ids.push(id.0);
    }
    Ok(ids)
}

fn load_profiles(r: &mut Reader<'_>, projection: &mut Projection) -> Result<(), SnapshotError> {
    let n = r.count(35)?;
    for idx in 0..n {
        let mpid = Mpid::new(r.i64()?).ok_or(Malformed::ZeroMpid)?;
        let world = WorldId(r.u16()?);
        if usize::from(world.0) >= projection.worlds.len() {
            return Err(Malformed::UnknownWorld("profile").into());
        }
        let created = Timestamp(r.i64()?);
        let last_seen = Timestamp(r.i64()?);
        let flags = r.u8()?;
        if projection.profile_id(mpid).is_some() {
            return Err(Malformed::DuplicateMpid(mpid).into());
        }
        projection.profiles.push(Profile {
            mpid,
            world,
            node: Default::default(),
            created,
            last_seen,
            types: IdentityTypeSet::EMPTY,
            n_identities: 0,
            was_alias_source: flags & 1 != 0,
            was_alias_destination: flags & 2 != 0,
        });
        projection.index_mpid(mpid, ProfileId(idx as u32));
    }
    Ok(())
}

fn load_nodes(
    r: &mut Reader<'_>,
    projection: &mut Projection,
    identity_ids: &[u32],
) -> Result<(), SnapshotError> {
    let n = r.count(5)?;
    if n != identity_ids.len() + projection.profiles.len() {
        return Err(Malformed::NodeCount.into());
    }
    let mut seen_identities = vec![false; identity_ids.len()];
    let mut seen_profiles = vec![false; projection.profiles.len()];
    for _ in 0..n {
        let kind = r.u8()?;
        let id = r.u32()?;
        match (kind, identity_ids.binary_search(&id)) {
            (0, Ok(idx)) if !seen_identities[idx] => {
                seen_identities[idx] = true;
                let identity = IdentityId(id);
                let node = projection.graph.add_node(Node::Identity(identity).pack());
                projection.interner.set_node(identity, node);
            }
            (1, _) if (id as usize) < projection.profiles.len() && !seen_profiles[id as usize] => {
                seen_profiles[id as usize] = true;
                let node = projection.graph.add_node(Node::Profile(ProfileId(id)).pack());
                projection.profiles[id as usize].node = node;
            }
            _ => return Err(Malformed::BadNode.into()),
        }
    }
    // The count check plus "each at most once" means every identity and profile has its node.
    Ok(())
}

fn load_lookups(
    r: &mut Reader<'_>,
    projection: &mut Projection,
    identity_ids: &[u32],
) -> Result<(), SnapshotError> {
    for _ in 0..r.count(8)? {
        let identity = r.u32()?;
        let profile = r.u32()? as usize;
        if identity_ids.binary_search(&identity).is_err() || profile >= projection.profiles.len() {
            return Err(Malformed::LookupUnknownNode.into());
        }
        let identity = IdentityId(identity);
        let identity_node = projection.interner.node(identity);
        let profile_node = projection.profiles[profile].node;
        if projection.find_lookup_edge(identity_node, profile_node).is_some() {
            return Err(Malformed::DuplicateLookup.into());
        }
        let identity_type = projection.interner.resolve(identity).identity_type;
        projection.graph.add_edge(identity_node, profile_node, Edge::LooksUp(identity_type).pack());
        projection.note_lookup_added(identity, ProfileId(profile as u32));
        projection.note_type_added(ProfileId(profile as u32), identity_type);
    }
    Ok(())
}

fn load_aliases(r: &mut Reader<'_>, projection: &mut Projection) -> Result<(), SnapshotError> {
    for _ in 0..r.count(32)? {
        let source = r.u32()? as usize;
        let destination = r.u32()? as usize;
        let (start, end, seq) = (Timestamp(r.i64()?), Timestamp(r.i64()?), Seq(r.u64()?));
        if source >= projection.profiles.len() || destination >= projection.profiles.len() {
            return Err(Malformed::AliasUnknownProfile.into());
        }
        let record = AliasRecord {
            source: projection.profiles[source].mpid,
            destination: projection.profiles[destination].mpid,
            start,
            end,
            seq,
        };
        let idx = projection.aliases.len() as u32;
        projection.aliases.push(record);
        let (source_node, destination_node) =
            (projection.profiles[source].node, projection.profiles[destination].node);
        projection.graph.add_edge(source_node, destination_node, Edge::Alias(idx).pack());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{fold, generated};

    /// `bytes` with its checksum recomputed after `damage`, so that the damage reaches the checks
    /// behind the checksum.
    fn resealed(bytes: &[u8], damage: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        let mut body = bytes[..bytes.len() - 16].to_vec();
        damage(&mut body);
        let checksum = xxhash_rust::xxh3::xxh3_128(&body);
        body.extend_from_slice(&checksum.to_le_bytes());
        body
    }

    #[test]
    fn each_kind_of_damage_is_named_by_its_error() {
        let bytes = fold(&generated(3, 500)).to_snapshot();
        let load = Projection::from_snapshot;
        assert_eq!(load(&bytes[..10]).unwrap_err(), SnapshotError::Truncated);
        assert_eq!(load(&bytes[..bytes.len() - 1]).unwrap_err(), SnapshotError::ChecksumMismatch);
        let mut flipped = bytes.clone();
        flipped[100] ^= 1;
        assert_eq!(load(&flipped).unwrap_err(), SnapshotError::ChecksumMismatch);
        let next_version = resealed(&bytes, |body| body[7] = b'2');
        assert_eq!(load(&next_version).unwrap_err(), SnapshotError::UnknownVersion);
        // After the magic: last_seq, last_time, running digest, then the recorded content digest.
        let other_digest = resealed(&bytes, |body| body[40] ^= 1);
        assert_eq!(load(&other_digest).unwrap_err(), SnapshotError::DigestMismatch);
        // The first world: count u32 at 56, scope length u32 at 60, the scope, its environment.
        let scope_len = u32::from_le_bytes(bytes[60..64].try_into().unwrap()) as usize;
        let environment = resealed(&bytes, |body| body[64 + scope_len] = 7);
        assert_eq!(
            load(&environment).unwrap_err(),
            SnapshotError::Malformed(Malformed::EnvironmentCode(7))
        );
        let trailing = resealed(&bytes, |body| body.push(0));
        assert_eq!(
            load(&trailing).unwrap_err(),
            SnapshotError::Malformed(Malformed::TrailingBytes)
        );
        let text = load(&trailing).unwrap_err().to_string();
        assert_eq!(text, "bad snapshot: trailing bytes");
        assert!(load(&bytes).is_ok());
    }
}
