//! ListOffsets (2): latest (-1), earliest (-2) and by timestamp.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use crate::server::Broker;
use crate::topics;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;

/// Refines a hit in a compressed batch to the exact record; see
/// [`crate::compression::exact_timestamp_hit`].
fn exact(part: &rill_log::Partition, hit: (i64, i64), ts: i64) -> (i64, i64) {
    // A read returns at least the whole batch holding `hit.0`, whatever the byte limit.
    match part.read(hit.0, 1) {
        Ok(r) => crate::compression::exact_timestamp_hit(&r.bytes, hit, ts),
        Err(_) => hit,
    }
}

/// ListOffsets: resolves each partition's query against the log.
///
/// A timestamp query returns, as Kafka does, the offset and timestamp of the first record
/// whose timestamp is at or after it (the log's time index finds the batch; within a
/// compressed batch we decompress it to find the record), or offset and timestamp -1 if
/// there is none. Latest and earliest answer timestamp -1, as Kafka does.
pub(crate) fn handle(
    broker: &Broker,
    req: ListOffsetsRequest,
    version: i16,
) -> ListOffsetsResponse {
    let _ = version;
    // READ_COMMITTED (1): "latest" is the last stable offset.
    let committed = req.isolation_level == 1;
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let topic = broker.log.topic(t.name.0.as_str());
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let r = ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index);
                    let Some(part) = topic
                        .as_ref()
                        .and_then(|t| topics::partition(t, p.partition_index))
                    else {
                        let code = ResponseError::UnknownTopicOrPartition.code();
                        broker.stats.count_error(code);
                        return r.with_error_code(code).with_offset(-1).with_timestamp(-1);
                    };
                    match p.timestamp {
                        LATEST if committed => {
                            r.with_offset(part.last_stable_offset()).with_timestamp(-1)
                        }
                        LATEST => r.with_offset(part.high_watermark()).with_timestamp(-1),
                        EARLIEST => r.with_offset(part.log_start_offset()).with_timestamp(-1),
                        ts if ts >= 0 => match part.find_timestamp(ts) {
                            Ok(Some(hit)) => {
                                let (o, found) = exact(part, hit, ts);
                                r.with_offset(o).with_timestamp(found)
                            }
                            Ok(None) => r.with_offset(-1).with_timestamp(-1),
                            Err(e) => {
                                tracing::warn!(error = %e, "ListOffsets by timestamp failed");
                                let code = ResponseError::KafkaStorageError.code();
                                broker.stats.count_error(code);
                                r.with_error_code(code).with_offset(-1).with_timestamp(-1)
                            }
                        },
                        _ => {
                            let code = ResponseError::UnsupportedVersion.code();
                            broker.stats.count_error(code);
                            r.with_error_code(code).with_offset(-1).with_timestamp(-1)
                        }
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}

#[cfg(test)]
mod tests {
    //! Issue 11: batches whose maxTimestamp is -1 are stored (with the real maximum), and
    //! ListOffsets by timestamp answers the exact record and its own timestamp, as Apache
    //! Kafka 4.1 answered the same bytes (probed: 1030 → offset 1 at 1040, 2030 in a gzip
    //! batch → offset 4 at 2040, past the end → -1/-1, latest and earliest → timestamp -1).

    use std::sync::Arc;

    use std::io::Write;

    use kafka_protocol::messages::TopicName;
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    use kafka_protocol::protocol::StrBytes;

    use super::*;

    /// Records at `first`, `first + 40`, `first + 20`, gzip-compressed if asked, with
    /// maxTimestamp -1 in the header (CRC fixed up), as a Go producer sends them.
    fn go_batch(first: i64, gzip: bool) -> Vec<u8> {
        let at = |d: i64| rill_log::Record {
            value: Some(b"v"),
            timestamp_ms: Some(first + d),
            ..Default::default()
        };
        let mut b = rill_log::batch::encode(&[at(0), at(40), at(20)], 0);
        if gzip {
            let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            z.write_all(&b[61..]).unwrap();
            b.truncate(61);
            b.extend_from_slice(&z.finish().unwrap());
            let len = (b.len() - 12) as i32;
            b[8..12].copy_from_slice(&len.to_be_bytes());
            b[22] |= 1;
        }
        b[35..43].copy_from_slice(&(-1i64).to_be_bytes());
        let crc = crc32c::crc32c(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        b
    }

    fn list(broker: &Broker, ts: i64) -> (i16, i64, i64) {
        let req = ListOffsetsRequest::default().with_topics(vec![
            ListOffsetsTopic::default()
                .with_name(TopicName(StrBytes::from_static_str("t")))
                .with_partitions(vec![ListOffsetsPartition::default().with_timestamp(ts)]),
        ]);
        let p = &handle(broker, req, 6).topics[0].partitions[0];
        (p.error_code, p.timestamp, p.offset)
    }

    #[test]
    fn issue11_max_timestamp_minus_one_and_list_offsets_by_timestamp() {
        let dir = tempfile::tempdir().unwrap();
        let log =
            Arc::new(rill_log::Log::open(dir.path(), rill_log::LogOptions::default()).unwrap());
        let t = log
            .create_topic("t", rill_log::TopicConfig::default())
            .unwrap();
        let part = t.partition(0).unwrap().clone();
        let broker = Broker::new(log, crate::KafkaConfig::default()).unwrap();
        for (first, gzip) in [(1000, false), (2000, true)] {
            let mut b = go_batch(first, gzip);
            // What the Produce handler does before appending.
            crate::compression::fix_compressed_max_timestamps(&mut b);
            part.append_batches(&mut b)
                .unwrap_or_else(|e| panic!("gzip {gzip}: {e}"));
        }
        for (ts, want) in [
            (0, (0, 1000, 0)),
            (1030, (0, 1040, 1)),
            (1041, (0, 2000, 3)),
            (2030, (0, 2040, 4)),
            (2041, (0, -1, -1)),
            (-1, (0, -1, 6)),
            (-2, (0, -1, 0)),
        ] {
            assert_eq!(list(&broker, ts), want, "ListOffsets {ts}");
        }
    }
}
