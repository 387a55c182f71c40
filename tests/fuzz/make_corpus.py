#!/usr/bin/python3
"""make_corpus.py: write the seed corpora of the proto fuzz harnesses.

Run from the repository root: /usr/bin/python3 tests/fuzz/make_corpus.py
Each seed-* file is named after what it holds, valid and invalid inputs
both; the found-* files beside them are inputs libFuzzer found that add
coverage (kept by hand, not written by this script).
"""
import os
import struct
import zlib

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def write(harness, name, data):
    d = os.path.join(ROOT, harness)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def frame(ver, cmd, sid, payload=b"", length=None):
    n = len(payload) if length is None else length
    return struct.pack("<BBHI", ver, cmd, n, sid) + payload


def frames():
    w = lambda n, d: write("fuzz_frame", n, d)
    w("v1-syn", frame(1, 0, 3))
    w("v1-psh-hi", frame(1, 2, 3, b"hi"))
    w("v1-fin", frame(1, 1, 3))
    w("v2-upd", frame(2, 4, 3, struct.pack("<II", 2, 65536)))
    w("v2-nop", frame(2, 3, 0))
    w("bad-ver3", frame(3, 2, 3, b"x"))
    w("bad-cmd5", frame(2, 5, 3))
    w("bad-upd-v1", frame(1, 4, 3, struct.pack("<II", 0, 0)))
    w("bad-syn-payload", frame(2, 0, 3, b"x"))
    w("short", frame(2, 2, 3)[:5])


def opt(tag, value):
    return struct.pack(">BH", tag, len(value)) + value


def ctrl():
    w = lambda n, d: write("fuzz_ctrl", n, d)
    w("register", b"\x01\x01" + struct.pack(">HH", 10000, 8080) + b"web")
    w("register-long", b"\x01\x01" + struct.pack(">HH", 0, 22) + b"n" * 300)
    head = b"\x08\x03" + struct.pack(">HH", 0, 80) + b"\x03web"
    w("regex-all", head + opt(1, b"demo") + opt(2, b"example.com")
      + opt(3, b"user:pw") + opt(4, struct.pack(">I", 65536))
      + opt(5, b"g1") + opt(6, b"\x02") + opt(7, b"10.0.0.0/8")
      + opt(7, b"::1/128") + opt(0x81, b"desc"))
    w("regex-unknown-low", head + opt(0x20, b"zz") + opt(1, b"s"))
    w("regex-unknown-high", head + opt(0x90, b"zz") + opt(1, b"s"))
    w("regex-bad-bw", head + opt(4, b"\x00\x01"))
    w("regex-opt-past-end", head + b"\x01\x00\x09abc")
    w("reject", b"\x07" + struct.pack(">IB", 5, 9) + b"refused")
    w("unregister", b"\x09web")
    w("heartbeat", b"\x05")
    w("goodbye", b"\x0a\x0breplaced")
    w("error", b"\x16\x01bad")
    w("autherr", b"\x13\x02denied")
    w("challenge", b"\x10" + bytes(range(0xa0, 0xb0)))
    # the extended form (capability 3, docs/internals/protocol-ext.md)
    w("challenge-ext", b"\x10" + bytes(range(0xa0, 0xb0)) + struct.pack(">I", 0x0f))
    w("authproof", b"\x11" + bytes(range(32)))
    w("authok", b"\x12" + struct.pack(">IHB", 7, 10, 11) + b"mgrok/0.1.0")
    w("regok", b"\x14\x01" + struct.pack(">HB", 10000, 3) + b"web"
      + b"tcp://example.com:10000")
    w("regerr", b"\x15\x04\x03webin use")
    w("hello-token", b"GRT1\x01s3cret")
    w("hello-mtls", b"GRT1\x02" + bytes(range(0x20, 0x30)))
    w("hello-hmac", b"GRT1\x03\x01" + bytes(range(16))
      + bytes(range(0x20, 0x30)) + struct.pack(">IB", 5, 11) + b"mgrok/0.1.0")
    w("hello-hmac-v2", b"GRT1\x03\x02" + bytes(40))
    w("hello-bad-method", b"GRT1\x09x")
    w("unknown-type", b"\x42abc")
    # HealthReport (capability 5, docs/internals/protocol-ext.md)
    w("health-down", b"\x18\x00\x03webHTTP 503")
    w("health-up", b"\x18\x01\x03web")
    w("health-bad-state", b"\x18\x07\x03web")


def sthdr():
    w = lambda n, d: write("fuzz_sthdr", n, d)
    w("newstream", b"\x02" + struct.pack(">IHB", 2, 10000, 3) + b"web")
    w("newstream-ex4", b"\x06" + struct.pack(">IHB", 4, 8080, 3) + b"web"
      + b"\x04\xc0\xa8\x01\x02" + struct.pack(">H", 54321))
    w("newstream-ex6", b"\x06" + struct.pack(">IHB", 6, 0, 0) + b"\x06"
      + bytes(15) + b"\x01" + struct.pack(">H", 443))
    w("newstream-data", b"\x02" + struct.pack(">IHB", 8, 80, 1) + b"a"
      + b"GET / HTTP/1.1\r\n")
    w("bad-af", b"\x06" + struct.pack(">IHB", 4, 80, 1) + b"a\x05" + bytes(6))
    w("bad-type", b"\x03" + bytes(10))
    w("prefix", b"\x06" + struct.pack(">IHB", 4, 80, 200) + b"abc")
    ex2 = b"\x0b" + struct.pack(">IHB", 4, 8080, 3) + b"web" + b"\x04\x7f\x00\x00\x02" \
        + struct.pack(">H", 40000)
    meta = opt(0x05, b"0123456789abcdef0123456789abcdef") + opt(0xE0, b"alice") \
        + opt(0x02, b"site.example.org") + opt(0x01, b"\x02h2\x08http/1.1")
    w("newstream-ex2", ex2 + struct.pack(">H", len(meta)) + meta + b"payload")
    w("newstream-ex2-empty", ex2 + b"\x00\x00")
    w("newstream-ex2-v6", b"\x0b" + struct.pack(">IHB", 6, 443, 0) + b"\x06" + bytes(15)
      + b"\x01" + struct.pack(">HH", 443, 8) + opt(0xE1, b"CN=x"))
    w("bad-ex2-meta-len", ex2 + struct.pack(">H", 1025) + bytes(1025))
    w("bad-ex2-tlv", ex2 + struct.pack(">H", 5) + b"\x02\x00\x09ab")


def sproxy_hdr(host, port_text, version=b"0.1.0\0\0\0", crc=None):
    b = version + bytes([len(host)]) + host.ljust(255, b"\0")
    b += bytes([len(port_text)]) + port_text.ljust(5, b"\0")
    c = zlib.crc32(b) if crc is None else crc
    return b + struct.pack(">I", c)


def sproxy():
    w = lambda n, d: write("fuzz_sproxy", n, d)
    v = sproxy_hdr(b"127.0.0.1", b"8080")
    assert v[270:274] == bytes.fromhex("27247bd5"), v[270:274].hex()
    w("vector", v)
    w("max-host", sproxy_hdr(b"h" * 255, b"65535"))
    w("empty-host", sproxy_hdr(b"", b"1"))
    w("bad-crc", sproxy_hdr(b"127.0.0.1", b"8080", crc=0))
    w("bad-version", sproxy_hdr(b"127.0.0.1", b"8080", version=b"0.2.0\0\0\0"))
    w("bad-port", sproxy_hdr(b"127.0.0.1", b"65536"))
    w("bad-port-len", sproxy_hdr(b"127.0.0.1", b"808080"))
    w("short", v[:100])


def upd(ver, sid, consumed, window):
    return frame(ver, 4, sid, struct.pack("<II", consumed, window))


def mux():
    """fuzz_mux: flags, piece seed, behaviour seed, then the peer's bytes
    (see the FM_* flags in fuzz_mux.c)."""
    w = lambda n, d: write("fuzz_mux", n, d)
    CLIENT, V1, SMALL, MAXS, EOF, FREECB, OPEN, CLOSE = (1 << i for i in
                                                        range(8))
    one = (frame(2, 0, 1) + frame(2, 2, 1, b"hello") + upd(2, 1, 5, 1 << 20)
           + frame(2, 3, 0) + frame(2, 1, 1))
    for b in range(6):  # each stream behaviour for stream 1
        w("server-v2-mode%d" % b, bytes([0, 0x80, b ^ 37]) + one)
    w("server-v2-eof", bytes([EOF, 3, 3]) + one)
    w("server-v2-eof-freecb", bytes([EOF | FREECB, 3, 3]) + one)
    w("server-v2-close", bytes([CLOSE | FREECB, 3, 40]) + one)
    w("server-v1", bytes([0, 5, 3 ^ 37]) + frame(1, 0, 1)
      + frame(1, 2, 1, b"x" * 300) + frame(1, 1, 1) + frame(1, 3, 0))
    w("server-v1-small", bytes([SMALL, 0x80, 4 ^ 37]) + frame(1, 0, 1)
      + b"".join(frame(1, 2, 1, b"y" * 1000) for _ in range(6)))
    many = b"".join(frame(2, 0, i) + frame(2, 2, i, bytes([i]) * i)
                    for i in range(1, 40, 2))
    w("server-many", bytes([0, 0x80, 0x5a]) + many)
    w("server-many-max", bytes([MAXS, 0x80, 0x5a]) + many)
    w("server-many-fin", bytes([EOF, 7, 0x11]) + many
      + b"".join(frame(2, 1, i) for i in range(1, 40, 2)))
    big = frame(2, 0, 1) + b"".join(frame(2, 2, 1, b"z" * 65535)
                                    for _ in range(5))
    w("server-overrun", bytes([0, 0x80, 3 ^ 37]) + big)
    w("server-sink-big", bytes([SMALL, 0x80, 2 ^ 37]) + big[:2 * 65543 + 8])
    w("server-msg-free", bytes([0, 0x80, 1 ^ 37]) + frame(2, 0, 1)
      + frame(2, 2, 1, b"\xffbye") + frame(2, 2, 1, b"late"))
    w("server-bad-parity", bytes([0, 0x80, 3]) + frame(2, 0, 2))
    w("server-bad-version", bytes([0, 0x80, 3]) + frame(2, 0, 1)
      + frame(1, 0, 3))
    w("server-reuse-id", bytes([0, 0x80, 3]) + frame(2, 0, 1) + frame(2, 1, 1)
      + frame(2, 0, 1))
    w("server-old-id", bytes([0, 0x80, 3]) + frame(2, 0, 9001)
      + frame(2, 0, 1))
    w("server-bad-cmd", bytes([0, 0x80, 3]) + frame(2, 7, 1))
    w("server-upd-v1", bytes([0, 0x80, 3]) + frame(1, 0, 1)
      + upd(1, 1, 0, 0))
    w("server-open", bytes([OPEN, 0x80, 0x21]) + frame(2, 3, 0)
      + upd(2, 2, 0, 1 << 20) + frame(2, 2, 2, b"x") + frame(2, 1, 2))
    w("client-v2-open", bytes([CLIENT | OPEN, 0x80, 0x21]) + frame(2, 0, 2)
      + frame(2, 2, 2, b"hi") + upd(2, 3, 5, 1 << 20) + upd(2, 5, 0, 0)
      + frame(2, 2, 3, b"reply") + frame(2, 1, 3) + frame(2, 1, 5))
    w("client-v2-grow", bytes([CLIENT | OPEN | SMALL, 0x80, 0xc1])
      + upd(2, 3, 0, 16 << 20) + upd(2, 3, 1 << 20, 16 << 20)
      + upd(2, 5, 0, 0xffffffff))
    w("client-v1-open", bytes([CLIENT | V1 | OPEN, 0x80, 0x21])
      + frame(1, 0, 2) + frame(1, 2, 3, b"reply") + frame(1, 1, 3))
    w("client-bad-parity", bytes([CLIENT, 0x80, 3]) + frame(2, 0, 1))
    w("client-v2-produce", bytes([CLIENT | OPEN, 0x80, 0x11])
      + upd(2, 3, 0, 300000) + frame(2, 2, 3, b"go") + upd(2, 3, 65536, 300000)
      + upd(2, 3, 200000, 1 << 20) + frame(2, 1, 3))
    w("server-produce", bytes([0, 0x80, (3 | 0x10) ^ 37]) + frame(2, 0, 1)
      + frame(2, 2, 1, b"go") + upd(2, 1, 2, 4096) + upd(2, 1, 2, 1 << 20)
      + frame(2, 2, 1, b"more") + frame(2, 1, 1))
    w("client-pieces", bytes([CLIENT | OPEN | EOF, 0x13, 0x47])
      + frame(2, 0, 2) + frame(2, 2, 2, bytes(range(200)))
      + upd(2, 3, 5, 300000) + frame(2, 1, 2))


def httpfront():
    """fuzz_httpfront: piece seed, visitor length (u16 LE), flags, then the
    visitor's bytes and the local service's."""
    def w(name, req, resp, flags=0, seed=0x80):
        write("fuzz_httpfront", name, bytes([seed]) + struct.pack(
            "<H", len(req)) + bytes([flags]) + req + resp)
    get = b"GET /a?b=c HTTP/1.1\r\nHost: demo.example.com\r\n\r\n"
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"
    w("get", get, ok)
    w("get-pieces", get, ok, seed=0x11)
    w("get-port-upper", get.replace(b"demo.example.com",
                                    b"DEMO.Example.com:8080"), ok, seed=5)
    w("get-v6", get.replace(b"demo.example.com", b"[::1]:80"), ok)
    w("get-nohost", b"GET / HTTP/1.0\r\n\r\n", ok)
    w("get-unknown", get.replace(b"demo", b"other"), ok)
    w("pipelined", get + get + b"\r\n" + get, ok * 3, seed=0x23)
    w("post-chunked", b"POST /p HTTP/1.1\r\nHost: a-b.c\r\n"
      b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
      b"HTTP/1.1 100 Continue\r\n\r\n" + ok, seed=0x31)
    w("post-length", b"POST /p HTTP/1.1\r\nHost: a-b.c\r\n"
      b"Content-Length: 5\r\nExpect: 100-continue\r\n\r\nhello",
      b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n")
    w("head", b"HEAD / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
      b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
    w("connect", b"CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
      b"\r\nSSH-2.0-x", b"HTTP/1.1 200 OK\r\n\r\nSSH-2.0-y")
    w("upgrade", b"GET /ws HTTP/1.1\r\nHost: demo.example.com\r\n"
      b"Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n\x81\x00",
      b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
      b"Upgrade: websocket\r\n\r\n\x81\x00")
    w("upgrade-refused", b"GET /ws HTTP/1.1\r\nHost: demo.example.com\r\n"
      b"Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n" + get,
      b"HTTP/1.1 400 Bad\r\nContent-Length: 0\r\n\r\n" + ok)
    w("auth-ok", b"GET / HTTP/1.1\r\nHost: demo.example.com\r\n"
      b"Authorization: Basic dXNlcjpwYXNz\r\n\r\n", ok, flags=1)
    w("auth-bad", b"GET / HTTP/1.1\r\nHost: demo.example.com\r\n"
      b"Authorization: Basic dXNlcjpwYXNt\r\n\r\n", ok, flags=3)
    w("xff", b"GET / HTTP/1.1\r\nHost: demo.example.com\r\n"
      b"X-Forwarded-For: 10.0.0.1\r\nX-Forwarded-Proto: ftp\r\n"
      b"x-forwarded-host: evil\r\n\r\n", ok)
    w("two-hosts", b"GET / HTTP/1.1\r\nHost: a-b.c\r\nHost: b\r\n\r\n",
      ok)
    w("close-delimited", get, b"HTTP/1.0 200 OK\r\n\r\nbody until close")
    w("bad-response", get, b"HTTP/1.1 abc\r\n\r\n")
    w("long-head", b"GET / HTTP/1.1\r\nHost: a-b.c\r\nX: "
      + b"a" * 17000 + b"\r\n\r\n", ok)


def dgram():
    """fuzz_dgram: the bytes of a UDP flow stream (the piece sizes come
    from the bytes themselves)."""
    w = lambda n, d: write("fuzz_dgram", n, d)
    dg = lambda p: struct.pack(">H", len(p)) + p
    w("one", dg(b"hello"))
    w("three", dg(b"a") + dg(b"bb" * 50) + dg(b"ccc"))
    w("many-small", b"".join(dg(bytes([i]) * (i % 7 + 1)) for i in range(80)))
    w("big", dg(b"\xf0" * 3000) + dg(b"x"))
    w("zero-len", dg(b"ok") + b"\x00\x00" + dg(b"after"))
    w("too-long", dg(b"ok") + b"\xff\xff" + b"x" * 10)
    w("partial", dg(b"whole") + struct.pack(">H", 100) + b"short")
    w("odd-byte", dg(b"ab") + b"\x00")


def ext(etype, body):
    return struct.pack(">HH", etype, len(body)) + body


def client_hello(sni=None, exts=b"", sid=b"", version=0x0303, rec_ver=0x0301,
                 split=None):
    """A TLS ClientHello record (RFC 8446 4.1.2) with a fixed random."""
    e = b""
    if sni is not None:
        name = struct.pack(">BH", 0, len(sni)) + sni
        e += ext(0, struct.pack(">H", len(name)) + name)
    e += exts
    body = (struct.pack(">H", version) + bytes(range(32))
            + bytes([len(sid)]) + sid + struct.pack(">HH", 2, 0x1301)
            + b"\x01\x00" + struct.pack(">H", len(e)) + e)
    hs = b"\x01" + struct.pack(">I", len(body))[1:] + body
    if split is None:
        return b"\x16" + struct.pack(">HH", rec_ver, len(hs)) + hs
    return (b"\x16" + struct.pack(">HH", rec_ver, split) + hs[:split]
            + b"\x16" + struct.pack(">HH", rec_ver, len(hs) - split)
            + hs[split:])


def tlsrecord():
    """fuzz_tlsrecord: a ClientHello (first byte 0x16: the peek only), or
    a relay script: flags byte (bit 0 set), then ops (op | len << 8 high
    bits, len byte, bytes)."""
    w = lambda n, d: write("fuzz_tlsrecord", n, d)
    w("hello-sni", client_hello(b"Demo.Example.com"))
    w("hello-nosni", client_hello())
    w("hello-sid", client_hello(b"a.b", sid=bytes(32)))
    w("hello-pq", client_hello(b"big.example.com",
                               exts=ext(0x11ec, bytes(1216)) + ext(10, b"\x00\x02\x11\xec")))
    w("hello-split-records", client_hello(b"x.example.org", split=40))
    w("hello-two-names", client_hello(b"a.b", exts=ext(0, b"\x00\x08\x00\x00\x05b.c.d")))
    w("hello-long-name", client_hello(b"n" * 300))
    w("hello-bad-len", client_hello(b"a.b")[:5] + b"\x01\xff\xff\xff")
    w("not-tls", b"GET / HTTP/1.1\r\n\r\n")
    # the ALPN list (http_hello_peek, fed by fuzz_http)
    names = b"\x02h2\x08http/1.1"
    longer = b"".join(bytes([9]) + b"proto-%03d" % i for i in range(8))
    for n, e in (("hello-alpn", ext(16, struct.pack(">H", len(names)) + names)),
                 ("hello-alpn-long", ext(16, struct.pack(">H", len(longer)) + longer)),
                 ("hello-alpn-bad", ext(16, b"\x00\x05\x00abcd"))):
        w(n, client_hello(b"a.b", exts=e))
        write("fuzz_http", n, client_hello(b"a.b", exts=e))

    def op(o, data=b"", n=None):
        n = len(data) if n is None else n
        return bytes([o | (n >> 8) << 3, n & 0xff]) + data
    REC, PLAIN, RAW, CLOSE, CUT, PEOF, KEYUPD, WAIT = range(8)
    w("relay-both", b"\x01" + op(REC, b"hello") + op(PLAIN, b"world")
      + op(WAIT, n=3) + op(REC, b"again") + op(PEOF) + op(CLOSE))
    w("relay-small-big", b"\x03" + op(REC, b"r" * 2000) + op(PLAIN, b"p" * 2000)
      + op(REC, b"s" * 1000) + op(WAIT, n=7) + op(CLOSE) + op(PEOF))
    w("relay-keyupdate", b"\x01" + op(REC, b"a") + op(KEYUPD, n=1)
      + op(PLAIN, b"b") + op(KEYUPD, n=0) + op(REC, b"c"))
    w("relay-garbage", b"\x01" + op(REC, b"ok") + op(RAW, b"\x17\x03\x03\x00\x05abcde"))
    w("relay-cut", b"\x01" + op(REC, b"ok") + op(PLAIN, b"back") + op(CUT))
    w("relay-plain-first", b"\x01" + op(PEOF) + op(WAIT, n=2) + op(REC, b"late")
      + op(CLOSE))
    w("mux-tls", b"\x05" + op(REC, frame(2, 0, 1) + frame(2, 2, 1, b"hi"))
      + op(WAIT, n=2) + op(REC, frame(2, 2, 1, b"x" * 3000) + frame(2, 1, 1))
      + op(KEYUPD, n=1) + op(REC, frame(2, 3, 0)) + op(CLOSE))
    w("mux-tls-small", b"\x07" + op(REC, frame(1, 0, 1) + frame(1, 2, 1, b"y" * 1500))
      + op(REC, frame(1, 2, 1, b"z")) + op(RAW, b"\x17\x03\x03\x00\x01!"))
    w("mux-tls-cut", b"\x05" + op(REC, frame(2, 0, 1)) + op(CUT))


def conf():
    """fuzz_conf: part (0 server argv, 1 client argv, 2 token file, 3
    --stream-allow rules, 4 certificate by SNI, 5 local address / client
    id), variant byte, then '\\n'-separated strings."""
    def w(name, part, body, variant=0):
        write("fuzz_conf", name, bytes([part, variant]) + body)
    w("server-typical", 0, b"--addr\n:9000\n--token\ns3cret\n--start-port\n"
      b"20000\n--end-port\n20100\n--max-proxies\n2\n--domain\nexample.com\n"
      b"--http-addr\n127.0.0.1:8080\n--stream-window\n4194304")
    w("server-allow", 0, b"--token=t\n--tls\n--tls-cert\nc.pem\n--tls-key\n"
      b"k.pem\n--tls-client-ca\nca.pem\n--stream-allow\n10.0.0.0/8:*\n"
      b"--stream-allow=[::1/128]:22\n--stream-allow\ndb.internal:5432")
    w("server-bad-port", 0, b"--token\nt\n--start-port\n0")
    w("server-bad-addr", 0, b"--token\nt\n--addr\n[::1:9000")
    w("server-short-opts", 0, b"-xyz\n--token\nt")
    w("server-help", 0, b"--help")
    w("server-loglevel", 0, b"--token\nt\n--log-level\ndebug\n--busy-poll\n50")
    w("client-tcp", 1, b"22\n--server\n127.0.0.1:9000\n--token\nt\n"
      b"--remote-port\n20022", 0)
    w("client-http", 1, b"3000\n--server\nexample.com:9000\n--subdomain\n"
      b"demo\n--basic-auth\nuser:pass\n--host-header\nrewrite\n--token\nt", 2)
    w("client-udp", 1, b"127.0.0.1:53\n--server\n[::1]:9000\n--token\nt", 1)
    w("client-tls", 1, b"localhost:443\n--server\nh:9000\n--hostname\n"
      b"app.example.com\n--tls\n--tls-pin\nsha256:" + b"AB" * 32
      + b"\n--token\nt", 3)
    w("client-client", 1, b"--server\nh:9000\n--local\ntcp:127.0.0.1:22\n"
      b"--local\nudp:53\n--client-id\n" + b"0f" * 16 + b"\n--token\nt", 4)
    w("tokens", 2, b"# comment\nalpha\r\n\nbeta\n  spaced  \n")
    w("tokens-long", 2, b"x" * 1019 + b"\n" + b"y" * 1020 + b"\n")
    w("tokens-many", 2, b"".join(b"t%d\n" % i for i in range(20)))
    w("tokens-empty", 2, b"")
    w("tokens-nul", 2, b"a\x00b\nc\n")
    w("acl", 3, b"10.0.0.0/8:*\n192.168.1.7:443\n[::1/128]:22\n[2001:db8::/32]:*\n"
      b"db.Internal:5432\nhost_name:*\n10.0.0.1\ndb.internal\n::1", 7)
    w("acl-bad", 3, b"10.0.0.0/33:*\n[::1:22\nhost:0\nhost:70000\n:80\n"
      b"a b:1\n10.0.0.0/:*\n1.2.3:*\n[10.0.0.1]:1", 1)
    for n, h in [("exact", b"demo.example.com"), ("upper", b"DEMO.Example.COM"),
                 ("wild", b"a.wild.example.com"), ("wild-two", b"a.b.wild.example.com"),
                 ("wild-bare", b"wild.example.com"), ("wild-empty", b".wild.example.com"),
                 ("mixed", b"mixed.case.org"), ("none", b"nothing.example"),
                 ("empty", b""), ("star", b"*.wild.example.com")]:
        w("certdir-" + n, 4, h)
    w("local-port", 5, b"3000")
    w("local-host", 5, b"tcp:localhost:8080")
    w("local-v6", 5, b"udp:[::1]:53")
    w("local-bad", 5, b"http://localhost:3000")
    w("client-id", 5, b"0123456789abcdefABCDEF0123456789")
    w("client-id-short", 5, b"0123456789abcdef")


def crc32c(b):
    c = 0xFFFFFFFF
    for x in b:
        c ^= x
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
    return c ^ 0xFFFFFFFF


def pp2(vc, fam, body, crc=False, badcrc=False):
    sig = b"\r\n\r\n\0\r\nQUIT\n"
    if crc:
        body += b"\x03\x00\x04" + bytes(4)
    h = sig + bytes([vc, fam]) + struct.pack(">H", len(body)) + body
    if crc:
        c = crc32c(h) ^ (1 if badcrc else 0)
        h = h[:-4] + struct.pack(">I", c)
    return h


def tlv(t, v):
    return bytes([t]) + struct.pack(">H", len(v)) + v


def proxyproto():
    w = lambda n, d: write("fuzz_proxyproto", n, d)
    a4 = bytes([192, 0, 2, 1, 198, 51, 100, 1]) + struct.pack(">HH", 40000, 443)
    a6 = bytes(15) + b"\x01" + bytes(15) + b"\x02" + struct.pack(">HH", 1, 2)
    ssl = tlv(0x20, b"\x03" + bytes(4) + tlv(0x21, b"TLSv1.3") + tlv(0x22, b"edge-1"))
    w("v1-tcp4", b"PROXY TCP4 192.0.2.1 198.51.100.1 40000 443\r\n")
    w("v1-tcp6-data", b"PROXY TCP6 2001:db8::1 ::ffff:10.0.0.1 1 65535\r\nGET / HTTP/1.1\r\n")
    w("v1-unknown", b"PROXY UNKNOWN\r\n")
    w("v1-unknown-max", b"PROXY UNKNOWN " + b"f" * 90 + b"\r\n")
    w("v1-mapped", b"PROXY TCP6 ::ffff:1.2.3.4 ::ffff:5.6.7.8 80 81\r\n")
    w("v1-bad-port", b"PROXY TCP4 1.2.3.4 5.6.7.8 080 1\r\n")
    w("v1-prefix", b"PROXY TCP4 1.2.3.4 5.6")
    w("v2-tcp4", pp2(0x21, 0x11, a4))
    w("v2-tcp4-crc-uid", pp2(0x21, 0x11, a4 + tlv(0x05, b"mgrok-127.0.0.6-32975"), crc=True))
    w("v2-udp6-tlvs", pp2(0x21, 0x22, a6 + tlv(0x01, b"h2") + tlv(0x02, b"demo.example.org")
                           + tlv(0xE0, b"alice") + tlv(0xE1, b"CN=edge-1") + tlv(0x04, bytes(3)), crc=True)
      + b"datagram")
    w("v2-ssl", pp2(0x21, 0x11, a4 + ssl))
    w("v2-local", pp2(0x20, 0x00, b""))
    w("v2-local-fam", pp2(0x20, 0x11, a4 + tlv(0x02, b"x")))
    w("v2-unix", pp2(0x21, 0x31, b"/run/a.sock".ljust(108, b"\0") + b"/run/b.sock".ljust(108, b"\0")))
    w("v2-unspec", pp2(0x21, 0x00, tlv(0xE0, b"bob")))
    w("v2-bad-crc", pp2(0x21, 0x11, a4, crc=True, badcrc=True))
    w("v2-bad-tlv", pp2(0x21, 0x11, a4 + b"\x02\x00\x09abc"))
    w("v2-bad-fam", pp2(0x21, 0x41, a4))
    w("v2-short6", pp2(0x21, 0x21, a4))
    w("v2-over-cap", pp2(0x21, 0x11, a4)[:14] + b"\x10\x01")
    w("v2-prefix", pp2(0x21, 0x11, a4)[:20])


def urls():
    w = lambda n, d: write("fuzz_urls", n, d)
    w("http-cred", b"http://alice:s%3Acr%40t@proxy.corp:3128/")
    w("socks5h-v6", b"socks5h://[::1]:9050")
    w("bad-scheme", b"ftp://x")
    w("no-proxy", b"localhost, .example.com, 10.0.0.0/8, fd00::/8\0a.example.com")
    w("redis", b"redis://:pw@127.0.0.1:6379/3")
    w("redis-bad", b"redis://[::1]:70000/x")
    w("lb-header", b"hash:header:X-User")
    w("lb", b"least_conn")


def nodelink():
    """fuzz_nodelink_hello: flags (0x01 a correct handshake first, 0x02
    smux v1, 0x04 the dialler closes at the end, 0x08 a Hello for another
    node), then ops "op u8, len u8, bytes" (see fuzz_nodelink_hello.c)."""
    w = lambda n, d: write("fuzz_nodelink_hello", n, d)

    def op(code, body=b""):
        return bytes([code, len(body)]) + body

    def hello(ver=1, me=b"fz-dialer", want=b"fz-listener"):
        return (b"H" + bytes([ver]) + bytes(range(16)) + bytes([len(me)]) +
                me + bytes([len(want)]) + want)

    def stream(hdr, payload=b""):
        return op(1, struct.pack(">H", len(hdr)) + hdr + payload)

    up = b"\x01"
    w("up-streams", up + stream(b"\x00free", b"data") +
      stream(b"\x01abort") + stream(b"\x02kept", b"more") +
      stream(b"\x03echo") + op(2, b"\x02tail") + op(3, b"\x02") +
      op(5, b"\x07"))
    w("up-partial-header", up + op(1, b"\x00\x10abc"))
    w("up-header-zero", up + op(1, b"\x00\x00xx") + op(3, b"\x00"))
    w("up-header-too-long", up + op(1, b"\x04\x01" + b"h" * 200) +
      op(2, b"\x00" + b"h" * 200) + op(3, b"\x00"))
    w("up-header-fin-early", up + op(1, b"\x00") + op(3, b"\x00"))
    w("up-header-abort", up + op(1, b"\x00\x08ab") + op(4, b"\x00"))
    w("up-status", up + op(0, b"S\x01") + op(0, b"S\x00") +
      stream(b"\x02kept"))
    w("up-status-long", up + stream(b"\x02kept") + op(0, b"S\x01\x00"))
    w("up-hello-again", up + stream(b"\x02kept") + op(0, hello()))
    w("up-error", up + stream(b"\x02kept") + op(0, b"Ebye now"))
    w("up-eof", b"\x05" + stream(b"\x02kept", b"x" * 100))
    w("up-v1", b"\x03" + stream(b"\x02kept", b"v1") + op(3, b"\x00"))
    w("wrong-node", b"\x09" + op(0, hello()))
    w("hello-valid-bad-auth", b"\x00" + op(0, hello()) +
      op(0, b"A" + b"\x00" * 32))
    w("hello-short-auth", b"\x00" + op(0, hello()) + op(0, b"A\x01"))
    w("hello-bad-version", b"\x00" + op(0, hello(ver=2)))
    w("hello-short", b"\x00" + op(0, b"H\x01" + b"n" * 10))
    w("hello-no-want", b"\x00" + op(0, b"H\x01" + bytes(16) + b"\x02ab"))
    w("hello-id-ctl", b"\x00" + op(0, b"H\x01" + bytes(16) +
                                    b"\x02a\x01\x0bfz-listener"))
    w("hello-id-long", b"\x00" + op(0, b"H\x01" + bytes(16) + b"\xff" +
                                     b"a" * 100))
    w("auth-first", b"\x00" + op(0, b"A" + b"\x00" * 32))
    w("status-first", b"\x00" + op(0, b"S\x01"))
    w("error-first", b"\x00" + op(0, b"E\xffbinary\x00"))
    w("chal-to-listener", b"\x00" + op(0, b"C" + bytes(60)))
    w("stream-before-auth", b"\x00" + op(0, hello()) +
      stream(b"\x00early", b"data"))
    w("empty-ops", b"\x00" + op(5, b"\x03") + op(0))


if __name__ == "__main__":
    frames()
    ctrl()
    sthdr()
    sproxy()
    mux()
    httpfront()
    dgram()
    tlsrecord()
    conf()
    proxyproto()
    urls()
    nodelink()
