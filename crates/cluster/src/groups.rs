//! Commit groups in the log stream: [`Cluster::publish_group`] appends one as a message on
//! condition that the stream's last sequence is the expected one (the fence), and
//! [`Cluster::read_from`] reads them back in stream order through an ordered consumer.
//!
//! A message's payload is the group's bytes; its headers carry the entry sequences, the writer
//! and its lease term, and a `Nats-Msg-Id` that makes a retried publish idempotent.

use std::fmt::Write as _;

use async_nats::HeaderMap;
use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};

use crate::Cluster;
use crate::error::{ClusterError, is_wrong_last_sequence};
use crate::layout::{HEADER_FIRST_SEQ, HEADER_LAST_SEQ, HEADER_TERM, HEADER_WRITER};
use crate::limits::GROUP_BYTES_MAX;

/// A commit group, opaque to this crate: the engine's entries `first_seq..=last_seq`, encoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    pub first_seq: u64,
    pub last_seq: u64,
    pub bytes: Vec<u8>,
}

/// A group as stored in the stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Committed {
    /// The message's stream sequence (1, 2, 3, ... without gaps).
    pub stream_seq: u64,
    /// The node that published it.
    pub writer: String,
    /// That node's lease term when it published it.
    pub term: u64,
    pub group: Group,
}

/// The message id: the same publish (writer, term, position, entries, content) gets the same
/// id, so a retry after a lost acknowledgement is answered with the first one's sequence
/// instead of being stored twice; anything else gets another id.
fn message_id(node: &str, term: u64, expected: u64, group: &Group) -> String {
    let mut id = String::with_capacity(96);
    let hash = xxhash_rust::xxh3::xxh3_64(&group.bytes);
    // Writing to a String cannot fail.
    let _ =
        write!(id, "{node}:{term}:{expected}:{}-{}:{hash:016x}", group.first_seq, group.last_seq);
    id
}

/// The actual last sequence from the server's refusal ("wrong last sequence: 12"), if given.
fn actual_last_sequence(error: &str) -> Option<u64> {
    let (_, rest) = error.rsplit_once("wrong last sequence: ")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

impl Cluster {
    /// Appends `group` as the next message of the log stream, on condition that the stream's
    /// last sequence is `expected_last_stream_seq` (0 for an empty stream), and returns the
    /// group's stream sequence (`expected_last_stream_seq + 1`) once a quorum of servers has
    /// stored it (with `sync_interval: always`, on disk).
    ///
    /// `term` is the writer's lease term ([`crate::Lease::term`]), recorded in the message.
    ///
    /// - [`ClusterError::Fenced`]: the stream's last sequence is another; nothing was stored.
    /// - [`ClusterError::Nats`]: the outcome is unknown (a timeout during a leader election).
    ///   Retry with the same arguments: if the first attempt was stored, the retry is answered
    ///   with its sequence (same message id, within the duplicate window).
    /// - [`ClusterError::GroupTooLarge`]: not sent.
    ///
    /// # Panics
    ///
    /// If `group.first_seq > group.last_seq` (a group holds at least one entry), or if the
    /// server acknowledges another sequence than `expected_last_stream_seq + 1`.
    pub async fn publish_group(
        &self,
        term: u64,
        expected_last_stream_seq: u64,
        group: &Group,
    ) -> Result<u64, ClusterError> {
        assert!(
            group.first_seq <= group.last_seq,
            "a commit group holds at least one entry: {}..={}",
            group.first_seq,
            group.last_seq
        );
        if group.bytes.len() > GROUP_BYTES_MAX {
            return Err(ClusterError::GroupTooLarge {
                bytes: group.bytes.len(),
                max: GROUP_BYTES_MAX,
            });
        }
        let node = &self.config.node;
        let mut headers = HeaderMap::new();
        headers.insert(HEADER_FIRST_SEQ, group.first_seq.to_string().as_str());
        headers.insert(HEADER_LAST_SEQ, group.last_seq.to_string().as_str());
        headers.insert(HEADER_WRITER, node.as_str());
        headers.insert(HEADER_TERM, term.to_string().as_str());
        let message = PublishMessage::build()
            .payload(Bytes::from(group.bytes.clone()))
            .headers(headers)
            .message_id(message_id(node, term, expected_last_stream_seq, group))
            .expected_stream(&self.names.stream)
            .expected_last_sequence(expected_last_stream_seq);

        let ack =
            async { self.js.send_publish(self.names.subject.clone(), message).await?.await }.await;
        match ack {
            Ok(ack) => {
                assert_eq!(
                    ack.sequence,
                    expected_last_stream_seq + 1,
                    "the server stored a conditional publish at another sequence"
                );
                Ok(ack.sequence)
            }
            Err(err)
                if err.kind() == PublishErrorKind::WrongLastSequence
                    || is_wrong_last_sequence(&err) =>
            {
                Err(ClusterError::Fenced {
                    expected: expected_last_stream_seq,
                    actual: actual_last_sequence(&err.to_string()),
                })
            }
            // A 503 "no responders": no server took the publish, typically because the stream
            // is electing a leader after a server failure. Transient like any other.
            Err(err) if err.kind() == PublishErrorKind::StreamNotFound => {
                Err(ClusterError::nats("publish (no stream leader answered; retry)", err))
            }
            Err(err) if err.kind() == PublishErrorKind::MaxPayloadExceeded => {
                Err(ClusterError::GroupTooLarge { bytes: group.bytes.len(), max: GROUP_BYTES_MAX })
            }
            Err(err) => Err(ClusterError::nats("publish", err)),
        }
    }

    /// The stream's last sequence (0 if empty), as its Raft leader reports it now.
    pub async fn last_stream_seq(&self) -> Result<u64, ClusterError> {
        Ok(self.stream_info().await?.state.last_sequence)
    }

    /// The groups from stream sequence `from` (1 for the whole stream) on, in order, without end:
    /// after the last stored group the stream waits for the next. An ordered consumer (one
    /// replica, no acknowledgements, recreated by the client from the last sequence it delivered
    /// when it misses one or its server fails), so no sequence is skipped or repeated.
    ///
    /// A [`ClusterError::Corrupt`] item (a message that is not a group, or a skipped sequence)
    /// is final; after a [`ClusterError::Nats`] item the stream goes on. Messages delivered
    /// again (the client library restarts a failed ordered consumer from the stream's start) are
    /// skipped. A reader that sees no progress while the stream grows should read again from its
    /// position: the library notices a consumer lost with its server only after missed heartbeats.
    pub async fn read_from(
        &self,
        from: u64,
    ) -> Result<impl Stream<Item = Result<Committed, ClusterError>> + Send + 'static, ClusterError>
    {
        let from = from.max(1);
        let stream = self
            .js
            .get_stream(&self.names.stream)
            .await
            .map_err(|err| ClusterError::nats("stream info", err))?;
        let consumer = stream
            .create_consumer(pull::OrderedConfig {
                description: Some(format!("idgraph node {} reading the log", self.config.node)),
                deliver_policy: DeliverPolicy::ByStartSequence { start_sequence: from },
                ..Default::default()
            })
            .await
            .map_err(|err| ClusterError::nats("create a consumer", err))?;
        let messages =
            consumer.messages().await.map_err(|err| ClusterError::nats("read the log", err))?;
        let mut next = from;
        Ok(messages.filter_map(move |message| {
            let item = (|| {
                let message = message.map_err(|err| ClusterError::nats("read the log", err))?;
                let info = message.info().map_err(|err| ClusterError::nats("read the log", err))?;
                let stream_seq = info.stream_sequence;
                // async-nats recreates an ordered consumer that failed before delivering anything
                // from the stream's start (DeliverPolicy::All), whatever it was asked: what was
                // delivered already comes again, and is skipped.
                if stream_seq < next {
                    return Ok(None);
                }
                if stream_seq != next {
                    return Err(ClusterError::Corrupt {
                        stream_seq,
                        reason: format!("expected stream sequence {next} next"),
                    });
                }
                let committed = decode(stream_seq, message.headers.as_ref(), &message.payload)?;
                next += 1;
                Ok(Some(committed))
            })();
            std::future::ready(item.transpose())
        }))
    }
}

/// A stored message back into a [`Committed`] group; every header is required.
fn decode(
    stream_seq: u64,
    headers: Option<&HeaderMap>,
    payload: &[u8],
) -> Result<Committed, ClusterError> {
    let corrupt = |reason: String| ClusterError::Corrupt { stream_seq, reason };
    let headers = headers.ok_or_else(|| corrupt("no headers".to_owned()))?;
    let text = |name: &str| {
        headers
            .get(name)
            .map(|value| value.as_str().to_owned())
            .ok_or_else(|| corrupt(format!("no {name} header")))
    };
    let number = |name: &str| {
        let value = text(name)?;
        value.parse::<u64>().map_err(|_| corrupt(format!("{name} is {value:?}, not a number")))
    };
    let first_seq = number(HEADER_FIRST_SEQ)?;
    let last_seq = number(HEADER_LAST_SEQ)?;
    if first_seq > last_seq || first_seq == 0 {
        return Err(corrupt(format!("entry sequences {first_seq}..={last_seq}")));
    }
    Ok(Committed {
        stream_seq,
        writer: text(HEADER_WRITER)?,
        term: number(HEADER_TERM)?,
        group: Group { first_seq, last_seq, bytes: payload.to_vec() },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_differ_in_every_part() {
        let group = Group { first_seq: 5, last_seq: 9, bytes: b"abc".to_vec() };
        let id = message_id("n1", 7, 41, &group);
        assert_eq!(id, format!("n1:7:41:5-9:{:016x}", xxhash_rust::xxh3::xxh3_64(b"abc")));
        assert_ne!(id, message_id("n2", 7, 41, &group));
        assert_ne!(id, message_id("n1", 8, 41, &group));
        assert_ne!(id, message_id("n1", 7, 42, &group));
        assert_ne!(id, message_id("n1", 7, 41, &Group { bytes: b"abd".to_vec(), ..group }));
    }

    #[test]
    fn the_actual_sequence_is_read_from_the_refusal() {
        let text = "wrong last sequence: wrong last sequence: 12 (code 400, error code 10071)";
        assert_eq!(actual_last_sequence(text), Some(12));
        assert_eq!(actual_last_sequence("wrong last sequence"), None);
    }

    #[test]
    fn decode_requires_every_header() {
        let mut headers = HeaderMap::new();
        headers.insert(HEADER_FIRST_SEQ, "3");
        headers.insert(HEADER_LAST_SEQ, "4");
        headers.insert(HEADER_WRITER, "n1");
        assert_eq!(
            decode(9, Some(&headers), b"x").unwrap_err().to_string(),
            "stream message 9 is not a valid commit group: no Idgraph-Term header"
        );
        headers.insert(HEADER_TERM, "2");
        let committed = decode(9, Some(&headers), b"x").unwrap();
        assert_eq!(committed.group, Group { first_seq: 3, last_seq: 4, bytes: b"x".to_vec() });
        assert_eq!((committed.writer.as_str(), committed.term), ("n1", 2));
        headers.insert(HEADER_LAST_SEQ, "2");
        assert!(decode(9, Some(&headers), b"x").unwrap_err().to_string().contains("3..=2"));
    }
}
