//! One client connection: framing, header decoding, dispatch, responses in order.
//!
//! Like Kafka, a connection handles one request at a time and answers in order; clients
//! pipeline by sending several requests, which wait in the socket buffer. A frame that cannot
//! be decoded closes this connection only (the error is logged); an API or version we do not
//! serve gets `UNSUPPORTED_VERSION` and the connection stays open.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::api_versions;
use crate::error::ConnError;
use crate::server::Broker;
use crate::stats::{self, api_name};

/// Smallest request: api key, version, correlation id and a null client id.
const MIN_FRAME: i32 = 10;

/// Who sent a request, for handlers that record it (group members).
#[derive(Debug, Clone)]
pub(crate) struct Client {
    pub peer: SocketAddr,
    pub client_id: String,
}

/// Serves one connection until the client closes it or sends something unreadable.
pub(crate) async fn run(broker: Arc<Broker>, stream: TcpStream, peer: SocketAddr) {
    // Responses are small and latency matters more than packet count.
    let _ = stream.set_nodelay(true);
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::with_capacity(64 * 1024, rd);
    let mut client = Client {
        peer,
        client_id: String::new(),
    };
    tracing::debug!(%peer, "kafka connection opened");
    let result: Result<(), ConnError> = async {
        loop {
            let size = match rd.read_i32().await {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(e.into()),
            };
            let max = broker.cfg.max_request_bytes;
            if size < MIN_FRAME || size as usize > max {
                return Err(ConnError::FrameSize {
                    size: i64::from(size),
                    max,
                });
            }
            // Reserve the frame's memory first (at most the whole budget, so one maximal
            // frame can always proceed); the permit is held until the response is written.
            let size = size as usize;
            let kib = u32::try_from(size.div_ceil(1024)).unwrap_or(u32::MAX);
            let budget = u32::try_from(broker.request_memory_kib()).unwrap_or(u32::MAX);
            let _memory = broker
                .request_memory
                .clone()
                .acquire_many_owned(kib.min(budget))
                .await
                .map_err(|_| std::io::Error::other("broker shutting down"))?;
            // Read into uninitialised capacity: zeroing a large produce frame first would
            // cost as much as the copy itself.
            let mut frame = BytesMut::with_capacity(size);
            while frame.len() < size {
                let want = (size - frame.len()) as u64;
                if (&mut rd).take(want).read_buf(&mut frame).await? == 0 {
                    return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
                }
            }
            if let Some(resp) = dispatch(&broker, &mut client, frame.freeze()).await? {
                wr.write_all(&resp).await?;
            }
        }
    }
    .await;
    match result {
        Ok(()) => tracing::debug!(%peer, "kafka connection closed by client"),
        Err(ConnError::Io(e)) => tracing::debug!(%peer, "kafka connection closed: {e}"),
        Err(e) => {
            stats::add(&broker.stats.protocol_errors, 1);
            tracing::warn!(%peer, client_id = %client.client_id, "closing kafka connection: {e}");
        }
    }
}

/// Handles one request frame; `None` means no response is due (Produce with acks=0).
async fn dispatch(
    broker: &Arc<Broker>,
    client: &mut Client,
    frame: Bytes,
) -> Result<Option<Bytes>, ConnError> {
    let mut whole = frame.clone();
    let mut frame = frame;
    let key = frame.get_i16();
    let version = frame.get_i16();
    let correlation_id = frame.get_i32();
    broker.stats.count_request(key);

    // An API or version we do not serve closes the connection, as Kafka 4.x does (its
    // Processor logs "Closing socket ... UnsupportedVersionException" and answers nothing):
    // the client cannot decode a response schema it did not ask for, so an error frame in
    // some other shape would be misread (old clients took it for success), while a closed
    // connection is an error every client reports.
    let Some(api) = ApiKey::try_from(key).ok().and_then(api_versions::supported) else {
        return Err(ConnError::Unsupported { key, version });
    };
    let name = api_name(api.key);
    if api.key == ApiKey::ApiVersions && version > api.max {
        // A client newer than us: answer in v0, which every client can read (KIP-511).
        let resp = api_versions::unsupported();
        return encode(correlation_id, ApiKey::ApiVersions, 0, &resp).map(Some);
    }
    if version < api.accept_min || version > api.max {
        return Err(ConnError::Unsupported { key, version });
    }

    // Decode the whole header at its real version (client id, tagged fields) now that we
    // know the API and version are ones the codec handles; what follows it is the body.
    let header_version = api.key.request_header_version(version);
    let header =
        RequestHeader::decode(&mut whole, header_version).map_err(|e| ConnError::Malformed {
            api: name,
            version,
            reason: format!("header: {e}"),
        })?;
    if let Some(id) = &header.client_id
        && client.client_id.as_str() != id.as_str()
    {
        client.client_id = id.to_string();
    }
    handle(broker, client, api.key, version, correlation_id, whole).await
}

/// Decodes one request frame (the bytes after the 4-byte size) the way a connection does:
/// the frame-size bounds, the API key and version, the header at its version, then the body
/// of a supported API. Runs no handler. The fuzz target `kafka_request_decode` drives it.
#[doc(hidden)]
pub fn decode_request(frame: &[u8], max_request_bytes: usize) -> Result<(), String> {
    use kafka_protocol::messages::*;

    if frame.len() < MIN_FRAME as usize || frame.len() > max_request_bytes {
        return Err(format!("frame size {} out of bounds", frame.len()));
    }
    let mut whole = Bytes::copy_from_slice(frame);
    let mut head = whole.clone();
    let (key, version) = (head.get_i16(), head.get_i16());
    let Some(api) = ApiKey::try_from(key).ok().and_then(api_versions::supported) else {
        return Err(format!("unknown API {key}"));
    };
    if version < api.accept_min || version > api.max {
        return Err(format!("unsupported version {version}"));
    }
    RequestHeader::decode(&mut whole, api.key.request_header_version(version))
        .map_err(|e| format!("header: {e}"))?;
    macro_rules! body {
        ($t:ty) => {
            <$t>::decode(&mut whole, version)
                .map(drop)
                .map_err(|e| e.to_string())
        };
    }
    match api.key {
        ApiKey::ApiVersions => body!(ApiVersionsRequest),
        ApiKey::Metadata => body!(MetadataRequest),
        ApiKey::Produce => body!(ProduceRequest),
        ApiKey::Fetch => body!(FetchRequest),
        ApiKey::ListOffsets => body!(ListOffsetsRequest),
        ApiKey::CreateTopics => body!(CreateTopicsRequest),
        ApiKey::FindCoordinator => body!(FindCoordinatorRequest),
        ApiKey::JoinGroup => body!(JoinGroupRequest),
        ApiKey::SyncGroup => body!(SyncGroupRequest),
        ApiKey::Heartbeat => body!(HeartbeatRequest),
        ApiKey::LeaveGroup => body!(LeaveGroupRequest),
        ApiKey::DescribeGroups => body!(DescribeGroupsRequest),
        ApiKey::ListGroups => body!(ListGroupsRequest),
        ApiKey::OffsetCommit => body!(OffsetCommitRequest),
        ApiKey::OffsetFetch => body!(OffsetFetchRequest),
        k if crate::txn::serves(k) => crate::txn::decode_only(k, version, whole),
        k => crate::admin::decode_only(k, version, whole),
    }
}

/// Encodes a response frame: size, header at the API's header version, body.
pub(crate) fn encode<R: Encodable>(
    correlation_id: i32,
    key: ApiKey,
    version: i16,
    body: &R,
) -> Result<Bytes, ConnError> {
    let header_version = key.response_header_version(version);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let err = |e: Box<dyn std::error::Error + Send + Sync>| ConnError::Encode {
        api: api_name(key),
        version,
        reason: e.to_string(),
    };
    let size = header
        .compute_size(header_version)
        .map_err(|e| err(e.into()))?
        + body.compute_size(version).map_err(|e| err(e.into()))?;
    let mut buf = BytesMut::with_capacity(4 + size);
    buf.put_i32(i32::try_from(size).map_err(|e| err(e.into()))?);
    header
        .encode(&mut buf, header_version)
        .map_err(|e| err(e.into()))?;
    body.encode(&mut buf, version).map_err(|e| err(e.into()))?;
    Ok(buf.freeze())
}

/// Decodes the body, runs the API's handler and encodes its response.
async fn handle(
    broker: &Arc<Broker>,
    client: &Client,
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    mut body: Bytes,
) -> Result<Option<Bytes>, ConnError> {
    use crate::{fetch, groups, list_offsets, metadata, offsets, produce, topics};
    use kafka_protocol::messages::*;

    macro_rules! decode {
        ($t:ty) => {
            <$t>::decode(&mut body, version).map_err(|e| ConnError::Malformed {
                api: api_name(key),
                version,
                reason: e.to_string(),
            })?
        };
    }
    macro_rules! reply {
        ($resp:expr) => {
            encode(correlation_id, key, version, &$resp).map(Some)
        };
    }
    match key {
        ApiKey::ApiVersions => reply!(api_versions::handle(decode!(ApiVersionsRequest))),
        ApiKey::Metadata => reply!(metadata::handle(broker, decode!(MetadataRequest), version)),
        ApiKey::Produce => match produce::handle(broker, decode!(ProduceRequest), version).await {
            Some(resp) => reply!(resp),
            None => Ok(None),
        },
        ApiKey::Fetch => reply!(fetch::handle(broker, decode!(FetchRequest), version).await),
        ApiKey::ListOffsets => {
            reply!(list_offsets::handle(
                broker,
                decode!(ListOffsetsRequest),
                version
            ))
        }
        ApiKey::CreateTopics => {
            reply!(topics::create_topics(
                broker,
                decode!(CreateTopicsRequest),
                version
            ))
        }
        ApiKey::FindCoordinator => {
            reply!(groups::api::find_coordinator(
                broker,
                decode!(FindCoordinatorRequest),
                version
            ))
        }
        ApiKey::JoinGroup => {
            reply!(
                groups::api::join_group(broker, client, decode!(JoinGroupRequest), version).await
            )
        }
        ApiKey::SyncGroup => {
            reply!(groups::api::sync_group(broker, decode!(SyncGroupRequest)).await)
        }
        ApiKey::Heartbeat => reply!(groups::api::heartbeat(broker, decode!(HeartbeatRequest))),
        ApiKey::LeaveGroup => {
            reply!(groups::api::leave_group(
                broker,
                decode!(LeaveGroupRequest),
                version
            ))
        }
        ApiKey::DescribeGroups => {
            reply!(groups::api::describe_groups(
                broker,
                decode!(DescribeGroupsRequest)
            ))
        }
        ApiKey::ListGroups => reply!(groups::api::list_groups(broker, decode!(ListGroupsRequest))),
        ApiKey::OffsetCommit => {
            reply!(offsets::offset_commit(
                broker,
                decode!(OffsetCommitRequest),
                version
            ))
        }
        ApiKey::OffsetFetch => {
            reply!(offsets::offset_fetch(
                broker,
                decode!(OffsetFetchRequest),
                version
            ))
        }
        k if crate::txn::serves(k) => crate::txn::handle(broker, k, version, correlation_id, body)
            .await
            .map(Some),
        k if crate::admin::serves(k) => {
            crate::admin::handle(broker, k, version, correlation_id, body).map(Some)
        }
        // `supported` only lets the keys above through.
        _ => Err(ConnError::Unsupported {
            key: key as i16,
            version,
        }),
    }
}

#[cfg(test)]
mod tests;
