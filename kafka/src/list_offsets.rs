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

/// ListOffsets: resolves each partition's query against the log.
///
/// A timestamp query returns the first offset whose batch's max timestamp is at or after it
/// (what the log's time index gives), or offset -1 if there is none, as Kafka does. The
/// returned timestamp is the one asked for: the log does not report the record's own.
pub(crate) fn handle(
    broker: &Broker,
    req: ListOffsetsRequest,
    version: i16,
) -> ListOffsetsResponse {
    let _ = version;
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
                        LATEST => r.with_offset(part.high_watermark()).with_timestamp(-1),
                        EARLIEST => r.with_offset(part.log_start_offset()).with_timestamp(-1),
                        ts if ts >= 0 => match part.offset_for_timestamp(ts) {
                            Ok(Some(o)) => r.with_offset(o).with_timestamp(ts),
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
