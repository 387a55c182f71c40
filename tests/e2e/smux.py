"""smux framing (xtaci/smux v1 and v2) and a minimal mgrok client in Python.

docs/protocol.md sections 3-5.  Frame header: ver u8 | cmd u8 | len u16 LE | sid u32 LE.
Control messages and the data-stream headers are big-endian.
"""

import hashlib
import hmac
import socket
import struct
import threading
import time

SYN, FIN, PSH, NOP, UPD = 0, 1, 2, 3, 4
CMD_NAMES = {SYN: "SYN", FIN: "FIN", PSH: "PSH", NOP: "NOP", UPD: "UPD"}
INITIAL_WINDOW = 262144
MY_WINDOW = 262144
MAX_FRAME = 32768

# control message types
T_REGISTER = 0x01
T_NEWSTREAM = 0x02
T_HEARTBEAT = 0x05
T_NEWSTREAM_EX = 0x06
T_STREAM_REJECT = 0x07
T_GOODBYE = 0x0A
T_CHALLENGE = 0x10
T_AUTHPROOF = 0x11
T_AUTHOK = 0x12
T_AUTHERR = 0x13
T_REGISTER_OK = 0x14
T_REGISTER_ERR = 0x15
T_ERROR = 0x16

M_TOKEN, M_MTLS, M_HMAC = 0x01, 0x02, 0x03


def frame(ver, cmd, sid, payload=b""):
    assert len(payload) <= 65535
    return struct.pack("<BBHI", ver, cmd, len(payload), sid) + payload


def handshake_token(token):
    return b"GRT1" + bytes([M_TOKEN]) + token


def handshake_hmac(client_nonce, client_id, caps=0, agent=b"pytest/1", ver=1):
    return (b"GRT1" + bytes([M_HMAC, ver]) + client_nonce + client_id
            + struct.pack(">I", caps) + bytes([len(agent)]) + agent)


def auth_mac(token, client_nonce, server_nonce, client_id):
    return hmac.new(token, b"mgrok-auth-v1" + client_nonce + server_nonce + client_id,
                    hashlib.sha256).digest()


def register(proxy_type, remote_port, local_port, name):
    return struct.pack(">BBHH", T_REGISTER, proxy_type, remote_port, local_port) + name


def parse_newstream(buf):
    """Returns (header_len, fields) or None if buf does not hold the whole header."""
    if not buf:
        return None
    t = buf[0]
    if t == T_NEWSTREAM:
        if len(buf) < 8:
            return None
        sid, rport, nlen = struct.unpack(">IHB", buf[1:8])
        if len(buf) < 8 + nlen:
            return None
        return 8 + nlen, {"type": t, "stream_id": sid, "remote_port": rport,
                          "name": bytes(buf[8:8 + nlen])}
    if t == T_NEWSTREAM_EX:
        if len(buf) < 8:
            return None
        sid, rport, nlen = struct.unpack(">IHB", buf[1:8])
        off = 8 + nlen
        if len(buf) < off + 1:
            return None
        af = buf[off]
        alen = 4 if af == 4 else 16
        if len(buf) < off + 1 + alen + 2:
            return None
        port = struct.unpack(">H", buf[off + 1 + alen:off + 3 + alen])[0]
        return off + 3 + alen, {"type": t, "stream_id": sid, "remote_port": rport,
                                "name": bytes(buf[8:off]), "af": af,
                                "addr": bytes(buf[off + 1:off + 1 + alen]), "port": port}
    raise ValueError("unknown data stream header type 0x%02x" % t)


class FrameReader:
    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()

    def _fill(self, n, deadline):
        while len(self.buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("frame read timeout")
            self.sock.settimeout(min(left, 1.0))
            try:
                d = self.sock.recv(1 << 18)
            except socket.timeout:
                continue
            if not d:
                raise EOFError("connection closed")
            self.buf += d

    def read(self, timeout):
        """One frame (ver, cmd, sid, payload); EOFError / ConnectionResetError /
        socket.timeout otherwise."""
        deadline = time.monotonic() + timeout
        self._fill(8, deadline)
        ver, cmd, ln, sid = struct.unpack("<BBHI", self.buf[:8])
        self._fill(8 + ln, deadline)
        payload = bytes(self.buf[8:8 + ln])
        del self.buf[:8 + ln]
        return ver, cmd, sid, payload


class PyClient:
    """A minimal mgrok client: the legacy TOKEN flow (which never needs to read
    control replies) or the HMAC flow, plus echo of every data stream the server
    opens.  A reader thread handles every inbound frame; control-stream
    messages are recorded in self.ctrl for the test to inspect."""

    def __init__(self, port, version=2, host="127.0.0.1"):
        self.version = version
        self.sock = socket.create_connection((host, port), timeout=5)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = FrameReader(self.sock)
        self.wlock = threading.Lock()
        self.ctrl = []              # control messages received on sid 3
        self.ctrl_cv = threading.Condition()
        self.streams = {}           # sid -> dict
        self.headers = []           # parsed NewStream headers
        self.errors = []
        self.closed = None          # reason once the connection ended
        self.frames_seen = []
        self._thread = None
        self._stop = False

    # -- writing
    def send_raw(self, data):
        with self.wlock:
            self.sock.sendall(data)

    def send_frame(self, cmd, sid, payload=b""):
        self.send_raw(frame(self.version, cmd, sid, payload))

    def open_control(self):
        self.send_frame(SYN, 3)

    def send_ctrl(self, msg):
        self.send_frame(PSH, 3, msg)

    # -- the reader thread
    def start(self):
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self):
        try:
            while not self._stop:
                try:
                    ver, cmd, sid, payload = self.reader.read(timeout=1.0)
                except socket.timeout:
                    continue
                self.frames_seen.append((ver, cmd, sid, len(payload)))
                if ver != self.version:
                    self.errors.append("frame version %d in a v%d session" % (ver, self.version))
                self._on_frame(cmd, sid, payload)
        except (EOFError, ConnectionResetError, OSError) as e:
            self.closed = repr(e)
        except Exception as e:
            self.errors.append("reader: %r" % e)
            self.closed = repr(e)
        finally:
            with self.ctrl_cv:
                if self.closed is None:
                    self.closed = "stopped"
                self.ctrl_cv.notify_all()

    def _on_frame(self, cmd, sid, payload):
        if sid == 3:
            if cmd == PSH:
                with self.ctrl_cv:
                    self.ctrl.append(payload)
                    self.ctrl_cv.notify_all()
                self._consumed(3, len(payload))
            return
        if cmd == SYN:
            if sid % 2 != 0:
                self.errors.append("server opened odd stream id %d" % sid)
            self.streams[sid] = {"buf": bytearray(), "hdr": None, "consumed": 0,
                                 "last_upd": 0, "sent": 0, "peer_consumed": 0,
                                 "peer_window": INITIAL_WINDOW, "pending": bytearray(),
                                 "fin_in": False, "fin_out": False, "echoed": 0}
        elif cmd == PSH:
            st = self.streams.get(sid)
            if st is None:
                return
            self._consumed(sid, len(payload))
            if st["hdr"] is None:
                st["buf"] += payload
                r = parse_newstream(st["buf"])
                if r is None:
                    return
                n, fields = r
                st["hdr"] = fields
                self.headers.append(dict(fields, sid=sid))
                data = bytes(st["buf"][n:])
                st["buf"] = bytearray()
            else:
                data = payload
            if data:
                st["pending"] += data
                self._flush(sid)
        elif cmd == FIN:
            st = self.streams.get(sid)
            if st is None:
                return
            st["fin_in"] = True
            self._flush(sid)
        elif cmd == UPD:
            st = self.streams.get(sid)
            if st is None or len(payload) != 8:
                return
            st["peer_consumed"], st["peer_window"] = struct.unpack("<II", payload)
            self._flush(sid)

    def _consumed(self, sid, n):
        if self.version != 2 or n == 0:
            return
        st = self.streams.get(sid)
        if st is None:
            if sid != 3:
                return
            st = self.streams.setdefault(3, {"consumed": 0, "last_upd": 0})
        first = st["consumed"] == 0
        st["consumed"] = (st["consumed"] + n) & 0xFFFFFFFF
        if first or (st["consumed"] - st["last_upd"]) & 0xFFFFFFFF >= MY_WINDOW // 2:
            st["last_upd"] = st["consumed"]
            self.send_frame(UPD, sid, struct.pack("<II", st["consumed"], MY_WINDOW))

    def _flush(self, sid):
        st = self.streams[sid]
        while st["pending"]:
            if self.version == 2:
                inflight = (st["sent"] - st["peer_consumed"]) & 0xFFFFFFFF
                room = st["peer_window"] - inflight
                if room <= 0:
                    return
            else:
                room = MAX_FRAME
            n = min(len(st["pending"]), MAX_FRAME, room)
            self.send_frame(PSH, sid, bytes(st["pending"][:n]))
            del st["pending"][:n]
            st["sent"] = (st["sent"] + n) & 0xFFFFFFFF
            st["echoed"] += n
        if st["fin_in"] and not st["fin_out"]:
            st["fin_out"] = True
            self.send_frame(FIN, sid)

    # -- waiting for control messages
    def wait_ctrl(self, pred, timeout):
        """Wait for a control message m with pred(m); returns it or None."""
        deadline = time.monotonic() + timeout
        with self.ctrl_cv:
            seen = 0
            while True:
                for m in self.ctrl[seen:]:
                    if pred(m):
                        return m
                seen = len(self.ctrl)
                left = deadline - time.monotonic()
                if left <= 0 or self.closed is not None:
                    for m in self.ctrl[seen:]:
                        if pred(m):
                            return m
                    return None
                self.ctrl_cv.wait(min(left, 0.5))

    def wait_closed(self, timeout):
        deadline = time.monotonic() + timeout
        with self.ctrl_cv:
            while self.closed is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.ctrl_cv.wait(min(left, 0.5))
        return True

    # -- flows
    def login_token(self, token):
        self.open_control()
        self.send_ctrl(handshake_token(token))

    def login_hmac(self, token, client_id, client_nonce, caps=0, mac=None, timeout=5):
        """HMAC handshake; returns (server_nonce, reply message) after AuthProof."""
        self.open_control()
        self.send_ctrl(handshake_hmac(client_nonce, client_id, caps))
        ch = self.wait_ctrl(lambda m: True, timeout)
        if ch is None or ch[0] != T_CHALLENGE or len(ch) != 17:
            raise AssertionError("expected Challenge (0x10 + 16 bytes), got %r (closed: %s)"
                                 % (ch, self.closed))
        sn = ch[1:17]
        if mac is None:
            mac = auth_mac(token, client_nonce, sn, client_id)
        self.send_ctrl(bytes([T_AUTHPROOF]) + mac)
        reply = self.wait_ctrl(lambda m: m[0] in (T_AUTHOK, T_AUTHERR), timeout)
        return sn, reply

    def close(self):
        self._stop = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        if self._thread:
            self._thread.join(timeout=3)
