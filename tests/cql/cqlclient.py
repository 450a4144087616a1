"""cqlclient - a tiny raw CQL v4 client (blocking socket) for tests and the benchmark.

It speaks just enough of the protocol to send well-formed and deliberately
malformed frames: it is not a driver (no type decoding beyond what tests need).
"""
import socket
import struct

HDR = struct.Struct(">BBhBi")
ERROR, STARTUP, READY, AUTHENTICATE, OPTIONS, SUPPORTED, QUERY, RESULT, PREPARE, EXECUTE, REGISTER, \
    EVENT, BATCH, AUTH_CHALLENGE, AUTH_RESPONSE, AUTH_SUCCESS = \
    0x00, 0x01, 0x02, 0x03, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x0E, 0x0F, 0x10
ONE = 1


def string(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack(">H", len(b)) + b


def long_string(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack(">i", len(b)) + b


def value(v):
    """[value]: bytes, None (null) or 'unset'."""
    if v is None:
        return struct.pack(">i", -1)
    if v == "unset":
        return struct.pack(">i", -2)
    return struct.pack(">i", len(v)) + v


def string_map(d):
    out = struct.pack(">H", len(d))
    for k, v in d.items():
        out += string(k) + string(v)
    return out


def params(values=None, consistency=ONE, page_size=None, paging_state=None, ts=None):
    flags = 0
    tail = b""
    if values is not None:
        flags |= 0x01
        tail += struct.pack(">H", len(values)) + b"".join(value(v) for v in values)
    if page_size is not None:
        flags |= 0x04
        tail += struct.pack(">i", page_size)
    if paging_state is not None:
        flags |= 0x08
        tail += value(paging_state)
    if ts is not None:
        flags |= 0x20
        tail += struct.pack(">q", ts)
    return struct.pack(">HB", consistency, flags) + tail


def query_body(q, values=None, **kw):
    return long_string(q) + params(values, **kw)


def execute_body(pid, values, **kw):
    return string(pid) + params(values, **kw)


def batch_body(items, btype=1, consistency=ONE):
    """items: [(prepared id bytes or query str, [raw values])]."""
    out = [struct.pack(">BH", btype, len(items))]
    for q, vals in items:
        if isinstance(q, str):
            out.append(b"\x00" + long_string(q))
        else:
            out.append(b"\x01" + string(q))
        out.append(struct.pack(">H", len(vals)))
        out.extend(value(v) for v in vals)
    out.append(struct.pack(">HB", consistency, 0))
    return b"".join(out)


def frame(op, body, stream=0, flags=0, version=4):
    return HDR.pack(version, flags, stream, op, len(body)) + body


class CqlServerError(Exception):
    def __init__(self, code, message, extra):
        Exception.__init__(self, "0x%04X %s" % (code, message))
        self.code = code
        self.message = message
        self.extra = extra


def parse_error(body):
    code = struct.unpack_from(">i", body)[0]
    n = struct.unpack_from(">H", body, 4)[0]
    return code, body[6:6 + n].decode("utf-8", "replace"), body[6 + n:]


class RawClient:
    def __init__(self, host, port, timeout=10.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.next_stream = 1

    def close(self):
        self.sock.close()

    def send_raw(self, data):
        self.sock.sendall(data)

    def send(self, op, body, stream=None, flags=0, version=4):
        if stream is None:
            stream = self.next_stream
            self.next_stream = (self.next_stream % 32000) + 1
        self.sock.sendall(frame(op, body, stream, flags, version))
        return stream

    def _fill(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("connection closed by server")
            self.buf += chunk

    def recv(self):
        """(version, flags, stream, opcode, body) of the next response frame."""
        self._fill(9)
        version, flags, stream, op, length = HDR.unpack_from(self.buf)
        self._fill(9 + length)
        body = self.buf[9:9 + length]
        self.buf = self.buf[9 + length:]
        return version, flags, stream, op, body

    def closed_by_server(self):
        """True once the server has closed the connection (reads EOF)."""
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False

    def request(self, op, body, **kw):
        stream = self.send(op, body, **kw)
        while True:
            f = self.recv()
            if f[2] == stream:
                return f

    def call(self, op, body):
        """Request; returns the body, raises CqlServerError on ERROR."""
        _, _, _, rop, rbody = self.request(op, body)
        if rop == ERROR:
            raise CqlServerError(*parse_error(rbody))
        return rop, rbody

    def startup(self, user=None, password=None):
        op, body = self.call(STARTUP, string_map({"CQL_VERSION": "3.0.0"}))
        if op == AUTHENTICATE:
            op, body = self.call(AUTH_RESPONSE, value(b"\x00" + user.encode() + b"\x00" + password.encode()))
        return op

    def query(self, q, values=None, **kw):
        return self.call(QUERY, query_body(q, values, **kw))[1]

    def prepare(self, q):
        body = self.call(PREPARE, long_string(q))[1]
        n = struct.unpack_from(">H", body, 4)[0]
        return body[6:6 + n]

    def execute(self, pid, values, **kw):
        return self.call(EXECUTE, execute_body(pid, values, **kw))[1]

    def batch(self, items, btype=1):
        return self.call(BATCH, batch_body(items, btype))[1]


def rows_count(result_body):
    """Number of rows of a RESULT Rows body (kind 2) with metadata."""
    kind, flags, ncols = struct.unpack_from(">iii", result_body)
    assert kind == 2, kind
    p = 12
    if flags & 2:
        n = struct.unpack_from(">i", result_body, p)[0]
        p += 4 + max(n, 0)
    if not flags & 4:
        if flags & 1:
            for _ in range(2):
                p += 2 + struct.unpack_from(">H", result_body, p)[0]
        for _ in range(ncols):
            if not flags & 1:
                for _ in range(2):
                    p += 2 + struct.unpack_from(">H", result_body, p)[0]
            p += 2 + struct.unpack_from(">H", result_body, p)[0]
            p = _skip_option(result_body, p)
    return struct.unpack_from(">i", result_body, p)[0]


def _skip_option(b, p):
    opt = struct.unpack_from(">H", b, p)[0]
    p += 2
    if opt == 0:
        p += 2 + struct.unpack_from(">H", b, p)[0]
    elif opt in (0x20, 0x22):
        p = _skip_option(b, p)
    elif opt == 0x21:
        p = _skip_option(b, _skip_option(b, p))
    return p
