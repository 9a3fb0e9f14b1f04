//! Checks of the step graph once every step is compiled: cycles in `needs`, and expressions that
//! read steps which have not ended when they run.

use std::collections::{HashMap, HashSet};

use petgraph::graphmap::DiGraphMap;

use super::problems::Problems;
use super::structure::did_you_mean;
use super::types::{PlannedStep, Scope, StepIx, StepKind};
use crate::expr::StepRefs;
use crate::model::Step;

/// A step as the builder lists it: the step as written, its pointer, where it is scheduled.
pub(super) type Flat<'a> = (&'a Step, String, Scope);

/// " (did you mean `x`?)" when `word` is close to a step id, for messages naming a step.
pub(super) fn hint(index: &HashMap<String, StepIx>, word: &str) -> String {
    let ids: Vec<&str> = index.keys().map(String::as_str).collect();
    did_you_mean(word, &ids).map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default()
}

/// What the graph checks read of the builder, and where they report.
pub(super) struct DagCheck<'x, 'a> {
    /// Where problems go.
    pub p: &'x mut Problems,
    /// The steps in definition order.
    pub flat: &'x [Flat<'a>],
    /// Step id -> index.
    pub index: &'x HashMap<String, StepIx>,
    /// Hidden steps of agent tools: (agent step, tool, step).
    pub agent_tools: &'x [(StepIx, usize, PlannedStep)],
}

impl DagCheck<'_, '_> {
    /// Cycles, reported with their path, per scope.
    pub fn graph(&mut self, steps: &[Option<PlannedStep>]) {
        let mut graph: DiGraphMap<StepIx, ()> = DiGraphMap::new();
        for (i, s) in steps.iter().enumerate() {
            graph.add_node(i);
            if let Some(s) = s {
                for &n in &s.needs {
                    graph.add_edge(n, i, ());
                }
            }
        }
        if petgraph::algo::toposort(&graph, None).is_ok() {
            return;
        }
        for scc in petgraph::algo::tarjan_scc(&graph) {
            let cyclic = scc.len() > 1 || graph.contains_edge(scc[0], scc[0]);
            if !cyclic {
                continue;
            }
            let path = cycle_path(&graph, &scc);
            let names: Vec<&str> = path.iter().map(|&i| self.flat[i].0.id.as_str()).collect();
            let ptr = format!("{}/needs", self.flat[path[0]].1);
            self.p.err(ptr, format!("cycle in `needs`: {}", names.join(" -> ")));
        }
    }

    /// `.steps.X` must name a step that has ended before the expression runs.
    pub fn references(&mut self, steps: &[Option<PlannedStep>]) {
        for (i, s) in steps.iter().enumerate() {
            let Some(s) = s else { continue };
            // Fallback and compensation steps run after the DAG stopped and may read any step,
            // but what they name must exist.
            let visible: HashSet<StepIx> = if s.scope == Scope::Role {
                (0..steps.len()).collect()
            } else {
                visible_upstream(steps, i).into_iter().collect()
            };
            let ptr = self.flat[i].1.clone();
            let mut exprs: Vec<(String, StepRefs)> = Vec::new();
            if let Some(w) = &s.when {
                exprs.push((format!("{ptr}/when"), w.refs().clone()));
            }
            if let Some((e, _)) = &s.for_each {
                exprs.push((format!("{ptr}/for_each"), e.refs().clone()));
            }
            if let Some(items) = &s.items_from {
                for (field, t) in [("source", &items.source), ("results", &items.results)] {
                    t.visit_at(&format!("{ptr}/items_from/{field}"), &mut |p, e| {
                        exprs.push((p.to_owned(), e.refs().clone()))
                    });
                }
            }
            match &s.kind {
                StepKind::Tool { args, .. } => {
                    let mut parts = Vec::new();
                    args.visit_at(&format!("{ptr}/with"), &mut |p, e| parts.push((p.to_owned(), e.refs().clone())));
                    exprs.extend(parts);
                }
                StepKind::Agent { args, .. } => {
                    let mut parts = Vec::new();
                    args.visit_at(&format!("{ptr}/with"), &mut |p, e| parts.push((p.to_owned(), e.refs().clone())));
                    // The tools' calls read the same steps the agent does.
                    for (agent, j, tool) in self.agent_tools {
                        if *agent == i
                            && let StepKind::Tool { args, .. } = &tool.kind
                        {
                            args.visit_at(&format!("{ptr}/with/tools/{j}/http"), &mut |p, e| {
                                parts.push((p.to_owned(), e.refs().clone()))
                            });
                        }
                    }
                    exprs.extend(parts);
                }
                StepKind::Transform { expr, .. } => exprs.push((format!("{ptr}/with/expr"), expr.refs().clone())),
                StepKind::Sleep { until: Some(t), .. } => exprs.push((format!("{ptr}/with/until"), t.refs())),
                StepKind::Sleep { for_template: Some(t), .. } => exprs.push((format!("{ptr}/with/for"), t.refs())),
                StepKind::Human { prompt, queue, .. } => {
                    exprs.push((format!("{ptr}/with/prompt"), prompt.refs()));
                    exprs.push((format!("{ptr}/with/queue"), queue.refs()));
                }
                StepKind::WaitEvent { run_key: Some(k), .. } => {
                    exprs.push((format!("{ptr}/with/correlate/run"), k.refs().clone()));
                }
                StepKind::Loop { until: Some(u), body, .. } => {
                    let mut v = visible.clone();
                    v.extend(body.iter().copied());
                    self.check_refs_against(&format!("{ptr}/loop/until"), &s.id, u.refs(), &v);
                }
                _ => {}
            }
            for (p, refs) in exprs {
                self.check_refs_against(&p, &s.id, &refs, &visible);
            }
        }
    }

    fn check_refs_against(&mut self, ptr: &str, me: &str, refs: &StepRefs, visible: &HashSet<StepIx>) {
        for id in refs.steps() {
            match self.index.get(id) {
                None => {
                    let hint = hint(self.index, id);
                    self.p.err(ptr, format!("reads `.steps.{id}`, but there is no step `{id}`{hint}"));
                }
                Some(j) if !visible.contains(j) => {
                    let msg = if id == me {
                        format!("reads its own result `.steps.{id}`")
                    } else {
                        format!("reads `.steps.{id}`, but `{id}` is not upstream of `{me}`: add it to `needs`")
                    };
                    self.p.err(ptr, msg);
                }
                Some(_) => {}
            }
        }
    }
}

/// Steps that have ended before step `i` starts: its transitive needs and, in a loop body, the
/// loop step's as well. Only these may be read, so a step's arguments never change after it starts.
pub(super) fn visible_upstream(steps: &[Option<PlannedStep>], i: StepIx) -> Vec<StepIx> {
    let ancestors = |start: StepIx| -> HashSet<StepIx> {
        let mut seen = HashSet::new();
        let mut stack = vec![start];
        while let Some(i) = stack.pop() {
            if let Some(Some(s)) = steps.get(i) {
                for &n in &s.needs {
                    if seen.insert(n) {
                        stack.push(n);
                    }
                }
            }
        }
        seen
    };
    let mut visible = ancestors(i);
    if let Some(Some(s)) = steps.get(i)
        && let Scope::Body(l) = s.scope
    {
        visible.extend(ancestors(l));
    }
    let mut v: Vec<StepIx> = visible.into_iter().collect();
    v.sort_unstable();
    v
}

/// A closed path through a strongly connected component, for the error message.
fn cycle_path(graph: &DiGraphMap<StepIx, ()>, scc: &[StepIx]) -> Vec<StepIx> {
    let members: HashSet<StepIx> = scc.iter().copied().collect();
    let start = *scc.iter().min().unwrap_or(&scc[0]);
    let mut path = vec![start];
    let mut seen = HashSet::from([start]);
    let mut current = start;
    loop {
        let mut next_nodes: Vec<StepIx> = graph.neighbors(current).filter(|n| members.contains(n)).collect();
        next_nodes.sort();
        if next_nodes.contains(&start) {
            path.push(start);
            return path;
        }
        match next_nodes.into_iter().find(|n| !seen.contains(n)) {
            Some(n) => {
                seen.insert(n);
                path.push(n);
                current = n;
            }
            None => {
                path.push(start);
                return path;
            }
        }
    }
}
