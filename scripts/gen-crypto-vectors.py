#!/usr/bin/env python3
"""Generate test/fixtures/crypto-vectors.json: known answers for src/crypto.

These vectors are computed independently of the TypeScript code, with only the
Python standard library (hashlib, hmac; ipaddress to turn address text into
bytes), straight from the RFC 8684 definitions:

  token  = most significant 32 bits of SHA-256(key)            (RFC 8684 §3.1)
  idsn   = least significant 64 bits of SHA-256(key)           (RFC 8684 §3.1)
  MP_JOIN SYN/ACK  = leftmost 64 bits of HMAC(KeyB||KeyA, RB||RA)   (§3.2)
  MP_JOIN ACK      = leftmost 160 bits of HMAC(KeyA||KeyB, RA||RB)  (§3.2)
  ADD_ADDR         = rightmost 64 bits of
                     HMAC(Ksender||Kreceiver, id||addr||port-or-0)  (§3.4.1)
  NEW_KEY          = low-order 64 bits of
                     HMAC(TokenSender||TokenReceiver, external key)
                     (draft-baerts-tcpm-mptcpext-00 §4.2)
  idsnExternal     = least significant 64 bits of
                     SHA-256("mptls-idsn"||role), role 0x01 initiator,
                     0x02 responder                  (mptls, wire version 3)

Deterministic: re-running it reproduces the committed file byte for byte.
Usage: python3 scripts/gen-crypto-vectors.py [output-path]
"""

import hashlib
import hmac
import ipaddress
import json
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, "..", "test", "fixtures", "crypto-vectors.json")


def det_bytes(label: str, n: int) -> bytes:
    """Deterministic pseudo-random bytes (SHA-256 in counter mode)."""
    out = b""
    ctr = 0
    while len(out) < n:
        out += hashlib.sha256(f"{label}/{ctr}".encode()).digest()
        ctr += 1
    return out[:n]


def det_u32(label: str) -> int:
    return struct.unpack(">I", det_bytes(label, 4))[0]


def sha256(b: bytes) -> bytes:
    return hashlib.sha256(b).digest()


def hmac256(key: bytes, msg: bytes) -> bytes:
    return hmac.new(key, msg, hashlib.sha256).digest()


def be32(n: int) -> bytes:
    return struct.pack(">I", n)


def token(key: bytes) -> int:
    return struct.unpack(">I", sha256(key)[:4])[0]


def idsn(key: bytes) -> int:
    return struct.unpack(">Q", sha256(key)[-8:])[0]


FIXED_KEYS = [
    bytes(8),
    b"\xff" * 8,
    bytes.fromhex("0102030405060708"),
    bytes.fromhex("8000000000000001"),
    bytes.fromhex("deadbeefcafebabe"),
]


def keys_section():
    keys = FIXED_KEYS + [det_bytes(f"key{i}", 8) for i in range(11)]
    return [
        {"key": k.hex(), "token": token(k), "idsn": str(idsn(k)), "sha256": sha256(k).hex()}
        for k in keys
    ]


def hmac_section():
    out = []
    msgs = [b"", b"\x00", b"mptls", det_bytes("msg-long", 100)]
    for i, msg in enumerate(msgs):
        k1 = det_bytes(f"h1-{i}", 8)
        k2 = det_bytes(f"h2-{i}", 8)
        out.append({"key1": k1.hex(), "key2": k2.hex(), "msg": msg.hex(), "hmac": hmac256(k1 + k2, msg).hex()})
    return out


def join_sections():
    synack, ack = [], []
    rand_pairs = [(0, 0), (0xFFFFFFFF, 0xFFFFFFFF), (1, 0x80000000)] + [
        (det_u32(f"rb{i}"), det_u32(f"ra{i}")) for i in range(5)
    ]
    for i, (rb, ra) in enumerate(rand_pairs):
        ka = det_bytes(f"jA{i}", 8)
        kb = det_bytes(f"jB{i}", 8)
        synack.append({
            "keyB": kb.hex(), "keyA": ka.hex(), "randB": rb, "randA": ra,
            "hmac": hmac256(kb + ka, be32(rb) + be32(ra))[:8].hex(),
        })
        ack.append({
            "keyA": ka.hex(), "keyB": kb.hex(), "randA": ra, "randB": rb,
            "hmac": hmac256(ka + kb, be32(ra) + be32(rb))[:20].hex(),
        })
    return synack, ack


ADDRS = [
    ("198.18.2.2", None),
    ("198.18.2.2", 0),
    ("198.18.2.2", 8080),
    ("0.0.0.0", None),
    ("255.255.255.255", 65535),
    ("10.0.0.1", 1),
    ("::", None),
    ("::1", None),
    ("2001:db8::1", None),
    ("2001:db8::1", 443),
    ("2001:0DB8:0000:0000:0000:0000:0000:0001", None),
    ("fe80::1:2:3:4", 65535),
    ("::ffff:198.18.1.2", None),
    ("64:ff9b::198.18.0.1", 80),
    ("1:2:3:4:5:6:7:8", None),
    ("1::", 2),
    ("1:0:0:2::3", None),
    ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 1234),
]


def add_addr_section():
    out = []
    for i, (addr, port) in enumerate(ADDRS):
        ks = det_bytes(f"aS{i}", 8)
        kr = det_bytes(f"aR{i}", 8)
        aid = [0, 1, 255, 7][i % 4]
        packed = ipaddress.ip_address(addr).packed
        msg = bytes([aid]) + packed + struct.pack(">H", port or 0)
        entry = {
            "senderKey": ks.hex(), "receiverKey": kr.hex(), "addressId": aid, "address": addr,
            "addressBytes": packed.hex(), "msg": msg.hex(),
            "hmac": hmac256(ks + kr, msg)[-8:].hex(),
        }
        if port is not None:
            entry["port"] = port
        out.append(entry)
    return out


def new_key_section():
    out = []
    ext_keys = [b"", bytes(32), det_bytes("ext0", 32), det_bytes("ext1", 16), det_bytes("ext2", 64), det_bytes("ext3", 100)]
    for i, ek in enumerate(ext_keys):
        ts = det_u32(f"nS{i}") if i else 0
        tr = det_u32(f"nR{i}") if i else 0xFFFFFFFF
        out.append({
            "senderToken": ts, "receiverToken": tr, "externalKey": ek.hex(),
            "hmac": hmac256(be32(ts) + be32(tr), ek)[-8:].hex(),
        })
    return out


def idsn_external_section():
    out = []
    for name, role in (("initiator", 1), ("responder", 2)):
        d = sha256(b"mptls-idsn" + bytes([role]))
        out.append({"sender": name, "idsn": str(struct.unpack(">Q", d[-8:])[0])})
    return out


def main():
    out_path = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_OUT
    synack, ack = join_sections()
    doc = {
        "_comment": "Generated by scripts/gen-crypto-vectors.py (Python hashlib/hmac). Do not edit by hand.",
        "keys": keys_section(),
        "mptcpHmac": hmac_section(),
        "joinSynAckHmac": synack,
        "joinAckHmac": ack,
        "addAddrHmac": add_addr_section(),
        "newKeyHmac": new_key_section(),
        "idsnExternal": idsn_external_section(),
    }
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main()
