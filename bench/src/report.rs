//! The summary table, printed as Markdown so a run can be pasted into docs/benchmarks.md.

use std::time::Duration;

/// One line of the summary.
#[derive(Debug, Clone)]
pub struct Row {
    scenario: String,
    figure: String,
    setup: String,
    value: String,
    target: String,
    /// `Some(met)` when the figure has a target.
    met: Option<bool>,
}

impl Row {
    pub fn new(scenario: &str, figure: &str, setup: &str) -> Row {
        Row {
            scenario: scenario.to_owned(),
            figure: figure.to_owned(),
            setup: setup.to_owned(),
            value: String::new(),
            target: String::new(),
            met: None,
        }
    }

    pub fn value(mut self, v: String) -> Row {
        self.value = v;
        self
    }

    pub fn rate(self, per_s: f64) -> Row {
        self.value(rate(per_s))
    }

    pub fn target(mut self, target: &str, met: bool) -> Row {
        self.target = target.to_owned();
        self.met = Some(met);
        self
    }
}

/// Every row of a run.
#[derive(Debug, Default)]
pub struct Report {
    rows: Vec<Row>,
}

impl Report {
    pub fn push(&mut self, r: Row) {
        self.rows.push(r);
    }

    /// The table. In quick mode targets are shown but not judged: the sizes are too small
    /// for the figures to mean anything.
    pub fn render(&self, judge: bool) -> String {
        let mut out =
            String::from("| scenario | figure | setup | value | target |\n|---|---|---|---|---|\n");
        for r in &self.rows {
            let target = match (r.met, judge) {
                (Some(true), true) => format!("{} met", r.target),
                (Some(false), true) => format!("{} **missed**", r.target),
                _ => r.target.clone(),
            };
            out += &format!(
                "| {} | {} | {} | {} | {} |\n",
                r.scenario, r.figure, r.setup, r.value, target
            );
        }
        out
    }
}

/// `1.23 M records/s`.
pub fn rate(per_s: f64) -> String {
    if per_s >= 1e6 {
        format!("{:.2} M records/s", per_s / 1e6)
    } else if per_s >= 1e3 {
        format!("{:.1} k records/s", per_s / 1e3)
    } else {
        format!("{per_s:.0} records/s")
    }
}

/// `812 µs`, `12.3 ms`, `1.24 s`.
pub fn time(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1000.0 {
        format!("{us:.0} µs")
    } else if us < 1e6 {
        format!("{:.2} ms", us / 1e3)
    } else {
        format!("{:.2} s", us / 1e6)
    }
}

/// `812 MiB`.
pub fn bytes(b: u64) -> String {
    if b >= 1 << 30 {
        format!("{:.2} GiB", b as f64 / f64::from(1u32 << 30))
    } else {
        format!("{:.0} MiB", b as f64 / f64::from(1u32 << 20))
    }
}
