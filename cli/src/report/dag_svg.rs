//! The DAG as an inline SVG, laid out here (no layout engine, no script): steps in columns by
//! dependency depth, each box coloured by its status. A loop's body steps and an agent's tools
//! are rows inside their step's box; fallback and compensation steps sit in the column of the
//! step they serve, joined to it by a dashed edge.

use std::collections::HashMap;
use std::fmt::Write;

use super::model::{Placement, StepView};
use super::text::{clip, esc, status_label};

const NODE_W: f64 = 210.0;
const COL_GAP: f64 = 80.0;
const ROW_GAP: f64 = 20.0;
const MARGIN_X: f64 = 56.0;
const MARGIN_Y: f64 = 16.0;
const INNER_H: f64 = 20.0;
const INNER_GAP: f64 = 4.0;

/// The depth of each node: 0 without needs, else one more than its deepest need. `needs[i]`
/// lists the nodes `i` needs. A cycle (which validation rules out) cannot loop forever: depths
/// stop growing after `n` rounds.
pub fn layers(needs: &[Vec<usize>]) -> Vec<usize> {
    let n = needs.len();
    let mut depth = vec![0usize; n];
    for _ in 0..n {
        let mut changed = false;
        for i in 0..n {
            let d = needs[i].iter().filter(|&&j| j < n).map(|&j| depth[j] + 1).max().unwrap_or(0);
            if d > depth[i] {
                depth[i] = d.min(n);
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    depth
}

/// A box in the drawing: one top-level or role step, with its inner rows.
struct Placed {
    step: usize,
    layer: usize,
    inner: Vec<usize>,
    x: f64,
    y: f64,
    h: f64,
}

impl Placed {
    fn center_y(&self) -> f64 {
        self.y + self.h / 2.0
    }
}

/// Boxes positioned column by column. Within a column, boxes are ordered by the mean height of
/// the boxes they need (so edges cross less), role boxes last.
fn place(steps: &[StepView]) -> Vec<Placed> {
    let by_id: HashMap<&str, usize> = steps.iter().enumerate().map(|(i, s)| (s.id.as_str(), i)).collect();
    let tops: Vec<usize> = (0..steps.len()).filter(|&i| steps[i].placement == Placement::Top).collect();
    let pos: HashMap<usize, usize> = tops.iter().enumerate().map(|(p, &i)| (i, p)).collect();
    let needs: Vec<Vec<usize>> = tops
        .iter()
        .map(|&i| {
            steps[i].needs.iter().filter_map(|n| by_id.get(n.as_str()).and_then(|j| pos.get(j)).copied()).collect()
        })
        .collect();
    let depth = layers(&needs);
    let mut boxes: Vec<Placed> = tops
        .iter()
        .zip(&depth)
        .map(|(&i, &layer)| Placed { step: i, layer, inner: vec![], x: 0.0, y: 0.0, h: 0.0 })
        .collect();
    for (i, s) in steps.iter().enumerate() {
        if let Placement::Role(served) = &s.placement {
            let layer = served
                .iter()
                .filter_map(|(_, of)| by_id.get(of.as_str()).and_then(|j| pos.get(j)))
                .map(|&p| depth[p])
                .min()
                .unwrap_or(0);
            boxes.push(Placed { step: i, layer, inner: vec![], x: 0.0, y: 0.0, h: 0.0 });
        }
    }
    for (i, s) in steps.iter().enumerate() {
        if let Placement::Body(owner) | Placement::AgentTool(owner) = &s.placement
            && let Some(b) = boxes.iter_mut().find(|b| steps[b.step].id == *owner)
        {
            b.inner.push(i);
        }
    }
    for b in &mut boxes {
        b.h = box_height(&steps[b.step], b.inner.len());
        b.x = MARGIN_X + b.layer as f64 * (NODE_W + COL_GAP);
    }
    let columns = boxes.iter().map(|b| b.layer).max().map_or(0, |m| m + 1);
    let mut centers: HashMap<usize, f64> = HashMap::new();
    for layer in 0..columns {
        let mut col: Vec<usize> = (0..boxes.len()).filter(|&b| boxes[b].layer == layer).collect();
        let key = |b: &Placed| -> (bool, f64) {
            let s = &steps[b.step];
            let anchors: Vec<f64> = match &s.placement {
                Placement::Role(served) => {
                    served.iter().filter_map(|(_, of)| by_id.get(of.as_str())).collect::<Vec<_>>()
                }
                _ => s.needs.iter().filter_map(|n| by_id.get(n.as_str())).collect(),
            }
            .into_iter()
            .filter_map(|j| centers.get(j).copied())
            .collect();
            let role = matches!(s.placement, Placement::Role(_));
            let mean = if anchors.is_empty() { f64::MAX } else { anchors.iter().sum::<f64>() / anchors.len() as f64 };
            (role, mean)
        };
        // Stable: boxes with the same key keep definition order.
        col.sort_by(|&a, &b| key(&boxes[a]).partial_cmp(&key(&boxes[b])).unwrap_or(std::cmp::Ordering::Equal));
        let mut y = MARGIN_Y;
        for b in col {
            boxes[b].y = y;
            y += boxes[b].h + ROW_GAP;
            centers.insert(boxes[b].step, boxes[b].center_y());
        }
    }
    boxes
}

fn detail(s: &StepView) -> Option<String> {
    if let Some(it) = s.items {
        let other = if it.other > 0 { format!(", {} other", it.other) } else { String::new() };
        return Some(format!("for_each: {} items, {} ok, {} failed{other}", it.total, it.succeeded, it.failed));
    }
    if let Some(n) = s.iterations {
        return Some(format!("loop: {n} iteration{}", if n == 1 { "" } else { "s" }));
    }
    if let Placement::Role(served) = &s.placement {
        let what: Vec<String> = served.iter().map(|(k, of)| format!("{} of {of}", k.as_str())).collect();
        return Some(what.join(", "));
    }
    (s.attempts > 1).then(|| format!("{} attempts", s.attempts))
}

fn box_height(s: &StepView, inner: usize) -> f64 {
    let base = if detail(s).is_some() { 62.0 } else { 46.0 };
    if inner == 0 { base } else { base + inner as f64 * (INNER_H + INNER_GAP) + 4.0 }
}

/// The DAG of `steps` as one `<svg>` element.
pub fn svg(steps: &[StepView]) -> String {
    let boxes = place(steps);
    let width = boxes.iter().map(|b| b.x + NODE_W).fold(0.0, f64::max) + MARGIN_X / 2.0;
    let height = boxes.iter().map(|b| b.y + b.h).fold(0.0, f64::max) + MARGIN_Y;
    let at: HashMap<&str, &Placed> = boxes.iter().map(|b| (steps[b.step].id.as_str(), b)).collect();
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg class="dag" role="img" aria-label="DAG of the run's steps" viewBox="0 0 {width:.0} {height:.0}" width="{width:.0}" height="{height:.0}">"#
    );
    out.push_str(concat!(
        r#"<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">"#,
        r#"<path d="M0,0 L10,5 L0,10 z" class="arrowhead"/></marker></defs>"#
    ));
    for b in &boxes {
        let s = &steps[b.step];
        for need in &s.needs {
            if let Some(from) = at.get(need.as_str()) {
                let (x1, y1, x2, y2) = (from.x + NODE_W, from.center_y(), b.x, b.center_y());
                let mid = (x1 + x2) / 2.0;
                let _ = write!(
                    out,
                    r#"<path class="edge" data-from="{}" data-to="{}" d="M{x1:.1},{y1:.1} C{mid:.1},{y1:.1} {mid:.1},{y2:.1} {x2:.1},{y2:.1}" marker-end="url(#arrow)"/>"#,
                    esc(need),
                    esc(&s.id)
                );
            }
        }
        if let Placement::Role(served) = &s.placement {
            for (kind, of) in served {
                let Some(from) = at.get(of.as_str()) else { continue };
                let (x, y1, y2) = (b.x, from.center_y(), b.center_y());
                let bulge = x - MARGIN_X + 8.0;
                let _ = write!(
                    out,
                    r#"<path class="edge role" data-from="{}" data-to="{}" d="M{x:.1},{y1:.1} C{bulge:.1},{y1:.1} {bulge:.1},{y2:.1} {x:.1},{y2:.1}" marker-end="url(#arrow)"><title>{} of {}</title></path>"#,
                    esc(of),
                    esc(&s.id),
                    kind.as_str(),
                    esc(of)
                );
                let _ = write!(
                    out,
                    r#"<text class="edge-label" x="{:.1}" y="{:.1}">{}</text>"#,
                    bulge + 2.0,
                    (y1 + y2) / 2.0,
                    kind.as_str()
                );
            }
        }
    }
    for b in &boxes {
        node(&mut out, steps, b);
    }
    out.push_str("</svg>");
    out
}

fn node(out: &mut String, steps: &[StepView], b: &Placed) {
    let s = &steps[b.step];
    let (id, status) = (esc(&s.id), esc(&s.status));
    let role = if matches!(s.placement, Placement::Role(_)) { " role" } else { "" };
    let _ = write!(
        out,
        r#"<g class="node st-{status}{role}" data-step="{id}" data-status="{status}" data-tool="{}" transform="translate({:.1},{:.1})">"#,
        esc(&s.tool),
        b.x,
        b.y
    );
    let _ = write!(out, "<title>{id} · {} · {}</title>", esc(&s.tool), esc(&status_label(&s.status)));
    let _ = write!(out, r#"<rect class="box" width="{NODE_W}" height="{:.1}" rx="6"/>"#, b.h);
    let _ = write!(out, r#"<text class="id" x="10" y="19">{}</text>"#, esc(&clip(&s.id, 26)));
    let _ = write!(
        out,
        r#"<text class="sub" x="10" y="36">{} · {}</text>"#,
        esc(&clip(&s.tool, 14)),
        esc(&status_label(&s.status))
    );
    let mut y = 46.0;
    if let Some(d) = detail(s) {
        let _ = write!(out, r#"<text class="detail" x="10" y="52">{}</text>"#, esc(&clip(&d, 36)));
        y = 62.0;
    }
    for &i in &b.inner {
        let inner = &steps[i];
        let (iid, ist) = (esc(&inner.id), esc(&inner.status));
        let _ = write!(
            out,
            r#"<g class="inner st-{ist}" data-step="{iid}" data-status="{ist}" data-tool="{}" transform="translate(8,{y:.1})">"#,
            esc(&inner.tool)
        );
        let _ = write!(out, "<title>{iid} · {} · {}</title>", esc(&inner.tool), esc(&status_label(&inner.status)));
        let _ = write!(out, r#"<rect class="box" width="{:.0}" height="{INNER_H}" rx="4"/>"#, NODE_W - 16.0);
        // An agent's tool is named `<agent>.<tool>`; inside the agent's box the tool name is enough.
        let short = inner.id.strip_prefix(&format!("{}.", s.id)).unwrap_or(&inner.id);
        let label = format!("{short} · {} · {}", inner.tool, status_label(&inner.status));
        let _ = write!(out, r#"<text class="sub" x="8" y="14">{}</text>"#, esc(&clip(&label, 34)));
        out.push_str("</g>");
        y += INNER_H + INNER_GAP;
    }
    out.push_str("</g>");
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::report::model::RoleKind;

    fn step(id: &str, needs: &[&str], placement: Placement) -> StepView {
        StepView {
            id: id.into(),
            tool: "transform".into(),
            placement,
            needs: needs.iter().map(|s| s.to_string()).collect(),
            status: "succeeded".into(),
            attempts: 1,
            items: None,
            iterations: None,
            started_at: None,
            ended_at: None,
            reason: None,
            output: Value::Null,
            error: Value::Null,
            conditional: false,
            stale: None,
        }
    }

    #[test]
    fn layers_follow_the_longest_chain_of_needs() {
        // a, b roots; c needs a; d needs a and c; e needs b.
        let depth = layers(&[vec![], vec![], vec![0], vec![0, 2], vec![1]]);
        assert_eq!(depth, vec![0, 0, 1, 2, 1]);
    }

    #[test]
    fn a_cycle_does_not_hang_the_layout() {
        let depth = layers(&[vec![1], vec![0]]);
        assert!(depth.iter().all(|&d| d <= 2), "{depth:?}");
    }

    #[test]
    fn boxes_sit_in_columns_by_depth_and_never_overlap() {
        let steps = vec![
            step("fetch", &[], Placement::Top),
            step("price", &[], Placement::Top),
            step("lines", &["fetch"], Placement::Top),
            step("total", &["lines", "price"], Placement::Top),
            step("cached", &[], Placement::Role(vec![(RoleKind::Fallback, "price".into())])),
            step("refine", &["fetch"], Placement::Top),
            step("draft", &[], Placement::Body("refine".into())),
        ];
        let boxes = place(&steps);
        let col = |id: &str| boxes.iter().find(|b| steps[b.step].id == id).map(|b| b.layer);
        assert_eq!(
            [col("fetch"), col("price"), col("lines"), col("total"), col("cached"), col("refine")],
            [Some(0), Some(0), Some(1), Some(2), Some(0), Some(1)]
        );
        assert_eq!(col("draft"), None, "a body step is a row inside its loop's box");
        let refine = boxes.iter().find(|b| steps[b.step].id == "refine").expect("refine");
        assert_eq!(refine.inner, vec![6]);
        for a in &boxes {
            for b in &boxes {
                if a.step != b.step && a.layer == b.layer {
                    assert!(a.y + a.h <= b.y || b.y + b.h <= a.y, "{} and {} overlap", a.step, b.step);
                }
            }
        }
        let svg = svg(&steps);
        assert_eq!(svg.matches("data-step=").count(), steps.len(), "every step has a hook");
        assert!(svg.contains(r#"class="edge role" data-from="price" data-to="cached""#), "{svg}");
    }
}
