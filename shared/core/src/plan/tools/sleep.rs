//! `sleep`: a durable timer the engine arms, for a duration or until a time.

use schemars::JsonSchema;
use serde::Deserialize;

use super::spec::{StepCx, ToolSpec};
use crate::plan::types::StepKind;

/// The `with` of a `sleep` step: exactly one of the two.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SleepArgs {
    /// How long to sleep, e.g. `2s`, `1h`; or a template giving one (`"{{ .input.wait }}s"`),
    /// rendered when the sleep starts.
    #[serde(default, rename = "for")]
    pub for_: Option<String>,
    /// Until when: a template giving an RFC 3339 time.
    #[serde(default)]
    pub until: Option<String>,
}

pub(super) const SPEC: ToolSpec = ToolSpec::inline::<SleepArgs>("sleep", compile);

fn compile(cx: &mut StepCx<'_>) -> Option<StepKind> {
    cx.unknown_args(SPEC.args());
    let (s, ptr, wptr) = (cx.step, cx.ptr, cx.wptr);
    if s.timeout.is_some() || s.retry.is_some() {
        let field = if s.timeout.is_some() { "timeout" } else { "retry" };
        cx.p.err(format!("{ptr}/{field}"), "`timeout` and `retry` do not apply to `sleep`");
    }
    let mut for_template = None;
    let dur = cx.field("for").map(|v| match v.as_str() {
        // A templated duration (a Step Functions `SecondsPath`) is read when the sleep starts.
        Some(t) if t.contains("{{") => {
            for_template = cx.p.template(&format!("{wptr}/for"), v);
            for_template.as_ref().map(|_| crate::duration::Millis(0))
        }
        Some(t) => cx.p.duration(format!("{wptr}/for"), t),
        None => {
            cx.p.err(format!("{wptr}/for"), "expected a duration such as `2s`");
            None
        }
    });
    let until = cx.field("until").map(|v| cx.p.template(&format!("{wptr}/until"), v));
    match (&dur, &until) {
        (None, None) | (Some(_), Some(_)) => {
            cx.p.err(wptr, "`sleep` needs exactly one of `with.for` (a duration) or `with.until` (an RFC 3339 time)");
            None
        }
        _ if for_template.is_some() => Some(StepKind::Sleep { duration: None, until: None, for_template }),
        _ => Some(StepKind::Sleep { duration: dur.flatten(), until: until.flatten(), for_template: None }),
    }
}

#[cfg(test)]
mod tests {
    use crate::plan::load_definition;

    fn load(with: &str) -> Result<(), String> {
        let yaml = format!("name: w\nsteps:\n  - id: s\n    tool: sleep\n    with: {with}\n");
        load_definition(Some("w.yaml"), &yaml).map(|_| ()).map_err(|p| format!("{p:?}"))
    }

    #[test]
    fn for_takes_a_duration_or_a_template_giving_one() {
        load("{for: 2s}").expect("a duration");
        load("{for: '{{ .input.wait }}s'}").expect("a template");
        assert!(load("{for: '{{ .input.wait s'}").is_err(), "an unclosed template");
        assert!(load("{for: 2 seconds}").is_err(), "not a duration");
        assert!(load("{for: '{{ .input.wait }}s', until: '2030-01-01T00:00:00Z'}").is_err(), "both");
    }
}
