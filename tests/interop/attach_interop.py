#!/usr/bin/env python3
"""An independent implementation of spec/attachments.md, written from the
text alone with Python's `cryptography` (AES-256-GCM), `hashlib` and
`cbor2`, run against every file of spec/vectors/attachments:

  * positive vectors: decode the descriptor (cbor2), check it is
    deterministically encoded and consistent, recompute every nonce, leaf
    hash, inclusion proof and the root, decrypt every chunk and check the
    plaintext and its SHA-256; then seal the plaintext again with the
    vector's key and prefix and compare the ciphertext;
  * negative vectors: the same checks must refuse with the named error and
    chunk index;
  * when pycddl is installed, every descriptor and metadata of a positive
    vector is valid against the `attachment` / `attachment-meta` rules of
    spec/messages.cddl, and the decoding negatives with a schema error are
    not.

Prints one "ok ..." line per check and "attach_interop: N failed" at the
end; exits 1 if any check failed. Run by tests/attach_interop.rs.
"""
import glob
import hashlib
import json
import os
import re
import sys

import cbor2
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

HERE = os.path.dirname(os.path.abspath(__file__))
VECTORS = os.path.join(HERE, "..", "..", "spec", "vectors", "attachments")
CDDL_PATH = os.path.join(HERE, "..", "..", "spec", "messages.cddl")

DESCRIPTOR_KEYS = ["key", "name", "size", "digest", "chunk-size", "media-type",
                   "nonce-prefix", "ciphertext-root", "ciphertext-size"]
META_KEYS = ["chunk-size", "ciphertext-root", "ciphertext-size"]


class Refused(Exception):
    def __init__(self, name, chunk=None):
        super().__init__(f"{name} (chunk {chunk})")
        self.name = name
        self.chunk = chunk


# --- §3: layout -------------------------------------------------------------

def check_chunk_size(cs):
    if not isinstance(cs, int) or cs < 64 or cs > 1 << 24 or cs & (cs - 1):
        raise Refused("field")


def chunks_for_size(cs, size):
    return max(1, -(-size // cs))


def layout_from_ciphertext(cs, c):
    """§3.4: (n, size) for a ciphertext size, or refuse."""
    if c < 16:
        raise Refused("sizes")
    full = cs + 16
    n = max(1, -(-c // full))
    last = c - (n - 1) * full
    if last < 16 or (last == 16 and n > 1) or n > 1 << 32:
        raise Refused("sizes")
    return n, c - 16 * n


def chunk_span(cs, n, c, i):
    """Offset and length of chunk i in a ciphertext of c bytes."""
    off = i * (cs + 16)
    return off, (cs + 16) if i < n - 1 else c - off


def nonce(prefix, i, last):
    return prefix + i.to_bytes(4, "big") + (b"\x01" if last else b"\x00")


# --- §4: the tree -----------------------------------------------------------

def leaf(chunk):
    return hashlib.sha256(b"\x02" + chunk).digest()


def node(left, right):
    return hashlib.sha256(b"\x03" + left + right).digest()


def split(n):
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(leaves):
    if len(leaves) == 1:
        return leaves[0]
    k = split(len(leaves))
    return node(mth(leaves[:k]), mth(leaves[k:]))


def path(m, leaves):
    """RFC 9162 §2.1.3.1 PATH(m, D[n]), leaf side first."""
    if len(leaves) <= 1:
        return []
    k = split(len(leaves))
    if m < k:
        return path(m, leaves[:k]) + [mth(leaves[k:])]
    return path(m - k, leaves[k:]) + [mth(leaves[:k])]


def verify_inclusion(index, size, leaf_hash, proof, root):
    """RFC 9162 §2.1.3.2 with the attachment node hash."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf_hash
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def decode_proof(b):
    if len(b) % 32 or len(b) // 32 > 32:
        raise Refused("proof-length")
    return [b[i:i + 32] for i in range(0, len(b), 32)]


def check_chunk(meta, index, chunk, proof):
    """§4.3."""
    cs, c, root = meta["chunk-size"], meta["ciphertext-size"], meta["ciphertext-root"]
    n, _ = layout_from_ciphertext(cs, c)
    if index >= n:
        raise Refused("chunk-beyond-end", index)
    if len(chunk) != chunk_span(cs, n, c, index)[1]:
        raise Refused("chunk-length", index)
    if not verify_inclusion(index, n, leaf(chunk), proof, root):
        raise Refused("chunk-mismatch", index)


# --- §6: descriptor and metadata --------------------------------------------

def det_encode(m):
    return cbor2.dumps(m, canonical=True)


def decode_map(data, keys, limit):
    if len(data) > limit:
        raise Refused("too-long")
    try:
        m = cbor2.loads(data)
    except Exception:
        raise Refused("schema")
    if not isinstance(m, dict):
        raise Refused("schema")
    # cbor2 keeps the last of duplicate keys: count the keys on the wire by
    # re-decoding the map header against the number of entries.
    if data[0] & 0x1f < 24 and (data[0] >> 5) == 5 and (data[0] & 0x1f) != len(m):
        raise Refused("schema")
    if set(m) != set(keys):
        raise Refused("schema")
    types = {"key": (bytes, 32), "digest": (bytes, 32), "nonce-prefix": (bytes, 7),
             "ciphertext-root": (bytes, 32), "name": (str, None), "media-type": (str, None),
             "size": (int, None), "chunk-size": (int, None), "ciphertext-size": (int, None)}
    for k in keys:
        t, size = types[k]
        v = m[k]
        if not isinstance(v, t) or isinstance(v, bool) or (size is not None and len(v) != size):
            raise Refused("schema")
        if t is int and (v < 0 or v >= 1 << 64):
            raise Refused("schema")
    # Trailing bytes: the canonical re-encoding must be all of the input.
    enc = det_encode(m)
    if len(enc) != len(data) and data.startswith(enc):
        raise Refused("schema")
    return m, enc


RESTRICTED = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}\Z")


def decode_descriptor(data):
    m, enc = decode_map(data, DESCRIPTOR_KEYS, 1024)
    check_chunk_size(m["chunk-size"])
    n = chunks_for_size(m["chunk-size"], m["size"])
    if n > 1 << 32:
        raise Refused("field")
    if m["size"] + 16 * n != m["ciphertext-size"]:
        raise Refused("sizes")
    name = m["name"]
    if not (1 <= len(name.encode()) <= 255) or name in (".", "..") or \
            any(ch in "/\\" or ord(ch) < 0x20 or ord(ch) == 0x7f for ch in name):
        raise Refused("field")
    mt = m["media-type"]
    parts = mt.split("/", 1)
    if len(mt) > 255 or len(parts) != 2 or not all(RESTRICTED.match(p) for p in parts):
        raise Refused("field")
    if enc != data:
        raise Refused("not-deterministic")
    return m


def decode_meta(data):
    m, enc = decode_map(data, META_KEYS, 128)
    check_chunk_size(m["chunk-size"])
    layout_from_ciphertext(m["chunk-size"], m["ciphertext-size"])
    if enc != data:
        raise Refused("not-deterministic")
    return m


# --- §5: opening ------------------------------------------------------------

def open_attachment(d, ct):
    """§5, in order. Returns the plaintext or raises Refused."""
    cs, c = d["chunk-size"], d["ciphertext-size"]
    n, _ = layout_from_ciphertext(cs, c)
    aead = AESGCM(d["key"])
    leaves, out, pos = [], b"", 0
    for i in range(n):
        off, length = chunk_span(cs, n, c, i)
        chunk = ct[off:off + length]
        if len(chunk) < length:
            raise Refused("truncated")
        leaves.append(leaf(chunk))
        try:
            out += aead.decrypt(nonce(d["nonce-prefix"], i, i == n - 1), chunk, b"")
        except InvalidTag:
            raise Refused("undecryptable", i)
        pos = off + length
    if len(ct) > pos:
        raise Refused("oversize")
    if mth(leaves) != d["ciphertext-root"]:
        raise Refused("root-mismatch")
    if hashlib.sha256(out).digest() != d["digest"]:
        raise Refused("digest-mismatch")
    return out


def verify_stream(meta, ct):
    """§4.3, whole-stream variant without the key."""
    cs, c = meta["chunk-size"], meta["ciphertext-size"]
    n, _ = layout_from_ciphertext(cs, c)
    leaves = []
    for i in range(n):
        off, length = chunk_span(cs, n, c, i)
        chunk = ct[off:off + length]
        if len(chunk) < length:
            raise Refused("truncated")
        leaves.append(leaf(chunk))
    if len(ct) > c:
        raise Refused("oversize")
    if mth(leaves) != meta["ciphertext-root"]:
        raise Refused("root-mismatch")


def seal(key, prefix, cs, plain):
    n = chunks_for_size(cs, len(plain))
    aead = AESGCM(key)
    return b"".join(aead.encrypt(nonce(prefix, i, i == n - 1), plain[i * cs:(i + 1) * cs], b"")
                    for i in range(n))


# --- the checks -------------------------------------------------------------

failed = 0
passed = 0


def ok(cond, label):
    global failed, passed
    if cond:
        passed += 1
        print(f"ok {label}")
    else:
        failed += 1
        print(f"FAIL {label}")


def outcome(f, *args):
    try:
        f(*args)
        return (None, None)
    except Refused as r:
        return (r.name, r.chunk)


def cddl_schema():
    try:
        import pycddl
    except ImportError:
        print("pycddl not installed: the CDDL checks are not run")
        return None
    with open(CDDL_PATH, encoding="utf-8") as f:
        src = f.read()
    # pycddl searches .regexp instead of matching it whole (see
    # cose_interop.py): anchor each one on a copy.
    src = re.sub(r'\.regexp "([^"]*)"', lambda m: f'.regexp "^(?:{m.group(1)})$"', src)
    return {rule: pycddl.Schema(f"cddl-root = {rule}\n" + src) for rule in ("attachment", "attachment-meta")}


def cddl_valid(schemas, rule, data):
    try:
        schemas[rule].validate_cbor(data)
        return True
    except Exception:
        return False


def positive(name, v, schemas):
    d = decode_descriptor(bytes.fromhex(v["descriptor_hex"]))
    meta = decode_meta(bytes.fromhex(v["meta_hex"]))
    ok(d["key"].hex() == v["key_hex"] and d["nonce-prefix"].hex() == v["nonce_prefix_hex"], f"{name}: descriptor key and prefix")
    ok({k: d[k] for k in META_KEYS} == meta, f"{name}: metadata is the descriptor's")
    ct = bytes.fromhex(v["ciphertext_hex"])
    plain = bytes.fromhex(v["plaintext_hex"])
    cs, c = d["chunk-size"], d["ciphertext-size"]
    n, size = layout_from_ciphertext(cs, c)
    ok(size == d["size"] == len(plain) and c == len(ct), f"{name}: sizes (§3.4)")
    leaves = []
    for ch in v["chunks"]:
        i = ch["index"]
        off, length = chunk_span(cs, n, c, i)
        chunk = ct[off:off + length]
        leaves.append(leaf(chunk))
        ok((off, length) == (ch["offset"], ch["length"]), f"{name}: chunk {i} span")
        ok(nonce(d["nonce-prefix"], i, i == n - 1).hex() == ch["nonce_hex"], f"{name}: chunk {i} nonce")
        ok(leaf(chunk).hex() == ch["leaf_hash_hex"], f"{name}: chunk {i} leaf hash")
    ok(len(leaves) == n, f"{name}: {n} chunks")
    ok(mth(leaves) == d["ciphertext-root"], f"{name}: root")
    for ch in v["chunks"]:
        i = ch["index"]
        proof = decode_proof(bytes.fromhex(ch["proof_hex"]))
        ok(b"".join(path(i, leaves)).hex() == ch["proof_hex"], f"{name}: chunk {i} proof is PATH")
        off, length = chunk_span(cs, n, c, i)
        ok(outcome(check_chunk, meta, i, ct[off:off + length], proof) == (None, None), f"{name}: chunk {i} checks")
    ok(open_attachment(d, ct) == plain, f"{name}: decrypts to the plaintext")
    ok(hashlib.sha256(plain).hexdigest() == v["digest_hex"], f"{name}: digest")
    ok(seal(d["key"], d["nonce-prefix"], cs, plain) == ct, f"{name}: sealing again gives the ciphertext")
    if schemas:
        ok(cddl_valid(schemas, "attachment", bytes.fromhex(v["descriptor_hex"])), f"{name}: descriptor valid CDDL")
        ok(cddl_valid(schemas, "attachment-meta", bytes.fromhex(v["meta_hex"])), f"{name}: meta valid CDDL")


def negative(name, v, schemas):
    if v.get("expect_decode"):
        want = v["expect_decode"]
        if "descriptor_hex" in v:
            data = bytes.fromhex(v["descriptor_hex"])
            got = outcome(decode_descriptor, data)
            rule = "attachment"
        else:
            data = bytes.fromhex(v["meta_hex"])
            got = outcome(decode_meta, data)
            rule = "attachment-meta"
        ok(got[0] == want, f"{name}: decoding refused with {want} (got {got[0]})")
        # pycddl decodes the CBOR first: a duplicate key or bytes after the
        # map never reach the validator, so only the structural cases count.
        if schemas and want == "schema" and "duplicate" not in name and "trailing" not in name:
            ok(not cddl_valid(schemas, rule, data), f"{name}: not valid CDDL")
        return
    d = decode_descriptor(bytes.fromhex(v["descriptor_hex"]))
    meta = {k: d[k] for k in META_KEYS}
    ct = bytes.fromhex(v["ciphertext_hex"])
    for label, got, want in [("open", outcome(open_attachment, d, ct), v["expect_open"]),
                             ("verify", outcome(verify_stream, meta, ct), v["expect_verify"])]:
        ok(got == (want["error"], want["chunk"]), f"{name}: {label} gives {want['error']} {want['chunk']} (got {got})")
    for chk in v["chunk_checks"]:
        want = chk["expect"]
        try:
            proof = decode_proof(bytes.fromhex(chk["proof_hex"]))
            got = outcome(check_chunk, meta, chk["index"], bytes.fromhex(chk["chunk_hex"]), proof)
        except Refused as r:
            got = (r.name, r.chunk)
        ok(got == (want["error"], want["chunk"]), f"{name}: chunk {chk['index']} check gives {want['error']} (got {got})")


def main():
    schemas = cddl_schema()
    files = sorted(glob.glob(os.path.join(VECTORS, "*.json")))
    ok(len(files) >= 35, f"{len(files)} vector files")
    for path_ in files:
        name = os.path.basename(path_)[:-5]
        with open(path_, encoding="utf-8") as f:
            v = json.load(f)
        try:
            (positive if name.startswith("ok-") else negative)(name, v, schemas)
        except Refused as r:
            ok(False, f"{name}: unexpected refusal {r}")
    print(f"attach_interop: {passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
