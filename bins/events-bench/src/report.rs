//! One result per scenario: a JSON line for machines, a table row for people.

use serde::Serialize;
use serde_json::Value;

/// A target of issue 8 and whether this run met it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Target {
    pub(crate) name: String,
    /// e.g. `">= 100000"`.
    pub(crate) wanted: String,
    pub(crate) value: f64,
    pub(crate) met: bool,
}

impl Target {
    pub(crate) fn at_least(name: &str, value: f64, bound: f64) -> Self {
        Self {
            name: name.to_owned(),
            wanted: format!(">= {bound}"),
            value,
            met: value >= bound,
        }
    }

    pub(crate) fn at_most(name: &str, value: f64, bound: f64) -> Self {
        Self {
            name: name.to_owned(),
            wanted: format!("<= {bound}"),
            value,
            met: value <= bound,
        }
    }
}

/// The result of one scenario.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Report {
    pub(crate) scenario: &'static str,
    pub(crate) quick: bool,
    /// The headline number (events/s, req/s, ms) and its unit.
    pub(crate) value: f64,
    pub(crate) unit: &'static str,
    /// The raw ceiling this scenario competes with, measured in the same run.
    pub(crate) ceiling: Option<f64>,
    pub(crate) ceiling_what: &'static str,
    /// `value / ceiling` (for latencies: `ceiling / value`, so that higher is better).
    pub(crate) ratio: Option<f64>,
    /// Issue-8 targets; only meaningful on a full-size run (`--quick` never judges timings).
    pub(crate) targets: Vec<Target>,
    /// Whether the final state matched the independently computed expectation.
    pub(crate) state_ok: bool,
    pub(crate) state: String,
    /// Scenario-specific figures (counts, percentiles, lag samples, RSS).
    pub(crate) details: Value,
}

impl Report {
    pub(crate) fn json_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

fn fmt_num(v: f64) -> String {
    if v.abs() >= 1000.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// The human table of all scenarios run.
pub(crate) fn table(reports: &[Report]) -> String {
    let mut rows = vec![[
        "scenario".to_owned(),
        "result".to_owned(),
        "ceiling".to_owned(),
        "ratio".to_owned(),
        "targets".to_owned(),
        "final state".to_owned(),
    ]];
    for r in reports {
        let targets = if r.quick {
            "(not judged: --quick)".to_owned()
        } else if r.targets.is_empty() {
            "(no target)".to_owned()
        } else {
            r.targets
                .iter()
                .map(|t| {
                    format!(
                        "{} {} {} ({})",
                        if t.met { "MET" } else { "MISSED" },
                        t.name,
                        t.wanted,
                        fmt_num(t.value)
                    )
                })
                .collect::<Vec<_>>()
                .join("; ")
        };
        rows.push([
            r.scenario.to_owned(),
            format!("{} {}", fmt_num(r.value), r.unit),
            r.ceiling
                .map(|c| format!("{} ({})", fmt_num(c), r.ceiling_what))
                .unwrap_or_else(|| "-".to_owned()),
            r.ratio
                .map(|x| format!("{x:.2}"))
                .unwrap_or_else(|| "-".to_owned()),
            targets,
            if r.state_ok {
                format!("ok: {}", r.state)
            } else {
                format!("WRONG: {}", r.state)
            },
        ]);
    }
    let mut widths = [0usize; 6];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for (i, row) in rows.iter().enumerate() {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join(" | ").trim_end());
        out.push('\n');
        if i == 0 {
            let sep: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            out.push_str(&sep.join("-|-"));
            out.push('\n');
        }
    }
    out
}

/// Percentiles of a set of samples (sorted in place); `None` when empty.
pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_the_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 51.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v, 100.0), 100.0);
        assert!(percentile(&[], 50.0).is_nan());
    }

    #[test]
    fn targets_compare_in_the_stated_direction() {
        assert!(Target::at_least("rate", 10.0, 10.0).met);
        assert!(!Target::at_least("rate", 9.0, 10.0).met);
        assert!(Target::at_most("p99", 4.0, 5.0).met);
        assert!(!Target::at_most("p99", 6.0, 5.0).met);
    }

    #[test]
    fn the_table_says_wrong_when_the_state_is_wrong() {
        let r = Report {
            scenario: "e2e",
            quick: true,
            value: 1.0,
            unit: "events/s",
            ceiling: None,
            ceiling_what: "",
            ratio: None,
            targets: vec![],
            state_ok: false,
            state: "3 notifications, expected 4".into(),
            details: Value::Null,
        };
        let t = table(&[r]);
        assert!(t.contains("WRONG: 3 notifications, expected 4"), "{t}");
        assert!(t.contains("not judged"), "{t}");
    }
}
