#!/usr/bin/env python3
"""Interoperability of Isnad envelopes with an independent COSE implementation.

Uses pycose (https://pypi.org/project/pycose/) and cbor2, with keys made by
`isnad keygen` and read from their PKCS#8 PEM files with `cryptography`:

  (a) open envelopes sealed by `isnad envelope seal` for every signer
      (Ed25519, ES256) and recipient curve (P-256, X25519): decrypt the
      COSE_Encrypt, verify the COSE_Sign1 with the sender's COSE_Key, check
      the claims;
  (b) build envelopes from scratch (own ephemeral key, own IV, own
      signature) and check that `isnad envelope open` accepts them with the
      same payload; and that it refuses one addressed elsewhere or tampered;
  (c) when pycddl is installed, validate the claims, COSE_Sign1, envelopes
      and COSE_Keys of (a), (b) and spec/vectors/envelope/ok-*.json against
      spec/messages.cddl.

What pycose 1.1.0 does not do, and what this script does instead (see
spec/protocol.md section 10):
  * ECDH-ES with an OKP (X25519) key: pycose's ECDH code is EC2-only
    (`_EcdhHkdf._ecdh` reads x/y/d of an EC2 key; the recipient classes check
    for `EC2Key`). For X25519 recipients the shared secret comes from
    `cryptography`'s X25519, the KDF context from pycose's own
    `CoseRecipient.get_kdf_context`, HKDF-SHA-256 from `cryptography`, and
    AES-GCM with the Enc_structure from pycose (`EncCommon`).
Everything else (Enc_structure, KDF context for P-256, AES-GCM, Sig_structure,
EdDSA and ES256) is pycose's.

Usage: cose_interop.py --isnad PATH/TO/isnad [--keep DIR]
Exit status 0 when every check passed; prints one line per check.
"""

import argparse
import base64
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.parse

import cbor2
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, x25519
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pycose import headers
from pycose.algorithms import A256GCM, EcdhEsHKDF256, EdDSA, Es256
from pycose.keys import CoseKey, EC2Key, OKPKey, SymmetricKey
from pycose.keys.curves import P256, X25519, Ed25519
from pycose.keys.keyparam import KpAlg, KpKid
from pycose.messages import CoseMessage, EncMessage, Sign1Message
from pycose.messages.enccommon import EncCommon
from pycose.messages.recipient import DirectKeyAgreement

CONTENT_TYPE = "application/vnd.isnad.message+cbor"
# spec/protocol.md section 4.3: the COSE_KDF_Context Isnad uses.
KDF_CONTEXT_HEX = "8403" + "83f6f6f6" + "83f6f6f6" + "82190100" + "44a1013818"
ENC_STRUCTURE_HEX = "8367456e637279707443a1010340"

FAILURES = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        FAILURES.append(what)
    return cond


# ---------------------------------------------------------------------------
# Deterministic CBOR (RFC 8949 section 4.2.1), written here independently of
# cbor2 so that "the claims are deterministically encoded" is really checked.


def _head(major, arg):
    if arg < 24:
        return bytes([major << 5 | arg])
    for info, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if arg < 1 << (8 * size):
            return bytes([major << 5 | info]) + arg.to_bytes(size, "big")
    raise ValueError("integer too large")


def det(v):
    if v is True:
        return b"\xf5"
    if v is False:
        return b"\xf4"
    if v is None:
        return b"\xf6"
    if isinstance(v, int):
        return _head(0, v) if v >= 0 else _head(1, -1 - v)
    if isinstance(v, bytes):
        return _head(2, len(v)) + v
    if isinstance(v, str):
        b = v.encode("utf-8")
        return _head(3, len(b)) + b
    if isinstance(v, list):
        return _head(4, len(v)) + b"".join(det(x) for x in v)
    if isinstance(v, dict):
        items = sorted((det(k), det(x)) for k, x in v.items())
        return _head(5, len(items)) + b"".join(k + x for k, x in items)
    if isinstance(v, cbor2.CBORTag):
        return _head(6, v.tag) + det(v.value)
    raise TypeError(f"cannot encode {type(v)}")


# ---------------------------------------------------------------------------
# Keys


def thumbprint(required):
    """RFC 9679: SHA-256 of the deterministic encoding of the required params."""
    return hashlib.sha256(det(required)).digest()


# ring writes Ed25519 keys as PKCS#8 v2 (RFC 5958 OneAsymmetricKey, version 1)
# with the public key in [1]; OpenSSL 3.0 and `cryptography` refuse that form
# ("extra data"), so it is taken apart here (spec/protocol.md section 3.4).
ED25519_V2_PREFIX = bytes.fromhex("3051020101300506032b657004220420")
ED25519_V2_PUB = bytes.fromhex("812100")


def load_pem(path):
    with open(path, "rb") as f:
        pem = f.read()
    try:
        return serialization.load_pem_private_key(pem, password=None)
    except ValueError:
        lines = pem.decode("ascii").strip().splitlines()
        der = base64.b64decode("".join(lines[1:-1]))
        if len(der) == 83 and der[:16] == ED25519_V2_PREFIX and der[48:51] == ED25519_V2_PUB:
            key = ed25519.Ed25519PrivateKey.from_private_bytes(der[16:48])
            pub = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            check(pub == der[51:], f"{os.path.basename(path)}: PKCS#8 v2 Ed25519 public key matches its seed")
            return key
        raise


def read_cose_key_file(path):
    """The COSE_Key map as written by `isnad keygen`, checked against
    spec/protocol.md section 3.2: deterministic, kid = RFC 9679 thumbprint."""
    with open(path, "rb") as f:
        raw = f.read()
    m = cbor2.loads(raw)
    check(det(m) == raw, f"{os.path.basename(path)} is deterministically encoded")
    req_labels = (1, -1, -2, -3) if m[1] == 2 else (1, -1, -2)
    required = {k: m[k] for k in req_labels}
    check(m.get(2) == thumbprint(required), f"{os.path.basename(path)} kid is the RFC 9679 thumbprint")
    check(-4 not in m, f"{os.path.basename(path)} carries no private key")
    return m, raw


def signing_key(pem_path, pub_map):
    """pycose private signing key from the PKCS#8 PEM, alg and kid from the COSE_Key."""
    k = load_pem(pem_path)
    kid = pub_map[2]
    if isinstance(k, ed25519.Ed25519PrivateKey):
        d = k.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                            serialization.NoEncryption())
        x = k.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        check(x == pub_map[-2], "Ed25519 PEM matches its COSE_Key")
        return OKPKey(crv=Ed25519, d=d, x=x, optional_params={KpAlg: EdDSA, KpKid: kid}), EdDSA
    if isinstance(k, ec.EllipticCurvePrivateKey) and isinstance(k.curve, ec.SECP256R1):
        n = k.private_numbers()
        x = n.public_numbers.x.to_bytes(32, "big")
        y = n.public_numbers.y.to_bytes(32, "big")
        check((x, y) == (pub_map[-2], pub_map[-3]), "ES256 PEM matches its COSE_Key")
        return EC2Key(crv=P256, d=n.private_value.to_bytes(32, "big"), x=x, y=y,
                      optional_params={KpAlg: Es256, KpKid: kid}), Es256
    raise ValueError(f"{pem_path}: not an Ed25519 or P-256 key")


def enc_private(pem_path, pub_map):
    """The recipient's private key: a pycose EC2Key (P-256) or the
    `cryptography` X25519 key (pycose cannot do ECDH with OKP keys)."""
    k = load_pem(pem_path)
    if isinstance(k, x25519.X25519PrivateKey):
        x = k.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        check(x == pub_map[-2], "X25519 PEM (RFC 8410) matches its COSE_Key")
        return k
    n = k.private_numbers()
    x = n.public_numbers.x.to_bytes(32, "big")
    y = n.public_numbers.y.to_bytes(32, "big")
    check((x, y) == (pub_map[-2], pub_map[-3]), "P-256 PEM matches its COSE_Key")
    return EC2Key(crv=P256, d=n.private_value.to_bytes(32, "big"), x=x, y=y,
                  optional_params={KpAlg: EcdhEsHKDF256})


def hkdf_cek(z, info):
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(z)


# ---------------------------------------------------------------------------
# spec/messages.cddl, validated with pycddl (cddl-rs) when it is installed.
#
# Three limits of pycddl 0.6.4 are worked around on a copy of the schema:
#   * a map key with a control (`* extension-key => any`, extension-key being
#     `tstr .regexp "x-.*"`) makes every map fail: the copy drops those
#     entries, and the body is validated without its x- keys (only for the
#     three kinds that allow them, so an x- key in a receipt still fails);
#   * `bstr .cbor T` inside an array is applied to the next array item too:
#     the copy says `bstr`, and the embedded items are validated separately;
#   * .regexp is searched, not matched whole as RFC 8610 section 3.8.3
#     (XSD regular expressions) has it: the copy anchors each one;
#   * a type choice between two maps (mla-status = mla-status-refused /
#     mla-status-other) reports the first alternative's error: the copy
#     names the alternative that the body's "status" selects.

CDDL_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "spec", "messages.cddl")


class Cddl:
    def __init__(self, mla_status="mla-status-refused"):
        import pycddl  # optional

        with open(CDDL_PATH, encoding="utf-8") as f:
            src = f.read()
        src = "\n".join(line for line in src.splitlines() if "* extension-key => any" not in line)
        src = re.sub(r'\.regexp "([^"]*)"', lambda m: f'.regexp "^(?:{m.group(1)})$"', src)
        src = src.replace("bstr .cbor { 1 => 3 }", "bstr").replace("bstr .cbor { 1 => -25 }", "bstr")
        src = src.replace("bstr .cbor sign1-protected", "bstr").replace("bstr .cbor isnad-claims", "bstr")
        src = src.replace("mla-status = (mla-status-refused / mla-status-other)", f"mla-status = {mla_status}")
        self._other = None if mla_status != "mla-status-refused" else Cddl("mla-status-other")
        self._pycddl = pycddl
        self._src = src
        self._schemas = {}

    def valid(self, rule, data):
        if self._other is not None and rule == "isnad-claims":
            claims = cbor2.loads(data)
            body = claims.get("body")
            if claims.get("kind") == "mla-status" and isinstance(body, dict) and body.get("status") != "refused":
                return self._other.valid(rule, data)
        if rule not in self._schemas:
            self._schemas[rule] = self._pycddl.Schema(f"cddl-root = {rule}\n" + self._src)
        try:
            self._schemas[rule].validate_cbor(data)
            return True, ""
        except Exception as e:  # pycddl raises ValueError with the validator's report
            return False, str(e).splitlines()[0][:300]


def without_extensions(claims_bytes):
    """The claims with the x- keys of an extensible body removed, re-encoded."""
    claims = cbor2.loads(claims_bytes)
    if claims.get("kind") in ("mla-request", "mla-status", "intel-share") and isinstance(claims.get("body"), dict):
        claims["body"] = {k: v for k, v in claims["body"].items() if not (isinstance(k, str) and k.startswith("x-"))}
    return det(claims)


def validate_with_cddl(cddl, label, envelope=None, signed=None, claims=None, cose_keys=()):
    if cddl is None:
        return
    if claims is not None:
        claims = without_extensions(claims)
    for rule, data, what in [("isnad-envelope", envelope, "envelope"), ("isnad-signed", signed, "COSE_Sign1"),
                             ("isnad-claims", claims, "claims")]:
        if data is not None:
            ok, why = cddl.valid(rule, data)
            check(ok, f"{label}: {what} valid against messages.cddl {rule} {why}".rstrip())
    if envelope is not None:
        v = cbor2.loads(envelope).value
        check(cddl.valid("{ 1 => 3 }", v[0])[0] and cddl.valid("{ 1 => -25 }", v[3][0][0])[0],
              f"{label}: envelope protected headers valid against messages.cddl")
    if signed is not None:
        ok, why = cddl.valid("sign1-protected", cbor2.loads(signed).value[0])
        check(ok, f"{label}: Sign1 protected header valid against messages.cddl sign1-protected {why}".rstrip())
    for k in cose_keys:
        ok, why = cddl.valid("isnad-cose-key", k)
        check(ok, f"{label}: COSE_Key valid against messages.cddl isnad-cose-key {why}".rstrip())


# ---------------------------------------------------------------------------
# Payloads (JSON form as `isnad envelope seal --payload` takes them)

BODIES = {
    "mla-request": {
        "reference": "IQ-MOI-AHTD-2026-0042",
        "requesting-authority": "مديرية مكافحة الاتجار بالبشر",
        "subject": "Recruitment through fictitious job offers",
        "nature": "investigation",
        "summary-of-facts": "A network recruited victims online.",
        "offences": [{"description": "trafficking in persons",
                      "legal-provision": "Law No. 28 of 2012, art. 6",
                      "penalty": "imprisonment up to 15 years"}],
        "assistance-sought": ["records", "locating-persons"],
        "assistance-details": "Subscriber records for two numbers.",
        "confidentiality": {"required": True},
        "urgency": "urgent",
        "legal-basis": ["UNTOC art. 18"],
        "x-national-ref": "AHTD/42",
    },
    "intel-share": {
        "share-id": "07" * 16,
        "handling": "H2",
        "source-grading": "B",
        "information-grading": 2,
        "tlp": "amber+strict",
        "classification": "RESTRICTED",
        "summary": "Boat departure planned",
        "content": "A crossing is planned for the first week of December.",
        "entities": [{"type": "phone", "value": "+964 770 000 0000"}],
    },
    "mla-status": {
        "request-id": "02" * 16,
        "status": "refused",
        "reason": "dual criminality not met",
        "refusal-grounds": ["dual-criminality"],
    },
    "receipt": {
        "message-id": "01" * 16,
        "envelope-digest": hashlib.sha256(b"envelope").hexdigest(),
        "log-index": 41,
        "received-at": 1793000000,
    },
}
# Body fields that are byte strings on the wire and hex in JSON.
BYTE_FIELDS = {"share-id", "request-id", "message-id", "envelope-digest"}


def body_to_cbor(j):
    return {k: (bytes.fromhex(v) if k in BYTE_FIELDS else v) for k, v in j.items()}


def cbor_to_json(v):
    if isinstance(v, bytes):
        return v.hex()
    if isinstance(v, dict):
        return {k: cbor_to_json(x) for k, x in v.items()}
    if isinstance(v, list):
        return [cbor_to_json(x) for x in v]
    return v


# ---------------------------------------------------------------------------
# (a) open what Isnad sealed


def open_isnad_envelope(env_bytes, rcpt_priv, rcpt_pub, sender_pub_raw, sender_pub_map,
                        sender_id, recipient_id, kind, body_json, label, cddl):
    msg = CoseMessage.decode(env_bytes)
    check(isinstance(msg, EncMessage), f"{label}: tag 96 COSE_Encrypt (pycose decode)")
    check(env_bytes[:2] == b"\xd8\x60", f"{label}: starts with tag 96")
    check(msg.phdr_encoded == bytes.fromhex("a10103"), f"{label}: protected header is h'a10103'")
    check(msg.get_attr(headers.Algorithm) is A256GCM, f"{label}: alg A256GCM")
    check(len(msg.get_attr(headers.IV)) == 12, f"{label}: 12-byte IV")
    check(len(msg.recipients) == 1, f"{label}: one recipient")
    r = msg.recipients[0]
    check(isinstance(r, DirectKeyAgreement), f"{label}: recipient is direct key agreement")
    check(r.phdr_encoded == bytes.fromhex("a1013818"), f"{label}: recipient protected is h'a1013818'")
    check(r.get_attr(headers.Algorithm) is EcdhEsHKDF256, f"{label}: recipient alg ECDH-ES + HKDF-256")
    check(r.get_attr(headers.KID) == rcpt_pub[2], f"{label}: recipient kid is the recipient key's thumbprint")
    ctx = r.get_kdf_context(A256GCM).encode()
    check(ctx.hex() == KDF_CONTEXT_HEX, f"{label}: pycose COSE_KDF_Context = {KDF_CONTEXT_HEX}")
    check(msg._enc_structure.hex() == ENC_STRUCTURE_HEX, f"{label}: Enc_structure = {ENC_STRUCTURE_HEX}")
    eph = r.get_attr(headers.EphemeralKey)
    if isinstance(rcpt_priv, EC2Key):
        r.key = rcpt_priv
        plaintext = msg.decrypt(r)  # all pycose: ECDH, KDF, AES-GCM
        check(True, f"{label}: pycose decrypted (P-256 ECDH-ES + HKDF-256, A256GCM)")
    else:
        check(isinstance(eph, OKPKey) and eph.crv is X25519, f"{label}: ephemeral key is OKP X25519")
        z = rcpt_priv.exchange(x25519.X25519PublicKey.from_public_bytes(eph.x))
        msg.key = SymmetricKey(k=hkdf_cek(z, ctx), optional_params={KpAlg: A256GCM})
        plaintext = EncCommon.decrypt(msg)
        check(True, f"{label}: decrypted (X25519 via cryptography, KDF context and AES-GCM via pycose)")

    s1 = CoseMessage.decode(plaintext)
    check(isinstance(s1, Sign1Message) and plaintext[:1] == b"\xd2", f"{label}: plaintext is a tagged COSE_Sign1")
    ph = cbor2.loads(s1.phdr_encoded)
    check(set(ph) == {1, 3, 4} and ph[3] == CONTENT_TYPE and ph[4] == sender_pub_map[2],
          f"{label}: Sign1 protected = {{1: alg, 3: content type, 4: signer kid}}")
    check(det(ph) == s1.phdr_encoded, f"{label}: Sign1 protected header deterministic")
    check(s1.uhdr == {}, f"{label}: Sign1 unprotected header empty")
    s1.key = CoseKey.decode(sender_pub_raw)
    check(s1.verify_signature(), f"{label}: pycose verified the {s1.get_attr(headers.Algorithm).fullname} signature")
    claims = cbor2.loads(s1.payload)
    check(det(claims) == s1.payload, f"{label}: claims deterministically encoded")
    check(set(claims) == {"v", "id", "from", "to", "iat", "exp", "kind", "body"}, f"{label}: exactly the 8 claims")
    check(claims["v"] == 1 and len(claims["id"]) == 16, f"{label}: v = 1, 16-byte id")
    check((claims["from"], claims["to"], claims["kind"]) == (sender_id, recipient_id, kind),
          f"{label}: from/to/kind")
    check(claims["exp"] > claims["iat"] and abs(claims["iat"] - time.time()) < 600, f"{label}: iat/exp")
    check(cbor_to_json(claims["body"]) == body_json, f"{label}: body equals the sealed JSON payload")
    validate_with_cddl(cddl, label, envelope=env_bytes, signed=plaintext, claims=s1.payload,
                       cose_keys=(sender_pub_raw,))
    return claims


# ---------------------------------------------------------------------------
# (b) build an envelope from scratch


def build_envelope(sign_key, sign_alg, rcpt_pub_map, sender_id, recipient_id, kind, body_cbor):
    now = int(time.time())
    claims = {
        "v": 1, "id": os.urandom(16), "from": sender_id, "to": recipient_id,
        "iat": now, "exp": now + 3600, "kind": kind, "body": body_cbor,
    }
    s1 = Sign1Message(
        phdr={headers.Algorithm: sign_alg, headers.ContentType: CONTENT_TYPE,
              headers.KID: sign_key.kid},
        payload=det(claims),
    )
    s1.key = sign_key
    signed = s1.encode(tag=True)

    rcpt_kid = rcpt_pub_map[2]
    if rcpt_pub_map[1] == 2:  # EC2 P-256: all pycose
        # pycose derives the CEK before it would make an ephemeral key itself,
        # so the sender makes it (with pycose) and puts its public half in -1.
        eph = EC2Key.generate_key(crv=P256, optional_params={KpAlg: EcdhEsHKDF256})
        r = DirectKeyAgreement(phdr={headers.Algorithm: EcdhEsHKDF256},
                               uhdr={headers.KID: rcpt_kid,
                                     headers.EphemeralKey: EC2Key(crv=P256, x=eph.x, y=eph.y)})
        r.key = eph
        r.local_attrs = {headers.StaticKey: EC2Key(crv=P256, x=rcpt_pub_map[-2], y=rcpt_pub_map[-3],
                                                   optional_params={KpAlg: EcdhEsHKDF256})}
        enc = EncMessage(phdr={headers.Algorithm: A256GCM}, uhdr={headers.IV: os.urandom(12)},
                         payload=signed, recipients=[r])
        envelope = enc.encode(tag=True)
    else:  # OKP X25519: ECDH by cryptography, the rest by pycose
        eph = x25519.X25519PrivateKey.generate()
        eph_pub = eph.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        r = DirectKeyAgreement(phdr={headers.Algorithm: EcdhEsHKDF256},
                               uhdr={headers.KID: rcpt_kid,
                                     headers.EphemeralKey: OKPKey(crv=X25519, x=eph_pub)})
        z = eph.exchange(x25519.X25519PublicKey.from_public_bytes(rcpt_pub_map[-2]))
        cek = hkdf_cek(z, r.get_kdf_context(A256GCM).encode())
        enc = EncMessage(phdr={headers.Algorithm: A256GCM}, uhdr={headers.IV: os.urandom(12)},
                         payload=signed, recipients=[r])
        enc.key = SymmetricKey(k=cek, optional_params={KpAlg: A256GCM})
        enc.payload = EncCommon.encrypt(enc)
        # pycose serializes the structure; its recipient encoder needs the
        # keys it would have used set, though it does no agreement here.
        r.key = OKPKey(crv=X25519, x=eph_pub)
        r.local_attrs = {headers.StaticKey: OKPKey(crv=X25519, x=rcpt_pub_map[-2])}
        envelope = enc.encode(tag=True, encrypt=False)
    return envelope, signed, claims


# ---------------------------------------------------------------------------


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--isnad", required=True, help="path to the isnad binary")
    ap.add_argument("--keep", help="work in this directory and keep it")
    ap.add_argument("--pkcs11-token", help="also seal with signing keys made in this PKCS#11 token (label)")
    ap.add_argument("--pkcs11-module", help="the PKCS#11 module of --pkcs11-token")
    ap.add_argument("--pin-file", help="the user PIN file of --pkcs11-token")
    args = ap.parse_args()
    work = args.keep or tempfile.mkdtemp(prefix="isnad-interop-")
    os.makedirs(work, exist_ok=True)

    try:
        cddl = Cddl()
    except ImportError:
        cddl = None
        print("skip CDDL validation: pycddl is not installed (pip install pycddl==0.6.4)")

    # The published vectors' claims, COSE_Sign1 and envelopes against the CDDL.
    if cddl is not None:
        vec_dir = os.path.join(os.path.dirname(CDDL_PATH), "vectors", "envelope")
        for name in sorted(os.listdir(vec_dir)):
            if name.startswith("ok-") and name.endswith(".json"):
                with open(os.path.join(vec_dir, name), encoding="utf-8") as f:
                    v = json.load(f)
                validate_with_cddl(cddl, f"(c) vector {name}", envelope=bytes.fromhex(v["envelope_hex"]),
                                   signed=bytes.fromhex(v["signed_hex"]), claims=bytes.fromhex(v["claims_hex"]),
                                   cose_keys=(bytes.fromhex(v["sender"]["sign_cose_key_hex"]),
                                              bytes.fromhex(v["recipient"]["enc_cose_key_hex"])))

    agencies = {"ed25519-p256": "iq.moi.ahtd", "es256-x25519": "fr.mj.bepi",
                "es256-p256": "iq.moj.ca", "ed25519-x25519": "fr.pn.ocrtis"}
    keys = {}
    for name, agency in agencies.items():
        sig, encc = name.split("-")
        d = os.path.join(work, name)
        if not os.path.exists(os.path.join(d, "sign.key.pem")):
            p = run([args.isnad, "keygen", "--out", d, "--sig", sig, "--enc", encc])
            if not check(p.returncode == 0, f"isnad keygen --sig {sig} --enc {encc}"):
                print(p.stderr)
                return 1
        sign_pub, sign_pub_raw = read_cose_key_file(os.path.join(d, "sign.pub.cose"))
        enc_pub, enc_pub_raw = read_cose_key_file(os.path.join(d, "enc.pub.cose"))
        validate_with_cddl(cddl, f"isnad keygen {name}", cose_keys=(sign_pub_raw, enc_pub_raw))
        sk, salg = signing_key(os.path.join(d, "sign.key.pem"), sign_pub)
        keys[name] = dict(dir=d, agency=agency, sign_pub=sign_pub, sign_pub_raw=sign_pub_raw,
                          enc_pub=enc_pub, sign_key=sk, sign_alg=salg,
                          enc_priv=enc_private(os.path.join(d, "enc.key.pem"), enc_pub))

    # Every signer algorithm with every recipient curve.
    pairs = [("ed25519-p256", "es256-p256", "mla-request"),
             ("es256-p256", "ed25519-x25519", "intel-share"),
             ("ed25519-x25519", "es256-x25519", "mla-status"),
             ("es256-x25519", "ed25519-p256", "receipt")]

    for snd, rcv, kind in pairs:
        S, R = keys[snd], keys[rcv]
        label = f"(a) isnad seal {S['sign_alg'].fullname} -> {'P-256' if R['enc_pub'][1] == 2 else 'X25519'} {kind}"
        payload = os.path.join(work, f"{snd}-{rcv}.json")
        with open(payload, "w", encoding="utf-8") as f:
            json.dump(BODIES[kind], f, ensure_ascii=False)
        env_path = os.path.join(work, f"{snd}-{rcv}.isnad.cbor")
        p = run([args.isnad, "envelope", "seal", "--from-key", os.path.join(S["dir"], "sign.key.pem"),
                 "--sender", S["agency"], "--to-key", os.path.join(R["dir"], "enc.pub.cose"),
                 "--recipient", R["agency"], "--kind", kind, "--payload", payload, "--out", env_path])
        if not check(p.returncode == 0, f"{label}: isnad envelope seal"):
            print(p.stderr)
            continue
        with open(env_path, "rb") as f:
            env = f.read()
        try:
            open_isnad_envelope(env, R["enc_priv"], R["enc_pub"], S["sign_pub_raw"], S["sign_pub"],
                                S["agency"], R["agency"], kind, BODIES[kind], label, cddl)
        except Exception as e:  # a pycose exception is a failed check, not a crash
            check(False, f"{label}: {type(e).__name__}: {e}")

    for snd, rcv, kind in pairs:
        S, R = keys[snd], keys[rcv]
        label = f"(b) pycose seal {S['sign_alg'].fullname} -> {'P-256' if R['enc_pub'][1] == 2 else 'X25519'} {kind}"
        try:
            env, signed, claims = build_envelope(S["sign_key"], S["sign_alg"], R["enc_pub"], S["agency"],
                                         R["agency"], kind, body_to_cbor(BODIES[kind]))
        except Exception as e:
            check(False, f"{label}: {type(e).__name__}: {e}")
            continue
        validate_with_cddl(cddl, label, envelope=env, signed=signed, claims=det(claims))
        env_path = os.path.join(work, f"{snd}-{rcv}.pycose.cbor")
        with open(env_path, "wb") as f:
            f.write(env)
        opener = [args.isnad, "envelope", "open", "--key", os.path.join(R["dir"], "enc.key.pem"),
                  "--sender-key", os.path.join(S["dir"], "sign.pub.cose"), "--sender", S["agency"],
                  "--in", env_path]
        p = run(opener + ["--recipient", R["agency"]])
        if not check(p.returncode == 0, f"{label}: isnad envelope open accepts it"):
            print(p.stderr)
            continue
        out = json.loads(p.stdout)
        check(out["id"] == claims["id"].hex() and out["kind"] == kind and out["from"] == S["agency"]
              and out["to"] == R["agency"] and out["created"] == claims["iat"]
              and out["expires"] == claims["exp"], f"{label}: header claims as sent")
        check(out["body"] == BODIES[kind], f"{label}: body as sent")
        check(out["envelope-sha256"] == hashlib.sha256(env).hexdigest(), f"{label}: envelope digest")
        # The same bytes opened as another agency: authentic but misaddressed.
        p = run(opener + ["--recipient", "xx.other.unit"])
        check(p.returncode == 2 and "misaddressed" in p.stderr, f"{label}: refused as misaddressed elsewhere")
        # One flipped ciphertext byte: the opaque unauthentic error.
        bad = bytearray(env)
        bad[len(bad) // 2] ^= 1  # inside the ciphertext
        bad_path = env_path + ".tampered"
        with open(bad_path, "wb") as f:
            f.write(bytes(bad))
        p = run(opener[:-1] + [bad_path, "--recipient", R["agency"]])
        check(p.returncode == 2 and "unauthentic" in p.stderr, f"{label}: tampered copy refused as unauthentic")

    # (d) Envelopes signed inside a PKCS#11 token (federation.md §14):
    # `isnad keygen --pkcs11` makes the keys there, `isnad envelope seal`
    # signs through the token; pycose decrypts and verifies as in (a).
    if args.pkcs11_token:
        token = urllib.parse.quote(args.pkcs11_token, safe="")
        for sig, rcv, kind in [("ed25519", "es256-p256", "mla-request"), ("es256", "ed25519-x25519", "intel-share")]:
            d = os.path.join(work, f"token-{sig}")
            label = f"(d) token-signed {sig} -> {rcv} {kind}"
            tok = ["--pkcs11-module", args.pkcs11_module, "--pin-file", args.pin_file]
            p = run([args.isnad, "keygen", "--out", d, "--sig", sig, "--enc", "p256",
                     "--pkcs11", f"pkcs11:token={token};object=interop-{sig}"] + tok)
            if not check(p.returncode == 0, f"{label}: isnad keygen --pkcs11"):
                print(p.stderr)
                continue
            check(not os.path.exists(os.path.join(d, "sign.key.pem")), f"{label}: no private key file written")
            uri_file = os.path.join(d, "sign.key.uri")
            with open(uri_file, "w", encoding="utf-8") as f:
                f.write(f"pkcs11:token={token};object=interop-{sig}-sign\n")
            sign_pub, sign_pub_raw = read_cose_key_file(os.path.join(d, "sign.pub.cose"))
            R = keys[rcv]
            payload = os.path.join(work, f"token-{sig}.json")
            with open(payload, "w", encoding="utf-8") as f:
                json.dump(BODIES[kind], f, ensure_ascii=False)
            env_path = os.path.join(work, f"token-{sig}.isnad.cbor")
            p = run([args.isnad, "envelope", "seal", "--from-key", uri_file, "--sender", "iq.moi.ahtd",
                     "--to-key", os.path.join(R["dir"], "enc.pub.cose"), "--recipient", R["agency"],
                     "--kind", kind, "--payload", payload, "--out", env_path] + tok)
            if not check(p.returncode == 0, f"{label}: isnad envelope seal with the token key"):
                print(p.stderr)
                continue
            with open(env_path, "rb") as f:
                env = f.read()
            try:
                open_isnad_envelope(env, R["enc_priv"], R["enc_pub"], sign_pub_raw, sign_pub,
                                    "iq.moi.ahtd", R["agency"], kind, BODIES[kind], label, cddl)
            except Exception as e:
                check(False, f"{label}: {type(e).__name__}: {e}")

    if not args.keep:
        import shutil
        shutil.rmtree(work, ignore_errors=True)
    print(f"\ncose_interop: {len(FAILURES)} failed" + ("" if not FAILURES else ":\n  " + "\n  ".join(FAILURES)))
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
