//! The tamper table of docs/audit.md, performed for real: each way of tampering with a run's
//! audit log is done to the SQLite store (then `baton audit verify RUN_ID`) and to an export
//! (then `baton audit verify --export DIR`), and the test asserts whether it is detected and
//! with which error. The independent Python verifier (scripts/verify-audit-export.py) is run on
//! an intact and on tampered exports.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use baton_core::audit::digest::AuditDigest;
use baton_core::audit::{AuditRecord, GENESIS_HASH};
use baton_runtime::audit_key::AuditKey;
use rusqlite::{Connection, params};
use support::{baton, root, text};

/// A run's log as the tampering sees it: records in stored order, digests oldest first.
#[derive(Clone)]
struct Log {
    records: Vec<AuditRecord>,
    digests: Vec<AuditDigest>,
}

/// What one tampering does, and whether it also moves the head in the run's state (as someone
/// covering their tracks would; the export has no state).
struct Tampering {
    name: &'static str,
    apply: fn(&mut Log, &Log),
    moves_head: bool,
}

fn relink(records: &mut [AuditRecord]) {
    let mut prev = GENESIS_HASH.to_owned();
    for (i, r) in records.iter_mut().enumerate() {
        r.seq = i as u64 + 1;
        r.prev_hash = prev.clone();
        r.hash = r.compute_hash();
        prev = r.hash.clone();
    }
}

fn tamperings() -> Vec<Tampering> {
    vec![
        Tampering { name: "edit", apply: |l, _| l.records[2].reason = "approved by nobody".into(), moves_head: false },
        Tampering {
            name: "insert",
            apply: |l, _| {
                let copy = l.records[2].clone();
                l.records.insert(3, copy);
            },
            moves_head: false,
        },
        Tampering {
            name: "delete first",
            apply: |l, _| {
                l.records.remove(0);
            },
            moves_head: false,
        },
        Tampering {
            name: "delete middle",
            apply: |l, _| {
                l.records.remove(2);
            },
            moves_head: false,
        },
        Tampering {
            name: "delete last",
            apply: |l, _| {
                l.records.pop();
            },
            moves_head: false,
        },
        Tampering { name: "reorder", apply: |l, _| l.records.swap(2, 3), moves_head: false },
        Tampering {
            name: "truncate",
            apply: |l, _| {
                let keep = l.records.len() - 3;
                l.records.truncate(keep);
            },
            moves_head: false,
        },
        Tampering {
            name: "recompute without key",
            apply: |l, _| {
                l.records[2].reason = "approved by nobody".into();
                relink(&mut l.records);
            },
            moves_head: true,
        },
        Tampering {
            name: "edited digest",
            apply: |l, _| l.digests[1].head = l.records[0].hash.clone(),
            moves_head: false,
        },
        Tampering {
            name: "replaced digest",
            // The last seal replaced by one the key did not sign.
            apply: |l, _| {
                let last = l.digests.len() - 1;
                l.digests[last].at += 1;
                l.digests[last].hash = l.digests[last].compute_hash();
            },
            moves_head: false,
        },
        Tampering {
            name: "signatures stripped",
            apply: |l, _| {
                for d in &mut l.digests {
                    d.signature.clear();
                }
            },
            moves_head: false,
        },
        Tampering {
            name: "recompute and re-sign with another key",
            apply: |l, _| {
                l.records[2].reason = "approved by nobody".into();
                relink(&mut l.records);
                let other = AuditKey::generate().expect("random key");
                let mut prev = GENESIS_HASH.to_owned();
                for d in &mut l.digests {
                    let head = &l.records[d.count as usize - 1].hash;
                    *d = other.digest(&d.run_id, d.count, head, &prev, d.at);
                    prev = d.hash.clone();
                }
            },
            moves_head: true,
        },
        Tampering {
            name: "record moved between runs",
            apply: |l, other| l.records[2] = other.records[2].clone(),
            moves_head: false,
        },
        Tampering {
            name: "digests moved between runs",
            apply: |l, other| l.digests = other.digests.clone(),
            moves_head: false,
        },
        Tampering {
            name: "digest deleted",
            apply: |l, _| {
                l.digests.remove(1);
            },
            moves_head: false,
        },
        Tampering {
            name: "last digest deleted",
            apply: |l, _| {
                l.digests.pop();
            },
            moves_head: false,
        },
        Tampering { name: "all digests deleted", apply: |l, _| l.digests.clear(), moves_head: false },
        Tampering {
            name: "cut back to an earlier digest",
            apply: |l, _| {
                l.digests.pop();
                let keep = l.digests.last().map(|d| d.count as usize).unwrap_or(0);
                l.records.truncate(keep);
            },
            moves_head: true,
        },
    ]
}

/// (tampering, store verify: exit and message part, export verify: exit and message part).
const EXPECTED: &[(&str, i32, &str, i32, &str)] = &[
    ("edit", 1, "record 3 was modified", 1, "records.jsonl line 3: record 3 was modified"),
    ("insert", 1, "record at position 4 has seq 3, expected 4", 1, "records.jsonl line 4: record at position 4"),
    ("delete first", 1, "record at position 1 has seq 2, expected 1", 1, "records.jsonl line 1: record at position 1"),
    ("delete middle", 1, "record at position 3 has seq 4, expected 3", 1, "records.jsonl line 3: record at position 3"),
    ("delete last", 1, "but the run's state holds head", 1, "were deleted"),
    ("reorder", 1, "record at position 3 has seq 4, expected 3", 1, "records.jsonl line 3: record at position 3"),
    ("truncate", 1, "but the run's state holds head", 1, "were deleted"),
    ("recompute without key", 1, "recomputed without the signing key", 1, "recomputed without the signing key"),
    ("edited digest", 1, "does not match its hash", 1, "digests.jsonl line 2: the digest signed at record"),
    ("replaced digest", 1, "does not verify with the audit key", 1, "does not verify with the audit key"),
    ("signatures stripped", 1, "no signed digest seals them", 1, "no signed digest seals them"),
    ("recompute and re-sign with another key", 1, "does not verify with the audit key", 1, "digests.jsonl line 1:"),
    (
        "record moved between runs",
        1,
        "record 3 does not link to record 2",
        1,
        "records.jsonl line 3: record 3 does not link",
    ),
    ("digests moved between runs", 1, "belongs to run", 1, "do not match the signed digest"),
    ("digest deleted", 1, "does not link to the digest before it", 1, "digests.jsonl line 2:"),
    ("last digest deleted", 1, "covered by no signed digest", 1, "covered by no signed digest"),
    ("all digests deleted", 0, "unsigned", 0, "unsigned"),
    // Not detectable from the export alone: it is a consistent, shorter signed log. The store
    // still catches it because the run's stored status is not what the kept records decided;
    // against an export, compare its last digest with one obtained earlier.
    ("cut back to an earlier digest", 1, "the run's stored status is not what record", 0, "is intact"),
];

/// Runs the two-approvals fixture to its end, each approval a process of its own, and returns
/// the run id: the run waits twice and then ends, so its log has three seals.
fn run_two_approvals(dir: &Path, amount: u64) -> String {
    let wf = support::fixture("two-approvals.yaml").display().to_string();
    let input = format!(r#"{{"amount": {amount}}}"#);
    let out = baton(dir, &["run", &wf, "--input", &input, "--json"]);
    assert_eq!(out.status.code(), Some(3), "waits for the manager: {}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    let run = v["run_id"].as_str().expect("run id").to_owned();
    for expected in [3, 0] {
        let tasks: serde_json::Value =
            serde_json::from_slice(&baton(dir, &["tasks", "--json"]).stdout).expect("tasks json");
        let task = tasks
            .as_array()
            .expect("array")
            .iter()
            .find(|t| t["run_id"] == run.as_str())
            .and_then(|t| t["id"].as_str())
            .expect("the run's open task")
            .to_owned();
        let out = baton(dir, &["approve", &task]);
        assert_eq!(out.status.code(), Some(expected), "{}", text(&out));
    }
    run
}

fn db(dir: &Path) -> Connection {
    Connection::open(dir.join("baton.db")).expect("open the store")
}

fn load(dir: &Path, run: &str) -> Log {
    let c = db(dir);
    let rows = |sql: &str| -> Vec<String> {
        let mut stmt = c.prepare(sql).expect("prepare");
        stmt.query_map(params![run], |r| r.get(0)).expect("query").map(|r| r.expect("row")).collect()
    };
    Log {
        records: rows("SELECT record FROM audit WHERE run_id = ?1 ORDER BY seq")
            .iter()
            .map(|s| serde_json::from_str(s).expect("record"))
            .collect(),
        digests: rows("SELECT digest FROM audit_digests WHERE run_id = ?1 ORDER BY count")
            .iter()
            .map(|s| serde_json::from_str(s).expect("digest"))
            .collect(),
    }
}

/// Writes `log` as run `run`'s rows: records keyed by their position, so the store returns them
/// in the tampered order.
fn store(dir: &Path, run: &str, log: &Log, moves_head: bool) {
    let c = db(dir);
    c.execute("DELETE FROM audit WHERE run_id = ?1", params![run]).expect("delete");
    for (i, r) in log.records.iter().enumerate() {
        let json = serde_json::to_string(r).expect("json");
        c.execute("INSERT INTO audit (run_id, seq, record) VALUES (?1, ?2, ?3)", params![run, i as i64 + 1, json])
            .expect("insert");
    }
    c.execute("DELETE FROM audit_digests WHERE run_id = ?1", params![run]).expect("delete");
    for d in &log.digests {
        let json = serde_json::to_string(d).expect("json");
        c.execute(
            "INSERT INTO audit_digests (run_id, count, hash, digest) VALUES (?1, ?2, ?3, ?4)",
            params![run, d.count as i64, d.hash, json],
        )
        .expect("insert");
    }
    if moves_head && let Some(last) = log.records.last() {
        c.execute(
            "UPDATE runs SET state = json_set(state, '$.audit_head', ?2, '$.audit_seq', ?3) WHERE id = ?1",
            params![run, last.hash, last.seq as i64],
        )
        .expect("move head");
    }
}

fn write_export(dir: &Path, log: &Log) {
    let lines = |items: Vec<String>| items.into_iter().map(|l| l + "\n").collect::<String>();
    let records = lines(log.records.iter().map(|r| serde_json::to_string(r).expect("json")).collect());
    let digests = lines(log.digests.iter().map(|d| serde_json::to_string(d).expect("json")).collect());
    std::fs::write(dir.join("records.jsonl"), records).expect("write");
    std::fs::write(dir.join("digests.jsonl"), digests).expect("write");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        if entry.file_type().expect("type").is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
        }
    }
}

/// Runs a command; returns (exit code, stdout and stderr).
fn outcome(out: std::process::Output) -> (i32, String) {
    (out.status.code().unwrap_or(-1), text(&out))
}

fn python_verify(export: &Path, key: Option<&Path>) -> Option<(i32, String)> {
    if Command::new("python3").arg("--version").output().is_err() {
        println!("SKIPPED the Python verifier: python3 is not installed (scripts/check-prereqs installs it)");
        return None;
    }
    let mut cmd = Command::new("python3");
    cmd.arg(root().join("scripts/verify-audit-export.py")).arg(export);
    if let Some(k) = key {
        cmd.arg(k);
    }
    Some(outcome(cmd.output().expect("python3 runs")))
}

#[test]
fn every_tampering_in_the_table_is_detected_or_documented_as_not() {
    let base = tempfile::tempdir().expect("tmp");
    let run = run_two_approvals(base.path(), 120);
    let other_run = run_two_approvals(base.path(), 131);
    let intact = load(base.path(), &run);
    let other = load(base.path(), &other_run);
    assert!(intact.records.len() >= 6 && intact.digests.len() >= 3, "{} records", intact.records.len());
    let export = base.path().join("export");
    let (code, out) = outcome(baton(base.path(), &["audit", "export", &run, "-o", export.to_str().expect("utf8")]));
    assert_eq!(code, 0, "{out}");
    let (code, out) = outcome(baton(base.path(), &["audit", "verify", "--export", export.to_str().expect("utf8")]));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("signed digests verified"), "{out}");
    let (code, out) = outcome(baton(base.path(), &["audit", "verify", &run]));
    assert_eq!((code, out.contains(&format!("{} signed digests verified", intact.digests.len()))), (0, true), "{out}");

    let cases = tamperings();
    assert_eq!(cases.len(), EXPECTED.len());
    for (t, &(name, store_code, store_says, export_code, export_says)) in cases.iter().zip(EXPECTED) {
        assert_eq!(t.name, name);
        let mut log = intact.clone();
        (t.apply)(&mut log, &other);

        let state: PathBuf = base.path().join(format!("store-{}", name.replace(' ', "-")));
        copy_dir(base.path(), &state);
        store(&state, &run, &log, t.moves_head);
        let (code, out) = outcome(baton(&state, &["audit", "verify", &run]));
        assert_eq!(code, store_code, "store, {name}: {out}");
        assert!(out.contains(store_says), "store, {name}: expected `{store_says}` in: {out}");
        if name == "all digests deleted" {
            // Someone who strips the digests downgrades the log to unsigned; an auditor who
            // expects signatures says so.
            let (code, out) = outcome(baton(&state, &["audit", "verify", &run, "--require-signed"]));
            assert_eq!(code, 1, "{out}");
        }

        let dir = base.path().join(format!("export-{}", name.replace(' ', "-")));
        copy_dir(&export, &dir);
        write_export(&dir, &log);
        let (code, out) = outcome(baton(base.path(), &["audit", "verify", "--export", dir.to_str().expect("utf8")]));
        assert_eq!(code, export_code, "export, {name}: {out}");
        assert!(out.contains(export_says), "export, {name}: expected `{export_says}` in: {out}");
    }
}

#[test]
fn an_auditors_own_key_catches_an_export_re_signed_with_its_key_file_replaced() {
    let base = tempfile::tempdir().expect("tmp");
    let run = run_two_approvals(base.path(), 120);
    let export = base.path().join("export");
    let (code, out) = outcome(baton(base.path(), &["audit", "export", &run, "-o", export.to_str().expect("utf8")]));
    assert_eq!(code, 0, "{out}");
    let auditor_key = base.path().join("auditor-key.hex");
    std::fs::copy(export.join("public-key.hex"), &auditor_key).expect("copy key");

    // A forger rewrites a record, recomputes the chain, re-signs every digest with a key of
    // their own and ships its public half.
    let intact = load(base.path(), &run);
    let mut log = intact.clone();
    let forge = tamperings().into_iter().find(|t| t.name == "recompute and re-sign with another key").expect("case");
    (forge.apply)(&mut log, &intact);
    let forged = base.path().join("forged");
    copy_dir(&export, &forged);
    write_export(&forged, &log);
    let forger = AuditKey::generate().expect("key");
    let mut prev = GENESIS_HASH.to_owned();
    for d in &mut log.digests {
        *d = forger.digest(&d.run_id, d.count, &d.head, &prev, d.at);
        prev = d.hash.clone();
    }
    write_export(&forged, &log);
    std::fs::write(forged.join("public-key.hex"), forger.public().to_hex() + "\n").expect("write key");

    let verify = |key: Option<&Path>| {
        let mut args = vec!["audit", "verify", "--export", forged.to_str().expect("utf8")];
        if let Some(k) = key {
            args.extend(["--key", k.to_str().expect("utf8")]);
        }
        outcome(baton(base.path(), &args))
    };
    let (code, out) = verify(None);
    assert_eq!(code, 0, "with the shipped key the forgery is consistent: {out}");
    let (code, out) = verify(Some(&auditor_key));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("digests.jsonl line 1: the digest signed at record"), "{out}");
    assert!(out.contains("does not verify with the audit key"), "{out}");

    // A key file that is not a key is bad input (exit 2), not tampering.
    std::fs::write(base.path().join("junk.hex"), "zz").expect("write");
    let (code, out) = verify(Some(&base.path().join("junk.hex")));
    assert_eq!(code, 2, "{out}");

    if let Some((code, out)) = python_verify(&forged, Some(&auditor_key)) {
        assert_eq!(code, 1, "python, forged, auditor's key: {out}");
        assert!(out.contains("digests.jsonl line 1"), "{out}");
    }
}

#[test]
fn the_python_verifier_agrees_on_intact_and_tampered_exports() {
    let base = tempfile::tempdir().expect("tmp");
    let run = run_two_approvals(base.path(), 120);
    let export = base.path().join("export");
    let (code, out) = outcome(baton(base.path(), &["audit", "export", &run, "-o", export.to_str().expect("utf8")]));
    assert_eq!(code, 0, "{out}");
    let Some((code, out)) = python_verify(&export, None) else { return };
    assert_eq!(code, 0, "python, intact: {out}");
    assert!(out.contains("signed digests of run"), "{out}");

    let other_run = run_two_approvals(base.path(), 131);
    let other = load(base.path(), &other_run);
    let intact = load(base.path(), &run);
    for (t, &(name, _, _, export_code, _)) in tamperings().iter().zip(EXPECTED) {
        let mut log = intact.clone();
        (t.apply)(&mut log, &other);
        let dir = base.path().join(format!("py-{}", name.replace(' ', "-")));
        copy_dir(&export, &dir);
        write_export(&dir, &log);
        let (code, out) = python_verify(&dir, None).expect("python3 was found above");
        // Python and baton must agree on every row of the table.
        assert_eq!(code, export_code, "python, {name}: {out}");
    }
}

#[test]
fn the_key_comes_from_baton_audit_key_when_set_and_a_bad_one_is_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    let seed = "5a".repeat(32);
    let with_key = |key: &str, args: &[&str]| {
        outcome(
            Command::new(env!("CARGO_BIN_EXE_baton"))
                .arg("--state-dir")
                .arg(dir.path())
                .args(args)
                .current_dir(root())
                .env_remove("BATON_HOME")
                .env("BATON_AUDIT_KEY", key)
                .output()
                .expect("baton runs"),
        )
    };
    let input = r#"{"order_id":"o-1001","promised_by":120}"#;
    let run_args = [
        "run",
        "workflows/order-triage/workflow.yaml",
        "--input",
        input,
        "--mocks",
        "workflows/order-triage/mocks.yaml",
    ];
    let (code, out) = with_key(&seed, &run_args);
    assert_eq!(code, 0, "{out}");
    assert!(!dir.path().join("audit-key").exists(), "no key file is made when the key is given");
    let run = load_run_id(dir.path());
    let export = dir.path().join("export");
    let (code, out) = with_key(&seed, &["audit", "export", &run, "-o", export.to_str().expect("utf8")]);
    assert_eq!(code, 0, "{out}");
    let expected = AuditKey::from_seed_hex(&seed, "test").expect("key").public().to_hex();
    assert_eq!(std::fs::read_to_string(export.join("public-key.hex")).expect("key file").trim(), expected);

    let (code, out) = with_key("not hex", &["audit", "verify", &run]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("BATON_AUDIT_KEY must be 64 hex digits"), "{out}");
    let (code, out) = with_key(&"77".repeat(32), &["audit", "verify", &run]);
    assert_eq!(code, 1, "another key is reported, not passed: {out}");
    assert!(out.contains("does not verify with the audit key"), "{out}");
}

fn load_run_id(dir: &Path) -> String {
    db(dir).query_row("SELECT id FROM runs LIMIT 1", [], |r| r.get(0)).expect("one run")
}
