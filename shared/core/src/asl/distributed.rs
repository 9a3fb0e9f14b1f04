//! A distributed Map, one that reads its items with an `ItemReader` and writes its results with a
//! `ResultWriter`, becomes baton's distributed map: a `workflow` step with `items_from`. The
//! coordinator reads the S3 source in batches and writes each batch's result and a manifest
//! under the writer's prefix, so the run never holds the items or their results.
//!
//! Each batch runs an adapter child (`<processor>-batch`) that turns baton's batch input
//! (`{state, execution, run, batch_input}` plus `items` and `batch`) into what Step Functions
//! gives the processor: the item through `ItemSelector` (batches of one item without an
//! `ItemBatcher`, as Step Functions runs one child per item), or `{Items, BatchInput}` with one.

use serde_json::{Map, Value, json};

use super::flow::{Input, after, bare, out, step, transform};
use super::paths::{Cx, json_str};
use super::payload::payload_in;
use super::states::{Builder, Shape};
use crate::model::{ItemFormat, ItemsFromSpec};

/// baton's largest `items_from.batch_size`.
const MAX_BATCH: u64 = 10_000;

/// jq giving `s3://<Bucket>/<rest>` from the jq object `params`, `rest` its field `field`.
fn s3_uri(params: &str, field: &str, slash: bool) -> String {
    let rest = if slash {
        format!("(($p.{field} // \"\") | if . == \"\" or endswith(\"/\") then . else . + \"/\" end)")
    } else {
        format!("($p.{field} // \"\")")
    };
    format!("{{{{ ({params}) as $p | \"s3://\" + $p.Bucket + \"/\" + {rest} }}}}")
}

impl Builder<'_> {
    /// The `items_from` of a distributed Map: its source and format (from `ItemReader`), where
    /// its results go (from `ResultWriter`), its batch size and tolerance.
    fn items_from(
        &mut self,
        m: &Map<String, Value>,
        eff: &str,
        cx: &Cx<'_>,
        jsonata: bool,
        errs: &mut Vec<(String, String)>,
    ) -> ItemsFromSpec {
        let reader = m.get("ItemReader").cloned().unwrap_or_default();
        let resource = reader.get("Resource").and_then(Value::as_str).unwrap_or("");
        let args = if jsonata { "Arguments" } else { "Parameters" };
        let params = match reader.get(args) {
            Some(p) => payload_in(jsonata, p, eff, cx, &format!("ItemReader.{args}"), errs),
            None => {
                errs.push((format!("ItemReader.{args}"), "the reader needs `Bucket` and `Key` or `Prefix`".into()));
                "{}".into()
            }
        };
        let config = reader.get("ReaderConfig").and_then(Value::as_object).cloned().unwrap_or_default();
        for (k, v) in &config {
            let fine = match k.as_str() {
                "InputType" => true,
                "CSVHeaderLocation" => v == "FIRST_ROW",
                "CSVDelimiter" => v == "COMMA",
                _ => false,
            };
            if !fine {
                errs.push((
                    format!("ItemReader.ReaderConfig.{k}"),
                    format!(
                        "`{k}: {v}` cannot be converted with a `ResultWriter` (baton's distributed map reads every \
                         item of JSON, JSON Lines, CSV with its header in the first row and commas, or an S3 prefix)"
                    ),
                ));
            }
        }
        let input_type = config.get("InputType").and_then(Value::as_str);
        let (source, format) = match (resource, input_type) {
            ("arn:aws:states:::s3:listObjectsV2", None) => (s3_uri(&params, "Prefix", false), ItemFormat::Objects),
            ("arn:aws:states:::s3:getObject", Some(t @ ("JSON" | "JSONL" | "CSV"))) => {
                let f = match t {
                    "JSON" => ItemFormat::Json,
                    "JSONL" => ItemFormat::Jsonl,
                    _ => ItemFormat::Csv,
                };
                (s3_uri(&params, "Key", false), f)
            }
            (res, ty) => {
                errs.push(super::map::unknown_reader(res, ty));
                (String::new(), ItemFormat::Jsonl)
            }
        };
        let writer = m.get("ResultWriter").cloned().unwrap_or_default();
        for k in writer.as_object().into_iter().flat_map(|w| w.keys()) {
            if !["Resource", args].contains(&k.as_str()) {
                errs.push((format!("ResultWriter.{k}"), format!("`{k}` cannot be converted")));
            }
        }
        if writer.get("Resource").and_then(Value::as_str) != Some("arn:aws:states:::s3:putObject") {
            errs.push((
                "ResultWriter.Resource".into(),
                "results are written with `arn:aws:states:::s3:putObject`".into(),
            ));
        }
        let results = match writer.get(args) {
            Some(p) => s3_uri(&payload_in(jsonata, p, eff, cx, &format!("ResultWriter.{args}"), errs), "Prefix", true),
            None => {
                errs.push((format!("ResultWriter.{args}"), "the writer needs `Bucket` (and `Prefix`)".into()));
                String::new()
            }
        };
        let batch_size = match m.get("ItemBatcher") {
            None => 1,
            Some(b) => match b.get("MaxItemsPerBatch").and_then(Value::as_u64).filter(|n| *n > 0) {
                Some(n) if n > MAX_BATCH => {
                    self.report
                        .warnings
                        .push(format!("MaxItemsPerBatch {n} becomes {MAX_BATCH}, baton's largest batch"));
                    MAX_BATCH
                }
                Some(n) => n,
                None => {
                    errs.push((
                        "ItemBatcher.MaxItemsPerBatch".into(),
                        "batches are converted by item count: set `MaxItemsPerBatch`".into(),
                    ));
                    1
                }
            },
        };
        if m.get("ItemBatcher").and_then(|b| b.get("MaxInputBytesPerBatch")).is_some() {
            self.report.warnings.push(format!(
                "ItemBatcher.MaxInputBytesPerBatch is not enforced: batches hold up to {batch_size} items whatever their size"
            ));
        }
        ItemsFromSpec {
            source,
            format: Some(format),
            batch_size: Some(batch_size as u32),
            tolerated_failures: m.get("ToleratedFailureCount").and_then(Value::as_u64),
            tolerated_failure_percent: m.get("ToleratedFailurePercentage").and_then(Value::as_f64),
            results,
        }
    }

    /// A Map with an `ItemReader` and a `ResultWriter`: an `items_from` step, its adapter and
    /// processor children, and the step giving Step Functions' output (`ResultWriterDetails`).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn distributed_map(
        &mut self,
        name: &str,
        m: &Map<String, Value>,
        shape: &Shape,
        input: &Input,
        eff: &str,
        cx: &Cx<'_>,
        concurrency: u32,
        jsonata: bool,
        errs: &mut Vec<(String, String)>,
    ) {
        let id = shape.id.clone();
        let spec = self.items_from(m, eff, cx, jsonata, errs);
        let batched = m.contains_key("ItemBatcher");
        let batch_input = match m.get("ItemBatcher").and_then(|b| b.get("BatchInput")) {
            Some(bi) => payload_in(jsonata, bi, eff, cx, "ItemBatcher.BatchInput", errs),
            None => "null".into(),
        };
        for k in ["ToleratedFailureCountPath", "ToleratedFailurePercentagePath"] {
            if m.contains_key(k) {
                errs.push((
                    k.into(),
                    "a distributed map's tolerance is a number (`items_from.tolerated_failures`): write the number"
                        .into(),
                ));
            }
        }
        if let Some(p) = m.get("ToleratedFailurePercentage").and_then(Value::as_f64)
            && !(0.0..=100.0).contains(&p)
        {
            errs.push(("ToleratedFailurePercentage".into(), "a number from 0 to 100".into()));
        }
        // Failed items are counted by the map itself (`tolerated_failures`), not marked by the
        // processor.
        let (child_name, outer) = self.processor(&id, m, false, errs);
        for v in outer {
            errs.push((
                format!("${v}"),
                "a distributed Map's processor reads only the variables it assigns itself".into(),
            ));
        }
        let adapter_name = format!("{child_name}-batch");
        let item_cx = Cx { map_item: true, ..*cx };
        let selector = match m.get("ItemSelector").or_else(|| m.get("Parameters").filter(|_| !jsonata)) {
            Some(sel) => payload_in(jsonata, sel, ".state", &item_cx, "ItemSelector", errs),
            None => ".item".into(),
        };
        // The selector runs in each batch's child, which has no variables of the parent's.
        if selector.contains("@@asl-var:") {
            errs.push((
                "ItemSelector".into(),
                "a distributed Map's `ItemSelector` cannot read variables (pass the value in the state's input)".into(),
            ));
        }
        let item = |value: &str, index: &str| {
            format!(
                "{{state: $in.state, item: {value}, index: {index}, run: $in.run, input: $in.execution}} | {selector}"
            )
        };
        let processor_input = if batched {
            format!(
                ".input as $in | {{Items: [$in.items | to_entries[] | {}]}} + \
                 (if $in.batch_input == null then {{}} else {{BatchInput: $in.batch_input}} end)",
                item(".value", "($in.batch.first + .key)")
            )
        } else {
            format!(".input as $in | {}", item("$in.items[0]", "$in.batch.first"))
        };
        let mut process = bare("process");
        process.tool = Some("workflow".into());
        process.with = Some(json!({"name": child_name, "input": format!("{{{{ {processor_input} }}}}")}));
        self.children.push(super::states::Child {
            outer: Vec::new(),
            assigned: Vec::new(),
            workflow: crate::model::Workflow {
                description: Some(format!(
                    "One batch of the distributed Map \"{name}\", in the shape its processor takes"
                )),
                output: Some(out("process")),
                steps: vec![process],
                ..super::bare_workflow(&adapter_name)
            },
            comments: vec![(
                "process".into(),
                format!(
                    "state \"{name}\": {} through its processor `{child_name}`",
                    if batched { "the batch as `{Items, BatchInput}`" } else { "the batch's one item" }
                ),
            )],
        });
        let with_input =
            format!("{{{{ {{state: ({eff}), execution: .input, run: .run, batch_input: ({batch_input})}} }}}}");
        let mut s = step(&id, "workflow", json!({"name": adapter_name, "input": with_input}), input);
        s.items_from = Some(spec);
        s.max_concurrency = Some(crate::model::Concurrency::Fixed(concurrency));
        if let Some(r) = m.get("Retry") {
            s.retry = super::retry::retry(r, errs).map(super::retry::through_child);
        }
        self.steps.push(s);
        self.comments.push((
            id.clone(),
            format!("state \"{name}\": a distributed map, one `{adapter_name}` child run per batch"),
        ));
        if let Some(exit) = shape.exit.clone().filter(|e| *e != id) {
            let post = self.post(m, cx, errs);
            let details = format!(
                "({}) as $m | {{MapRunArn: (.run.id + \"/\" + {}), ResultWriterDetails: \
                 (first($m.manifest | strings | capture(\"^s3://(?<Bucket>[^/]+)/(?<Key>.+)$\")) \
                 // {{Bucket: null, Key: $m.manifest}})}}",
                out(&id),
                json_str(&id)
            );
            let expr = format!("({}) as $raw | ({details}) as $r0 | {post}", input.raw);
            self.steps.push(transform(&exit, expr, &after(&id, &input.raw)));
            self.comments
                .push((exit.clone(), format!("state \"{name}\": where the results went, and the state's output")));
            let binds = format!("({}) as $raw | ({details}) as $r0 |", input.raw);
            self.assign_result(name, m, shape, &binds, jsonata);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    fn import(def: serde_json::Value) -> Result<super::super::Imported, super::super::ImportError> {
        super::super::import(&def.to_string(), "orders", &BTreeMap::new())
    }

    fn map(extra: serde_json::Value) -> serde_json::Value {
        let mut m = json!({
            "Type": "Map",
            "ItemReader": {"Resource": "arn:aws:states:::s3:getObject", "ReaderConfig": {"InputType": "CSV"},
                           "Parameters": {"Bucket.$": "$.bucket", "Key": "in/orders.csv"}},
            "ResultWriter": {"Resource": "arn:aws:states:::s3:putObject", "Parameters": {"Bucket": "out", "Prefix": "scored"}},
            "ItemProcessor": {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}},
            "MaxConcurrency": 8,
            "ToleratedFailureCount": 5,
            "End": true
        });
        if let (Some(m), Some(e)) = (m.as_object_mut(), extra.as_object()) {
            m.extend(e.clone());
        }
        json!({"StartAt": "Score", "States": {"Score": m}})
    }

    #[test]
    fn a_map_with_a_reader_and_a_writer_becomes_items_from_with_an_adapter_child() {
        let imported = import(map(json!({}))).expect("converts");
        let names: Vec<&str> = imported.workflows.iter().map(|w| w.name.as_str()).collect();
        assert_eq!(names, ["orders", "orders-score", "orders-score-batch"]);
        for w in &imported.workflows {
            crate::load_definition(None, &w.yaml).unwrap_or_else(|e| panic!("{}: {e:?}\n{}", w.name, w.yaml));
        }
        let root: serde_json::Value = serde_yaml_ng::from_str(&imported.workflows[0].yaml).expect("yaml");
        let step = &root["steps"][0];
        assert_eq!(step["with"]["name"], "orders-score-batch");
        assert_eq!(step["max_concurrency"], 8);
        let items = &step["items_from"];
        assert_eq!(items["format"], "csv");
        assert_eq!(items["batch_size"], 1, "one item per child run, as Step Functions runs them");
        assert_eq!(items["tolerated_failures"], 5);
        assert!(items["source"].as_str().is_some_and(|s| s.contains("s3://")), "{items}");
    }

    #[test]
    fn an_item_batcher_sets_the_batch_size_and_unsupported_reader_settings_are_named() {
        let imported = import(map(json!({"ItemBatcher": {"MaxItemsPerBatch": 50}}))).expect("converts");
        let root: serde_json::Value = serde_yaml_ng::from_str(&imported.workflows[0].yaml).expect("yaml");
        assert_eq!(root["steps"][0]["items_from"]["batch_size"], 50);

        let given = map(json!({"ItemReader": {"Resource": "arn:aws:states:::s3:getObject",
            "ReaderConfig": {"InputType": "CSV", "CSVHeaderLocation": "GIVEN", "CSVHeaders": ["a"], "MaxItems": 3},
            "Parameters": {"Bucket": "b", "Key": "k.csv"}}}));
        let err = import(given).expect_err("GIVEN headers cannot be read by items_from").to_string();
        for field in ["ReaderConfig.CSVHeaderLocation", "ReaderConfig.CSVHeaders", "ReaderConfig.MaxItems"] {
            assert!(err.contains(field), "{field} missing from: {err}");
        }
        assert!(err.contains("state \"Score\""), "{err}");
    }
}
