//! Structural checks against the language's JSON Schema: every unknown field, wrong type and
//! missing required field at once, with a "did you mean" for misspelt field names.

use std::sync::OnceLock;

use jsonschema::error::ValidationErrorKind;
use serde_json::Value;

use crate::diagnostics::Problem;

fn validator() -> Option<&'static jsonschema::Validator> {
    static V: OnceLock<Option<jsonschema::Validator>> = OnceLock::new();
    V.get_or_init(|| jsonschema::validator_for(schema()).ok()).as_ref()
}

/// Checks `doc` against the language schema and returns every problem found.
pub fn check_structure(doc: &Value) -> Vec<Problem> {
    let Some(validator) = validator() else {
        return vec![Problem::at("", "internal error: the language schema does not compile")];
    };
    let mut problems = Vec::new();
    for err in validator.iter_errors(doc) {
        convert(&err, &mut problems);
    }
    problems
}

/// The problems one schema error stands for.
fn convert(err: &jsonschema::ValidationError<'_>, problems: &mut Vec<Problem>) {
    let pointer = err.instance_path().as_str().to_owned();
    match err.kind() {
        ValidationErrorKind::AdditionalProperties { unexpected } => {
            let known_owned = known_fields(err.schema_path().as_str());
            let known: Vec<&str> = known_owned.iter().map(String::as_str).collect();
            for field in unexpected {
                let hint = did_you_mean(field, &known).map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default();
                let mut p = Problem::at(format!("{pointer}/{field}"), format!("unknown field `{field}`{hint}"));
                if known.is_empty() {
                    p.message = format!("unknown field `{field}`");
                }
                problems.push(p);
            }
        }
        ValidationErrorKind::Required { property } => {
            let name = property.as_str().unwrap_or("?");
            problems.push(Problem::at(format!("{pointer}/{name}"), format!("missing required field `{name}`")));
        }
        // `retry` is a policy or a list of them: report what is wrong inside the shape given.
        ValidationErrorKind::AnyOf { context }
            if pointer.ends_with("/retry") && (err.instance().is_object() || err.instance().is_array()) =>
        {
            let branch = if err.instance().is_object() { 0 } else { 1 };
            match context.get(branch) {
                Some(errors) if !errors.is_empty() => errors.iter().for_each(|e| convert(e, problems)),
                _ => problems.push(Problem::at(pointer.clone(), shape_hint(&pointer, err.instance()))),
            }
        }
        ValidationErrorKind::AnyOf { .. } | ValidationErrorKind::OneOfNotValid { .. } => {
            problems.push(Problem::at(pointer.clone(), shape_hint(&pointer, err.instance())));
        }
        ValidationErrorKind::Pattern { .. } if err.instance().is_string() => {
            let text = err.instance().as_str().unwrap_or_default();
            let msg = match crate::duration::parse_duration(text) {
                Err(e) => e.to_string(),
                Ok(_) => err.to_string(),
            };
            problems.push(Problem::at(pointer, msg));
        }
        _ => problems.push(Problem::at(pointer, err.to_string())),
    }
}

fn shape_hint(pointer: &str, found: &Value) -> String {
    let found = match found {
        Value::String(s) => format!("`{s}`"),
        other => format!("`{other}`"),
    };
    if pointer.ends_with("/backoff") {
        format!("expected `fixed` or `exponential`, found {found}")
    } else if pointer.ends_with("/jitter") {
        format!("expected `none` or `full`, found {found}")
    } else if pointer.ends_with("/then") {
        format!("expected `fail`, `continue` or `escalate`, found {found}")
    } else if pointer.ends_with("/escalate") {
        "expected `{after: <duration>, to: <queue>}` or a list of them".into()
    } else if pointer.ends_with("/retry") {
        "expected a retry policy `{max_attempts: <n>, ...}` or a list of them".into()
    } else if pointer.ends_with("/max_concurrency") {
        format!("expected a whole number from 1 to 1000 or a `{{{{ }}}}` template, found {found}")
    } else if pointer.contains("/triggers/") {
        "expected `{event: <EventBridge pattern>}` or `{schedule: <expression>}`".into()
    } else {
        "value does not have any of the allowed shapes".into()
    }
}

/// Field names the schema allows where `additionalProperties` was violated: the `properties` of
/// the subschema at `schema_path` (e.g. `/$defs/Step/additionalProperties`).
fn known_fields(schema_path: &str) -> Vec<String> {
    let parent = schema_path.strip_suffix("/additionalProperties").unwrap_or(schema_path);
    schema()
        .pointer(parent)
        .and_then(|s| s.get("properties"))
        .and_then(Value::as_object)
        .map(|props| props.keys().cloned().collect())
        .unwrap_or_default()
}

fn schema() -> &'static Value {
    static S: OnceLock<Value> = OnceLock::new();
    S.get_or_init(crate::model::language_schema)
}

/// The closest known name, when it is close enough to be a typo.
pub fn did_you_mean<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (strsim::jaro_winkler(word, c), *c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}
