//! Model usage of a run, per step and in total: the token counts and USD every model call
//! (`llm` steps, agent turns) left in its audit record (`values.tool.usage`, `cost_usd`). Shown
//! by `runs show` and `GET /api/runs/{id}` beside the backend's own cost estimate.

use std::collections::BTreeMap;

use baton_core::audit::AuditRecord;
use serde_json::{Value, json};

#[derive(Default)]
struct Sum {
    calls: u64,
    input: u64,
    output: u64,
    usd: Option<f64>,
}

impl Sum {
    fn add(&mut self, input: u64, output: u64, usd: Option<f64>) {
        self.calls += 1;
        self.input += input;
        self.output += output;
        if let Some(x) = usd {
            self.usd = Some(self.usd.unwrap_or(0.0) + x);
        }
    }

    fn json(&self) -> Value {
        json!({"calls": self.calls, "input_tokens": self.input, "output_tokens": self.output, "usd": self.usd})
    }
}

/// `{steps: {<step>: {calls, input_tokens, output_tokens, usd}}, total: {...}}`, or `None` when
/// the run made no model call. `usd` is null when no call was priced.
pub fn model_usage(audit: &[AuditRecord]) -> Option<Value> {
    let mut steps: BTreeMap<String, Sum> = BTreeMap::new();
    let mut total = Sum::default();
    for r in audit {
        let Some(tool) = r.values.get("tool") else { continue };
        let Some(usage) = tool.get("usage").filter(|u| u.is_object()) else { continue };
        let n = |k: &str| usage.get(k).and_then(Value::as_u64).unwrap_or(0);
        let (input, output, usd) =
            (n("prompt_tokens"), n("completion_tokens"), tool.get("cost_usd").and_then(Value::as_f64));
        steps.entry(r.step.clone().unwrap_or_default()).or_default().add(input, output, usd);
        total.add(input, output, usd);
    }
    if total.calls == 0 {
        return None;
    }
    let steps: serde_json::Map<String, Value> = steps.iter().map(|(k, s)| (k.clone(), s.json())).collect();
    Some(json!({"steps": steps, "total": total.json()}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(step: &str, values: Value) -> AuditRecord {
        AuditRecord {
            seq: 0,
            at: 0,
            kind: "decision".into(),
            decision: "succeed".into(),
            step: Some(step.into()),
            node: None,
            attempt: None,
            iteration: None,
            reason: String::new(),
            values,
            commands: vec![],
            event: String::new(),
            sealed: Default::default(),
            prev_hash: String::new(),
            hash: String::new(),
        }
    }

    #[test]
    fn model_calls_are_summed_per_step_and_in_total() {
        let call = |i, o, usd: Value| json!({"tool": {"usage": {"prompt_tokens": i, "completion_tokens": o}, "cost_usd": usd}});
        let audit = vec![
            rec("agent", call(100, 10, json!(0.002))),
            rec("agent", call(50, 5, json!(0.001))),
            rec("extract", call(20, 2, Value::Null)),
            rec("fetch", json!({"tool": {"server": "crm"}})),
        ];
        let u = model_usage(&audit).expect("usage");
        assert_eq!(u["steps"]["agent"]["calls"], 2);
        assert_eq!(
            (u["steps"]["agent"]["input_tokens"].as_u64(), u["steps"]["agent"]["output_tokens"].as_u64()),
            (Some(150), Some(15))
        );
        assert_eq!(u["steps"]["extract"]["usd"], Value::Null, "an unpriced model has no USD");
        assert_eq!(u["total"]["input_tokens"], 170);
        assert!((u["total"]["usd"].as_f64().expect("usd") - 0.003).abs() < 1e-12);
        assert!(u["steps"].get("fetch").is_none());
        assert_eq!(model_usage(&audit[3..]), None);
    }
}
