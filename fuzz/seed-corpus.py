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
