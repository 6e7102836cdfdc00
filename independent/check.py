"""Independent checks of what Portcullis produces, with implementations that are not ours.

Run by the Rust tests (crates/portcullis-core/tests/independent.rs) through the venv that
`bash clients/setup.sh independent/requirements.txt venv-independent` creates. Each command
reads one JSON document on stdin and exits non-zero (with the reason on stderr) on any
disagreement.

  jcs         {"texts": [JSON text, ...]}            -> stdout: {"canonical": [hex, ...]}
              rfc8785.dumps of each text (an integer beyond 2^53, which ours accepts only when
              a double holds it exactly, is read as that double, as RFC 8785 requires)
  receipt     {"receipt": {...}, "action": {...}, "public_key": hex}
              the action's RFC 8785 SHA-256 equals the receipt's action_hash, and the Ed25519
              signature verifies over rfc8785.dumps(receipt body)
  merkle      {"inclusion": [{index, size, leaf, path, root}], "consistency": [{old, new,
              old_root, new_root, path}]}  (hex)  -- tlog-scales' RFC 9162 verifiers
  checkpoint  {"notes": [text, ...], "vkey": "name+id+key", "expect": [{origin, size, root}]}
              tlog-scales' C2SP checkpoint and key parsing, and a verification of the exact
              signed text with `cryptography`
  webhooks    {"accept": [{secrets, id, timestamp, body, signature}], "reject": [same],
              "sign": [{secret, id, timestamp, body}]}  (secrets `whsec_...`, timestamps in
              seconds near now, bodies UTF-8 text)  -> stdout: {"accepted": n, "refused": n,
              "signatures": ["v1,...", ...]}
              standardwebhooks' Webhook(secret).verify accepts each "accept" message under
              each of its secrets and refuses each "reject" one; Webhook.sign signs each "sign"
              message (for our verifier to check)
"""

import base64
import hashlib
import json
import sys
from datetime import datetime, timezone

import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from tlog_scales.signing import Vkey
from tlog_scales.tlog import Checkpoint, ConsistencyProof, InclusionProof


def no_duplicates(pairs):
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        raise ValueError(f"duplicate keys {keys}")
    return dict(pairs)


def as_double_if_large(text):
    n = int(text)
    if abs(n) < 2**53:
        return n
    f = float(n)
    if int(f) != n:
        raise ValueError(f"{text} is not exactly a double; it should have been refused")
    return f


def parse(text):
    return json.loads(text, object_pairs_hook=no_duplicates, parse_int=as_double_if_large)


def jcs(doc):
    return {"canonical": [rfc8785.dumps(parse(t)).hex() for t in doc["texts"]]}


def receipt(doc):
    body = doc["receipt"]["body"]
    action_hash = hashlib.sha256(rfc8785.dumps(parse(json.dumps(doc["action"])))).hexdigest()
    if action_hash != body["action_hash"]:
        raise ValueError(f"action hash {action_hash} != receipt's {body['action_hash']}")
    key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(doc["public_key"]))
    key.verify(bytes.fromhex(doc["receipt"]["signature"]), rfc8785.dumps(body))
    return {"ok": True}


def h32(text):
    raw = bytes.fromhex(text)
    if len(raw) != 32:
        raise ValueError(f"{text!r} is not a 32-byte hash")
    return raw


def merkle(doc):
    for p in doc["inclusion"]:
        InclusionProof(p["index"], p["size"], [h32(x) for x in p["path"]]).check(
            h32(p["leaf"]), h32(p["root"])
        )
    for p in doc["consistency"]:
        ConsistencyProof(p["old"], p["new"], [h32(x) for x in p["path"]]).check(
            h32(p["old_root"]), h32(p["new_root"])
        )
    return {"inclusion": len(doc["inclusion"]), "consistency": len(doc["consistency"])}


def verify_note_text(note, vkey):
    name, kid_hex, b64 = vkey.split("+", 2)
    raw = base64.b64decode(b64, validate=True)
    if raw[0] != 0x01 or len(raw) != 33:
        raise ValueError("not an Ed25519 verifier key")
    kid = hashlib.sha256(name.encode() + b"\n\x01" + raw[1:]).digest()[:4]
    if kid.hex() != kid_hex:
        raise ValueError("key id does not match")
    i = note.rfind("\n\n")
    text, sigs = note[: i + 1], note[i + 2 :]
    for line in sigs[:-1].split("\n"):
        sname, sig = line[2:].split(" ")
        blob = base64.b64decode(sig, validate=True)
        if line.startswith("\u2014 ") and sname == name and blob[:4] == kid:
            Ed25519PublicKey.from_public_bytes(raw[1:]).verify(blob[4:], text.encode())
            return text
    raise ValueError("no signature by the given key")


def checkpoint(doc):
    vkey = Vkey.from_string(doc["vkey"])
    for note, want in zip(doc["notes"], doc["expect"], strict=True):
        cp = Checkpoint.from_text(note)
        cp.verify(vkey)
        verify_note_text(note, doc["vkey"])
        got = {"origin": cp.origin, "size": cp.size, "root": cp.root_hash.hex()}
        if got != want:
            raise ValueError(f"checkpoint says {got}, expected {want}")
    return {"checkpoints": len(doc["notes"])}


def webhook_headers(m):
    return {
        "webhook-id": m["id"],
        "webhook-timestamp": m["timestamp"],
        "webhook-signature": m["signature"],
    }


def webhooks(doc):
    accepted = refused = 0
    for i, m in enumerate(doc["accept"]):
        for secret in m["secrets"]:
            try:
                Webhook(secret).verify(m["body"].encode(), webhook_headers(m), json_parse=False)
            except WebhookVerificationError as e:
                raise ValueError(f"accept[{i}] ({m['id']!r}) refused: {e}") from e
            accepted += 1
    for i, m in enumerate(doc["reject"]):
        for secret in m["secrets"]:
            try:
                Webhook(secret).verify(m["body"].encode(), webhook_headers(m), json_parse=False)
            except WebhookVerificationError:
                refused += 1
            else:
                raise ValueError(f"reject[{i}] ({m['id']!r}) was accepted")
    signatures = [
        Webhook(m["secret"]).sign(
            m["id"], datetime.fromtimestamp(m["timestamp"], tz=timezone.utc), m["body"]
        )
        for m in doc["sign"]
    ]
    return {"accepted": accepted, "refused": refused, "signatures": signatures}


def main():
    command = sys.argv[1]
    doc = json.load(sys.stdin)
    result = {
        "jcs": jcs,
        "receipt": receipt,
        "merkle": merkle,
        "checkpoint": checkpoint,
        "webhooks": webhooks,
    }[command](doc)
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
