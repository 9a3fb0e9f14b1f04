//! Signed digests over the audit chain: a log rewritten with recomputed hashes (which the chain
//! and the anchor alone accept) no longer matches what was signed, and every change to the
//! digests themselves is caught. The signature here is a stand-in (a keyed SHA-256), since the
//! core does no cryptography; the runtime's Ed25519 signer is tested where it lives.

use baton_core::audit::digest::{AuditDigest, Signing, verify_digests};
use baton_core::audit::{AuditRecord, ChainError, GENESIS_HASH, verify_chain};
use baton_core::canonical::sha256_hex_bytes;
use serde_json::json;

const RUN: &str = "run-1";

fn sign_with(key: &str) -> impl Fn(&[u8]) -> String + '_ {
    move |bytes| sha256_hex_bytes(&[key.as_bytes(), bytes].concat())
}

fn valid(d: &AuditDigest) -> bool {
    sign_with("right")(d.signed_bytes().as_bytes()) == d.signature
}

/// Seven chained records, signed by three commits (after records 2, 5 and 7).
fn signed_log() -> (Vec<AuditRecord>, Vec<AuditDigest>) {
    let mut records: Vec<AuditRecord> = Vec::new();
    let mut prev = GENESIS_HASH.to_owned();
    for seq in 1..=7u64 {
        let mut r = AuditRecord {
            seq,
            at: 1_000 + seq,
            kind: "step_succeeded".into(),
            decision: "succeed_step".into(),
            step: Some(format!("s{seq}")),
            node: Some(format!("s{seq}")),
            attempt: Some(1),
            iteration: None,
            reason: "the tool call returned".into(),
            values: json!({"output": seq}),
            commands: Vec::new(),
            event: String::new(),
            sealed: Default::default(),
            prev_hash: prev.clone(),
            hash: String::new(),
        };
        r.hash = r.compute_hash();
        prev = r.hash.clone();
        records.push(r);
    }
    let digests = sign_commits(&records, &[2, 5, 7], "right");
    (records, digests)
}

fn sign_commits(records: &[AuditRecord], counts: &[u64], key: &str) -> Vec<AuditDigest> {
    let mut prev = GENESIS_HASH.to_owned();
    counts
        .iter()
        .map(|&c| {
            let d = AuditDigest::new(RUN, c, &records[c as usize - 1].hash, &prev, 2_000 + c, sign_with(key));
            prev = d.hash.clone();
            d
        })
        .collect()
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

fn check(records: &[AuditRecord], digests: &[AuditDigest]) -> Result<Signing, ChainError> {
    verify_chain(records)?;
    verify_digests(RUN, records, digests, valid)
}

#[test]
fn an_untouched_signed_log_verifies_and_a_log_without_digests_is_unsigned() {
    let (records, digests) = signed_log();
    assert_eq!(check(&records, &digests), Ok(Signing::Signed { digests: 3, unsealed: 0 }));
    assert_eq!(check(&records, &[]), Ok(Signing::Unsigned));
}

#[test]
fn a_log_rewritten_with_recomputed_hashes_is_caught_at_the_covering_digest() {
    let (mut records, digests) = signed_log();
    records[3].reason = "approved by nobody".into();
    relink(&mut records);
    assert_eq!(verify_chain(&records), Ok(()), "the chain alone accepts the rewrite");
    let err = check(&records, &digests).expect_err("caught");
    assert_eq!(err, ChainError::RewrittenWithoutKey { from: 3, to: 5 });
    assert_eq!(err.first_bad(), 3);
}

#[test]
fn every_change_to_the_digests_is_caught() {
    let (records, digests) = signed_log();

    let mut altered = digests.clone();
    altered[1].head = records[3].hash.clone();
    assert_eq!(check(&records, &altered), Err(ChainError::DigestAltered { count: 5 }));

    let mut replaced = digests.clone();
    replaced[1].at += 1;
    replaced[1].hash = replaced[1].compute_hash();
    assert_eq!(check(&records, &replaced), Err(ChainError::BadSignature { count: 5 }));

    let other_key = sign_commits(&records, &[2, 5, 7], "wrong");
    assert_eq!(check(&records, &other_key), Err(ChainError::BadSignature { count: 2 }));

    let mut moved = digests.clone();
    moved[0] = AuditDigest::new("run-2", 2, &records[1].hash, GENESIS_HASH, 2_002, sign_with("right"));
    assert!(matches!(check(&records, &moved), Err(ChainError::DigestOfOtherRun { count: 2, .. })));

    let mut removed = digests.clone();
    removed.remove(1);
    assert_eq!(check(&records, &removed), Err(ChainError::DigestLink { count: 7 }));

    let mut reordered = digests.clone();
    reordered.swap(0, 1);
    assert_eq!(check(&records, &reordered), Err(ChainError::DigestLink { count: 5 }));

    let last_gone = &digests[..2];
    let err = check(&records, last_gone).expect_err("caught");
    assert_eq!(err, ChainError::UnsignedTail { signed: 5, last: 7 });
    assert_eq!(err.first_bad(), 6);
}

#[test]
fn records_deleted_or_appended_past_the_signed_head_are_caught() {
    let (records, digests) = signed_log();
    let truncated = &records[..6];
    let err = check(truncated, &digests).expect_err("caught");
    assert_eq!(err, ChainError::SignedBeyondLog { count: 7, last: 6 });
    assert_eq!(err.first_bad(), 7);

    let mut appended = records.clone();
    let mut extra = appended[6].clone();
    extra.seq = 8;
    appended.push(extra);
    relink(&mut appended);
    // Relinking changes no earlier hash: the appended record is what is unsigned.
    assert_eq!(check(&appended, &digests), Err(ChainError::UnsignedTail { signed: 7, last: 8 }));
}

/// Links (unsigned digests) between seals: the seal signs the chain of links before it.
fn sealed_log(seals: &[bool], ends: bool) -> (Vec<AuditRecord>, Vec<AuditDigest>) {
    let (mut records, _) = signed_log();
    if ends {
        records[6].decision = "complete_run".into();
        relink(&mut records);
    }
    let mut prev = GENESIS_HASH.to_owned();
    let digests = [2u64, 5, 7]
        .iter()
        .zip(seals)
        .map(|(&c, &seal)| {
            let head = &records[c as usize - 1].hash;
            let d = if seal {
                AuditDigest::new(RUN, c, head, &prev, 2_000 + c, sign_with("right"))
            } else {
                AuditDigest::link(RUN, c, head, &prev, 2_000 + c)
            };
            prev = d.hash.clone();
            d
        })
        .collect();
    (records, digests)
}

#[test]
fn one_seal_covers_the_links_before_it_and_a_moving_run_may_have_an_unsealed_tail() {
    let (records, digests) = sealed_log(&[false, false, true], true);
    assert_eq!(check(&records, &digests), Ok(Signing::Signed { digests: 3, unsealed: 0 }));
    // A run still moving: its last commits are links, reported as not sealed yet.
    let (records, digests) = sealed_log(&[true, false, false], false);
    assert_eq!(check(&records, &digests), Ok(Signing::Signed { digests: 3, unsealed: 5 }));
}

#[test]
fn an_ended_run_must_be_sealed_to_its_end_and_links_cannot_be_rewritten_under_a_seal() {
    // Signatures stripped from an ended run's log.
    let (records, digests) = sealed_log(&[false, false, false], true);
    assert_eq!(check(&records, &digests), Err(ChainError::UnsealedEnd { sealed: 0, last: 7 }));
    let (records, digests) = sealed_log(&[true, false, false], true);
    assert_eq!(check(&records, &digests), Err(ChainError::UnsealedEnd { sealed: 2, last: 7 }));
    // Rewriting a record under a seal and recomputing its link breaks the seal's own link.
    let (mut records, mut digests) = sealed_log(&[false, false, true], true);
    records[3].values = json!({"output": "forged"});
    relink(&mut records);
    digests[1] = AuditDigest::link(RUN, 5, &records[4].hash, &digests[0].hash, 2_005);
    let err = check(&records, &digests).unwrap_err();
    assert!(matches!(err, ChainError::DigestLink { count: 7 } | ChainError::RewrittenWithoutKey { .. }), "{err:?}");
}
