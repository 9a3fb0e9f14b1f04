//! Moving a run forward: start ready steps, run attempts, fan out items, iterate loops.

use serde_json::{Value, json};

use super::context::visible_for;
use super::context::{Visible, node_context};
use super::decider::{Decider, Rec};
use super::dispatch::{call_in_flight, dispatch_for, expression_error, expression_error_in};
use super::keys::{node_key, task_id, wait_id};
use super::types::*;
use crate::duration::format_millis;
use crate::error_kind::ErrorKind;
use crate::ids::NodeKey;
use crate::model::LoopExhausted;
use crate::plan::{Scope, StepKind};

impl Decider<'_> {
    /// Repeats scheduling until nothing changes, then settles the run's phase.
    pub fn advance(&mut self) {
        loop {
            let mut progress = false;
            if self.st.phase == Phase::Active {
                let pending: Vec<(u32, usize)> = self.st.pending.iter().copied().collect();
                for (iteration, ix) in pending {
                    if self.st.phase == Phase::Active {
                        progress |= self.try_start(iteration, ix);
                    }
                }
                // Loops are top-level steps, so their node key is the step id.
                let loops: Vec<NodeKey> = self
                    .plan
                    .loops
                    .iter()
                    .map(|&l| NodeKey::new(&self.plan.steps[l].id))
                    .filter(|k| self.st.nodes.get(k).is_some_and(|n| n.status() == NodeStatus::Running))
                    .collect();
                for key in loops {
                    if self.st.phase == Phase::Active {
                        progress |= self.check_loop(&key);
                    }
                }
            }
            if !progress {
                break;
            }
        }
        self.settle();
    }

    /// A node whose current attempt is a tool call in flight.
    pub fn is_call_in_flight(&self, key: &NodeKey) -> bool {
        call_in_flight(self.plan, self.st, key)
    }

    /// Starts (or skips) step `ix` of `iteration` when its needs have ended.
    fn try_start(&mut self, iteration: u32, ix: usize) -> bool {
        let plan = self.plan;
        let step = &plan.steps[ix];
        let mut skipped_need = None;
        for &n in &step.needs {
            let key = node_key(&plan.steps[n].id, iteration, None);
            match self.st.nodes.get(&key) {
                Some(node) if node.status().is_terminal() => {
                    let id = &plan.steps[n].id;
                    // A skipped need skips this step too, unless `when` decides on its status.
                    if node.status() == NodeStatus::Skipped
                        && skipped_need.is_none()
                        && !step.when.as_ref().is_some_and(|w| w.refs().reads_status_of(id))
                    {
                        skipped_need = Some(id.clone());
                    }
                }
                _ => return false,
            }
        }
        self.st.pending.remove(&(iteration, ix));
        let key = node_key(&step.id, iteration, None);
        self.st.nodes.insert(key.clone(), self.fresh_node(ix, iteration, None, Role::Dag));
        if let Some(need) = skipped_need {
            self.skip(&key, format!("need `{need}` was skipped"), json!({"skipped_need": need}));
            return true;
        }
        if let Some(when) = &step.when {
            let ctx = node_context(plan, self.st, iteration, None, Some(when.refs()), Visible::Only(&step.upstream));
            match when.eval_truthy(&ctx) {
                Ok((false, v)) => {
                    self.skip(
                        &key,
                        format!("`when` was false: {}", when.source()),
                        json!({"when": when.source(), "result": v}),
                    );
                    return true;
                }
                Ok((true, v)) => {
                    self.st.open.insert(key.clone());
                    self.record(
                        Rec::new("condition_met", format!("`when` was true: {}", when.source()))
                            .node(&key)
                            .values(json!({"when": when.source(), "result": v})),
                        vec![],
                    );
                }
                Err(e) => {
                    self.st.open.insert(key.clone());
                    self.fail_for_good(&key, expression_error_in("`when`", &e));
                    return true;
                }
            }
        }
        self.st.open.insert(key.clone());
        if let Some((items_expr, _)) = &step.for_each {
            let ctx =
                node_context(plan, self.st, iteration, None, Some(items_expr.refs()), Visible::Only(&step.upstream));
            let limit = match super::limits::concurrency(plan, self.st, &key) {
                Ok(n) => n,
                Err(e) => {
                    self.fail_for_good(&key, e);
                    return true;
                }
            };
            match items_expr.eval(&ctx) {
                Ok(Value::Array(values)) => {
                    let n = values.len();
                    if let Some(node) = self.st.nodes.get_mut(&key) {
                        node.items = Some(Items { values, started: 0, done: 0, source: None, closing: false, limit });
                    }
                    self.record(
                        Rec::new("fan_out", format!("for_each gave {n} items"))
                            .node(&key)
                            .values(json!({"for_each": items_expr.source(), "count": n})),
                        vec![],
                    );
                    if n == 0 {
                        self.succeed(&key, json!([]), "for_each gave no items", Value::Null);
                    } else {
                        self.fill_items(&key);
                    }
                }
                Ok(other) => {
                    let msg = format!("`for_each` must give an array, got {}", type_name(&other));
                    self.fail_for_good(&key, StepError::new(ErrorKind::Expression, msg));
                }
                Err(e) => self.fail_for_good(&key, expression_error(&e)),
            }
            return true;
        }
        if let StepKind::Loop { .. } = step.kind {
            self.start_iteration(&key, 1);
            return true;
        }
        let first = self.first_attempt(&key);
        self.start_attempt(&key, first);
        true
    }

    pub(super) fn fresh_node(&self, step: usize, iteration: u32, index: Option<u32>, role: Role) -> Node {
        Node {
            step,
            iteration,
            index,
            role,
            attempt: 0,
            started_at: self.at,
            items: None,
            loop_iteration: 0,
            mocked: false,
            agent: None,
            args: None,
            state: NodeState::Running { error: None },
        }
    }

    /// Starts items while fewer than `max_concurrency` run.
    pub(super) fn fill_items(&mut self, parent: &NodeKey) {
        let Some(node) = self.st.nodes.get(parent) else {
            return;
        };
        let (ix, iteration) = (node.step, node.iteration);
        let Some(items) = &node.items else { return };
        let limit = items.limit.unwrap_or_else(|| self.plan.steps[ix].fan_limit());
        let total = items.values.len() as u32;
        let (mut started, mut done) = (items.started, items.done);
        let mut to_start = Vec::new();
        while started < total {
            // After a redrive, items that completed before keep their outputs.
            if self.st.nodes.get(&parent.item(started)).is_some_and(|n| n.output().is_some()) {
                started += 1;
                done += 1;
                continue;
            }
            if started - done >= limit {
                break;
            }
            to_start.push(started);
            started += 1;
        }
        if let Some(items) = self.st.nodes.get_mut(parent).and_then(|n| n.items.as_mut()) {
            items.started = started;
            items.done = done;
        }
        // A map redriven after its manifest failed has every batch done: the manifest is next.
        if done == total && self.st.nodes.get(parent).is_some_and(|n| super::item_source::is_map_node(self.plan, n)) {
            self.write_manifest(parent);
            return;
        }
        for i in to_start {
            let key = parent.item(i);
            self.st.nodes.insert(key.clone(), self.fresh_node(ix, iteration, Some(i), Role::Dag));
            self.st.open.insert(key.clone());
            let first = self.first_attempt(&key);
            self.start_attempt(&key, first);
        }
    }

    /// Runs `attempt` of a node: a tool call, a timer, a task.
    pub(super) fn start_attempt(&mut self, key: &NodeKey, attempt: u32) {
        let Some(node) = self.st.nodes.get_mut(key) else {
            return;
        };
        node.attempt = attempt;
        node.run();
        if self.hold_attempt(key, attempt) {
            return;
        }
        let Some(node) = self.st.nodes.get(key) else {
            return;
        };
        let step = &self.plan.steps[node.step];
        let timeout = match super::limits::attempt_limit(self.plan, self.st, key) {
            Ok(t) => t.map(crate::duration::Millis),
            Err(e) => return self.attempt_failed(key, e),
        };
        // A transform's value is computed here anyway: from revision 1 it succeeds at once. Not
        // for `for_each` items, whose completions start the next items (which would nest).
        let inline = self.st.engine >= INLINE_TRANSFORMS && node.index.is_none() && node.role == Role::Dag;
        match &step.kind {
            StepKind::Transform { .. } if inline => match self.build_dispatch(key) {
                Ok(d) => {
                    let value = d.input.get("value").cloned().unwrap_or(Value::Null);
                    let nth = self.attempts_made(key, attempt);
                    let why = if nth == 1 {
                        "needs ended; evaluated".to_owned()
                    } else {
                        format!("attempt {attempt} evaluated")
                    };
                    self.succeed(key, value, &why, json!({"attempt": attempt, "inline": true}));
                }
                Err(e) => self.attempt_failed(key, e),
            },
            StepKind::Agent { .. } if !matches!(self.st.nodes.get(key).map(|n| &n.role), Some(Role::Agent(_))) => {
                self.start_agent(key, attempt)
            }
            StepKind::Tool { .. }
            | StepKind::Transform { .. }
            | StepKind::CacheLookup { .. }
            | StepKind::Agent { .. } => match self.build_dispatch(key) {
                Ok(d) => {
                    let mut commands = vec![];
                    if let Some(t) = timeout {
                        commands.push(self.arm(TimerKind::Timeout { node: key.to_owned(), attempt }, self.at + t.0));
                    }
                    let role = self.st.nodes.get(key).map(|n| (n.role.clone(), n.index));
                    // A node an operator made run again starts at a later attempt number.
                    let nth = self.attempts_made(key, attempt);
                    let map_call = self
                        .st
                        .nodes
                        .get(key)
                        .filter(|n| super::item_source::is_map_node(self.plan, n))
                        .map(|n| n.items.is_some());
                    let reason = match (nth, role) {
                        _ if map_call == Some(false) => format!("reading the item source (attempt {attempt})"),
                        _ if map_call == Some(true) => "every batch ended; writing the manifest".to_owned(),
                        (1, Some((Role::Fallback(of), _))) if matches!(step.kind, StepKind::CacheLookup { .. }) => {
                            format!("looking up the last good response of `{of}` (`fallback: cache`)")
                        }
                        (1, Some((Role::Fallback(of), _))) => format!("dispatching as the fallback of `{of}`"),
                        (1, Some((Role::Agent(of), _))) if matches!(step.kind, StepKind::Agent { .. }) => {
                            format!("a model turn of agent `{of}`")
                        }
                        (1, Some((Role::Agent(of), _))) => format!("a tool call agent `{of}`'s model asked for"),
                        (1, Some((Role::Compensation(of), _))) => format!("dispatching to compensate `{of}`"),
                        (1, Some((_, Some(i)))) => format!("dispatching item {i}"),
                        (1, _) => "needs ended; dispatching".to_owned(),
                        _ => format!("dispatching attempt {attempt}"),
                    };
                    commands.insert(0, Command::Dispatch(d));
                    self.record(Rec::new("dispatch", reason).node(key), commands);
                }
                Err(e) => self.attempt_failed(key, e),
            },
            StepKind::Sleep { duration, until, for_template } => {
                let due = match (duration, until.as_ref().or(for_template.as_ref())) {
                    (Some(d), _) => Ok(self.at + d.0),
                    (None, Some(t)) => {
                        let ctx = node_context(
                            self.plan,
                            self.st,
                            self.iteration_of(key),
                            None,
                            Some(&t.refs()),
                            self.visible(key),
                        );
                        let rendered = t.render(&ctx).map_err(|e| e.to_string());
                        if until.is_some() {
                            rendered.and_then(|v| parse_time(&v))
                        } else {
                            rendered.and_then(|v| rendered_duration(&v)).map(|d| self.at + d)
                        }
                    }
                    (None, None) => Ok(self.at),
                };
                match due {
                    Ok(due) => {
                        if let Some(n) = self.st.nodes.get_mut(key) {
                            n.wait(None);
                        }
                        let cmd = self.arm(TimerKind::Wake { node: key.to_owned(), attempt }, due);
                        let reason = format!("sleeping {}", format_millis(due.saturating_sub(self.at)));
                        self.record(Rec::new("sleep", reason).node(key).values(json!({"until": due})), vec![cmd]);
                    }
                    Err(msg) => self.attempt_failed(key, StepError::new(ErrorKind::Expression, msg)),
                }
            }
            StepKind::Human { .. } => self.open_human_task(key, attempt),
            StepKind::WaitEvent { .. } => self.open_event_wait(key, attempt),
            StepKind::Loop { .. } => {}
        }
    }

    /// What a node's expressions may read.
    fn visible(&self, key: &NodeKey) -> Visible<'_> {
        visible_for(self.plan, self.st, key)
    }

    fn iteration_of(&self, key: &NodeKey) -> u32 {
        self.st.nodes.get(key).map(|n| n.iteration).unwrap_or(0)
    }

    /// Records a timer in the state and returns the command that arms it.
    pub(super) fn arm(&mut self, kind: TimerKind, at: u64) -> Command {
        let id = kind.id();
        self.st.timers.insert(id.clone(), Timer { at, kind });
        Command::ScheduleTimer { id, at }
    }

    /// The tool call for a node's current attempt, arguments resolved against the context.
    pub(super) fn build_dispatch(&self, key: &NodeKey) -> Result<Dispatch, StepError> {
        dispatch_for(self.plan, self.st, key)
    }

    /// Opens a wait for an outside event. The run key is evaluated now, so the event that ends
    /// the wait is decided by the run's state when it began waiting; timeouts and escalations
    /// work as for human tasks (the wait's queue is who is told when it escalates).
    fn open_event_wait(&mut self, key: &NodeKey, attempt: u32) {
        let every = match super::limits::heartbeat_every(self.plan, self.st, key) {
            Ok(e) => e,
            Err(e) => return self.attempt_failed(key, e),
        };
        let Some(node) = self.st.nodes.get(key) else {
            return;
        };
        let step = &self.plan.steps[node.step];
        let StepKind::WaitEvent { pattern, event_key, run_key, heartbeat } = &step.kind else {
            return;
        };
        let correlation = match run_key {
            None => None,
            Some(expr) => {
                let ctx = node_context(self.plan, self.st, node.iteration, None, Some(expr.refs()), self.visible(key));
                match expr.eval(&ctx) {
                    Ok(v) => Some(v),
                    Err(e) => return self.attempt_failed(key, expression_error(&e)),
                }
            }
        };
        let task = wait_id(&self.st.run_id, key, attempt);
        let step_id = step.id.clone();
        let mut wait = json!({
            "pattern": pattern,
            "correlate_event": event_key.as_ref().map(|e| e.source().to_owned()),
            "key": correlation,
        });
        if let Some(h) = heartbeat {
            wait["heartbeat"] = h.pattern.clone();
        }
        // Until it escalates, nobody in particular is told about the wait.
        let open = Command::OpenTask {
            task: task.clone(),
            node: key.clone(),
            step: step_id,
            queue: "events".to_owned(),
            prompt: format!("waiting for an event matching {pattern}"),
            form: None,
            summary: false,
            wait: Some(wait.clone()),
        };
        let mut commands = self.wait_on_task(key, attempt, open, true);
        if let Some(every) = every {
            let beat = TimerKind::Heartbeat { node: key.clone(), attempt, beat: 0 };
            commands.push(self.arm(beat, self.at + every));
        }
        let why = match &wait["key"] {
            Value::Null => format!("waiting for an event matching the pattern (wait `{task}`)"),
            k => format!("waiting for an event matching the pattern whose correlation key is {k} (wait `{task}`)"),
        };
        self.record(Rec::new("wait_event", why).node(key).values(wait), commands);
    }

    fn open_human_task(&mut self, key: &NodeKey, attempt: u32) {
        let Some(node) = self.st.nodes.get(key) else {
            return;
        };
        let step = &self.plan.steps[node.step];
        let StepKind::Human { queue, prompt, form, summary } = &step.kind else {
            return;
        };
        let mut ctx = node_context(self.plan, self.st, node.iteration, None, None, self.visible(key));
        // An agent's approval task reads the proposed call as `.args`, as a tool call does.
        if let (Some(a), Value::Object(m)) = (&node.args, &mut ctx) {
            m.insert("args".into(), a.clone());
        }
        let rendered = queue.render(&ctx).and_then(|q| Ok((q, prompt.render(&ctx)?)));
        let (queue, prompt) = match rendered {
            Ok((q, p)) => (as_text(&q), as_text(&p)),
            Err(e) => return self.attempt_failed(key, expression_error(&e)),
        };
        let task = task_id(&self.st.run_id, key, attempt);
        let step_id = step.id.clone();
        let open = Command::OpenTask {
            task: task.clone(),
            node: key.clone(),
            step: step_id.clone(),
            queue: queue.clone(),
            prompt: prompt.clone(),
            form: form.clone(),
            summary: *summary,
            wait: None,
        };
        let mut commands = self.wait_on_task(key, attempt, open, false);
        commands.push(Command::EmitEvent {
            name: "HumanTaskCreated".into(),
            detail: json!({"run_id": self.st.run_id, "task": task, "step": step_id, "queue": queue}),
        });
        self.record(
            Rec::new("open_task", format!("waiting for `{queue}` to answer task `{task}`"))
                .node(key)
                .values(json!({"prompt": prompt})),
            commands,
        );
    }

    /// The node waits on the task `open` opens (a person's task or an event wait), and the
    /// step's escalation and timeout timers are armed: the commands, `open` first.
    fn wait_on_task(&mut self, key: &NodeKey, attempt: u32, open: Command, event_wait: bool) -> Vec<Command> {
        let (Command::OpenTask { task, queue, .. }, Some(node)) = (&open, self.st.nodes.get_mut(key)) else {
            return vec![open];
        };
        node.wait(Some(task.clone()));
        let step = &self.plan.steps[node.step];
        let waiting = OpenTask { node: key.clone(), queue: queue.clone(), loop_escalation: false, event_wait };
        self.st.tasks.insert(task.clone(), waiting);
        let mut commands = vec![open];
        for (level, (after, _)) in step.escalate.iter().enumerate() {
            let escalate = TimerKind::Escalate { node: key.clone(), attempt, level: level as u32 };
            commands.push(self.arm(escalate, self.at + after.0));
        }
        // Read once already when the attempt started (which failed it if unreadable).
        if let Ok(Some(t)) = super::limits::attempt_limit(self.plan, self.st, key) {
            commands.push(self.arm(TimerKind::Timeout { node: key.clone(), attempt }, self.at + t));
        }
        commands
    }

    fn start_iteration(&mut self, key: &NodeKey, iteration: u32) {
        let Some(node) = self.st.nodes.get_mut(key) else {
            return;
        };
        node.loop_iteration = iteration;
        node.run();
        let ix = node.step;
        for (b, _) in self.plan.steps_in(Scope::Body(ix)) {
            self.st.pending.insert((iteration, b));
        }
        self.record(
            Rec::new("iterate", format!("starting iteration {iteration}"))
                .node(key)
                .values(json!({"iteration": iteration})),
            vec![],
        );
    }

    /// After an iteration's body has ended: stop, go round again, or apply `then`.
    fn check_loop(&mut self, key: &NodeKey) -> bool {
        let Some(node) = self.st.nodes.get(key) else {
            return false;
        };
        let (ix, i) = (node.step, node.loop_iteration);
        let StepKind::Loop { max_iterations, until, then, escalate_to, body } = &self.plan.steps[ix].kind else {
            return false;
        };
        for &b in body {
            if self.st.pending.contains(&(i, b)) {
                return false;
            }
            let bk = node_key(&self.plan.steps[b].id, i, None);
            if !self.st.nodes.get(&bk).is_some_and(|n| n.status().is_terminal()) {
                return false;
            }
        }
        let (done, value) = match until {
            None => (false, Value::Null),
            Some(u) => {
                let ctx = node_context(self.plan, self.st, i, None, Some(u.refs()), Visible::All);
                match u.eval_truthy(&ctx) {
                    Ok((b, v)) => (b, v),
                    Err(e) => {
                        self.fail_for_good(key, expression_error_in("`until`", &e));
                        return true;
                    }
                }
            }
        };
        let values = json!({"until": until.as_ref().map(|u| u.source()), "result": value, "iteration": i, "max_iterations": max_iterations});
        if done {
            let out = self.loop_output(key);
            self.succeed(key, out, &format!("`until` was true after iteration {i}"), values);
        } else if i < *max_iterations {
            self.record(
                Rec::new("loop_again", format!("`until` was not true after iteration {i} of {max_iterations}"))
                    .node(key)
                    .values(values),
                vec![],
            );
            self.start_iteration(key, i + 1);
        } else {
            match then {
                LoopExhausted::Fail => {
                    self.record(
                        Rec::new("loop_bound", format!("hit max_iterations ({max_iterations}) and `then` is fail"))
                            .node(key)
                            .values(values),
                        vec![],
                    );
                    self.attempt_exhausted(
                        key,
                        StepError::new(
                            ErrorKind::LoopExhausted,
                            format!("loop ended after {max_iterations} iterations without `until` being true"),
                        ),
                    );
                }
                LoopExhausted::Continue => {
                    let out = self.loop_output(key);
                    self.succeed(
                        key,
                        out,
                        &format!("hit max_iterations ({max_iterations}); `then: continue` keeps going"),
                        values,
                    );
                }
                LoopExhausted::Escalate => {
                    let queue = escalate_to.clone().unwrap_or_default();
                    let task = task_id(&self.st.run_id, key, i);
                    if let Some(n) = self.st.nodes.get_mut(key) {
                        n.wait(Some(task.clone()));
                    }
                    self.st.tasks.insert(
                        task.clone(),
                        OpenTask {
                            node: key.to_owned(),
                            queue: queue.clone(),
                            loop_escalation: true,
                            event_wait: false,
                        },
                    );
                    let step_id = self.plan.steps[ix].id.clone();
                    let prompt = format!(
                        "Loop `{step_id}` ran {max_iterations} iterations without reaching its goal. Approve to continue the run with the last iteration's results, or reject to fail the loop."
                    );
                    let commands = vec![
                        Command::OpenTask {
                            task: task.clone(),
                            node: key.to_owned(),
                            step: step_id.clone(),
                            queue: queue.clone(),
                            prompt,
                            form: None,
                            summary: true,
                            wait: None,
                        },
                        Command::EmitEvent {
                            name: "HumanTaskCreated".into(),
                            detail: json!({"run_id": self.st.run_id, "task": task, "step": step_id, "queue": queue}),
                        },
                    ];
                    self.record(
                        Rec::new(
                            "escalate_loop",
                            format!("hit max_iterations ({max_iterations}); escalating to `{queue}`"),
                        )
                        .node(key)
                        .values(values),
                        commands,
                    );
                }
            }
        }
        true
    }

    /// The loop's output: the last iteration's body outputs by step id.
    pub(super) fn loop_output(&self, key: &NodeKey) -> Value {
        let Some(node) = self.st.nodes.get(key) else {
            return Value::Null;
        };
        let StepKind::Loop { body, .. } = &self.plan.steps[node.step].kind else {
            return Value::Null;
        };
        let mut out = serde_json::Map::new();
        for &b in body {
            let id = &self.plan.steps[b].id;
            let v = self.st.nodes.get(&node_key(id, node.loop_iteration, None)).and_then(|n| n.output().cloned());
            out.insert(id.clone(), v.unwrap_or(Value::Null));
        }
        Value::Object(out)
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn as_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn parse_time(v: &Value) -> Result<u64, String> {
    let s = v.as_str().ok_or_else(|| format!("`until` must give an RFC 3339 time, got {v}"))?;
    let t = humantime::parse_rfc3339_weak(s).map_err(|e| format!("`until` is not an RFC 3339 time ({s}): {e}"))?;
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .map_err(|_| format!("`until` is before 1970: {s}"))
}

/// A templated `sleep.for`: a duration such as `30s` (what `"{{ .x }}s"` renders to).
fn rendered_duration(v: &Value) -> Result<u64, String> {
    let s = v.as_str().ok_or_else(|| format!("`for` must give a duration such as `30s`, got {v}"))?;
    crate::duration::parse_duration(s).map(|d| d.0).map_err(|e| format!("`for` is not a duration ({s}): {e}"))
}
