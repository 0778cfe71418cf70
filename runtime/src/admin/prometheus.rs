//! `GET /metrics`: Prometheus text exposition.

use std::fmt::Write;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use crate::host::Host;
use crate::metrics::{escape, render_headers};

/// Renders every metric the host has.
pub async fn metrics(State(host): State<Arc<Host>>) -> impl IntoResponse {
    let mut out = String::with_capacity(4096);
    render_headers(&mut out);
    host.scheduler.render_metrics(&mut out);
    // Lag and sizes come straight from the log and the offsets store at scrape time, for
    // every group: deployments' and Kafka consumers' alike.
    for g in super::groups::group_lag(&host) {
        let l = format!(
            "group=\"{}\",topic=\"{}\",partition=\"{}\"",
            escape(&g.group),
            escape(&g.topic),
            g.partition
        );
        let _ = writeln!(out, "rill_consumer_lag{{{l}}} {}", g.lag);
        let _ = writeln!(out, "rill_consumer_committed_offset{{{l}}} {}", g.committed);
    }
    for t in host.log.topics() {
        for p in t.partitions() {
            let l = format!("topic=\"{}\",partition=\"{}\"", escape(t.name()), p.id());
            let _ = writeln!(out, "rill_log_end_offset{{{l}}} {}", p.high_watermark());
            let _ = writeln!(out, "rill_log_size_bytes{{{l}}} {}", p.size_bytes());
        }
    }
    let _ = writeln!(
        out,
        "# TYPE rill_uptime_seconds gauge\nrill_uptime_seconds {}",
        host.started.elapsed().as_secs()
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}
