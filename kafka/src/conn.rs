//! One client connection: framing, header decoding, dispatch, responses in order.
//!
//! Like Kafka, a connection handles one request at a time and answers in order; clients
//! pipeline by sending several requests, which wait in the socket buffer. A frame that cannot
//! be decoded closes this connection only (the error is logged); an API or version we do not
//! serve gets `UNSUPPORTED_VERSION` and the connection stays open.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::ResponseError;
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
    let mut client = Client { peer, client_id: String::new() };
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
                return Err(ConnError::FrameSize { size: i64::from(size), max });
            }
            let mut frame = BytesMut::zeroed(size as usize);
            rd.read_exact(&mut frame).await?;
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

    let Some(api) = ApiKey::try_from(key).ok().and_then(api_versions::supported) else {
        tracing::debug!(key, version, "unknown API");
        return Ok(Some(error_frame(broker, correlation_id)));
    };
    let name = api_name(api.key);
    if api.key == ApiKey::ApiVersions && version > api.max {
        // A client newer than us: answer in v0, which every client can read (KIP-511).
        let resp = api_versions::unsupported();
        return encode(correlation_id, ApiKey::ApiVersions, 0, &resp).map(Some);
    }
    if version < api.accept_min || version > api.max {
        tracing::debug!(api = name, version, "unsupported version");
        return Ok(Some(error_frame(broker, correlation_id)));
    }

    // Decode the whole header at its real version (client id, tagged fields) now that we
    // know the API and version are ones the codec handles; what follows it is the body.
    let header_version = api.key.request_header_version(version);
    let header = RequestHeader::decode(&mut whole, header_version).map_err(|e| {
        ConnError::Malformed { api: name, version, reason: format!("header: {e}") }
    })?;
    if let Some(id) = &header.client_id
        && client.client_id.as_str() != id.as_str()
    {
        client.client_id = id.to_string();
    }
    handle(broker, client, api.key, version, correlation_id, whole).await
}

/// A response carrying only the correlation id and `UNSUPPORTED_VERSION` (35) for a request
/// whose API or version we do not serve. We cannot encode that API's real response schema,
/// but every Kafka response body that has a top-level error code puts it where a client
/// reading this frame will find it, and the connection stays usable.
fn error_frame(broker: &Broker, correlation_id: i32) -> Bytes {
    broker.stats.count_error(ResponseError::UnsupportedVersion.code());
    let mut b = BytesMut::with_capacity(10);
    b.put_i32(6);
    b.put_i32(correlation_id);
    b.put_i16(ResponseError::UnsupportedVersion.code());
    b.freeze()
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
    let size = header.compute_size(header_version).map_err(|e| err(e.into()))?
        + body.compute_size(version).map_err(|e| err(e.into()))?;
    let mut buf = BytesMut::with_capacity(4 + size);
    buf.put_i32(i32::try_from(size).map_err(|e| err(e.into()))?);
    header.encode(&mut buf, header_version).map_err(|e| err(e.into()))?;
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
            reply!(list_offsets::handle(broker, decode!(ListOffsetsRequest), version))
        }
        ApiKey::CreateTopics => {
            reply!(topics::create_topics(broker, decode!(CreateTopicsRequest), version))
        }
        ApiKey::InitProducerId => {
            reply!(produce::init_producer_id(broker, decode!(InitProducerIdRequest)))
        }
        ApiKey::FindCoordinator => {
            reply!(groups::api::find_coordinator(broker, decode!(FindCoordinatorRequest), version))
        }
        ApiKey::JoinGroup => {
            reply!(groups::api::join_group(broker, client, decode!(JoinGroupRequest), version).await)
        }
        ApiKey::SyncGroup => {
            reply!(groups::api::sync_group(broker, decode!(SyncGroupRequest)).await)
        }
        ApiKey::Heartbeat => reply!(groups::api::heartbeat(broker, decode!(HeartbeatRequest))),
        ApiKey::LeaveGroup => {
            reply!(groups::api::leave_group(broker, decode!(LeaveGroupRequest), version))
        }
        ApiKey::DescribeGroups => {
            reply!(groups::api::describe_groups(broker, decode!(DescribeGroupsRequest)))
        }
        ApiKey::ListGroups => reply!(groups::api::list_groups(broker, decode!(ListGroupsRequest))),
        ApiKey::OffsetCommit => {
            reply!(offsets::offset_commit(broker, decode!(OffsetCommitRequest), version))
        }
        ApiKey::OffsetFetch => {
            reply!(offsets::offset_fetch(broker, decode!(OffsetFetchRequest), version))
        }
        // `supported` only lets the keys above through.
        _ => Ok(Some(error_frame(broker, correlation_id))),
    }
}
