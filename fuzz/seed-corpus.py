#!/usr/bin/env python3
"""Writes seed inputs for the fuzz targets from spec/vectors (fuzz/seeds/<target>/)."""
import glob
import json
import os

here = os.path.dirname(os.path.abspath(__file__))
spec = os.path.join(here, "..", "spec", "vectors")


def put(target, name, data):
    d = os.path.join(here, "seeds", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


for path in glob.glob(os.path.join(spec, "envelope", "*.json")):
    v = json.load(open(path, encoding="utf-8"))
    name = os.path.basename(path)[:-5]
    put("envelope_open", name, bytes.fromhex(v["envelope_hex"]))
    for key in ("claims_hex", "signed_hex"):
        if key in v:
            put("envelope_decoders", f"{name}-{key}", bytes.fromhex(v[key]))
    put("envelope_decoders", f"{name}-sign-cose", bytes.fromhex(v["sender"]["sign_cose_key_hex"]))
    put("envelope_decoders", f"{name}-enc-cose", bytes.fromhex(v["recipient"]["enc_cose_key_hex"]))
    put("envelope_decoders", f"{name}-pem", v["sender"]["sign_pkcs8_pem"].encode())


for path in glob.glob(os.path.join(spec, "relay", "*.json")):
    v = json.load(open(path, encoding="utf-8"))
    put("relay_body", os.path.basename(path)[:-5], bytes.fromhex(v["body_hex"]))


def strings(v):
    if isinstance(v, str):
        yield v
    elif isinstance(v, dict):
        for x in v.values():
            yield from strings(x)
    elif isinstance(v, list):
        for x in v:
            yield from strings(x)


# Audit-log targets: every hex string (as bytes) and every multi-line text
# (notes, proofs) in spec/vectors/audit-log is a seed for every log_* target.
log_targets = ["log_entry", "log_note", "log_tlog_proof", "log_bundle"]
n = 0
for path in sorted(glob.glob(os.path.join(spec, "audit-log", "*.json"))):
    v = json.load(open(path, encoding="utf-8"))
    for s in strings(v):
        data = None
        if len(s) >= 8 and len(s) % 2 == 0:
            try:
                data = bytes.fromhex(s)
            except ValueError:
                data = None
        if data is None and "\n" in s:
            data = s.encode()
        if data is not None:
            n += 1
            for t in log_targets:
                put(t, f"vec{n}", data)


# Federation targets: every signed directory (signed_hex, held) seeds
# federation_verify; the payloads (payload_hex) seed federation_directory.
for path in sorted(glob.glob(os.path.join(spec, "federation", "*.json"))):
    v = json.load(open(path, encoding="utf-8"))
    name = os.path.basename(path)[:-5]
    put("federation_verify", name, bytes.fromhex(v["signed_hex"]))
    for i, h in enumerate(v.get("held", [])):
        put("federation_verify", f"{name}-held{i}", bytes.fromhex(h))
    if "payload_hex" in v:
        put("federation_directory", name, bytes.fromhex(v["payload_hex"]))


# Cross-check target: each spec/vectors/cross-check pair as 12-byte records
# (the record layout of isnad_log::fuzzing::cross_check).
events = ["sent", "received", "receipt-sent", "receipt-received", "rejected",
          "status-changed", "directory-changed", "key-rotated", "key-revoked",
          "checkpoint-cosigned", "delivery-failed", "delivery-expired", "local-access"]
for path in sorted(glob.glob(os.path.join(spec, "cross-check", "*.json"))):
    v = json.load(open(path, encoding="utf-8"))
    codes = {v["a"]["origin"].split("/")[0]: 1, v["b"]["origin"].split("/")[0]: 2}
    t0 = min([e["time"] for side in "ab" for e in v[side]["entries"]] or [0])
    out = bytearray()
    for side in (0, 1):
        for e in v["ab"[side]]["entries"]:
            mid = bytes.fromhex(e["message_id"])[0] if "message_id" in e else 0
            parties = codes.get(e.get("sender"), 0) | (codes.get(e.get("recipient"), 0) << 2)
            dig = bytes.fromhex(e["envelope_sha256"])[0] or 1 if "envelope_sha256" in e else 0
            peer = min(e.get("peer_index", 0xFFFF), 0xFFFF)
            out += bytes([side, events.index(e["event"]), mid, parties])
            out += min(e["time"] - t0, 0xFFFFFFFF).to_bytes(4, "big")
            out += bytes([dig]) + peer.to_bytes(2, "big") + bytes([1 if "reason" in e else 0])
    put("log_cross_check", os.path.basename(path)[:-5], bytes(out))
