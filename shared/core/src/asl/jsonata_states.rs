//! States written in JSONata (`QueryLanguage: JSONata`): `Arguments` and `Output` instead of the
//! five JSONPath fields, `Condition` in Choice rules, expressions in Wait and Fail. Task states go
//! through the same conversion as JSONPath ones (see `Builder::task`), and so do Parallel and Map
//! states (see `fanout`, whose payloads and outputs take either language).

use serde_json::{Map, Value, json};

use super::flow::{Input, after, step, transform};
use super::jsonata::{Vars, embedded, expr_at, template};
use super::paths::json_str;
use super::states::{Builder, Shape, cx};

impl Builder<'_> {
    /// A JSONata Pass, Choice, Wait, Succeed or Fail state.
    pub(super) fn jsonata_state(&mut self, name: &str, ty: &str, m: &Map<String, Value>, shape: &Shape, input: Input) {
        let cx = cx(name);
        let vars = Vars { input: "$in", result: None, cx: &cx, error_output: None };
        let mut errs = Vec::new();
        let output = m.get("Output").map_or_else(|| "$in".to_owned(), |o| template(o, &vars, "Output", &mut errs));
        let head = format!("({}) as $in | ", input.raw);
        match ty {
            "Pass" | "Succeed" => self.steps.push(transform(&shape.id, format!("{head}{output}"), &input)),
            // `rule` (the index of the rule that matched, -1 for the default) tells the
            // Choice's `Assign` step which assignment to make.
            "Choice" => {
                let mut body = format!("{head}({output}) as $out | ");
                let rules = m.get("Choices").and_then(Value::as_array).cloned().unwrap_or_default();
                if rules.is_empty() {
                    errs.push(("Choices".into(), "a Choice state needs a non-empty `Choices` list".into()));
                }
                for (i, r) in rules.iter().enumerate() {
                    let cond = match r.get("Condition").and_then(Value::as_str).and_then(embedded) {
                        Some(src) => expr_at(src, &vars, &format!("Choices[{i}].Condition")).unwrap_or_else(|e| {
                            errs.push((format!("Choices[{i}].Condition"), e));
                            "false".into()
                        }),
                        None => {
                            errs.push((
                                format!("Choices[{i}].Condition"),
                                "a JSONata rule is `Condition: \"{% ... %}\"`".into(),
                            ));
                            "false".into()
                        }
                    };
                    if r.get("Output").is_some() {
                        errs.push((
                            format!("Choices[{i}].Output"),
                            "a choice rule's own `Output` cannot be converted".into(),
                        ));
                    }
                    let next = r.get("Next").and_then(Value::as_str).unwrap_or("");
                    body.push_str(if i == 0 { "if " } else { " elif " });
                    body.push_str(&format!("{cond} then {{next: {}, output: $out, rule: {i}}}", json_str(next)));
                }
                let default = match m.get("Default").and_then(Value::as_str) {
                    Some(d) => format!("{{next: {}, output: $out, rule: -1}}", json_str(d)),
                    None => super::paths::raise(
                        "\"States.NoChoiceMatched\"",
                        &json_str(&format!("no choice rule of \"{name}\" matched")),
                    ),
                };
                body.push_str(&if rules.is_empty() { default } else { format!(" else {default} end") });
                self.steps.push(transform(&shape.id, body, &input));
            }
            "Fail" => {
                let mut field = |k: &str, default: &str| match m.get(k) {
                    Some(Value::String(s)) if embedded(s).is_some() => {
                        template(&Value::String(s.clone()), &vars, k, &mut errs)
                    }
                    Some(v) => super::paths::literal(v),
                    None => json_str(default),
                };
                let (error, cause) = (field("Error", "States.Fail"), field("Cause", ""));
                let expr = if self.tolerant {
                    format!("{head}{{\"__asl_failed\": {{Error: {error}, Cause: {cause}}}}}")
                } else {
                    format!("{head}{}", super::paths::raise(&error, &cause))
                };
                self.steps.push(transform(&shape.id, expr, &input));
            }
            "Wait" => {
                let with = match (m.get("Seconds"), m.get("Timestamp")) {
                    (Some(Value::Number(n)), None) => json!({"for": format!("{n}s")}),
                    (Some(Value::String(s)), None) if embedded(s).is_some() => {
                        let e = template(
                            &Value::String(s.clone()),
                            &Vars { input: &format!("({})", input.raw), ..vars },
                            "Seconds",
                            &mut errs,
                        );
                        json!({"for": format!("{{{{ {e} }}}}s")})
                    }
                    (None, Some(Value::String(t))) => match embedded(t) {
                        Some(_) => {
                            let e = template(
                                &Value::String(t.clone()),
                                &Vars { input: &format!("({})", input.raw), ..vars },
                                "Timestamp",
                                &mut errs,
                            );
                            json!({"until": format!("{{{{ {e} }}}}")})
                        }
                        None => json!({"until": t}),
                    },
                    _ => {
                        errs.push(("Seconds".into(), "a Wait has exactly one of `Seconds` and `Timestamp`".into()));
                        Value::Null
                    }
                };
                self.steps.push(step(&shape.id, "sleep", with, &input));
                if let Some(exit) = &shape.exit {
                    self.steps.push(transform(exit, format!("{head}{output}"), &after(&shape.id, &input.raw)));
                    self.comments.push((exit.clone(), format!("state \"{name}\": its output once the wait is over")));
                }
            }
            _ => {}
        }
        self.errs(name, errs);
        let reads = super::var_ref::Reads { dollar: "$in", input: "$in", result: None, error_output: None };
        self.assign_step(name, m, shape, &format!("({}) as $in |", input.raw), &reads, true);
    }
}
