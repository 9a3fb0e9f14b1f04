#!/usr/bin/env python3
"""usage: verify-audit-export.py DIR [PUBLIC_KEY_FILE]

Verifies a `baton audit export` directory without baton (the formats are in docs/audit.md): the
record chain in records.jsonl, the sealed sensitive fields in sealed.jsonl (each record's
commitments, each kept value against its commitment), then each digest in digests.jsonl (hash, Ed25519 signature with
PUBLIC_KEY_FILE or DIR/public-key.hex, run, link, signed head). Exit 0 intact, 1 tampered, 2
unreadable input."""
import hashlib, json, sys
from pathlib import Path
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

def canonical(value):  # keys sorted, no whitespace, UTF-8: the bytes baton hashes and signs
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()

def stop(code, message):
    print(message)
    sys.exit(code)

def load(path):
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        stop(2, f"cannot read {path}: {e}")
    try:
        return [json.loads(line) for line in lines]
    except ValueError as e:
        stop(1, f"NOT intact: {path.name}: a line is not JSON ({e})")

if len(sys.argv) not in (2, 3):
    stop(2, __doc__.splitlines()[0])
d = Path(sys.argv[1])
records, digests, prev = load(d / "records.jsonl"), load(d / "digests.jsonl"), "0" * 64
for n, r in enumerate(records, 1):
    body = {k: v for k, v in r.items() if k != "hash"}
    if r.get("seq") != n or r.get("prev_hash") != prev or hashlib.sha256(canonical(body)).hexdigest() != r.get("hash"):
        stop(1, f"NOT intact: records.jsonl line {n}: record {r.get('seq')} is modified, moved or out of the chain")
    prev = r["hash"]
sealed_file = d / "sealed.jsonl"  # absent in exports made before sealing existed
fields = load(sealed_file) if sealed_file.exists() else []
by_name = {f.get("field"): f for f in fields}
for n, r in enumerate(records, 1):
    for name, commitment in r.get("sealed", {}).items():
        if by_name.get(name, {}).get("commitment") != commitment:
            stop(1, f"NOT intact: records.jsonl line {n}: sealed field {name} is not in sealed.jsonl with this commitment")
for n, f in enumerate(fields, 1):  # an erased field has no value left to check
    kept = {"field": f.get("field"), "salt": f.get("salt"), "value": f.get("value")}
    if "erased_at" not in f and hashlib.sha256(canonical(kept)).hexdigest() != f.get("commitment"):
        stop(1, f"NOT intact: sealed.jsonl line {n}: the value of {f.get('field')} does not match its commitment")
erased = sum(1 for f in fields if "erased_at" in f)
if fields:
    print(f"sealed fields: {len(fields)} ({erased} erased)")
if not digests:
    stop(0, f"intact: {len(records)} records, unsigned (no digests)")
key_file = Path(sys.argv[2]) if len(sys.argv) == 3 else d / "public-key.hex"
try:
    key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(key_file.read_text().strip()))
except (OSError, ValueError) as e:
    stop(2, f"cannot read the public key {key_file}: {e}")
prev, prev_count, sealed, run_id = "0" * 64, 0, 0, digests[0].get("run_id")
for n, g in enumerate(digests, 1):
    body = canonical({k: g.get(k) for k in ("at", "count", "head", "prev", "run_id")})
    try:
        if g.get("signature", ""):  # a seal; an empty signature is a link the next seal covers
            key.verify(bytes.fromhex(g["signature"]), body)  # raises on a bad signature
            sealed = g["count"]
        ok = hashlib.sha256(body).hexdigest() == g["hash"] and g["run_id"] == run_id and g["prev"] == prev
        ok = ok and isinstance(g["count"], int) and prev_count < g["count"] <= len(records)
    except Exception:  # InvalidSignature, malformed hex, missing field
        ok = False
    if not ok:
        stop(1, f"NOT intact: digests.jsonl line {n}: altered, badly signed, unlinked or past the log's end")
    if records[g["count"] - 1]["hash"] != g["head"]:
        stop(1, f"NOT intact: records.jsonl lines {prev_count + 1}-{g['count']}: rewritten, not the signed head")
    prev, prev_count = g["hash"], g["count"]
if prev_count != len(records):
    stop(1, f"NOT intact: records.jsonl line {prev_count + 1}: records after the last signed digest")
if records and records[-1].get("decision") == "complete_run" and sealed < len(records):
    stop(1, f"NOT intact: records.jsonl line {sealed + 1}: the run's end is not sealed by a signature")
print(f"intact: {len(records)} records, {len(digests)} signed digests of run {run_id} verified")
