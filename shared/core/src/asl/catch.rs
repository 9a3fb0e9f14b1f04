//! `Catch`: every step a state's failure can come from falls back to a catch step that names the
//! error as the States Language does and picks the first catcher whose `ErrorEquals` matches;
//! the catchers' targets run on its `catch` index. In a Map processor that tolerates failures,
//! a failure nothing catches ends the item with a marker instead.

use serde_json::{Map, Value};

use super::flow::bare;
use super::naming::step_ref;
use super::paths::{json_str, merge};
use super::states::Builder;

impl Builder<'_> {
    /// The catch step of `x`: the fallback that turns `x`'s error into the output of the
    /// first matching catcher, routing by `catch` (the catcher's index).
    fn catcher(
        &mut self,
        name: &str,
        m: &Map<String, Value>,
        x: &str,
        raw: &str,
        reader: bool,
        distributed: bool,
    ) -> Option<String> {
        let catches = m.get("Catch").and_then(Value::as_array)?;
        let id = self.names.claim(&format!("{x}_catch"));
        let mut errs = Vec::new();
        let mut assigned = Vec::new();
        let jsonata = match m.get("QueryLanguage").and_then(Value::as_str) {
            Some(q) => q == "JSONata",
            None => self.jsonata,
        };
        let mut expr = format!("({raw}) as $raw | ({}) as $err | ", error_of(&step_ref(x)));
        if reader && distributed {
            // A distributed map fails past its tolerance, on a timeout, or because its items
            // could not be read or its manifest written.
            expr.push_str(
                "(if ($err.Error == \"States.ExceedToleratedFailureThreshold\" or $err.Error == \"States.Timeout\" \
                 or $err.Error == \"States.HeartbeatTimeout\") then $err \
                 elif (($err.Cause // \"\") | contains(\"manifest.json\")) then {Error: \"States.ResultWriterFailed\", Cause: $err.Cause} \
                 else {Error: \"States.ItemReaderFailed\", Cause: ($err.Error + \": \" + $err.Cause)} end) as $err | ",
            );
        } else if reader {
            // A Map's item source failing is `States.ItemReaderFailed`, whatever S3 said.
            expr.push_str(
                "({Error: \"States.ItemReaderFailed\", Cause: ($err.Error + \": \" + $err.Cause)}) as $err | ",
            );
        }
        for (i, c) in catches.iter().enumerate() {
            let names: Vec<&str> = c
                .get("ErrorEquals")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            if names.is_empty() {
                errs.push((format!("Catch[{i}].ErrorEquals"), "a catcher needs a non-empty `ErrorEquals`".into()));
            }
            for k in c.as_object().into_iter().flat_map(|o| o.keys()) {
                let field_of_language = if jsonata { "Output" } else { "ResultPath" };
                if !["ErrorEquals", "Next", "Comment", "Assign", field_of_language].contains(&k.as_str()) {
                    errs.push((format!("Catch[{i}].{k}"), format!("`{k}` on a catcher cannot be converted")));
                }
            }
            let cond = error_match(&names);
            // JSONata: the catcher's `Output` (by default the error output); JSONPath: the input
            // with the error output at `ResultPath`.
            let merged = if jsonata {
                match c.get("Output") {
                    Some(o) => {
                        let cx = super::states::cx(name);
                        let vars =
                            super::jsonata::Vars { input: "$raw", result: None, cx: &cx, error_output: Some("$err") };
                        super::jsonata::template(o, &vars, &format!("Catch[{i}].Output"), &mut errs)
                    }
                    None => "$err".into(),
                }
            } else {
                merge(c.get("ResultPath"), "$raw", "$err").unwrap_or_else(|e| {
                    errs.push((format!("Catch[{i}].ResultPath"), e));
                    "$raw".into()
                })
            };
            expr.push_str(if i == 0 { "if " } else { " elif " });
            // A catcher's `Assign` goes in `vars`: the step that fell back assigns them.
            let vars = match c.get("Assign") {
                Some(a) => {
                    let at = format!("Catch[{i}].Assign");
                    let jq = self.catch_assignment(a, name, jsonata, &at, &mut assigned, &mut errs);
                    format!(", vars: {jq}")
                }
                None => String::new(),
            };
            expr.push_str(&format!("{cond} then {{catch: {i}, output: {merged}{vars}}}"));
        }
        let last = if self.tolerant {
            "{catch: -1, output: $err}".to_owned()
        } else {
            super::paths::raise("$err.Error", "$err.Cause")
        };
        expr.push_str(&format!(" else {last} end"));
        self.errs(name, errs);
        if !assigned.is_empty() {
            assigned.sort();
            assigned.dedup();
            self.assigners.push(super::var_ref::Assigner {
                step: x.to_owned(),
                names: assigned,
                in_vars: Some("fell_back"),
            });
        }
        let mut s = bare(&id);
        s.tool = Some("transform".into());
        s.with = Some(serde_json::json!({"expr": expr}));
        self.steps.push(s);
        self.comments.push((id.clone(), format!("state \"{name}\": its Catch, run when `{x}` fails for good")));
        Some(id)
    }

    /// In a tolerant processor, a failure nothing catches ends the item with a marker.
    fn tolerant_catcher(&mut self, name: &str, x: &str) -> String {
        let id = self.names.claim(&format!("{x}_catch"));
        let expr = format!("{{catch: -1, output: {}}}", error_of(&step_ref(x)));
        let mut s = bare(&id);
        s.tool = Some("transform".into());
        s.with = Some(serde_json::json!({"expr": expr}));
        self.steps.push(s);
        self.comments.push((id.clone(), format!("state \"{name}\": a failure of `{x}` ends this item as failed")));
        id
    }

    /// Falls every catch step of `shape` back to its catcher.
    pub(super) fn wire_catches(
        &mut self,
        name: &str,
        m: &Map<String, Value>,
        catch_steps: &[String],
        reader: Option<&str>,
        distributed: bool,
        raw: &str,
    ) {
        for x in catch_steps {
            let is_reader = reader == Some(x.as_str());
            let fb = match self.catcher(name, m, x, raw, is_reader, distributed) {
                Some(f) => Some(f),
                None if self.tolerant => Some(self.tolerant_catcher(name, x)),
                None => None,
            };
            if let Some(fb) = fb
                && let Some(s) = self.steps.iter_mut().find(|s| &s.id == x)
            {
                s.fallback = Some(fb);
            }
        }
    }
}

/// jq naming the error of step `x` (`.steps.x`) as the States Language does: `{Error, Cause}`.
/// A failure raised with `fail` carries its name as its kind; one that could not (a name baton
/// does not take as a kind) carries `{Error, Cause}` JSON at the end of its message; a child run
/// (a Map item, a Parallel) that failed with a name passes it on in its message; a timeout is
/// `States.Timeout`, or `States.HeartbeatTimeout` when a heartbeat did not come; a distributed
/// map past its tolerance is `States.ExceedToleratedFailureThreshold`.
fn error_of(x: &str) -> String {
    format!(
        "(({x}.error // {{}}) as $e | ($e.message // \"\") as $m \
         | ((try ($m | split(\"`: \") | last | fromjson | if type == \"string\" then fromjson else . end) catch null) as $j \
         | if $e.kind == \"tolerance_exceeded\" then {{Error: \"States.ExceedToleratedFailureThreshold\", Cause: $m}} \
         elif ($j | type) == \"object\" and ($j | has(\"Error\")) then {{Error: $j.Error, Cause: ($j.Cause // \"\")}} \
         elif $e.kind == \"child_failed\" and ($m | test(\"(?s)^(item \\\\d+ failed: )?child run `[^`]*` of `[^`]*` \\\\w+: [A-Z][\\\\w.]*: \")) \
         then ($m | capture(\"(?s)^(item \\\\d+ failed: )?child run `[^`]*` of `[^`]*` \\\\w+: (?<k>[A-Z][\\\\w.]*): (?<c>.*)$\") | {{Error: .k, Cause: .c}}) \
         elif $e.kind == \"timeout\" then {{Error: (if ($m | startswith(\"no heartbeat\")) then \"States.HeartbeatTimeout\" else \"States.Timeout\" end), Cause: $m}} \
         else {{Error: ($e.kind // \"States.TaskFailed\"), Cause: $m}} end))"
    )
}

/// jq: the error `$err` is one of `names` (`States.ALL` any, `States.TaskFailed` any but a timeout).
fn error_match(names: &[&str]) -> String {
    let parts: Vec<String> = names
        .iter()
        .map(|n| match *n {
            "States.ALL" => "true".to_owned(),
            "States.TaskFailed" => {
                "($err.Error != \"States.Timeout\" and $err.Error != \"States.HeartbeatTimeout\")".to_owned()
            }
            // A heartbeat that did not come is a timeout too, as in Step Functions.
            "States.Timeout" => {
                "($err.Error == \"States.Timeout\" or $err.Error == \"States.HeartbeatTimeout\")".to_owned()
            }
            other => format!("($err.Error == {})", json_str(other)),
        })
        .collect();
    if parts.is_empty() { "false".into() } else { format!("({})", parts.join(" or ")) }
}
