//! The `items` tool end to end, through the `Tool` port as the coordinator calls it: local
//! files and directories in temporary directories, and S3 on the emulator
//! (`BATON_TEST_AWS_ENDPOINT`, default http://127.0.0.1:4566, started with `localstack/up` when
//! nothing answers). Every split is checked by reading each batch back: the batches together
//! must give every item, in order, whatever the batch size.

// Tests fail loudly on any surprise.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use baton_core::engine::StepError;
use baton_runtime::ports::{Tool, ToolCall};
use baton_tools::aws::{AwsCall, AwsSettings, AwsTool};
use baton_tools::items::{Format, ITEMS_TOOL, ItemsCall, ItemsTool};
use serde_json::{Value, json};

#[path = "support/emulator.rs"]
mod emulator;
use emulator::endpoint;

fn aws() -> AwsTool {
    AwsTool::with_settings(AwsSettings {
        endpoint: Some(endpoint()),
        endpoints: Default::default(),
        signer: Some(("testing".into(), "testing".into(), None, "us-east-1".into())),
        chain: None,
    })
}

/// A tool for local sources only: S3 settings never used.
fn local() -> ItemsTool {
    ItemsTool::new(AwsTool::with_settings(AwsSettings::default()))
}

fn suffix() -> String {
    format!("{}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos())
}

async fn run(t: &ItemsTool, input: Value) -> Result<Value, StepError> {
    let call = ToolCall {
        run_id: "r1".into(),
        node: "map".into(),
        step: "map".into(),
        attempt: 1,
        tool: ITEMS_TOOL.into(),
        input,
        idempotency_key: "r1/map/0/1".into(),
        timeout_ms: Some(30_000),
        usage: Default::default(),
    };
    t.call(&call).await
}

async fn s3(t: &AwsTool, action: &str, params: Value) -> Result<Value, StepError> {
    t.invoke(&AwsCall { service: "s3".into(), action: action.into(), params: Some(params), role_arn: None }).await
}

/// Splits `source`, reads every batch back, and checks the batches' shape; answers the split
/// and the items of all batches in order.
async fn split_and_read(t: &ItemsTool, source: &str, format: Value, batch_size: u64) -> (Value, Vec<Value>) {
    let split = run(t, json!({"op": "split", "source": source, "format": format, "batch_size": batch_size}))
        .await
        .unwrap_or_else(|e| panic!("split {source}: {e:?}"));
    let count = split["count"].as_u64().unwrap();
    let batches = split["batches"].as_array().unwrap();
    assert_eq!(batches.len() as u64, count.div_ceil(batch_size), "{split}");
    let mut items = Vec::new();
    for (n, b) in batches.iter().enumerate() {
        assert_eq!(b["first"], json!(n as u64 * batch_size), "{b}");
        assert_eq!(b["count"], json!(batch_size.min(count - n as u64 * batch_size)), "{b}");
        let mut input = json!({"op": "read", "source": source, "format": split["format"], "batch": b});
        if let Some(h) = split.get("header_bytes") {
            input["header_bytes"] = h.clone();
        }
        let got = run(t, input).await.unwrap_or_else(|e| panic!("read {source} {b}: {e:?}"));
        let got = got["items"].as_array().unwrap();
        assert_eq!(got.len() as u64, b["count"].as_u64().unwrap(), "{b}");
        items.extend(got.iter().cloned());
    }
    (split, items)
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

const CSV: &str = "id,name,note\r\n1,plain,x\r\n2,\"with, comma\",\"she said \"\"hi\"\"\"\r\n\
                   3,\"two\nlines\",\"\"\r\n4,last,\"a,\"\"b\"\",\nc\"";

fn csv_items() -> Vec<Value> {
    vec![
        json!({"id": "1", "name": "plain", "note": "x"}),
        json!({"id": "2", "name": "with, comma", "note": "she said \"hi\""}),
        json!({"id": "3", "name": "two\nlines", "note": ""}),
        json!({"id": "4", "name": "last", "note": "a,\"b\",\nc"}),
    ]
}

const JSON_ARRAY: &str = r#"[
  {"id": 1, "tags": ["a]", "b,"], "nested": {"deep": [[1, 2], {"x": "}"}]}},
  "a string with ] and , and \"quotes\" and \\",
  [1, [2, [3]]],
  null, 7, -1.5e3, true,
  {"empty": {}, "list": [], "s": "\\\"]"}
]
"#;

#[tokio::test]
async fn local_jsonl_csv_and_json_read_back_whole_at_every_batch_size() {
    let dir = tempfile::tempdir().unwrap();
    let jsonl_items: Vec<Value> = (0..7).map(|i| json!({"i": i, "s": format!("line {i}, \"q\"")})).collect();
    let mut jsonl: String = jsonl_items.iter().map(|v| format!("{v}\n")).collect();
    jsonl.insert_str(jsonl.find('\n').unwrap() + 1, "\n   \n");
    jsonl.push_str("\n\n");
    let jsonl = write(dir.path(), "items.jsonl", &jsonl);
    let csv = write(dir.path(), "items.csv", CSV);
    let array = write(dir.path(), "items.json", JSON_ARRAY);
    let array_items: Vec<Value> = serde_json::from_str::<Vec<Value>>(JSON_ARRAY).unwrap();
    let odd_name = write(dir.path(), "items.data", "1\n2\n");

    for batch_size in [1, 3, 100] {
        let (split, items) = split_and_read(&local(), &jsonl, Value::Null, batch_size).await;
        assert_eq!((split["format"].clone(), split.get("header_bytes")), (json!("jsonl"), None));
        assert_eq!(items, jsonl_items, "jsonl, batch size {batch_size}");

        let (split, items) = split_and_read(&local(), &csv, Value::Null, batch_size).await;
        assert_eq!((split["format"].clone(), split["header_bytes"].clone()), (json!("csv"), json!(14)));
        assert_eq!(items, csv_items(), "csv, batch size {batch_size}");

        let (split, items) = split_and_read(&local(), &format!("file://{array}"), Value::Null, batch_size).await;
        assert_eq!(split["format"], "json");
        assert_eq!(items, array_items, "json, batch size {batch_size}");

        let (_, items) = split_and_read(&local(), &odd_name, json!("jsonl"), batch_size).await;
        assert_eq!(items, vec![json!(1), json!(2)]);
    }
    // A batch's range covers its items' bytes only.
    let split = run(&local(), json!({"op": "split", "source": array, "batch_size": 2})).await.unwrap();
    let [start, end] = [0, 1].map(|i| split["batches"][0]["range"][i].as_u64().unwrap() as usize);
    assert!(JSON_ARRAY[start..end].starts_with("{\"id\": 1") && JSON_ARRAY[start..end].ends_with("\\\\\""));
}

#[tokio::test]
async fn a_directory_is_one_item_per_file_in_name_order() {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in [("b.txt", "bb"), ("a.json", "{}"), ("c", ""), ("a.csv", "x,y\n")] {
        write(dir.path(), name, text);
    }
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    write(&dir.path().join("sub"), "deeper.txt", "not listed");
    let expected = vec![
        json!({"key": "a.csv", "size": 4}),
        json!({"key": "a.json", "size": 2}),
        json!({"key": "b.txt", "size": 2}),
        json!({"key": "c", "size": 0}),
    ];
    let source = dir.path().display().to_string();
    for batch_size in [1, 3, 10] {
        let (split, items) = split_and_read(&local(), &source, Value::Null, batch_size).await;
        assert_eq!(split["format"], "objects");
        assert_eq!(split["batches"][0]["after"], Value::Null, "{split}");
        assert_eq!(items, expected, "batch size {batch_size}");
    }
    let split =
        run(&local(), json!({"op": "split", "source": format!("file://{source}"), "batch_size": 3})).await.unwrap();
    assert_eq!(
        split,
        json!({"count": 4, "format": "objects", "batches": [
            {"first": 0, "count": 3, "after": null}, {"first": 3, "count": 1, "after": "b.txt"}]})
    );
}

#[tokio::test]
async fn empty_sources_have_no_batches() {
    let dir = tempfile::tempdir().unwrap();
    let empty_dir = dir.path().join("empty");
    std::fs::create_dir(&empty_dir).unwrap();
    for (source, format) in [
        (write(dir.path(), "e.jsonl", ""), "jsonl"),
        (write(dir.path(), "blank.jsonl", "\n \n"), "jsonl"),
        (write(dir.path(), "e.json", " [ ] "), "json"),
        (write(dir.path(), "header.csv", "a,b\n"), "csv"),
        (write(dir.path(), "e.csv", ""), "csv"),
        (empty_dir.display().to_string(), "objects"),
    ] {
        let split = run(&local(), json!({"op": "split", "source": source, "batch_size": 5})).await.unwrap();
        assert_eq!((split["count"].clone(), split["batches"].clone()), (json!(0), json!([])), "{source}: {split}");
        assert_eq!(split["format"], format);
    }
}

#[tokio::test]
async fn malformed_sources_and_bad_calls_fail_naming_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let jsonl = write(dir.path(), "bad.jsonl", "{\"a\": 1}\n\n{\"a\": \n{\"a\": 3}\n");
    let json = write(dir.path(), "bad.json", "[1, {\"a\": }, 3]");
    let not_array = write(dir.path(), "obj.json", "{\"a\": [1]}");
    let csv = write(dir.path(), "bad.csv", "a,b\n1,2\n1,2,3\n");
    let txt = write(dir.path(), "x.txt", "1\n");
    let missing = dir.path().join("missing.jsonl").display().to_string();
    let split = |source: &str| json!({"op": "split", "source": source, "batch_size": 2});
    for (input, message) in [
        (split(&jsonl), format!("line 3 of {jsonl} is not JSON: ")),
        (split(&json), format!("element 1 of {json} is not JSON: ")),
        (split(&not_array), format!("{not_array} is not a JSON array: it does not start with `[`")),
        (split(&csv), format!("{csv} is not CSV: ")),
        (split(&txt), format!("cannot tell the format of {txt} from its name: set `format`")),
        (split(&missing), format!("{missing}: ")),
        (split("s3:///k.jsonl"), "`source` names no bucket".into()),
        (json!({"op": "split", "source": jsonl, "batch_size": 0}), "`batch_size` must be at least 1".into()),
        (json!({"op": "split", "source": jsonl}), "missing field `batch_size`".into()),
        (
            json!({"op": "split", "source": jsonl, "format": "xml", "batch_size": 1}),
            "`format` is one of jsonl, csv, json and objects, not `xml`".into(),
        ),
        (json!({"op": "merge", "source": jsonl}), "`op` is `merge`".into()),
        (json!({"source": jsonl}), "`op` is missing".into()),
        (
            json!({"op": "read", "source": jsonl, "format": "jsonl", "batch": {"first": 0, "count": 1}}),
            "`batch.range` is missing".into(),
        ),
        (
            json!({"op": "read", "source": jsonl, "batch": {"first": 0, "count": 1, "range": [0, 8]}, "format": "csv"}),
            "`header_bytes` is missing".into(),
        ),
        (
            json!({"op": "read", "source": jsonl, "format": "jsonl", "batch": {"first": 0, "count": 2, "range": [0, 8]}}),
            format!("{jsonl} changed since it was split: batch at item 0 should hold 2 items, found 1"),
        ),
        (json!({"op": "write", "uri": jsonl}), "missing field `value`".into()),
        (json!({"op": "write", "uri": "s3://b/prefix/", "value": 1}), "`uri` names a prefix".into()),
    ] {
        let err = run(&local(), input.clone()).await.unwrap_err();
        assert_eq!(err.kind.as_str(), "tool", "{input}: {err:?}");
        assert!(err.message.contains(&message), "{input}: expected `{message}` in `{}`", err.message);
    }
}

#[tokio::test]
async fn a_local_write_replaces_the_file_whole_and_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out/nested/results.json");
    let uri = path.display().to_string();
    let value = json!([{"id": 1, "s": "a, b"}, {"id": 2, "s": "]"}]);
    let wrote = run(&local(), json!({"op": "write", "uri": uri, "value": value})).await.unwrap();
    let text = value.to_string();
    assert_eq!(wrote, json!({"uri": uri, "bytes": text.len()}));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    let (_, items) = split_and_read(&local(), &uri, Value::Null, 1).await;
    assert_eq!(Value::Array(items), value);

    // Again, smaller: the file is replaced, not overwritten in place, and no temporary remains.
    let wrote = run(&local(), json!({"op": "write", "uri": format!("file://{uri}"), "value": {"k": 1}})).await.unwrap();
    assert_eq!(wrote["bytes"], 7);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"k\":1}");
    let names: Vec<String> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, vec!["results.json".to_owned()]);

    let err =
        run(&local(), json!({"op": "write", "uri": dir.path().join("out/nested").display().to_string(), "value": 1}))
            .await
            .unwrap_err();
    assert!(err.message.contains("out/nested"), "{err:?}");
}

#[tokio::test]
async fn list_objects_v2_pages_and_ranged_gets_through_the_aws_tool() {
    let t = aws();
    let bucket = format!("items-aws-{}", suffix());
    s3(&t, "CreateBucket", json!({"Bucket": bucket})).await.unwrap();
    for k in ["p/a b", "p/b+c", "p/c", "p/d", "p/e", "q/x"] {
        s3(&t, "PutObject", json!({"Bucket": bucket, "Key": k, "Body": format!("0123456789{k}")})).await.unwrap();
    }
    let mut keys = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut params = json!({"Bucket": bucket, "Prefix": "p/", "MaxKeys": 2});
        if let Some(t) = &token {
            params["ContinuationToken"] = json!(t);
        }
        let page = s3(&t, "ListObjectsV2", params).await.unwrap();
        let contents = page["Contents"].as_array().unwrap();
        assert_eq!(page["KeyCount"], json!(contents.len()), "{page}");
        for c in contents {
            assert!(c["Size"].is_u64() && c["ETag"].is_string() && c["LastModified"].is_string(), "{c}");
            keys.push(c["Key"].as_str().unwrap().to_owned());
        }
        match page["NextContinuationToken"].as_str() {
            Some(next) if page["IsTruncated"] == json!(true) => token = Some(next.to_owned()),
            _ => break,
        }
    }
    assert_eq!(keys, ["p/a b", "p/b+c", "p/c", "p/d", "p/e"]);

    let after = s3(&t, "ListObjectsV2", json!({"Bucket": bucket, "Prefix": "p/", "StartAfter": "p/c"})).await.unwrap();
    assert_eq!(after["Contents"].as_array().unwrap().len(), 2, "{after}");
    assert_eq!(after["IsTruncated"], json!(false));
    let one = s3(&t, "ListObjectsV2", json!({"Bucket": bucket, "Prefix": "q/"})).await.unwrap();
    assert_eq!(one["Contents"][0]["Key"], "q/x", "a single entry is still a list: {one}");
    assert_eq!(one["Contents"][0]["Size"], json!(13));
    let none = s3(&t, "ListObjectsV2", json!({"Bucket": bucket, "Prefix": "zzz/"})).await.unwrap();
    assert_eq!((none["Contents"].clone(), none["KeyCount"].clone()), (json!([]), json!(0)), "{none}");

    let part = s3(&t, "GetObject", json!({"Bucket": bucket, "Key": "p/a b", "Range": "bytes=2-4"})).await.unwrap();
    assert_eq!(part["Body"], "234");
    let err = s3(&t, "ListObjectsV2", json!({"Bucket": format!("{bucket}-none")})).await.unwrap_err();
    assert_eq!(err.kind.as_str(), "S3.NoSuchBucket", "{err:?}");
}

#[tokio::test]
async fn s3_objects_split_and_read_in_batches() {
    let (aws, t) = (aws(), ItemsTool::new(aws()));
    let bucket = format!("items-src-{}", suffix());
    s3(&aws, "CreateBucket", json!({"Bucket": bucket})).await.unwrap();
    let jsonl_items: Vec<Value> =
        (0..10_000).map(|i| json!({"i": i, "name": format!("item-{i}"), "tags": ["x", i % 7]})).collect();
    let jsonl: String = jsonl_items.iter().map(|v| format!("{v}\n")).collect();
    for (key, body) in [("in/big.jsonl", jsonl.as_str()), ("in/rows.csv", CSV), ("in/array.json", JSON_ARRAY)] {
        s3(&aws, "PutObject", json!({"Bucket": bucket, "Key": key, "Body": body})).await.unwrap();
    }

    let (split, items) = split_and_read(&t, &format!("s3://{bucket}/in/big.jsonl"), Value::Null, 1000).await;
    assert_eq!((split["count"].clone(), split["batches"].as_array().unwrap().len()), (json!(10_000), 10));
    assert_eq!(split["batches"][0]["range"], json!([0, jsonl.find("{\"i\":1000,").unwrap() - 1]));
    assert!(items == jsonl_items, "the 10,000 items read back in order");

    for batch_size in [1, 3] {
        let (split, items) = split_and_read(&t, &format!("s3://{bucket}/in/rows.csv"), Value::Null, batch_size).await;
        assert_eq!(split["header_bytes"], 14);
        assert_eq!(items, csv_items());
        let (_, items) = split_and_read(&t, &format!("s3://{bucket}/in/array.json"), json!("json"), batch_size).await;
        assert_eq!(items, serde_json::from_str::<Vec<Value>>(JSON_ARRAY).unwrap());
    }

    let err = run(&t, json!({"op": "split", "source": format!("s3://{bucket}/in/nope.jsonl"), "batch_size": 10}))
        .await
        .unwrap_err();
    assert_eq!(err.kind.as_str(), "S3.NoSuchKey", "{err:?}");
    let err = run(&t, json!({"op": "split", "source": format!("s3://{bucket}-none/in/"), "batch_size": 10}))
        .await
        .unwrap_err();
    assert_eq!(err.kind.as_str(), "S3.NoSuchBucket", "{err:?}");
}

#[tokio::test]
async fn an_s3_prefix_is_one_item_per_object() {
    let (aws, t) = (aws(), ItemsTool::new(aws()));
    let bucket = format!("items-prefix-{}", suffix());
    s3(&aws, "CreateBucket", json!({"Bucket": bucket})).await.unwrap();
    let keys: Vec<String> = (0..25).map(|i| format!("docs/doc-{i:02}.txt")).collect();
    for k in keys.iter().chain([&"docs-other/x".to_owned(), &"other/y".to_owned()]) {
        s3(&aws, "PutObject", json!({"Bucket": bucket, "Key": k, "Body": k})).await.unwrap();
    }
    let source = format!("s3://{bucket}/docs/");
    let (split, items) = split_and_read(&t, &source, Value::Null, 10).await;
    assert_eq!(split["format"], "objects");
    let batches: Vec<Value> =
        split["batches"].as_array().unwrap().iter().map(|b| json!([b["first"], b["count"], b["after"]])).collect();
    assert_eq!(batches, [json!([0, 10, null]), json!([10, 10, "docs/doc-09.txt"]), json!([20, 5, "docs/doc-19.txt"])]);
    let got: Vec<&str> = items.iter().map(|i| i["key"].as_str().unwrap()).collect();
    assert_eq!(got, keys);
    assert_eq!(items[3]["size"], json!(keys[3].len()));
    assert!(items[3]["etag"].is_string() && items[3]["last_modified"].is_string(), "{}", items[3]);
}

#[tokio::test]
async fn s3_writes_replace_the_object() {
    let (aws, t) = (aws(), ItemsTool::new(aws()));
    let bucket = format!("items-out-{}", suffix());
    s3(&aws, "CreateBucket", json!({"Bucket": bucket})).await.unwrap();
    let uri = format!("s3://{bucket}/out/result.json");
    let value = json!({"rows": [1, 2, 3], "note": "a \"quoted\" ]"});
    for _ in 0..2 {
        let wrote = run(&t, json!({"op": "write", "uri": uri, "value": value})).await.unwrap();
        assert_eq!(wrote, json!({"uri": uri, "bytes": value.to_string().len()}));
    }
    let got = s3(&aws, "GetObject", json!({"Bucket": bucket, "Key": "out/result.json"})).await.unwrap();
    assert_eq!(got["Body"], value.to_string());
    assert_eq!(got["ContentType"], "application/json");
    run(&t, json!({"op": "write", "uri": uri, "value": [7]})).await.unwrap();
    let (_, items) = split_and_read(&t, &uri, Value::Null, 5).await;
    assert_eq!(items, vec![json!(7)]);
}

/// A stack's coordinator runs the tool S3-only: a local path (the function's own files) is
/// refused before anything is read or written.
#[tokio::test]
async fn an_s3_only_tool_refuses_local_paths() {
    let tool = ItemsTool::new(AwsTool::from_env()).s3_only();
    for call in [
        ItemsCall::Split { source: "/proc/self/environ".into(), format: Some(Format::Jsonl), batch_size: 1 },
        ItemsCall::Write { uri: "/tmp/out.json".into(), value: serde_json::json!(1) },
    ] {
        let e = tool.invoke(&call).await.expect_err("refused");
        assert_eq!(e.kind.as_str(), "tool");
        assert!(e.message.contains("is an s3:// URI, not the local path"), "{}", e.message);
    }
}
