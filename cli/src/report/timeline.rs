//! The timeline (a Gantt chart) as an inline SVG: one row per node, one bar per attempt from
//! the audit records' times, failed attempts in their own colour, waits on people, timers and
//! events hatched, and the backoff between attempts dotted.

use std::fmt::Write;

use super::audit_view::{NodeRow, Outcome};
use super::text::{clip, duration, esc};

const LABEL_W: f64 = 230.0;
const CHART_W: f64 = 880.0;
const ROW_H: f64 = 22.0;
const BAR_H: f64 = 14.0;
const AXIS_H: f64 = 28.0;
/// More rows than this (a for_each over thousands of items) would make the page unusable.
pub const MAX_ROWS: usize = 400;

/// A tick spacing that puts at most about ten ticks on `span_ms`.
pub fn tick_ms(span_ms: u64) -> u64 {
    const STEPS: [u64; 27] = [
        1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 15_000, 30_000, 60_000, 120_000, 300_000,
        600_000, 900_000, 1_800_000, 3_600_000, 7_200_000, 10_800_000, 21_600_000, 43_200_000, 86_400_000,
    ];
    STEPS.into_iter().find(|s| span_ms / s <= 10).unwrap_or_else(|| (span_ms / 10).max(1))
}

/// Maps times to x positions between `t0` and `t1`.
struct Scale {
    t0: u64,
    span: u64,
}

impl Scale {
    fn x(&self, t: u64) -> f64 {
        LABEL_W + (t.saturating_sub(self.t0)) as f64 / self.span as f64 * CHART_W
    }
}

/// The rows from `t0` (the run's start) to `t1` (its end, or the latest record) as one `<svg>`,
/// and how many rows were left out.
pub fn svg(rows: &[NodeRow], t0: u64, t1: u64) -> (String, usize) {
    let shown = &rows[..rows.len().min(MAX_ROWS)];
    let scale = Scale { t0, span: t1.saturating_sub(t0).max(1) };
    let width = LABEL_W + CHART_W + 20.0;
    let height = AXIS_H + shown.len() as f64 * ROW_H + 8.0;
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg class="timeline" role="img" aria-label="Timeline of the run's attempts" viewBox="0 0 {width:.0} {height:.0}" width="{width:.0}" height="{height:.0}">"#
    );
    out.push_str(concat!(
        r#"<defs><pattern id="wait-hatch" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">"#,
        r#"<rect width="6" height="6" class="hatch-bg"/><line x1="0" y1="0" x2="0" y2="6" class="hatch-line"/></pattern></defs>"#
    ));
    axis(&mut out, &scale, height);
    for (i, row) in shown.iter().enumerate() {
        row_svg(&mut out, &scale, row, AXIS_H + i as f64 * ROW_H, t1);
    }
    out.push_str("</svg>");
    (out, rows.len() - shown.len())
}

fn axis(out: &mut String, scale: &Scale, height: f64) {
    let step = tick_ms(scale.span);
    let mut t = 0;
    while t <= scale.span {
        let x = scale.x(scale.t0 + t);
        let _ = write!(
            out,
            r#"<line class="tick" x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{height:.1}"/><text class="tick-label" x="{x:.1}" y="14">+{}</text>"#,
            AXIS_H - 6.0,
            esc(&duration(t))
        );
        t += step;
    }
}

fn row_svg(out: &mut String, scale: &Scale, row: &NodeRow, y: f64, t1: u64) {
    let (key, status) = (esc(&row.key), esc(&row.status));
    let _ = write!(out, r#"<g class="row st-{status}" data-node="{key}" data-node-status="{status}">"#);
    let _ = write!(out, r#"<rect class="row-bg" x="0" y="{y:.1}" width="{:.0}" height="{ROW_H}"/>"#, LABEL_W + CHART_W);
    // Items, iterations and role nodes are indented under the step they belong to.
    let indent = 6.0 + 12.0 * row.depth.min(4) as f64;
    let _ = write!(
        out,
        r#"<text class="row-label" x="{indent}" y="{:.1}">{}<title>{key} · {}</title></text>"#,
        y + 15.0,
        esc(&clip(&row.key, 30)),
        esc(&row.status.replace('_', " "))
    );
    let bar_y = y + (ROW_H - BAR_H) / 2.0;
    let end = row.end.unwrap_or(t1);
    if row.attempts.is_empty() {
        // Nodes that make no call of their own: their span, or a mark where they were skipped.
        let (x1, x2) = (scale.x(row.start), scale.x(end));
        let _ = write!(
            out,
            r#"<rect class="span" x="{x1:.1}" y="{:.1}" width="{:.1}" height="{:.1}"><title>{key}: {} for {}</title></rect>"#,
            bar_y + 3.0,
            (x2 - x1).max(3.0),
            BAR_H - 6.0,
            esc(&row.status.replace('_', " ")),
            esc(&duration(end.saturating_sub(row.start)))
        );
    }
    let mut prev_end: Option<u64> = None;
    for a in &row.attempts {
        let a_end = a.end.unwrap_or(t1);
        if let Some(p) = prev_end.filter(|&p| p < a.start) {
            let _ = write!(
                out,
                r#"<line class="backoff" x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}"><title>backoff {}</title></line>"#,
                scale.x(p),
                y + ROW_H / 2.0,
                scale.x(a.start),
                y + ROW_H / 2.0,
                esc(&duration(a.start - p))
            );
        }
        let (x1, x2) = (scale.x(a.start), scale.x(a_end));
        let w = (x2 - x1).max(3.0);
        let wait = if a.wait.is_some() { " wait" } else { "" };
        let outcome = if a.end.is_none() && a.wait.is_some() { "waiting" } else { a.outcome.as_str() };
        let _ = write!(
            out,
            r#"<rect class="bar o-{outcome}{wait}" data-attempt="{}" data-outcome="{outcome}" x="{x1:.1}" y="{bar_y:.1}" width="{w:.1}" height="{BAR_H}" rx="2">"#,
            a.attempt
        );
        let _ = write!(
            out,
            "<title>{key} attempt {}: {} after {} (+{} from the start){}</title></rect>",
            a.attempt,
            if a.outcome == Outcome::Open { "still open" } else { a.outcome.as_str() },
            esc(&duration(a_end.saturating_sub(a.start))),
            esc(&duration(a.start.saturating_sub(scale.t0))),
            a.wait.as_deref().map(|w| format!("; {}", esc(w))).unwrap_or_default()
        );
        if w > 26.0 {
            let _ =
                write!(out, r#"<text class="bar-label" x="{:.1}" y="{:.1}">#{}</text>"#, x1 + 4.0, y + 15.0, a.attempt);
        }
        prev_end = Some(a_end);
    }
    out.push_str("</g>");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::audit_view::AttemptBar;

    #[test]
    fn ticks_stay_few_whatever_the_span() {
        for span in [1, 9, 120, 3_000, 95_000, 4 * 3_600_000, 9 * 86_400_000] {
            let step = tick_ms(span);
            assert!(span / step <= 10, "{span} ms with ticks every {step} ms");
        }
    }

    #[test]
    fn each_attempt_is_a_bar_and_failures_are_marked() {
        let bar = |attempt, start, end, outcome| AttemptBar { attempt, start, end: Some(end), outcome, wait: None };
        let row = NodeRow {
            key: "fetch".into(),
            step: "fetch".into(),
            status: "succeeded".into(),
            depth: 0,
            start: 0,
            end: Some(100),
            attempts: vec![bar(1, 0, 20, Outcome::Failed), bar(2, 50, 100, Outcome::Succeeded)],
        };
        let (svg, cut) = svg(&[row], 0, 100);
        assert_eq!(cut, 0);
        assert_eq!(svg.matches("<rect class=\"bar").count(), 2);
        assert!(svg.contains(r#"data-attempt="1" data-outcome="failed""#), "{svg}");
        assert!(svg.contains(r#"class="backoff""#), "the gap between attempts is drawn: {svg}");
    }
}
