//! The cost of schema validation at the Kafka door (issue 14): produce throughput of framed
//! Avro orders (~150 bytes each) over the Kafka door, to a topic with
//! `confluent.value.schema.validation` off and to one with it on, on the same host in the
//! same run, best of the rounds each. The schema is registered over the host registry's
//! REST API, as a serializer would.

use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::producer::{BaseRecord, Producer};
use rill_runtime::admin::api::{CreateTopic, TopicInfo};
use rill_runtime::schema::client::RegistryClient;
use rill_runtime::schema::{SchemaSource, SchemaType};

use crate::cluster::kafka::{Deliveries, Threaded, config, send};
use crate::host::Host;
use crate::report::{Report, Row, rate};
use crate::{Ctx, Progress};

/// An order as a shop would publish it.
const ORDER: &str = r#"{"type":"record","name":"Order","namespace":"shop","fields":[
  {"name":"id","type":"long"},
  {"name":"customer","type":"string"},
  {"name":"email","type":"string"},
  {"name":"created_at","type":{"type":"long","logicalType":"timestamp-millis"}},
  {"name":"amount_cents","type":"long"},
  {"name":"currency","type":{"type":"enum","name":"Currency","symbols":["EUR","USD","GBP"]}},
  {"name":"items","type":{"type":"array","items":{"type":"record","name":"Item",
    "fields":[{"name":"sku","type":"string"},{"name":"qty","type":"int"},
              {"name":"price_cents","type":"long"}]}}},
  {"name":"street","type":"string"},
  {"name":"city","type":"string"},
  {"name":"note","type":["null","string"],"default":null}]}"#;

fn zigzag(out: &mut Vec<u8>, n: i64) {
    let mut v = ((n << 1) ^ (n >> 63)) as u64;
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn string(out: &mut Vec<u8>, s: &str) {
    zigzag(out, s.len() as i64);
    out.extend_from_slice(s.as_bytes());
}

/// Order `i`, framed with schema `id` (magic byte 0, the id big-endian, Avro binary).
fn order(id: u32, i: i64) -> Vec<u8> {
    let mut out = vec![0];
    out.extend_from_slice(&id.to_be_bytes());
    zigzag(&mut out, 1_000_000 + i);
    string(&mut out, &format!("customer-{:05}", i % 10_007));
    string(&mut out, &format!("buyer{:05}@example.com", i % 10_007));
    zigzag(&mut out, 1_764_800_000_000 + i * 37);
    zigzag(&mut out, 1_000 + (i * 7919) % 90_000);
    zigzag(&mut out, i % 3);
    let items = 2 + i % 3;
    zigzag(&mut out, items);
    for k in 0..items {
        string(&mut out, &format!("SKU-{:06}", (i * 31 + k) % 100_000));
        zigzag(&mut out, 1 + k);
        zigzag(&mut out, 499 + k * 100);
    }
    zigzag(&mut out, 0);
    string(
        &mut out,
        &format!("{} Rue de la République, apt {}", 1 + i % 200, 1 + i % 50),
    );
    string(
        &mut out,
        ["Lyon", "Berlin", "Leeds", "Porto", "Austin"][(i % 5) as usize],
    );
    if i % 4 == 0 {
        zigzag(&mut out, 1);
        string(&mut out, "leave at the door");
    } else {
        zigzag(&mut out, 0);
    }
    out
}

/// Sends `payloads` round-robin until `n` records went to `topic`, all acknowledged;
/// returns records/s.
fn produce(
    bootstrap: &str,
    topic: &str,
    partitions: u32,
    payloads: &[Vec<u8>],
    n: u64,
) -> anyhow::Result<f64> {
    let producer: Threaded = config(bootstrap, "rill-bench-validation")
        .set("acks", "1")
        .set("enable.idempotence", "false")
        .set("linger.ms", "5")
        .set("batch.size", "1000000")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000")
        .set("compression.type", "none")
        .set("message.send.max.retries", "0")
        .create_with_context(Deliveries::default())
        .context("cannot create the producer")?;
    let t = Instant::now();
    for i in 0..n {
        let payload = &payloads[(i % payloads.len() as u64) as usize];
        let p = (i % u64::from(partitions)) as i32;
        send(
            &producer,
            BaseRecord::to(topic).partition(p).payload(&payload[..]),
        )?;
    }
    producer.context().wait(n, Duration::from_secs(600))?;
    let elapsed = t.elapsed();
    producer.context().check()?;
    Ok(n as f64 / elapsed.as_secs_f64())
}

pub fn run(ctx: &Ctx, pb: &Progress, report: &mut Report) -> anyhow::Result<()> {
    let dir = ctx.tmp.path().join("validation");
    let mut host = Host::start(&ctx.bin, &dir)?;
    let bootstrap = host
        .kafka
        .clone()
        .context("the host runs no Kafka listener")?;
    let registry = RegistryClient::new(
        host.schema_registry
            .as_deref()
            .context("the host serves no schema registry")?,
    );
    let id = registry.register("orders-value", SchemaType::Avro, ORDER)?;
    let client = host.client();
    let partitions = ctx.partitions;
    for (name, validate) in [("orders-plain", false), ("orders", true)] {
        let _: TopicInfo = client.post(
            "/v1/topics",
            &CreateTopic {
                name: name.into(),
                partitions: Some(partitions),
                flush: None,
                retention_ms: None,
                retention_bytes: None,
                segment_bytes: None,
                cleanup_policy: None,
                delete_retention_ms: None,
                min_compaction_lag_ms: None,
                value_schema_validation: Some(validate),
                key_schema_validation: None,
            },
        )?;
    }
    let payloads: Vec<Vec<u8>> = (0..4096).map(|i| order(id, i)).collect();
    let mean = payloads.iter().map(Vec::len).sum::<usize>() / payloads.len();
    let n = ctx.records.min(if ctx.quick { 20_000 } else { 1_000_000 });
    let (mut off, mut on) = (0f64, 0f64);
    // Host CPU per record, the least of the rounds: what validation costs the host,
    // whatever share of the two cores the producer in this process took.
    let (mut cpu_off, mut cpu_on) = (f64::MAX, f64::MAX);
    for round in 0..ctx.rounds {
        // Alternate which goes first, so neither always meets a warmer page cache.
        let order = if round % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for validate in order {
            let topic = if validate { "orders" } else { "orders-plain" };
            pb.phase(
                &format!(
                    "validation {}, round {}",
                    if validate { "on" } else { "off" },
                    round + 1
                ),
                n,
            );
            let before = host.cpu_time();
            let r = produce(&bootstrap, topic, partitions, &payloads, n)?;
            let cpu = host
                .cpu_time()
                .zip(before)
                .map_or(f64::NAN, |(a, b)| (a - b).as_secs_f64() * 1e9 / n as f64);
            if validate {
                on = on.max(r);
                cpu_on = cpu_on.min(cpu);
            } else {
                off = off.max(r);
                cpu_off = cpu_off.min(cpu);
            }
        }
    }
    host.stop()?;
    let setup = format!(
        "{n} framed Avro orders (mean {mean} B) per pass, {partitions} partitions, rdkafka acks=1, best of {}",
        ctx.rounds
    );
    report.push(Row::new("validation", "produce, validation off (Kafka door)", &setup).rate(off));
    let cost = 1.0 - on / off;
    report.push(
        Row::new("validation", "produce, validation on", &setup)
            .value(format!("{} ({:+.1}% vs off)", rate(on), -cost * 100.0))
            .target("≤ 20% slower", cost <= 0.20),
    );
    report.push(
        Row::new("validation", "host CPU per record, off → on", &setup).value(format!(
            "{cpu_off:.0} ns → {cpu_on:.0} ns ({:+.0} ns)",
            cpu_on - cpu_off
        )),
    );
    Ok(())
}
