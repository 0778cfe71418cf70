//! `GET /metrics`: Prometheus text exposition.

use std::fmt::Write;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use crate::host::Host;
use crate::metrics::{escape, family};

/// Renders every metric the host has.
pub async fn metrics(State(host): State<Arc<Host>>) -> impl IntoResponse {
    let mut out = String::with_capacity(4096);
    host.scheduler.render_metrics(&mut out);
    // Lag and sizes come straight from the log and the offsets store at scrape time, for
    // every group: deployments' and Kafka consumers' alike. Each family is written whole
    // (the text format wants a family's samples together).
    let groups: Vec<(String, _)> = super::groups::group_lag(&host)
        .into_iter()
        .map(|g| {
            let l = format!(
                "group=\"{}\",topic=\"{}\",partition=\"{}\"",
                escape(&g.group),
                escape(&g.topic),
                g.partition
            );
            (l, g)
        })
        .collect();
    family(
        &mut out,
        "rill_consumer_lag",
        "gauge",
        "End offset minus committed offset, per group and partition.",
    );
    for (l, g) in &groups {
        let _ = writeln!(out, "rill_consumer_lag{{{l}}} {}", g.lag);
    }
    family(
        &mut out,
        "rill_consumer_committed_offset",
        "gauge",
        "Committed offset, per group and partition.",
    );
    for (l, g) in &groups {
        let _ = writeln!(out, "rill_consumer_committed_offset{{{l}}} {}", g.committed);
    }
    let partitions: Vec<(String, std::sync::Arc<rill_log::Partition>)> = host
        .log
        .topics()
        .iter()
        .flat_map(|t| {
            t.partitions().iter().map(|p| {
                let l = format!("topic=\"{}\",partition=\"{}\"", escape(t.name()), p.id());
                (l, p.clone())
            })
        })
        .collect();
    family(
        &mut out,
        "rill_log_end_offset",
        "gauge",
        "High watermark per partition.",
    );
    for (l, p) in &partitions {
        let _ = writeln!(out, "rill_log_end_offset{{{l}}} {}", p.high_watermark());
    }
    family(
        &mut out,
        "rill_log_last_stable_offset",
        "gauge",
        "Last stable offset per partition: where read_committed readers stop. Below the end \
         offset while a transaction is open; one stuck there is a hanging transaction.",
    );
    for (l, p) in &partitions {
        let _ = writeln!(
            out,
            "rill_log_last_stable_offset{{{l}}} {}",
            p.last_stable_offset()
        );
    }
    family(
        &mut out,
        "rill_transactions",
        "gauge",
        "Transactional ids known to the log's coordinator, by the state of their transaction.",
    );
    let mut by_state: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
    for m in host.log.transactions() {
        let state = serde_json::to_value(m.state)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        *by_state.entry(state).or_default() += 1;
    }
    for (state, n) in by_state {
        let _ = writeln!(out, "rill_transactions{{state=\"{state}\"}} {n}");
    }
    family(
        &mut out,
        "rill_log_size_bytes",
        "gauge",
        "Bytes on disk per partition.",
    );
    for (l, p) in &partitions {
        let _ = writeln!(out, "rill_log_size_bytes{{{l}}} {}", p.size_bytes());
    }
    family(
        &mut out,
        "rill_uptime_seconds",
        "gauge",
        "Seconds since the host started.",
    );
    let _ = writeln!(
        out,
        "rill_uptime_seconds {}",
        host.started.elapsed().as_secs()
    );
    if let Some(kafka) = &host.kafka {
        render_kafka(&mut out, &kafka.stats().snapshot());
    }
    if let Some(cluster) = &host.cluster {
        render_cluster(&mut out, &cluster.status(), &host.scheduler.list());
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}

/// Cluster mode: whether the cluster answers, and each deployment's partitions as this
/// host sees them (committed offset and end from the cluster, the owning host).
fn render_cluster(
    out: &mut String,
    c: &crate::cluster::ClusterStatus,
    deployments: &[crate::scheduler::DeploymentInfo],
) {
    family(
        out,
        "rill_cluster_reachable",
        "gauge",
        "1 if the Kafka cluster answered the last metadata request, else 0.",
    );
    let _ = writeln!(out, "rill_cluster_reachable {}", u8::from(c.reachable));
    family(
        out,
        "rill_cluster_brokers",
        "gauge",
        "Brokers the cluster names.",
    );
    let _ = writeln!(out, "rill_cluster_brokers {}", c.brokers);
    // (labels, lag, committed, end) per deployment partition.
    type Row = (String, i64, i64, i64);
    type Family = (&'static str, &'static str, fn(&Row) -> i64);
    let rows: Vec<Row> = deployments
        .iter()
        .flat_map(|d| {
            d.partitions.iter().map(|p| {
                let l = format!(
                    "deployment=\"{}\",topic=\"{}\",partition=\"{}\",owner=\"{}\"",
                    escape(&d.spec.name),
                    escape(&d.spec.topic),
                    p.partition,
                    escape(p.owner.as_deref().unwrap_or(""))
                );
                (l, p.lag, p.committed.unwrap_or(-1), p.end)
            })
        })
        .collect();
    let families: [Family; 3] = [
        (
            "rill_cluster_partition_lag",
            "End offset minus committed offset in the cluster, per deployment partition.",
            |r| r.1,
        ),
        (
            "rill_cluster_partition_committed_offset",
            "The deployment group's committed offset in the cluster (-1: none).",
            |r| r.2,
        ),
        (
            "rill_cluster_partition_end_offset",
            "The partition's high watermark in the cluster.",
            |r| r.3,
        ),
    ];
    for (name, help, value) in families {
        family(out, name, "gauge", help);
        for r in &rows {
            let _ = writeln!(out, "{name}{{{}}} {}", r.0, value(r));
        }
    }
}

/// The Kafka door's counters.
fn render_kafka(out: &mut String, s: &rill_kafka::KafkaStatsSnapshot) {
    let counters: [(&str, &str, &str, u64); 8] = [
        (
            "rill_kafka_connections_accepted_total",
            "counter",
            "Kafka client connections accepted.",
            s.connections_accepted,
        ),
        (
            "rill_kafka_connections_open",
            "gauge",
            "Kafka client connections open now.",
            s.connections_open,
        ),
        (
            "rill_kafka_connections_refused_total",
            "counter",
            "Kafka client connections refused (connection limit).",
            s.connections_refused,
        ),
        (
            "rill_kafka_protocol_errors_total",
            "counter",
            "Kafka connections closed on a malformed or oversized frame.",
            s.protocol_errors,
        ),
        (
            "rill_kafka_produce_records_total",
            "counter",
            "Records appended through Kafka Produce requests.",
            s.produce_records,
        ),
        (
            "rill_kafka_produce_bytes_total",
            "counter",
            "Record-batch bytes appended through Kafka Produce requests.",
            s.produce_bytes,
        ),
        (
            "rill_kafka_fetch_bytes_total",
            "counter",
            "Record-batch bytes served by Kafka Fetch requests.",
            s.fetch_bytes,
        ),
        (
            "rill_kafka_error_responses_total",
            "counter",
            "Kafka responses that carried an error code.",
            s.error_responses,
        ),
    ];
    for (name, kind, help, value) in counters {
        family(out, name, kind, help);
        let _ = writeln!(out, "{name} {value}");
    }
    family(
        out,
        "rill_kafka_requests_total",
        "counter",
        "Kafka requests received, per API.",
    );
    for (api, n) in &s.requests {
        let _ = writeln!(
            out,
            "rill_kafka_requests_total{{api=\"{}\"}} {n}",
            escape(api)
        );
    }
}
