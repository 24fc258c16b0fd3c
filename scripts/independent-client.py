#!/usr/bin/python3
"""Independent mptls client (wire version 3, G mode, userspace transport),
written from docs/PROTOCOL.md alone.

usage: /usr/bin/python3 scripts/independent-client.py --port PORT --ca FILE
         [--timeout S] [--path /status.json] [--host 127.0.0.1] [--join-addr 127.0.0.2]
Prints one JSON line; exit 0 on success, 1 on failure.
"""
import argparse
import hashlib
import hmac
import json
import os
import select
import socket
import struct
import sys
import time

from OpenSSL import SSL

MAGIC = b"\xa7MPT"
VERSION = 3
ROLE_INITIATOR = 1
ROLE_RESPONDER = 2
IDSN_A = int.from_bytes(hashlib.sha256(b"mptls-idsn" + b"\x01").digest()[-8:], "big")
IDSN_B = int.from_bytes(hashlib.sha256(b"mptls-idsn" + b"\x02").digest()[-8:], "big")
assert IDSN_A == 0x88C9D7A1A05661A5 and IDSN_B == 0x29321AC0636B61A7
M64 = (1 << 64) - 1
WINDOW = 4 * 1024 * 1024
MAX_PAYLOAD = 16384  # what we put in one frame (spec allows up to 65535)

FT_SEGMENT = 0x01
FF_W, FF_A, FF_FINMAC = 0x01, 0x02, 0x04

ST_MP_CAPABLE, ST_MP_JOIN, ST_DSS, ST_ADD_ADDR, ST_REMOVE_ADDR = 0, 1, 2, 3, 4
ST_MP_PRIO, ST_MP_FAIL, ST_MP_FASTCLOSE, ST_MP_TCPRST, ST_NEW_KEY = 5, 6, 7, 8, 9


class ClientError(Exception):
    pass


def now_ms(t0):
    return round((time.monotonic() - t0) * 1000, 2)


def hmac256(key, msg):
    return hmac.new(key, msg, hashlib.sha256).digest()


# ---------------------------------------------------------------- encoding

def preamble():
    return MAGIC + bytes([VERSION, ROLE_INITIATOR, 0, 0])


def frame(opts=b"", payload=b"", window=None, ack=None, finmac=None):
    flags = 0
    if window is not None:
        flags |= FF_W
    if ack is not None:
        flags |= FF_A
    if finmac is not None:
        assert len(finmac) == 8
        flags |= FF_FINMAC
    hdr = struct.pack(">BBHIII", FT_SEGMENT, flags, len(opts), len(payload),
                      window or 0, ack or 0)
    return hdr + opts + (finmac or b"") + payload


def opt(subtype_byte, rest):
    return bytes([30, 3 + len(rest), subtype_byte]) + rest


def mpc_syn():
    # kind 30, len 4, subtype 0 | version 1, flags G|H
    return bytes([30, 4, 0x01, 0x03])


def mpc_ack(token_a, token_b):
    return bytes([30, 12, 0x01, 0x03]) + struct.pack(">II", token_a, token_b)


def dss(data_ack=None, dsn=None, ssn=None, length=None, fin=False):
    flags = 0
    body = b""
    if data_ack is not None:
        flags |= 0x01 | 0x02  # A, a (8-octet data ACK)
        body += struct.pack(">Q", data_ack & M64)
    if dsn is not None:
        flags |= 0x04 | 0x08  # M, m (8-octet DSN)
        body += struct.pack(">QIH", dsn & M64, ssn, length)
    if fin:
        flags |= 0x10
    return bytes([30, 4 + len(body), 0x20, flags]) + body


def join_syn(token_b, r_a, addr_id, backup=False):
    return bytes([30, 12, 0x10 | (1 if backup else 0), addr_id]) + struct.pack(">II", token_b, r_a)


def join_ack(hmac_a):
    assert len(hmac_a) == 20
    return bytes([30, 24, 0x10, 0x00]) + hmac_a


def new_key_opt(mac8, k=0):
    return bytes([30, 12, 0x90 | (k & 1), 0]) + mac8


# ---------------------------------------------------------------- decoding

def parse_options(buf):
    out = []
    i = 0
    while i < len(buf):
        if len(buf) - i < 2:
            raise ClientError("option truncated")
        kind, ln = buf[i], buf[i + 1]
        if kind != 30 or ln < 3 or i + ln > len(buf):
            raise ClientError("bad option kind=%d len=%d" % (kind, ln))
        o = buf[i:i + ln]
        out.append(decode_option(o))
        i += ln
    return out


def decode_option(o):
    ln = o[1]
    st = o[2] >> 4
    d = {"subtype": st, "len": ln, "raw": bytes(o)}
    if st == ST_MP_CAPABLE:
        if ln < 4:
            raise ClientError("MP_CAPABLE too short")
        d["version"] = o[2] & 0x0F
        d["flags"] = o[3]
        if ln == 8:
            d["sender_token"] = struct.unpack(">I", o[4:8])[0]
        elif ln in (12, 14, 16):
            d["sender_token"], d["receiver_token"] = struct.unpack(">II", o[4:12])
        elif ln != 4:
            raise ClientError("MP_CAPABLE bad length %d" % ln)
    elif st == ST_MP_JOIN:
        if ln == 12:
            d["kind"] = "syn"
            d["backup"] = o[2] & 1
            d["addr_id"] = o[3]
            d["token"], d["random"] = struct.unpack(">II", o[4:12])
        elif ln == 16:
            d["kind"] = "synack"
            d["backup"] = o[2] & 1
            d["addr_id"] = o[3]
            d["hmac"] = bytes(o[4:12])
            d["random"] = struct.unpack(">I", o[12:16])[0]
        elif ln == 24:
            d["kind"] = "ack"
            d["hmac"] = bytes(o[4:24])
        else:
            raise ClientError("MP_JOIN bad length %d" % ln)
    elif st == ST_DSS:
        if ln < 4:
            raise ClientError("DSS too short")
        fl = o[3]
        d["F"] = bool(fl & 0x10)
        i = 4
        if fl & 0x01:
            n = 8 if fl & 0x02 else 4
            d["data_ack"] = int.from_bytes(o[i:i + n], "big")
            d["data_ack_bits"] = n * 8
            i += n
        if fl & 0x04:
            n = 8 if fl & 0x08 else 4
            d["dsn"] = int.from_bytes(o[i:i + n], "big")
            d["dsn_bits"] = n * 8
            i += n
            d["ssn"], d["dll"] = struct.unpack(">IH", o[i:i + 6])
            i += 6
            if ln == i + 2:
                d["checksum"] = struct.unpack(">H", o[i:i + 2])[0]
                i += 2
        if i != ln:
            raise ClientError("DSS length mismatch (len %d, parsed %d)" % (ln, i))
    elif st == ST_ADD_ADDR:
        d["E"] = o[2] & 1
        d["addr_id"] = o[3]
        body = bytes(o[4:])
        if d["E"]:
            lens = {4: (4, False), 6: (4, True), 16: (16, False), 18: (16, True)}
        else:
            lens = {12: (4, False), 14: (4, True), 24: (16, False), 26: (16, True)}
        if len(body) not in lens:
            raise ClientError("ADD_ADDR bad length %d" % ln)
        alen, hasport = lens[len(body)]
        d["addr"] = body[:alen]
        d["port"] = struct.unpack(">H", body[alen:alen + 2])[0] if hasport else None
        d["hmac"] = body[alen + (2 if hasport else 0):] if not d["E"] else None
    elif st == ST_MP_TCPRST:
        if ln != 4:
            raise ClientError("MP_TCPRST bad length")
        d["T"] = o[2] & 1
        d["reason"] = o[3]
    elif st == ST_NEW_KEY:
        if ln != 12:
            raise ClientError("NEW_KEY bad length")
        d["K"] = o[2] & 1
        d["hmac"] = bytes(o[4:12])
    elif st == ST_MP_FASTCLOSE:
        d["key"] = bytes(o[4:12]) if ln == 12 else None
    return d


def widen(v32, ref):
    """32-bit value -> the 64-bit value with those low bits nearest ref (§3)."""
    cand = (ref & ~0xFFFFFFFF & M64) | v32
    diff = (cand - ref) & M64
    if diff >= (1 << 63):
        diff -= 1 << 64
    if diff > (1 << 31):
        cand = (cand - (1 << 32)) & M64
    elif diff < -(1 << 31):
        cand = (cand + (1 << 32)) & M64
    return cand


# ---------------------------------------------------------------- subflow

class Subflow:
    def __init__(self, name, sock):
        self.name = name
        self.sock = sock
        self.rbuf = bytearray()
        self.wbuf = bytearray()
        self.got_preamble = False
        self.frames_in = 0
        self.frames_out = 0
        self.snd_ssn = 1          # next relative SSN to send
        self.rcv_ssn = 1          # next relative SSN expected
        self.mapping = None       # (dsn_start, ssn_start, length)
        self.state = "handshake"  # handshake | established | closed | dead
        self.eof = False
        self.sent_segments = []   # (dsn, data) sent on this subflow (for re-send)
        self.closing = False

    def queue(self, data):
        self.wbuf += data
        self.frames_out += 1

    def flush(self):
        while self.wbuf and self.state not in ("dead",):
            try:
                n = self.sock.send(self.wbuf)
            except BlockingIOError:
                return
            except OSError:
                self.state = "dead"
                return
            del self.wbuf[:n]

    def next_frame(self):
        if len(self.rbuf) < 16:
            return None
        ftype, flags, optlen, paylen, window, ack = struct.unpack(">BBHIII", self.rbuf[:16])
        if ftype != FT_SEGMENT:
            raise ClientError("%s: unknown frame type %d" % (self.name, ftype))
        if flags & ~0x07:
            raise ClientError("%s: unknown frame flags 0x%02x" % (self.name, flags))
        if optlen > 512 or paylen > 65535:
            raise ClientError("%s: frame too large" % self.name)
        maclen = 8 if flags & FF_FINMAC else 0
        total = 16 + optlen + maclen + paylen
        if len(self.rbuf) < total:
            return None
        opts = bytes(self.rbuf[16:16 + optlen])
        mac = bytes(self.rbuf[16 + optlen:16 + optlen + maclen]) if maclen else None
        payload = bytes(self.rbuf[16 + optlen + maclen:total])
        del self.rbuf[:total]
        self.frames_in += 1
        return {"flags": flags, "window": window, "ack": ack,
                "options": parse_options(opts), "mac": mac, "payload": payload}


# ---------------------------------------------------------------- client

class Client:
    def __init__(self, args):
        self.args = args
        self.t0 = time.monotonic()
        self.deadline = self.t0 + args.timeout
        self.ms = {}
        self.token_a = int.from_bytes(os.urandom(4), "big") or 1
        self.token_b = None
        self.key_a = self.key_b = None
        self.keys_confirmed = False
        self.server_new_key = None
        self.server_new_key_verified = False
        self.held_fins = []
        # receive side (server -> client)
        self.rcv_off = 0          # next in-order stream offset expected
        self.ooo = {}             # offset -> bytes
        self.fin_dsn = None       # DSN of the server's verified DATA_FIN
        self.fin_received = False
        self.data_fin_mac_verified = False
        self.last_ack_sent = None
        # send side
        self.snd_off = 0          # next stream offset to send
        self.snd_una = IDSN_A + 1 # oldest DSN not data-ACKed
        self.peer_window = 65535
        self.my_fin_dsn = None
        self.my_fin_mac = None
        self.my_fin_sent_at = None
        self.my_fin_wait = 0.2
        self.my_fin_acked = False
        # TLS
        self.tls = None
        self.tls_done = False
        self.tls_closed = False
        self.app_in = bytearray()
        self.request_sent = False
        self.response_done = False
        # subflows
        self.initial = None
        self.join = None
        self.join_r_a = int.from_bytes(os.urandom(4), "big")
        self.join_synack = None
        self.joined = False
        self.join_used_for_data = False
        self.join_refused = None
        self.first_write_bytes = 0
        self.stats = {"addAddrEchoed": 0, "newKeyK1Ignored": 0}

    # ---------------- TLS
    def make_tls(self):
        ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
        ctx.set_min_proto_version(SSL.TLS1_3_VERSION)
        ctx.set_max_proto_version(SSL.TLS1_3_VERSION)
        ctx.load_verify_locations(self.args.ca)
        ctx.set_verify(SSL.VERIFY_PEER, lambda conn, cert, errno, depth, ok: bool(ok))
        conn = SSL.Connection(ctx, None)
        conn.set_tlsext_host_name(b"localhost")
        self.hostname_checked_by_openssl = False
        try:
            from OpenSSL._util import lib
            param = lib.SSL_get0_param(conn._ssl)
            if lib.X509_VERIFY_PARAM_set1_host(param, b"localhost", 9) == 1:
                self.hostname_checked_by_openssl = True
        except Exception:
            pass
        conn.set_connect_state()
        self.tls = conn

    def tls_output(self):
        out = b""
        while True:
            try:
                chunk = self.tls.bio_read(65536)
            except SSL.WantReadError:
                break
            if not chunk:
                break
            out += chunk
        return out

    def tls_step(self):
        """Drive the TLS engine after new input; returns outgoing bytes."""
        if not self.tls_done:
            try:
                self.tls.do_handshake()
                self.tls_done = True
            except SSL.WantReadError:
                pass
            except SSL.Error as e:
                raise ClientError("TLS handshake failed: %r" % (e,))
        if self.tls_done and not self.tls_closed:
            while True:
                try:
                    data = self.tls.recv(65536)
                    if not data:
                        break
                    if "firstResponseByte" not in self.ms:
                        self.ms["firstResponseByte"] = now_ms(self.t0)
                    self.app_in += data
                except SSL.WantReadError:
                    break
                except SSL.ZeroReturnError:
                    self.tls_closed = True
                    break
                except SSL.Error as e:
                    raise ClientError("TLS error: %r" % (e,))
        return self.tls_output()

    # ---------------- keys
    def install_keys(self):
        if not self.hostname_checked_by_openssl:
            cert = self.tls.get_peer_certificate().to_cryptography()
            from cryptography import x509
            names = cert.extensions.get_extension_for_class(
                x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
            if "localhost" not in names:
                raise ClientError("server certificate does not name localhost")
        if self.tls.get_protocol_version_name() != "TLSv1.3":
            raise ClientError("not TLS 1.3")
        ctx = struct.pack(">II", self.token_a, self.token_b)
        mat = self.tls.export_keying_material(b"EXPERIMENTAL mptls mptcp keys", 16, ctx)
        self.key_a, self.key_b = mat[:8], mat[8:16]
        f = self.tls.export_keying_material(b"EXPERIMENTAL mptls key fingerprints", 32, ctx)
        self.fingerprints = {"A": hmac256(f, self.key_a)[:8].hex(),
                             "B": hmac256(f, self.key_b)[:8].hex()}
        self.ms["keysInstalled"] = now_ms(self.t0)

    def new_key_mac(self, sender_token, receiver_token):
        k = struct.pack(">II", sender_token, receiver_token)
        return hmac256(k, self.key_a + self.key_b)[-8:]

    def check_server_new_key(self):
        if self.server_new_key is None or self.key_a is None or self.keys_confirmed:
            return
        exp = self.new_key_mac(self.token_b, self.token_a)
        if not hmac.compare_digest(exp, self.server_new_key):
            # §1.2: abort with MP_TCPRST 0x01 on every subflow
            for sf in self.subflows():
                sf.queue(frame(bytes([30, 4, 0x80, 0x01])))
                sf.flush()
            raise ClientError("ERR_MPTLS_KEY_MISMATCH: server NEW_KEY HMAC mismatch")
        self.keys_confirmed = True
        self.server_new_key_verified = True
        self.ms["keysConfirmed"] = now_ms(self.t0)
        self.try_complete_join()
        # held DATA_FINs (§3.1)
        held, self.held_fins = self.held_fins, []
        for dsn, mac in held:
            self.consider_fin(dsn, mac)

    def fin_mac(self, sender_key, receiver_key, dsn):
        return hmac256(sender_key + receiver_key,
                       b"mptls DATA_FIN" + struct.pack(">Q", dsn & M64))[:8]

    # ---------------- helpers
    def subflows(self):
        return [s for s in (self.initial, self.join) if s is not None and s.state == "established"]

    def rcv_data_ack(self):
        a = IDSN_B + 1 + self.rcv_off
        if self.fin_received:
            a += 1
        return a & M64

    def data_sf(self):
        # prefer the join for data once it is up (spreads data; shows it works)
        if self.joined and self.join.state == "established":
            return self.join
        return self.initial

    def send_data(self, data, sf=None):
        """Map stream bytes into DSS frames on subflow sf."""
        while data:
            chunk, data = data[:MAX_PAYLOAD], data[MAX_PAYLOAD:]
            s = sf or self.data_sf()
            dsn = (IDSN_A + 1 + self.snd_off) & M64
            o = dss(data_ack=self.rcv_data_ack(), dsn=dsn, ssn=s.snd_ssn, length=len(chunk))
            s.queue(frame(o, chunk, window=WINDOW, ack=s.rcv_ssn))
            s.sent_segments.append((self.snd_off, chunk))
            s.snd_ssn += len(chunk)
            self.snd_off += len(chunk)
            self.last_ack_sent = self.rcv_data_ack()
            if s is self.join:
                self.join_used_for_data = True

    def resend_on(self, sf, segments):
        for off, chunk in segments:
            if (IDSN_A + 1 + off + len(chunk) - self.snd_una) & M64 >= (1 << 63):
                continue  # already acked
            dsn = (IDSN_A + 1 + off) & M64
            o = dss(data_ack=self.rcv_data_ack(), dsn=dsn, ssn=sf.snd_ssn, length=len(chunk))
            sf.queue(frame(o, chunk, window=WINDOW, ack=sf.rcv_ssn))
            sf.sent_segments.append((off, chunk))
            sf.snd_ssn += len(chunk)

    def send_ack_only(self, sf):
        sf.queue(frame(dss(data_ack=self.rcv_data_ack()), window=WINDOW, ack=sf.rcv_ssn))
        self.last_ack_sent = self.rcv_data_ack()

    # ---------------- connection setup
    def connect(self):
        host, port = self.args.host, self.args.port
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.bind((self.args.src, 0))
        s.settimeout(max(0.1, self.deadline - time.monotonic()))
        s.connect((host, port))
        self.ms["tcpConnected"] = now_ms(self.t0)
        self.make_tls()
        try:
            self.tls.do_handshake()
        except SSL.WantReadError:
            pass
        ch = self.tls_output()
        if not ch:
            raise ClientError("no ClientHello produced")
        sf = Subflow("initial", s)
        self.initial = sf
        first = bytearray(preamble())
        first += frame(mpc_syn())
        off = 0
        while off < len(ch):
            chunk = ch[off:off + MAX_PAYLOAD]
            o = dss(data_ack=(IDSN_B + 1) & M64, dsn=(IDSN_A + 1 + off) & M64,
                    ssn=1 + off, length=len(chunk))
            first += frame(o, chunk, window=WINDOW, ack=1)
            sf.sent_segments.append((off, chunk))
            off += len(chunk)
        self.snd_off = len(ch)
        sf.snd_ssn = 1 + len(ch)
        self.first_write_bytes = len(first)
        n = s.send(bytes(first))  # ONE write
        if n != len(first):
            raise ClientError("first write was partial (%d of %d)" % (n, len(first)))
        s.setblocking(False)
        self.ms["firstWrite"] = now_ms(self.t0)

    def open_join(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.bind((self.args.join_addr, 0))
        s.settimeout(max(0.1, min(2.0, self.deadline - time.monotonic())))
        try:
            s.connect((self.args.host, self.args.port))
        except OSError as e:
            self.join_refused = "connect: %s" % e
            s.close()
            return
        sf = Subflow("join", s)
        self.join = sf
        s.send(preamble() + frame(join_syn(self.token_b, self.join_r_a, self.args.join_addr_id)))
        s.setblocking(False)
        sf.frames_out += 1
        self.ms["joinSynSent"] = now_ms(self.t0)

    def try_complete_join(self):
        j = self.join
        if j is None or j.state != "handshake" or self.join_synack is None or not self.keys_confirmed:
            return
        sa = self.join_synack
        exp = hmac256(self.key_b + self.key_a, struct.pack(">II", sa["random"], self.join_r_a))[:8]
        if not hmac.compare_digest(exp, sa["hmac"]):
            j.queue(frame(bytes([30, 4, 0x80, 0x01])))
            j.flush()
            j.state = "dead"
            self.join_refused = "MPJoinSynAckHMacFailure"
            return
        hmac_a = hmac256(self.key_a + self.key_b, struct.pack(">II", self.join_r_a, sa["random"]))[:20]
        # GUESS: the MP_JOIN ACK frame carries A (ack = 1), like the MP_CAPABLE ACK
        j.queue(frame(join_ack(hmac_a), ack=j.rcv_ssn))
        j.state = "established"
        self.joined = True
        self.ms["joinUp"] = now_ms(self.t0)
        self.maybe_send_request()

    def maybe_send_request(self):
        if self.request_sent or not self.keys_confirmed:
            return
        # wait for the join a little (it is answered right after the server's
        # keys), so the request can travel over the second subflow
        if not self.joined and self.join is not None and self.join.state == "handshake" \
                and time.monotonic() - self.t0 < self.keys_confirmed_at_wait():
            return
        req = ("GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
               % self.args.path).encode()
        self.tls.send(req)
        self.send_data(self.tls_output())
        self.request_sent = True
        self.ms["requestSent"] = now_ms(self.t0)

    def keys_confirmed_at_wait(self):
        return self.ms.get("keysConfirmed", 0) / 1000.0 + 1.0

    # ---------------- receive processing
    def on_frame(self, sf, fr):
        opts = fr["options"]
        subs = [o["subtype"] for o in opts]
        for o in opts:
            if o["subtype"] == ST_MP_TCPRST:
                self.on_reset(sf, o)
                return
            if o["subtype"] == ST_MP_FASTCLOSE:
                raise ClientError("%s: MP_FASTCLOSE received" % sf.name)
        if sf is self.initial and self.token_b is None:
            mpc = [o for o in opts if o["subtype"] == ST_MP_CAPABLE]
            if not mpc or fr["payload"]:
                raise ClientError("ProtocolError: first server frame is not a bare MP_CAPABLE SYN/ACK")
            m = mpc[0]
            if m["len"] != 8 or not (m["flags"] & 0x02):
                raise ClientError("mode-mismatch: SYN/ACK without G (len %d flags 0x%02x)" % (m["len"], m["flags"]))
            if m["version"] != 1:
                raise ClientError("MP_CAPABLE version %d" % m["version"])
            self.token_b = m["sender_token"]
            sf.state = "established"
            self.ms["synAck"] = now_ms(self.t0)
            # third ACK before any further data (§5.3 rule 3); frame flag A
            sf.queue(frame(mpc_ack(self.token_a, self.token_b), ack=sf.rcv_ssn))
            sf.flush()
            self.open_join()
            return
        if sf is self.join and sf.state == "handshake":
            js = [o for o in opts if o["subtype"] == ST_MP_JOIN]
            if not js or js[0]["kind"] != "synack" or fr["payload"]:
                raise ClientError("join: unexpected frame in handshake: %r" % subs)
            if self.join_synack is not None:
                raise ClientError("join: second SYN/ACK")
            self.join_synack = js[0]
            self.ms["joinSynAck"] = now_ms(self.t0)
            self.try_complete_join()
            return
        dss_o = None
        for o in opts:
            st = o["subtype"]
            if st == ST_DSS:
                dss_o = o
            elif st == ST_NEW_KEY:
                if o["K"] == 1:
                    self.stats["newKeyK1Ignored"] += 1
                    continue
                self.server_new_key = o["hmac"]
                self.ms["serverNewKey"] = now_ms(self.t0)
                self.check_server_new_key()
            elif st == ST_ADD_ADDR and not o["E"]:
                self.on_add_addr(sf, o)
            elif st == ST_MP_CAPABLE:
                raise ClientError("ProtocolError: MP_CAPABLE on established subflow")
            elif st == ST_MP_JOIN:
                raise ClientError("ProtocolError: MP_JOIN on established subflow")
        if dss_o is not None:
            self.on_dss(sf, dss_o, fr)
        elif fr["payload"]:
            # continuation of the current mapping
            self.on_payload(sf, fr["payload"])

    def on_reset(self, sf, o):
        if sf is self.initial and self.token_b is None:
            raise ClientError("MPCapableRefused: MP_TCPRST reason 0x%02x T=%d" % (o["reason"], o["T"]))
        sf.state = "dead"
        if sf is self.join:
            self.join_refused = "MP_TCPRST reason 0x%02x T=%d" % (o["reason"], o["T"])
            segs = sf.sent_segments
            sf.sent_segments = []
            if self.initial.state == "established":
                self.resend_on(self.initial, segs)
            try:
                sf.sock.close()
            except OSError:
                pass
        else:
            raise ClientError("MP_TCPRST on initial subflow reason 0x%02x" % o["reason"])

    def on_add_addr(self, sf, o):
        if self.key_a is None:
            return
        port = o["port"] if o["port"] is not None else 0
        msg = bytes([o["addr_id"]]) + o["addr"] + struct.pack(">H", port)
        exp = hmac256(self.key_b + self.key_a, msg)[-8:]
        if not hmac.compare_digest(exp, o["hmac"]):
            return
        echo = bytes([30, 0, 0x31, o["addr_id"]]) + o["addr"] + \
            (struct.pack(">H", o["port"]) if o["port"] is not None else b"")
        echo = bytes([30, len(echo)]) + echo[2:]
        sf.queue(frame(dss(data_ack=self.rcv_data_ack()) + echo, window=WINDOW, ack=sf.rcv_ssn))
        self.stats["addAddrEchoed"] += 1

    def on_dss(self, sf, o, fr):
        if "data_ack" in o:
            da = o["data_ack"]
            if o["data_ack_bits"] == 32:
                da = widen(da, self.snd_una)
            if (da - self.snd_una) & M64 < (1 << 63):
                self.snd_una = da
            if fr["flags"] & FF_W:
                self.peer_window = fr["window"]
            if self.my_fin_dsn is not None and not self.my_fin_acked and \
                    (da - ((self.my_fin_dsn + 1) & M64)) & M64 < (1 << 63):
                self.my_fin_acked = True
                self.ms["myDataFinAcked"] = now_ms(self.t0)
        payload = fr["payload"]
        if "dsn" in o:
            dsn = o["dsn"]
            if o["dsn_bits"] == 32:
                dsn = widen(dsn, (IDSN_B + 1 + self.rcv_off) & M64)
            dll = o["dll"]
            if o["F"]:
                if dll == 1 and o["ssn"] == 0 and not payload:
                    self.consider_fin(dsn, fr["mac"])
                    return
                fin_dsn = (dsn + dll - 1) & M64
                sf.mapping = (dsn, o["ssn"], dll - 1)
                if payload:
                    self.on_payload(sf, payload)
                self.consider_fin(fin_dsn, fr["mac"])
                return
            sf.mapping = (dsn, o["ssn"], dll)
        elif o["F"]:
            raise ClientError("DATA_FIN without mapping")
        if payload:
            self.on_payload(sf, payload)

    def on_payload(self, sf, payload):
        ssn = sf.rcv_ssn
        sf.rcv_ssn += len(payload)
        if sf.mapping is None:
            raise ClientError("%s: payload without mapping" % sf.name)
        dsn0, ssn0, ln = sf.mapping
        rel = ssn - ssn0
        if rel < 0 or rel + len(payload) > ln:
            raise ClientError("%s: payload outside its mapping (ssn %d, map %d+%d)" % (sf.name, ssn, ssn0, ln))
        dsn = (dsn0 + rel) & M64
        off = (dsn - IDSN_B - 1) & M64
        if off >= (1 << 63):
            return
        if off + len(payload) <= self.rcv_off:
            return  # duplicate
        if off < self.rcv_off:
            payload = payload[self.rcv_off - off:]
            off = self.rcv_off
        prev = self.ooo.get(off)
        if prev is None or len(prev) < len(payload):
            self.ooo[off] = payload
        self.deliver()

    def deliver(self):
        while True:
            found = False
            for off in sorted(self.ooo):
                data = self.ooo[off]
                if off + len(data) <= self.rcv_off:
                    del self.ooo[off]
                    continue
                if off <= self.rcv_off:
                    del self.ooo[off]
                    data = data[self.rcv_off - off:]
                    self.tls.bio_write(data)
                    self.rcv_off += len(data)
                    found = True
                break
            if not found:
                break
        self.check_fin()

    def consider_fin(self, dsn, mac):
        if self.fin_received:
            return
        if self.key_a is None:
            if len(self.held_fins) < 4:
                self.held_fins.append((dsn, mac))
            return
        if mac is None:
            self.stats["dataFinWithoutMac"] = self.stats.get("dataFinWithoutMac", 0) + 1
            return
        exp = self.fin_mac(self.key_b, self.key_a, dsn)
        if not hmac.compare_digest(exp, mac):
            self.stats["DataFinAuthFailure"] = self.stats.get("DataFinAuthFailure", 0) + 1
            return
        self.data_fin_mac_verified = True
        self.fin_dsn = dsn
        self.ms.setdefault("serverDataFin", now_ms(self.t0))
        self.check_fin()

    def check_fin(self):
        if self.fin_dsn is not None and not self.fin_received and \
                (IDSN_B + 1 + self.rcv_off) & M64 == self.fin_dsn:
            self.fin_received = True

    # ---------------- I/O
    def read_subflow(self, sf):
        try:
            data = sf.sock.recv(262144)
        except BlockingIOError:
            return
        except OSError as e:
            data = b""
            sf.err = str(e)
        if not data:
            sf.eof = True
            return
        sf.rbuf += data
        if not sf.got_preamble:
            if len(sf.rbuf) < 8:
                return
            pre = bytes(sf.rbuf[:8])
            if pre[:4] != MAGIC:
                raise ClientError("%s: no mptls preamble (fallback not implemented): %r" % (sf.name, pre))
            if pre[4] != VERSION:
                raise ClientError("%s: server wire version %d" % (sf.name, pre[4]))
            if pre[5] != ROLE_RESPONDER:
                raise ClientError("%s: server preamble role %d" % (sf.name, pre[5]))
            del sf.rbuf[:8]
            sf.got_preamble = True
            if sf is self.join:
                self.ms["joinPreamble"] = now_ms(self.t0)
        while sf.state != "dead":
            fr = sf.next_frame()
            if fr is None:
                break
            self.on_frame(sf, fr)

    def run(self):
        self.connect()
        closed_at = None
        while True:
            now = time.monotonic()
            if now > self.deadline:
                raise ClientError("timeout (state: tls_done=%s keys_confirmed=%s joined=%s request=%s fin=%s myfinacked=%s)"
                                  % (self.tls_done, self.keys_confirmed, self.joined, self.request_sent,
                                     self.fin_received, self.my_fin_acked))
            socks = [s for s in (self.initial, self.join) if s is not None and s.state != "dead" and not s.eof]
            rl = [s.sock for s in socks]
            wl = [s.sock for s in socks if s.wbuf]
            timeout = min(0.05, max(0.0, self.deadline - now))
            r, w, _ = select.select(rl, wl, [], timeout)
            rx_before = self.rcv_off, self.fin_received
            for s in socks:
                if s.sock in r:
                    self.read_subflow(s)
            # feed TLS
            if self.token_b is not None and self.initial.state == "established":
                was_done = self.tls_done
                out = self.tls_step()
                if self.tls_done and not was_done:
                    self.ms["tlsDone"] = now_ms(self.t0)
                    self.install_keys()
                    # Finished first (after the MP_CAPABLE ACK already queued), then NEW_KEY
                    if out:
                        self.send_data(out, self.initial)
                        out = b""
                    mac = self.new_key_mac(self.token_a, self.token_b)
                    self.initial.queue(frame(dss(data_ack=self.rcv_data_ack()) + new_key_opt(mac),
                                             window=WINDOW, ack=self.initial.rcv_ssn))
                    self.last_ack_sent = self.rcv_data_ack()
                    self.ms["newKeySent"] = now_ms(self.t0)
                    self.check_server_new_key()
                if out:
                    self.send_data(out)
            if self.keys_confirmed:
                self.maybe_send_request()
            # end of stream: when the server's authenticated DATA_FIN has taken effect
            if self.fin_received and self.my_fin_dsn is None:
                self.tls_step()
                self.response_done = True
                self.ms["responseDone"] = now_ms(self.t0)
                # our close_notify, then our DATA_FIN
                try:
                    self.tls.shutdown()
                except SSL.Error:
                    pass
                out = self.tls_output()
                if out:
                    self.send_data(out)
                self.my_fin_dsn = (IDSN_A + 1 + self.snd_off) & M64
                self.my_fin_mac = self.fin_mac(self.key_a, self.key_b, self.my_fin_dsn)
                self.send_my_fin(self.initial if self.initial.state == "established" else self.subflows()[0])
            # DATA_FIN retransmission
            if self.my_fin_dsn is not None and not self.my_fin_acked and \
                    time.monotonic() - self.my_fin_sent_at > self.my_fin_wait:
                cands = self.subflows()
                if cands:
                    idx = (self.fin_sf_idx + 1) % len(cands)
                    self.my_fin_wait = min(self.my_fin_wait * 2, 0.2 * 64)
                    self.send_my_fin(cands[idx], idx)
            # ack new data
            if (self.rcv_off, self.fin_received) != rx_before and self.last_ack_sent != self.rcv_data_ack():
                tgt = [s for s in socks if s.sock in r and s.state == "established"]
                sf = tgt[0] if tgt else self.initial
                self.send_ack_only(sf)
            # closing
            if self.fin_received and self.my_fin_acked and closed_at is None:
                for s in self.subflows():
                    self.send_ack_only(s)
                    s.flush()
                    try:
                        s.sock.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
                    s.closing = True
                closed_at = time.monotonic()
                self.ms["closed"] = now_ms(self.t0)
            for s in (self.initial, self.join):
                if s is not None:
                    s.flush()
            # EOF handling
            for s in (self.initial, self.join):
                if s is None or not s.eof or s.state == "dead":
                    continue
                if s.closing:
                    s.state = "closed"
                    continue
                if s is self.join and not (self.fin_received and self.my_fin_acked):
                    # lost join: re-send its unacked data on the initial subflow
                    s.state = "dead"
                    self.join_refused = self.join_refused or "join TCP closed"
                    if self.initial.state == "established":
                        self.resend_on(self.initial, s.sent_segments)
                    continue
                if self.fin_received and self.my_fin_acked:
                    s.state = "closed"
                    continue
                raise ClientError("ERR_MPTLS_NO_SUBFLOWS: %s closed before the authenticated DATA_FIN" % s.name)
            if closed_at is not None:
                live = [s for s in (self.initial, self.join) if s is not None and s.state == "established"]
                if not live or time.monotonic() - closed_at > 1.0:
                    break
        for s in (self.initial, self.join):
            if s is not None:
                try:
                    s.sock.close()
                except OSError:
                    pass
        self.ms["total"] = now_ms(self.t0)

    def send_my_fin(self, sf, idx=0):
        self.fin_sf_idx = idx
        o = dss(data_ack=self.rcv_data_ack(), dsn=self.my_fin_dsn, ssn=0, length=1, fin=True)
        sf.queue(frame(o, window=WINDOW, ack=sf.rcv_ssn, finmac=self.my_fin_mac))
        self.last_ack_sent = self.rcv_data_ack()
        self.my_fin_sent_at = time.monotonic()
        self.ms.setdefault("myDataFinSent", now_ms(self.t0))

    # ---------------- result
    def result(self):
        raw = bytes(self.app_in)
        head, _, body = raw.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        try:
            status = int(lines[0].split()[1])
        except Exception:
            raise ClientError("no HTTP status line in %r" % raw[:80])
        headers = {}
        for ln in lines[1:]:
            k, _, v = ln.partition(b":")
            headers[k.strip().lower().decode()] = v.strip().decode()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            out = b""
            rest = body
            while rest:
                szl, _, rest = rest.partition(b"\r\n")
                sz = int(szl.split(b";")[0], 16)
                if sz == 0:
                    break
                out += rest[:sz]
                rest = rest[sz + 2:]
            body = out
        res = {"ok": True, "status": status, "bytes": len(body), "responseBytes": len(raw),
               "joined": self.joined, "joinUsedForData": self.join_used_for_data,
               "serverNewKeyVerified": self.server_new_key_verified,
               "dataFinMacVerified": self.data_fin_mac_verified,
               "myDataFinAcked": self.my_fin_acked,
               "tlsCloseNotify": self.tls_closed,
               "firstWriteBytes": self.first_write_bytes,
               "tokenA": "%08x" % self.token_a, "tokenB": "%08x" % self.token_b,
               "keyFingerprints": self.fingerprints}
        if self.join_refused:
            res["joinProblem"] = self.join_refused
        if "json" in headers.get("content-type", "") or self.args.path.endswith(".json"):
            try:
                sv = json.loads(body)
                res["server"] = summarize_status(sv)
            except Exception as e:
                res["serverParseError"] = str(e)
        res["ms"] = self.ms
        return res


def summarize_status(sv):
    out = {}
    if not isinstance(sv, dict):
        return {"raw": sv}
    m = sv.get("connection", sv.get("mptcp", sv))
    if not isinstance(m, dict):
        return {"raw": sv}
    for k in ("mode", "keysConfirmed", "tokens", "keyFingerprints", "fallbackReason"):
        if k in m:
            out[k] = m[k]
    if isinstance(m.get("subflows"), list):
        out["subflows"] = len(m["subflows"])
        out["subflowRemotes"] = [s.get("remoteAddress") for s in m["subflows"]]
    if isinstance(sv.get("server"), dict):
        out["serverCounters"] = sv["server"].get("counters")
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--ca", required=True)
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--path", default="/status.json")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--src", default="127.0.0.1")
    ap.add_argument("--join-addr", dest="join_addr", default="127.0.0.2")
    ap.add_argument("--join-addr-id", dest="join_addr_id", type=int, default=1)
    args = ap.parse_args()
    c = Client(args)
    try:
        c.run()
        res = c.result()
        print(json.dumps(res))
        return 0
    except Exception as e:
        err = {"ok": False, "error": "%s: %s" % (type(e).__name__, e)}
        if c.ms:
            err["ms"] = c.ms
        print(json.dumps(err))
        return 1


if __name__ == "__main__":
    sys.exit(main())
