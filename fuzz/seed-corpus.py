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
    if "claims_hex" in v:
        # CBOR maps with agency ids, message ids and states: a start for the
        # stored-record decoders of isnad-mla.
        put("mla_records", name, bytes.fromhex(v["claims_hex"]))
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


# Witness targets: every add-checkpoint request and fork evidence file in
# spec/vectors/witness seeds both witness_* targets.
for path in sorted(glob.glob(os.path.join(spec, "witness", "*.json"))):
    v = json.load(open(path, encoding="utf-8"))
    name = os.path.basename(path)[:-5]
    for key in ("request", "evidence"):
        if isinstance(v.get(key), str):
            put("witness_request", f"{name}-{key}", v[key].encode())
            put("witness_fork_evidence", f"{name}-{key}", v[key].encode())
    if isinstance(v.get("expect"), dict) and "evidence" in v["expect"]:
        put("witness_fork_evidence", f"{name}-expected", v["expect"]["evidence"].encode())
# Receipts: the bare signed messages (signed_hex) and the envelopes seed
# envelope_receipt.
for path in glob.glob(os.path.join(spec, "envelope", "*.json")):
    v = json.load(open(path, encoding="utf-8"))
    name = os.path.basename(path)[:-5]
    if "signed_hex" in v:
        put("envelope_receipt", name, bytes.fromhex(v["signed_hex"]))
    put("envelope_receipt", f"{name}-envelope", bytes.fromhex(v["envelope_hex"]))


# log_export: whole exports in the input format of isnad_log::fuzzing::export
# (size, then selector ‖ uint16 length ‖ file records), built from the valid
# entries of spec/vectors/audit-log/entries.json (repeated for larger sizes,
# which only puts their seq out of place).
def leaf(e):
    return hashlib.sha256(b"\x00" + e).digest()


def mth(hashes):
    if len(hashes) == 1:
        return hashes[0]
    k = 1
    while k * 2 < len(hashes):
        k *= 2
    return hashlib.sha256(b"\x01" + mth(hashes[:k]) + mth(hashes[k:])).digest()


def export_seed(entries, size, previous=None):
    leaves = [leaf(entries[i % len(entries)]) for i in range(size)]
    bundles, tiles = [], []
    for n in range(0, size, 256):
        chunk = range(n, min(size, n + 256))
        bundles.append(b"".join(len(entries[i % len(entries)]).to_bytes(2, "big") + entries[i % len(entries)] for i in chunk))
    level, hashes = 0, leaves
    while hashes:
        for n in range(0, len(hashes), 256):
            tiles.append(b"".join(hashes[n:n + 256]))
        # The next level holds the roots of the full 256-hash subtrees.
        hashes = [mth(hashes[n:n + 256]) for n in range(0, len(hashes) - len(hashes) % 256, 256)]
        level += 1
    files = bundles + tiles
    out = size.to_bytes(2, "big")
    for i, f in enumerate(files):
        out += bytes([i]) + len(f).to_bytes(2, "big") + f
    if previous is not None:
        out += bytes([len(files)]) + (2).to_bytes(2, "big") + previous.to_bytes(2, "big")
    return out


import hashlib  # noqa: E402

entries_vec = json.load(open(os.path.join(spec, "audit-log", "entries.json"), encoding="utf-8"))
valid = [bytes.fromhex(e["cbor"]) for e in sorted(entries_vec["valid"], key=lambda e: int(e["seq"]))]
for size, prev in [(1, None), (4, None), (4, 2), (3, 4), (300, 7), (513, None)]:
    put("log_export", f"export-{size}-{prev}", export_seed(valid, size, prev))


# wire_frames: length-prefixed request and response frames (spec/transport.md
# §3) carrying the envelope vectors (Deliver requests), their signed messages
# (receipt responses), and error responses with every error code the
# envelope vectors expect.
def cbor_head(major, n):
    if n < 24:
        return bytes([major << 5 | n])
    for ai, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if n < 1 << (8 * size):
            return bytes([major << 5 | ai]) + n.to_bytes(size, "big")


def cbor_map(pairs):
    out = cbor_head(5, len(pairs))
    for k, v in pairs:
        out += cbor_head(0, k) + v
    return out


def framed(body):
    return len(body).to_bytes(4, "big") + body


def cbor_bytes(b):
    return cbor_head(2, len(b)) + b


def cbor_text(s):
    return cbor_head(3, len(s.encode())) + s.encode()


error_codes = set()
for path in sorted(glob.glob(os.path.join(spec, "envelope", "*.json"))):
    v = json.load(open(path, encoding="utf-8"))
    name = os.path.basename(path)[:-5]
    env = bytes.fromhex(v["envelope_hex"])
    put("wire_frames", f"deliver-{name}", framed(cbor_map([(1, cbor_head(0, 1)), (2, cbor_head(0, 1)), (3, cbor_bytes(env))])))
    if "signed_hex" in v:
        signed = bytes.fromhex(v["signed_hex"])
        put("wire_frames", f"receipt-{name}", framed(cbor_map([(1, cbor_head(0, 1)), (2, cbor_head(0, 0)), (3, cbor_bytes(signed))])))
    if isinstance(v.get("expect"), dict) and "error" in v["expect"]:
        error_codes.add(v["expect"]["error"])
for code in sorted(error_codes):
    put("wire_frames", f"error-{code}", framed(cbor_map([(1, cbor_head(0, 1)), (2, cbor_head(0, 1)), (4, cbor_text(code)), (5, cbor_text("detail")), (6, cbor_bytes(bytes(16)))])))


# Cross-check target: each spec/vectors/cross-check pair as 12-byte records
# (the record layout of isnad_log::fuzzing::cross_check).
# The order of isnad_log::EventType::ALL.
events = ["sent", "received", "receipt-sent", "receipt-received", "rejected",
          "status-changed", "directory-changed", "key-rotated", "key-revoked",
          "checkpoint-cosigned", "delivery-failed", "delivery-expired", "local-access",
          "witness-cosigned", "fork-detected", "relayed", "purged", "user-action"]
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

# trust_certificate: the certificates of the TLS vectors (valid and broken).
for c in json.load(open(os.path.join(spec, "tls", "spki.json"), encoding="utf-8"))["cases"]:
    put("trust_certificate", c["name"], bytes.fromhex(c["cert_der_hex"]))


# Attachment targets: every descriptor, metadata and proof of
# spec/vectors/attachments seeds attach_decoders; attach_chunks gets each
# chunk with its descriptor and proof, in the input layout of
# isnad_attach::fuzzing::chunks.
for path in sorted(glob.glob(os.path.join(spec, "attachments", "*.json"))):
    v = json.load(open(path, encoding="utf-8"))
    name = os.path.basename(path)[:-5]
    for key in ("descriptor_hex", "meta_hex"):
        if key in v:
            put("attach_decoders", f"{name}-{key}", bytes.fromhex(v[key]))
    for c in v.get("chunks", [])[:3]:
        put("attach_decoders", f"{name}-proof{c['index']}", bytes.fromhex(c["proof_hex"]))
        d = bytes.fromhex(v["descriptor_hex"])
        ct = bytes.fromhex(v["ciphertext_hex"])
        chunk = ct[c["offset"]:c["offset"] + c["length"]]
        data = len(d).to_bytes(2, "big") + d + bytes([c["index"]]) + len(chunk).to_bytes(2, "big") + chunk
        put("attach_chunks", f"{name}-chunk{c['index']}", data + bytes.fromhex(c["proof_hex"]))

# attach_transfer: open frames of every attachment vector's metadata,
# chunk headers and answers (spec/transport.md §10.1).
for path in sorted(glob.glob(os.path.join(spec, "attachments", "ok-*.json"))):
    v = json.load(open(path, encoding="utf-8"))
    name = os.path.basename(path)[:-5]
    m = bytes.fromhex(v["meta_hex"])
    put("attach_transfer", f"{name}-open", bytes([0xFF, 0x49, 0x41, 0x01]) + len(m).to_bytes(2, "big") + m)
    for c in v.get("chunks", [])[:2]:
        proof = bytes.fromhex(c["proof_hex"])
        head = bytes([0x10]) + c["index"].to_bytes(8, "big") + c["length"].to_bytes(4, "big") + bytes([len(proof) // 32])
        put("attach_transfer", f"{name}-chunk{c['index']}", head + proof)
for name, body in [
    ("resume", bytes([1]) + (7).to_bytes(8, "big")),
    ("again", bytes([2]) + (3).to_bytes(8, "big") + bytes([1])),
    ("complete", bytes([3])),
    ("refused", bytes([4, 9]) + b"too-large" + (4).to_bytes(2, "big") + b"full"),
]:
    put("attach_transfer", f"answer-{name}", len(body).to_bytes(2, "big") + body)
