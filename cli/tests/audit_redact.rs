//! Sensitive fields and their erasure, on the real KYC/AML example (its `sensitive` paths mark
//! the parties' names, IBANs and addresses): the values never appear in an audit record; `audit
//! redact` erases them from the whole SQLite file while `audit verify` still passes and names
//! what was erased; a replaced or deleted sealed value is caught, in the store and in an export,
//! by baton and by the independent Python verifier.

mod support;

use std::path::Path;
use std::process::{Command, Output};

use rusqlite::{Connection, params};
use support::{baton, root, text};

const IBAN: &str = "NL18RABO0316482795";
const ORIGINATOR_IBAN: &str = "DE72700202700015733118";

fn run_kyc(dir: &Path, case: &str, mocks: bool) -> (i32, String) {
    let input = format!("@workflows/kyc-aml-review/inputs/{case}.json");
    let mocks_file = format!("workflows/kyc-aml-review/inputs/{case}.mocks.yaml");
    let mut args = vec!["run", "workflows/kyc-aml-review/workflow.yaml", "--input", &input];
    if mocks {
        args.extend(["--mocks", &mocks_file]);
    }
    let out = baton(dir, &args);
    let db = Connection::open(dir.join("baton.db")).expect("db");
    let id: String =
        db.query_row("SELECT id FROM runs ORDER BY created_at DESC LIMIT 1", [], |r| r.get(0)).expect("run");
    (out.status.code().unwrap_or(-1), id)
}

fn outcome(out: Output) -> (i32, String) {
    (out.status.code().unwrap_or(-1), text(&out))
}

fn file_contains(dir: &Path, needle: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("baton.db"))
        .filter(|e| {
            let bytes = std::fs::read(e.path()).unwrap_or_default();
            bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

fn python_verify(export: &Path) -> Option<(i32, String)> {
    if Command::new("python3").arg("--version").output().is_err() {
        println!("SKIPPED the Python verifier: python3 is not installed (scripts/check-prereqs installs it)");
        return None;
    }
    Some(outcome(
        Command::new("python3")
            .arg(root().join("scripts/verify-audit-export.py"))
            .arg(export)
            .output()
            .expect("python3"),
    ))
}

#[test]
fn sealed_values_stay_out_of_the_log_and_erasure_keeps_it_verifiable() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let (code, run) = run_kyc(d, "low-risk-released", true);
    assert_eq!(code, 0);
    let input: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("workflows/kyc-aml-review/inputs/low-risk-released.json")).expect("input"),
    )
    .expect("json");
    assert_eq!(
        (input["beneficiary"]["iban"].as_str(), input["originator"]["iban"].as_str()),
        (Some(IBAN), Some(ORIGINATOR_IBAN))
    );

    let db = Connection::open(d.join("baton.db")).expect("db");
    let in_records: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM audit WHERE run_id = ?1 AND record LIKE '%' || ?2 || '%'",
            params![run, IBAN],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(in_records, 0, "the IBAN is sealed in every record");
    let sealed: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM audit WHERE run_id = ?1 AND record LIKE '%input.beneficiary.iban%'",
            params![run],
            |r| r.get(0),
        )
        .expect("count");
    assert!(sealed > 0, "records name the sealed field instead");

    let (code, out) = outcome(baton(d, &["audit", "verify", &run]));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("6 sensitive fields sealed, none erased"), "{out}");

    // A run still waiting keeps its data: erasure comes after the end.
    let (code, waiting) = run_kyc(d, "high-risk-dismissed", true);
    assert_eq!(code, 3, "waits for the analyst");
    let (code, out) = outcome(baton(d, &["audit", "redact", &waiting, "--field", "input.beneficiary"]));
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("erased once the run has ended"), "{out}");
    let (code, out) = outcome(baton(d, &["audit", "redact", &run, "--field", "input.nobody"]));
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("--field input.nobody: no sealed field is at or under it"), "{out}");

    let (code, out) = outcome(baton(
        d,
        &["audit", "redact", &run, "--field", "input.beneficiary", "--reason", "GDPR-2026-114", "--json"],
    ));
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
    assert_eq!(
        v["erased"],
        serde_json::json!(["input.beneficiary.address", "input.beneficiary.iban", "input.beneficiary.name"])
    );
    drop(db);
    assert_eq!(file_contains(d, IBAN), Vec::<String>::new(), "no copy of the erased IBAN is left in the SQLite files");
    assert!(!file_contains(d, ORIGINATOR_IBAN).is_empty(), "the fields not erased are kept");

    let (code, out) = outcome(baton(d, &["audit", "verify", &run, "--require-signed"]));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("6 sensitive fields sealed, 3 erased: input.beneficiary.address at"), "{out}");
    assert!(out.contains("(GDPR-2026-114)"), "{out}");
    let (code, out) = outcome(baton(d, &["audit", "replay", &run]));
    assert_eq!(code, 0, "{out}");

    let export = d.join("export");
    let e = export.to_str().expect("utf8");
    assert_eq!(outcome(baton(d, &["audit", "export", &run, "-o", e])).0, 0);
    let (code, out) = outcome(baton(d, &["audit", "verify", "--export", e]));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("3 erased"), "{out}");
    if let Some((code, out)) = python_verify(&export) {
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("sealed fields: 6 (3 erased)"), "{out}");
    }
    let (code, out) = outcome(baton(d, &["audit", "replay", "--export", e]));
    assert_eq!(code, 0, "{out}");

    // A kept value replaced in the export, then a line removed: both caught, with the line.
    let sealed_file = export.join("sealed.jsonl");
    let original = std::fs::read_to_string(&sealed_file).expect("sealed");
    std::fs::write(&sealed_file, original.replace(ORIGINATOR_IBAN, "DE02100100109307118603")).expect("write");
    let (code, out) = outcome(baton(d, &["audit", "verify", "--export", e]));
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("sealed.jsonl line 5: the stored value of sealed field `input.originator.iban` was modified"),
        "{out}"
    );
    if let Some((code, out)) = python_verify(&export) {
        assert_eq!(code, 1, "{out}");
        assert!(out.contains("sealed.jsonl line 5"), "{out}");
    }
    let without: String =
        original.lines().filter(|l| !l.contains("input.originator.iban")).map(|l| format!("{l}\n")).collect();
    std::fs::write(&sealed_file, without).expect("write");
    let (code, out) = outcome(baton(d, &["audit", "verify", "--export", e]));
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(
            "records.jsonl line 1: record 1 seals field `input.originator.iban`, but the run keeps no such field"
        ),
        "{out}"
    );
    if let Some((code, out)) = python_verify(&export) {
        assert_eq!(code, 1, "{out}");
        assert!(out.contains("records.jsonl line 1: sealed field input.originator.iban"), "{out}");
    }

    // The same two in the store.
    let db = Connection::open(d.join("baton.db")).expect("db");
    let kept: String = db
        .query_row(
            "SELECT sealed FROM audit_sealed WHERE run_id = ?1 AND field = 'input.originator.iban'",
            params![run],
            |r| r.get(0),
        )
        .expect("kept");
    db.execute(
        "UPDATE audit_sealed SET sealed = ?2 WHERE run_id = ?1 AND field = 'input.originator.iban'",
        params![run, kept.replace(ORIGINATOR_IBAN, "DE02100100109307118603")],
    )
    .expect("edit");
    let (code, out) = outcome(baton(d, &["audit", "verify", &run]));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("the stored value of sealed field `input.originator.iban` was modified"), "{out}");
    db.execute("DELETE FROM audit_sealed WHERE run_id = ?1 AND field = 'input.originator.iban'", params![run])
        .expect("delete");
    let (code, out) = outcome(baton(d, &["audit", "verify", &run]));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("record 1 seals field `input.originator.iban`, but the run keeps no such field"), "{out}");
}
