#!/usr/bin/env python3
"""Verifies a `baton audit export` directory without baton (formats: docs/audit.md).

usage: verify-audit-export.py DIR [PUBLIC_KEY_FILE]
Checks the record chain in DIR/records.jsonl, then every digest in DIR/digests.jsonl: its hash,
its Ed25519 signature (with PUBLIC_KEY_FILE, default DIR/public-key.hex), its run, its link to
the digest before it and the record head it signs. Exit 0 intact, 1 tampered, 2 unreadable.
"""
import hashlib, json, sys
from pathlib import Path
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

GENESIS = "0" * 64

def canonical(value):  # keys sorted, no whitespace, UTF-8: what baton hashes and signs
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()

def sha256(value):
    return hashlib.sha256(canonical(value)).hexdigest()

def tampered(where, why):
    print(f"NOT intact: {where}: {why}")
    sys.exit(1)

def load(path):
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        print(f"cannot read {path}: {e}")
        sys.exit(2)
    items = []
    for n, line in enumerate(text.splitlines(), 1):
        try:
            items.append(json.loads(line))
        except ValueError as e:
            tampered(f"{path.name} line {n}", f"not JSON ({e})")
    return items

def main():
    if len(sys.argv) not in (2, 3):
        print(__doc__.strip().splitlines()[2])
        sys.exit(2)
    d = Path(sys.argv[1])
    records, digests = load(d / "records.jsonl"), load(d / "digests.jsonl")
    prev = GENESIS
    for n, r in enumerate(records, 1):
        where = f"records.jsonl line {n}"
        if r.get("seq") != n:
            tampered(where, f"seq {r.get('seq')}, expected {n} (deleted, inserted or reordered)")
        if sha256({k: v for k, v in r.items() if k != "hash"}) != r.get("hash"):
            tampered(where, f"record {n} was modified: its content does not match its hash")
        if r.get("prev_hash") != prev:
            tampered(where, f"record {n} does not link to record {n - 1}")
        prev = r["hash"]
    if not digests:
        print(f"intact: {len(records)} records, unsigned (no digests)")
        return
    key_file = Path(sys.argv[2]) if len(sys.argv) == 3 else d / "public-key.hex"
    try:
        key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(key_file.read_text().strip()))
    except (OSError, ValueError) as e:
        print(f"cannot read the public key {key_file}: {e}")
        sys.exit(2)
    prev, prev_count, run_id = GENESIS, 0, digests[0].get("run_id")
    for n, g in enumerate(digests, 1):
        where, count = f"digests.jsonl line {n}", g.get("count")
        body = {k: g.get(k) for k in ("at", "count", "head", "prev", "run_id")}
        if hashlib.sha256(canonical(body)).hexdigest() != g.get("hash"):
            tampered(where, "the digest was modified: its content does not match its hash")
        try:
            key.verify(bytes.fromhex(g.get("signature", "")), canonical(body))
        except (InvalidSignature, ValueError):
            tampered(where, "the signature does not verify with the public key")
        if g["run_id"] != run_id or g["prev"] != prev or not isinstance(count, int) or count <= prev_count:
            tampered(where, "the digest does not link to the one before it (or names another run)")
        if count > len(records):
            tampered(f"records.jsonl line {len(records) + 1}", f"a digest signs record {count}: records were deleted")
        if records[count - 1]["hash"] != g["head"]:
            tampered(f"records.jsonl lines {prev_count + 1}-{count}", "rewritten: not the signed head")
        prev, prev_count = g["hash"], count
    if prev_count != len(records):
        tampered(f"records.jsonl line {prev_count + 1}", "records after the last signed digest")
    print(f"intact: {len(records)} records, {len(digests)} signed digests of run {run_id} verified")

main()
