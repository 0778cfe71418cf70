//! Broker-side produce throughput, with a client that costs almost nothing.
//!
//! ```text
//! cargo run --release -p rill-kafka --example produce_bench -- HOST:PORT [RECORDS] [SIZE] [PARTITIONS]
//! ```
//!
//! It creates a fresh topic with CreateTopics, pre-encodes one uncompressed v2 batch of
//! 10,000 records of `SIZE` bytes per partition, and sends Produce v9 requests (acks=1,
//! one batch per partition each) pipelined on one connection until `RECORDS` records are
//! acknowledged. The client does no per-record work, so the rate is the broker's: request
//! decoding, validation of every record, the append and the response. Compare with
//! `tests/kafka/bench_produce.py`, where librdkafka and Python build the records.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Instant;

use anyhow::{Context, bail};
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, ProduceRequest, ProduceResponse, RequestHeader, ResponseHeader,
    TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes, encode_request_header_into_buffer};

const PER_BATCH: usize = 10_000;

fn frame<R: Encodable>(key: ApiKey, version: i16, corr: i32, req: &R) -> anyhow::Result<Bytes> {
    let mut body = BytesMut::new();
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(corr)
        .with_client_id(Some(StrBytes::from_static_str("produce_bench")));
    encode_request_header_into_buffer(&mut body, &header)?;
    req.encode(&mut body, version)?;
    let mut f = BytesMut::with_capacity(4 + body.len());
    f.put_i32(i32::try_from(body.len())?);
    f.put_slice(&body);
    Ok(f.freeze())
}

fn read_frame(s: &mut TcpStream) -> anyhow::Result<Bytes> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len)?;
    let mut b = vec![0u8; usize::try_from(i32::from_be_bytes(len))?];
    s.read_exact(&mut b)?;
    Ok(Bytes::from(b))
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args
        .next()
        .context("usage: produce_bench HOST:PORT [RECORDS] [SIZE] [PARTITIONS]")?;
    let records: usize = args.next().map_or(Ok(1_000_000), |a| a.parse())?;
    let size: usize = args.next().map_or(Ok(100), |a| a.parse())?;
    let partitions: i32 = args.next().map_or(Ok(4), |a| a.parse())?;
    let topic = format!("produce-bench-{}", std::process::id());

    let mut s = TcpStream::connect(&addr)?;
    s.set_nodelay(true)?;
    let create = CreateTopicsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(vec![
            kafka_protocol::messages::create_topics_request::CreatableTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic.clone())))
                .with_num_partitions(partitions)
                .with_replication_factor(1),
        ]);
    s.write_all(&frame(ApiKey::CreateTopics, 5, 0, &create)?)?;
    read_frame(&mut s)?;

    // One batch, reused for every partition and request: the broker overwrites baseOffset
    // only in its own copy.
    let value = vec![b'x'; size];
    let recs: Vec<rill_log::Record<'_>> = (0..PER_BATCH)
        .map(|_| rill_log::Record {
            key: None,
            value: Some(&value),
            headers: &[],
            timestamp_ms: None,
        })
        .collect();
    let batch = Bytes::from(rill_log::batch::encode(&recs, 0));
    let data = (0..partitions)
        .map(|p| {
            kafka_protocol::messages::produce_request::PartitionProduceData::default()
                .with_index(p)
                .with_records(Some(batch.clone()))
        })
        .collect();
    let req = ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![
            kafka_protocol::messages::produce_request::TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(topic.clone())))
                .with_partition_data(data),
        ]);
    let per_request = PER_BATCH * partitions as usize;
    let requests = records.div_ceil(per_request);
    let frames: Vec<Bytes> = (0..requests)
        .map(|i| frame(ApiKey::Produce, 9, i as i32 + 1, &req))
        .collect::<Result<_, _>>()?;

    let start = Instant::now();
    let mut w = s.try_clone()?;
    let writer = std::thread::spawn(move || -> std::io::Result<()> {
        for f in &frames {
            w.write_all(f)?;
        }
        Ok(())
    });
    for _ in 0..requests {
        let mut f = read_frame(&mut s)?;
        let _ = ResponseHeader::decode(&mut f, ApiKey::Produce.response_header_version(9))?;
        let resp = ProduceResponse::decode(&mut f, 9)?;
        for t in &resp.responses {
            for p in &t.partition_responses {
                if p.error_code != 0 {
                    bail!("partition {} error {}", p.index, p.error_code);
                }
            }
        }
    }
    let dt = start.elapsed().as_secs_f64();
    writer
        .join()
        .map_err(|_| anyhow::anyhow!("writer panicked"))??;
    let n = requests * per_request;
    println!(
        "broker produce: {n} records x {size} B in {} requests over {partitions} partitions: {dt:.3} s, {:.0} records/s, {:.1} MB/s",
        requests,
        n as f64 / dt,
        (n * size) as f64 / dt / 1e6
    );
    Ok(())
}
