//! `baton audit replay --export DIR`: an export carries the run, its definition and its journal
//! beside the records, and the decisions are re-derived from those files alone (no store), bit
//! for bit. Altering a record, a journal event or the definition is reported at the first place
//! it shows.

mod support;

use std::path::Path;

use support::{baton, text};

fn replay(dir: &Path) -> (Option<i32>, String) {
    let out = baton(dir, &["audit", "replay", "--export", dir.join("export").to_str().expect("utf8")]);
    (out.status.code(), text(&out))
}

fn edit(path: &Path, line: usize, change: impl Fn(&mut serde_json::Value)) {
    let text = std::fs::read_to_string(path).expect("read");
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let mut v: serde_json::Value = serde_json::from_str(&lines[line]).expect("json line");
    change(&mut v);
    lines[line] = serde_json::to_string(&v).expect("json");
    std::fs::write(path, lines.join("\n") + "\n").expect("write");
}

#[test]
fn an_export_replays_on_its_own_and_names_what_was_altered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = baton(
        dir.path(),
        &[
            "run",
            "workflows/order-triage/workflow.yaml",
            "--input",
            r#"{"order_id":"o-1001","promised_by":120}"#,
            "--mocks",
            "workflows/order-triage/mocks.yaml",
            "--json",
        ],
    );
    let run: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    let id = run["run_id"].as_str().expect("run id");
    let export = dir.path().join("export");
    let out = baton(dir.path(), &["audit", "export", id, "-o", export.to_str().expect("utf8")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    for file in ["run.json", "definition.yaml", "events.jsonl", "records.jsonl"] {
        assert!(export.join(file).exists(), "{file} in the export");
    }
    // The store is gone: the export alone is replayed.
    std::fs::remove_file(dir.path().join("baton.db")).expect("remove the store");
    let (code, said) = replay(dir.path());
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("matches its audit log"), "{said}");
    let pristine: Vec<(String, Vec<u8>)> = ["definition.yaml", "events.jsonl", "records.jsonl"]
        .iter()
        .map(|f| (f.to_string(), std::fs::read(export.join(f)).expect("read")))
        .collect();
    let restore = || {
        for (f, bytes) in &pristine {
            std::fs::write(export.join(f), bytes).expect("restore");
        }
    };

    // A record's reason rewritten: the replay decides the original and names the record.
    edit(&export.join("records.jsonl"), 2, |r| r["reason"] = "approved by nobody".into());
    let (code, said) = replay(dir.path());
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("record 3 differs"), "{said}");
    restore();

    // A journal event's time moved: the decisions it caused no longer match the log.
    edit(&export.join("events.jsonl"), 1, |e| e["at"] = (e["at"].as_u64().expect("at") + 1000).into());
    let (code, said) = replay(dir.path());
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("differs"), "{said}");
    restore();

    // A step's result altered in the journal: each record carries the hash of the event that
    // caused it, so the first record of that event differs, in its `event` field alone.
    edit(&export.join("events.jsonl"), 2, |e| e["output"]["carrier"] = "acme-forged".into());
    let (code, said) = replay(dir.path());
    assert_eq!(code, Some(1), "{said}");
    let (logged, replayed) = said.split_once(", replay decided ").expect("both records shown");
    let logged: serde_json::Value =
        serde_json::from_str(logged.split_once("the log says ").expect("logged").1).expect("logged record");
    let replayed: serde_json::Value = serde_json::from_str(replayed.trim()).expect("replayed record");
    let strip = |mut r: serde_json::Value| {
        for k in ["event", "hash", "prev_hash"] {
            r.as_object_mut().expect("object").remove(k);
        }
        r
    };
    assert_ne!(logged["event"], replayed["event"], "{said}");
    assert_eq!(strip(logged), strip(replayed), "only the event hash tells: {said}");
    restore();

    // The definition changed (a comment alone would not change its hash): it no longer hashes to
    // the one the run ran.
    let definition = export.join("definition.yaml");
    let source = std::fs::read_to_string(&definition).expect("read");
    assert!(source.contains("name: order-triage"), "{source}");
    std::fs::write(&definition, source.replacen("name: order-triage", "name: order-triage-edited", 1)).expect("write");
    let (code, said) = replay(dir.path());
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("but run.json says the run ran definition"), "{said}");
    restore();

    // A journal line that is not an event: named with its file and line.
    let events = export.join("events.jsonl");
    let text_now = std::fs::read_to_string(&events).expect("read");
    std::fs::write(&events, text_now.replacen('{', "{not json", 1)).expect("write");
    let (code, said) = replay(dir.path());
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("events.jsonl line 1"), "{said}");
    restore();

    // No export there: exit 2.
    let out = baton(dir.path(), &["audit", "replay", "--export", "/no/such/export"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}
