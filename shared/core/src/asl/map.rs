//! The parts of a Map state that are not a plain `for_each`: reading the items from S3
//! (`ItemReader`), grouping them (`ItemBatcher`), and tolerating failed items.

use serde_json::{Map, Value};

use super::paths::Cx;
use super::payload::payload_in;
use super::tasks::{Call, call, template};

/// Whether a Map state runs as baton's distributed map (see `distributed`): it reads its items
/// with an `ItemReader` and writes its results with a `ResultWriter`.
pub(crate) fn is_distributed(m: &Map<String, Value>) -> bool {
    m.get("ItemReader").is_some() && m.get("ResultWriter").is_some()
}

/// The call that fetches an `ItemReader`'s object, and jq turning that call's output into items.
pub(crate) fn reader(
    r: &Value,
    eff: &str,
    cx: &Cx<'_>,
    jsonata: bool,
    errs: &mut Vec<(String, String)>,
) -> Option<(Call, String)> {
    let resource = r.get("Resource").and_then(Value::as_str).unwrap_or("");
    let params = if jsonata {
        let vars = super::jsonata::Vars { input: eff, result: None, cx, error_output: None };
        r.get("Arguments").map(|p| super::jsonata::with_value(p, &vars, "ItemReader.Arguments", errs))
    } else {
        r.get("Parameters").map(|p| template(p, eff, cx, "ItemReader.Parameters", errs))
    };
    let config = r.get("ReaderConfig").and_then(Value::as_object).cloned().unwrap_or_default();
    for k in config.keys() {
        if !["InputType", "CSVHeaderLocation", "CSVHeaders", "MaxItems", "CSVDelimiter"].contains(&k.as_str()) {
            errs.push((format!("ItemReader.ReaderConfig.{k}"), format!("`{k}` cannot be converted")));
        }
    }
    let parse = match (resource, config.get("InputType").and_then(Value::as_str)) {
        ("arn:aws:states:::s3:listObjectsV2", None) => ".Contents // []".to_owned(),
        ("arn:aws:states:::s3:getObject", Some("JSON")) => {
            ".Body | if type == \"string\" then fromjson else . end".to_owned()
        }
        ("arn:aws:states:::s3:getObject", Some("JSONL")) => {
            ".Body | split(\"\\n\") | map(select(length > 0) | fromjson)".to_owned()
        }
        ("arn:aws:states:::s3:getObject", Some("CSV")) => csv(&config, errs)?,
        (res, ty) => {
            errs.push(unknown_reader(res, ty));
            return None;
        }
    };
    let parse = match config.get("MaxItems").and_then(Value::as_u64) {
        Some(n) => format!("({parse}) | .[:{n}]"),
        None => parse,
    };
    let aws_resource = resource.replacen("arn:aws:states:::s3:", "arn:aws:states:::aws-sdk:s3:", 1);
    match call(&aws_resource, params, eff) {
        Ok(c) => Some((c, parse)),
        Err(e) => {
            errs.push(("ItemReader.Resource".into(), e));
            None
        }
    }
}

/// The problem of an `ItemReader` whose resource and input type no conversion reads.
pub(crate) fn unknown_reader(resource: &str, input_type: Option<&str>) -> (String, String) {
    (
        "ItemReader.Resource".into(),
        format!(
            "`{resource}` with InputType {} cannot be converted (s3:getObject with CSV, JSON or JSONL; s3:listObjectsV2)",
            input_type.unwrap_or("none")
        ),
    )
}

/// jq reading a CSV body into objects keyed by the header: `fromcsv` reads it as RFC 4180 does
/// (quoted fields may hold the delimiter, quotes and line breaks); a field a short row lacks is
/// `""`, as Step Functions gives it.
fn csv(config: &Map<String, Value>, errs: &mut Vec<(String, String)>) -> Option<String> {
    let delim = config.get("CSVDelimiter").and_then(Value::as_str).unwrap_or("COMMA");
    let d = match delim {
        "COMMA" => ",",
        "PIPE" => "|",
        "SEMICOLON" => ";",
        "SPACE" => " ",
        "TAB" => "\\t",
        other => {
            errs.push(("ItemReader.ReaderConfig.CSVDelimiter".into(), format!("unknown delimiter `{other}`")));
            return None;
        }
    };
    let rows = format!(".Body | fromcsv(\"{d}\") | map(select(. != [\"\"]))");
    let row = "map(. as $r | [range(0; $h | length) as $i | {($h[$i]): ($r[$i] // \"\")}] | add)";
    match config.get("CSVHeaderLocation").and_then(Value::as_str).unwrap_or("FIRST_ROW") {
        "FIRST_ROW" => Some(format!("{rows} | .[0] as $h | .[1:] | {row}")),
        "GIVEN" => match config.get("CSVHeaders") {
            Some(h @ Value::Array(_)) => Some(format!("{rows} | {} as $h | {row}", super::paths::literal(h))),
            _ => {
                errs.push(("ItemReader.ReaderConfig.CSVHeaders".into(), "`GIVEN` needs `CSVHeaders`, a list".into()));
                None
            }
        },
        other => {
            errs.push((
                "ItemReader.ReaderConfig.CSVHeaderLocation".into(),
                format!("`{other}` is not FIRST_ROW or GIVEN"),
            ));
            None
        }
    }
}

/// `items` grouped by an `ItemBatcher` into `{Items, BatchInput}` objects.
pub(crate) fn batched(
    batcher: Option<&Value>,
    items: &str,
    eff: &str,
    cx: &Cx<'_>,
    jsonata: bool,
    errs: &mut Vec<(String, String)>,
    warnings: &mut Vec<String>,
) -> String {
    let Some(b) = batcher else { return items.to_owned() };
    let Some(n) = b.get("MaxItemsPerBatch").and_then(Value::as_u64).filter(|n| *n > 0) else {
        errs.push((
            "ItemBatcher.MaxItemsPerBatch".into(),
            "batches are converted by item count: set `MaxItemsPerBatch`".into(),
        ));
        return items.to_owned();
    };
    if b.get("MaxInputBytesPerBatch").is_some() {
        warnings.push(format!(
            "ItemBatcher.MaxInputBytesPerBatch is not enforced: batches hold up to {n} items whatever their size"
        ));
    }
    let input = match b.get("BatchInput") {
        Some(bi) => format!(", BatchInput: {}", payload_in(jsonata, bi, eff, cx, "ItemBatcher.BatchInput", errs)),
        None => String::new(),
    };
    format!("(({items}) as $all | [range(0; $all | length; {n}) as $i | {{Items: $all[$i:$i + {n}]{input}}}])")
}

/// jq that checks the failed items of result `$r0` against the tolerated failures and gives the
/// results (failed items as their `{Error, Cause}`), or `None` when the Map tolerates none. The
/// `…Path` variants read the number from the state's effective input `eff`.
pub(crate) fn tolerance(
    m: &Map<String, Value>,
    eff: &str,
    cx: &Cx<'_>,
    errs: &mut Vec<(String, String)>,
) -> Option<String> {
    let mut read = |k: &str, whole: bool| -> Option<String> {
        let path_key = format!("{k}Path");
        match (m.get(k), m.get(&path_key)) {
            (Some(_), Some(_)) => {
                errs.push((path_key, format!("a state sets `{k}` or `{k}Path`, not both")));
                None
            }
            (Some(v), None) => {
                let n = if whole { v.as_u64().map(|n| n as f64) } else { v.as_f64() };
                match n {
                    Some(n) if whole || (0.0..=100.0).contains(&n) => Some(n.to_string()),
                    _ if whole => {
                        errs.push((k.into(), "a whole number".into()));
                        Some("0".into())
                    }
                    _ => {
                        errs.push((k.into(), "a number from 0 to 100".into()));
                        Some("0".into())
                    }
                }
            }
            (None, Some(Value::String(p))) => match super::paths::path(p, eff, cx) {
                Ok(jq) => Some(format!("({jq})")),
                Err(e) => {
                    errs.push((path_key, e));
                    None
                }
            },
            (None, Some(_)) => {
                errs.push((path_key, "a reference path such as `$.tolerated`".into()));
                None
            }
            (None, None) => None,
        }
    };
    let count = read("ToleratedFailureCount", true);
    let pct = read("ToleratedFailurePercentage", false);
    if pct.is_none() && count.is_none() {
        return None;
    }
    let mut over = Vec::new();
    if let Some(c) = count {
        over.push(format!("$f > {c}"));
    }
    if let Some(p) = pct {
        over.push(format!("($f * 100) > ({p} * ($r0 | length))"));
    }
    Some(format!(
        "([$r0[] | select(type == \"object\" and has(\"__asl_failed\"))] | length) as $f \
         | if {} then fail(\"States.ExceedToleratedFailureThreshold\"; \"\\($f) of \\($r0 | length) items failed\") \
         else ($r0 | map(if type == \"object\" and has(\"__asl_failed\") then .__asl_failed else . end)) end",
        over.join(" or ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::Expr;
    use serde_json::json;

    fn items(config: Value, body: &str) -> Value {
        let mut errs = Vec::new();
        let jq = csv(config.as_object().unwrap(), &mut errs).unwrap();
        assert!(errs.is_empty(), "{errs:?}");
        Expr::compile(&jq).unwrap().eval(&json!({"Body": body})).unwrap()
    }

    #[test]
    fn csv_items_keep_quoted_delimiters_quotes_and_line_breaks() {
        let body = "id,note\r\n1,\"a, \"\"b\"\"\nc\"\n2\n\n";
        assert_eq!(items(json!({}), body), json!([{"id": "1", "note": "a, \"b\"\nc"}, {"id": "2", "note": ""}]));
        let given = json!({"CSVHeaderLocation": "GIVEN", "CSVHeaders": ["x", "y"], "CSVDelimiter": "TAB"});
        assert_eq!(items(given, "1\t\"2\t3\"\n"), json!([{"x": "1", "y": "2\t3"}]));
    }
}
