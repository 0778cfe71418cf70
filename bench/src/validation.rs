//! The cost of schema validation at the Kafka door (issue 14): produce throughput of framed
//! orders over the Kafka door, to a topic with `confluent.value.schema.validation` off and
//! to one with it on, on the same host in the same run, best of the rounds each. Three
//! formats, each against its own baseline: Avro orders (~150 bytes), and the same orders as
//! JSON Schema records (~400 bytes) and as Protobuf (~170 bytes). The schemas are
//! registered over the host registry's REST API, as a serializer would.

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

/// The same order as a JSON Schema (draft 7), as strict as the Avro one.
const ORDER_JSON: &str = r#"{"$schema":"http://json-schema.org/draft-07/schema#",
  "title":"Order","type":"object","additionalProperties":false,
  "required":["id","customer","email","created_at","amount_cents","currency","items","street","city"],
  "properties":{
    "id":{"type":"integer"},
    "customer":{"type":"string"},
    "email":{"type":"string"},
    "created_at":{"type":"integer"},
    "amount_cents":{"type":"integer","minimum":0},
    "currency":{"enum":["EUR","USD","GBP"]},
    "items":{"type":"array","items":{"type":"object","additionalProperties":false,
      "required":["sku","qty","price_cents"],
      "properties":{"sku":{"type":"string"},"qty":{"type":"integer","minimum":1},
                    "price_cents":{"type":"integer"}}}},
    "street":{"type":"string"},
    "city":{"type":"string"},
    "note":{"type":["null","string"]}}}"#;

/// The same order in Protobuf (proto3).
const ORDER_PROTO: &str = r#"syntax = "proto3";
package shop;

message Order {
  enum Currency { EUR = 0; USD = 1; GBP = 2; }
  message Item {
    string sku = 1;
    int32 qty = 2;
    int64 price_cents = 3;
  }
  int64 id = 1;
  string customer = 2;
  string email = 3;
  int64 created_at = 4;
  int64 amount_cents = 5;
  Currency currency = 6;
  repeated Item items = 7;
  string street = 8;
  string city = 9;
  optional string note = 10;
}
"#;

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

/// Order `i` as JSON, framed with schema `id`: the same fields and values as [`order`].
fn order_json(id: u32, i: i64) -> Vec<u8> {
    let items: Vec<serde_json::Value> = (0..2 + i % 3)
        .map(|k| {
            serde_json::json!({"sku": format!("SKU-{:06}", (i * 31 + k) % 100_000),
                "qty": 1 + k, "price_cents": 499 + k * 100})
        })
        .collect();
    let currency = ["EUR", "USD", "GBP"][(i % 3) as usize];
    let city = ["Lyon", "Berlin", "Leeds", "Porto", "Austin"][(i % 5) as usize];
    let value = serde_json::json!({
        "id": 1_000_000 + i,
        "customer": format!("customer-{:05}", i % 10_007),
        "email": format!("buyer{:05}@example.com", i % 10_007),
        "created_at": 1_764_800_000_000 + i * 37,
        "amount_cents": 1_000 + (i * 7919) % 90_000,
        "currency": currency,
        "items": items,
        "street": format!("{} Rue de la République, apt {}", 1 + i % 200, 1 + i % 50),
        "city": city,
        "note": if i % 4 == 0 { serde_json::json!("leave at the door") } else { serde_json::Value::Null },
    });
    let mut out = vec![0];
    out.extend_from_slice(&id.to_be_bytes());
    serde_json::to_writer(&mut out, &value).expect("JSON of a value");
    out
}

/// A Protobuf varint.
fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A Protobuf length-delimited field (wire type 2).
fn delimited(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    varint(out, field << 3 | 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// A Protobuf varint field (wire type 0).
fn varint_field(out: &mut Vec<u8>, field: u64, v: u64) {
    varint(out, field << 3);
    varint(out, v);
}

/// Order `i` in Protobuf, framed with schema `id` and the message index of `Order` (the
/// first message: a single 0): the same fields and values as [`order`].
fn order_proto(id: u32, i: i64) -> Vec<u8> {
    let mut out = vec![0];
    out.extend_from_slice(&id.to_be_bytes());
    out.push(0);
    varint_field(&mut out, 1, (1_000_000 + i) as u64);
    delimited(
        &mut out,
        2,
        format!("customer-{:05}", i % 10_007).as_bytes(),
    );
    delimited(
        &mut out,
        3,
        format!("buyer{:05}@example.com", i % 10_007).as_bytes(),
    );
    varint_field(&mut out, 4, (1_764_800_000_000 + i * 37) as u64);
    varint_field(&mut out, 5, (1_000 + (i * 7919) % 90_000) as u64);
    if i % 3 != 0 {
        varint_field(&mut out, 6, (i % 3) as u64);
    }
    for k in 0..2 + i % 3 {
        let mut item = Vec::new();
        delimited(
            &mut item,
            1,
            format!("SKU-{:06}", (i * 31 + k) % 100_000).as_bytes(),
        );
        varint_field(&mut item, 2, (1 + k) as u64);
        varint_field(&mut item, 3, (499 + k * 100) as u64);
        delimited(&mut out, 7, &item);
    }
    let street = format!("{} Rue de la République, apt {}", 1 + i % 200, 1 + i % 50);
    delimited(&mut out, 8, street.as_bytes());
    let city = ["Lyon", "Berlin", "Leeds", "Porto", "Austin"][(i % 5) as usize];
    delimited(&mut out, 9, city.as_bytes());
    if i % 4 == 0 {
        delimited(&mut out, 10, b"leave at the door");
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

/// One format's pair of topics and its records.
struct Format {
    name: &'static str,
    plain: &'static str,
    validating: &'static str,
    payloads: Vec<Vec<u8>>,
}

/// What one format measured: best rates off and on, least host CPU per record off and on.
#[derive(Default)]
struct Measured {
    off: f64,
    on: f64,
    cpu_off: f64,
    cpu_on: f64,
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
    let avro_id = registry.register("orders-value", SchemaType::Avro, ORDER)?;
    let json_id = registry.register("orders-json-value", SchemaType::Json, ORDER_JSON)?;
    let proto_id = registry.register("orders-proto-value", SchemaType::Protobuf, ORDER_PROTO)?;
    let formats = [
        Format {
            name: "Avro",
            plain: "orders-plain",
            validating: "orders",
            payloads: (0..4096).map(|i| order(avro_id, i)).collect(),
        },
        Format {
            name: "JSON Schema",
            plain: "orders-json-plain",
            validating: "orders-json",
            payloads: (0..4096).map(|i| order_json(json_id, i)).collect(),
        },
        Format {
            name: "Protobuf",
            plain: "orders-proto-plain",
            validating: "orders-proto",
            payloads: (0..4096).map(|i| order_proto(proto_id, i)).collect(),
        },
    ];
    let client = host.client();
    let partitions = ctx.partitions;
    for f in &formats {
        for (name, validate) in [(f.plain, false), (f.validating, true)] {
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
    }
    let n = ctx.records.min(if ctx.quick { 20_000 } else { 1_000_000 });
    let mut measured: Vec<Measured> = formats
        .iter()
        .map(|_| Measured {
            cpu_off: f64::MAX,
            cpu_on: f64::MAX,
            ..Measured::default()
        })
        .collect();
    for round in 0..ctx.rounds {
        for (f, m) in formats.iter().zip(&mut measured) {
            // Alternate which goes first, so neither always meets a warmer page cache.
            let order = if round % 2 == 0 {
                [false, true]
            } else {
                [true, false]
            };
            for validate in order {
                let topic = if validate { f.validating } else { f.plain };
                pb.phase(
                    &format!(
                        "validation {}, {}, round {}",
                        if validate { "on" } else { "off" },
                        f.name,
                        round + 1
                    ),
                    n,
                );
                let before = host.cpu_time();
                let r = produce(&bootstrap, topic, partitions, &f.payloads, n)?;
                // Host CPU per record, the least of the rounds: what validation costs the
                // host, whatever share of the two cores the producer in this process took.
                let cpu = host
                    .cpu_time()
                    .zip(before)
                    .map_or(f64::NAN, |(a, b)| (a - b).as_secs_f64() * 1e9 / n as f64);
                if validate {
                    m.on = m.on.max(r);
                    m.cpu_on = m.cpu_on.min(cpu);
                } else {
                    m.off = m.off.max(r);
                    m.cpu_off = m.cpu_off.min(cpu);
                }
            }
        }
    }
    host.stop()?;
    for (f, m) in formats.iter().zip(&measured) {
        let mean = f.payloads.iter().map(Vec::len).sum::<usize>() / f.payloads.len();
        let setup = format!(
            "{n} framed {} orders (mean {mean} B) per pass, {partitions} partitions, rdkafka acks=1, best of {}",
            f.name, ctx.rounds
        );
        report.push(
            Row::new(
                "validation",
                &format!("{}: produce, validation off (Kafka door)", f.name),
                &setup,
            )
            .rate(m.off),
        );
        let cost = 1.0 - m.on / m.off;
        report.push(
            Row::new(
                "validation",
                &format!("{}: produce, validation on", f.name),
                &setup,
            )
            .value(format!("{} ({:+.1}% vs off)", rate(m.on), -cost * 100.0))
            .target("≤ 20% slower", cost <= 0.20),
        );
        report.push(
            Row::new(
                "validation",
                &format!("{}: host CPU per record, off → on", f.name),
                &setup,
            )
            .value(format!(
                "{:.0} ns → {:.0} ns ({:+.0} ns)",
                m.cpu_off,
                m.cpu_on,
                m.cpu_on - m.cpu_off
            )),
        );
    }
    Ok(())
}
