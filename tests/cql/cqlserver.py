#!/usr/bin/python3
"""cqlserver - an in-memory Cassandra CQL native protocol v4 test server.

    /usr/bin/python3 tests/cql/cqlserver.py [--host 127.0.0.1] [--port 0]
        [--control-port 0] [--auth USER:PASSWORD] [--blackhole] [--verbose]
        [--compression lz4|none]

Prints `CQLSERVER port=<port> control=<control_port>` once listening, runs
until SIGTERM/SIGINT and exits 0. See tests/cql/README.md for what it speaks,
what it refuses and the line-based control protocol. Standard library only,
and python3-lz4 for the lz4 compression it offers (none without it).
"""
import argparse
import asyncio
import gc
import json
import os
import signal
import socket
import ssl
import struct
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cqltypes as T  # noqa: E402
from cqltypes import CqlError, Invalid, ProtocolErr, S_INT, S_SHORT, S_LONG, enc_string  # noqa: E402
import cqlengine as E  # noqa: E402
try:
    import lz4.block as LZ4  # python3-lz4
except ImportError:  # offered only when it is installed
    LZ4 = None
from cqlengine import Engine, QueryParams, read_values, read_named_values, apply_mutation  # noqa: E402

HDR = struct.Struct(">BBhBi")
MAX_FRAME = 256 * 1024 * 1024

ERROR, STARTUP, READY, AUTHENTICATE, OPTIONS, SUPPORTED, QUERY, RESULT, PREPARE, EXECUTE, REGISTER, \
    EVENT, BATCH, AUTH_CHALLENGE, AUTH_RESPONSE, AUTH_SUCCESS = \
    0x00, 0x01, 0x02, 0x03, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x0E, 0x0F, 0x10
OPNAMES = {STARTUP: "STARTUP", OPTIONS: "OPTIONS", QUERY: "QUERY", PREPARE: "PREPARE", EXECUTE: "EXECUTE",
           REGISTER: "REGISTER", BATCH: "BATCH", AUTH_RESPONSE: "AUTH_RESPONSE"}
RESPONSE_OPS = (ERROR, READY, AUTHENTICATE, SUPPORTED, RESULT, EVENT, AUTH_CHALLENGE, AUTH_SUCCESS)
AUTHENTICATOR = "org.apache.cassandra.auth.PasswordAuthenticator"

_unpack_short = S_SHORT.unpack_from
_unpack_int = S_INT.unpack_from
RESULT_VOID = E.RESULT_VOID

VERBOSE = False


def log(msg):
    sys.stderr.write("cqlserver: %s\n" % msg)
    sys.stderr.flush()


# ---- body readers (bounds-checked: a short body is a Protocol error) ----------

def _short(b, p):
    if p + 2 > len(b):
        raise ProtocolErr("Not enough bytes to read a [short]")
    return _unpack_short(b, p)[0], p + 2


def _int(b, p):
    if p + 4 > len(b):
        raise ProtocolErr("Not enough bytes to read an [int]")
    return _unpack_int(b, p)[0], p + 4


def _byte(b, p):
    if p + 1 > len(b):
        raise ProtocolErr("Not enough bytes to read a [byte]")
    return b[p], p + 1


def _raw(b, p, n, what):
    if n < 0 or p + n > len(b):
        raise ProtocolErr("Not enough bytes to read %s" % what)
    return b[p:p + n], p + n


def _string(b, p):
    n, p = _short(b, p)
    s, p = _raw(b, p, n, "a [string]")
    try:
        return s.decode("utf-8"), p
    except UnicodeDecodeError:
        raise ProtocolErr("Invalid UTF-8 in a [string]") from None


def _long_string(b, p):
    n, p = _int(b, p)
    s, p = _raw(b, p, n, "a [long string]")
    try:
        return s.decode("utf-8"), p
    except UnicodeDecodeError:
        raise ProtocolErr("Invalid UTF-8 in a [long string]") from None


def _short_bytes(b, p):
    n, p = _short(b, p)
    return _raw(b, p, n, "a [short bytes]")


def _bytes(b, p):
    n, p = _int(b, p)
    if n < 0:
        return None, p
    return _raw(b, p, n, "a [bytes]")


def _string_map(b, p):
    n, p = _short(b, p)
    out = {}
    for _ in range(n):
        k, p = _string(b, p)
        v, p = _string(b, p)
        out[k] = v
    return out, p


def _bytes_map(b, p):
    n, p = _short(b, p)
    for _ in range(n):
        _, p = _string(b, p)
        _, p = _bytes(b, p)
    return None, p


def _string_list(b, p):
    n, p = _short(b, p)
    out = []
    for _ in range(n):
        s, p = _string(b, p)
        out.append(s)
    return out, p


def frame(stream, opcode, body, version=0x84):
    return HDR.pack(version, 0, stream, opcode, len(body)) + body


def error_body(e):
    return S_INT.pack(e.code) + enc_string(e.message) + e.extra


# ---- one CQL connection --------------------------------------------------------

class CqlConnection(asyncio.Protocol):
    def __init__(self, server):
        self.srv = server
        self.engine = server.engine
        self.buf = bytearray()
        self.started = False
        self.lz4 = False             # COMPRESSION lz4 agreed in STARTUP
        self.authed = False          # STARTUP done and, with --auth, AUTH_RESPONSE accepted
        self.keyspace = None
        self.closing = False
        self.transport = None
        self.local_ip = "127.0.0.1"
        self.peer = None
        self._last_pid = None
        self._last_entry = None

    # -- asyncio
    def connection_made(self, transport):
        self.transport = transport
        sock = transport.get_extra_info("sockname")
        if sock:
            self.local_ip = sock[0]
        self.peer = transport.get_extra_info("peername")
        self.srv.conns.add(self)
        self.engine.stats["connections_total"] += 1
        tls = transport.get_extra_info("ssl_object")
        if tls is not None:
            # What the client proved: the TLS version, and its certificate's
            # subject when the server asked for one.
            cert = tls.getpeercert()
            subject = dict(x[0] for x in cert.get("subject", ())) if cert else {}
            self.srv.tls_seen.append({"version": tls.version(),
                                      "client": subject.get("commonName")})
        if VERBOSE:
            log("connection from %s" % (self.peer,))

    def connection_lost(self, exc):
        self.srv.conns.discard(self)
        if VERBOSE:
            log("connection from %s closed (%s)" % (self.peer, exc))

    def pause_writing(self):
        self.transport.pause_reading()

    def resume_writing(self):
        self.transport.resume_reading()

    def data_received(self, data):
        if self.closing:
            return
        buf = self.buf
        buf += data
        blen = len(buf)
        pos = 0
        out = []
        nframes = 0
        while blen - pos >= 9:
            version, flags, stream, op, length = HDR.unpack_from(buf, pos)
            if version != 4:
                out.append(self._bad_version(buf, pos, version))
                self.engine.stats["frames"] += 1
                self._close_after(out)
                return
            if length < 0 or length > MAX_FRAME:
                self.engine.stats["frames"] += 1
                self.engine.stats["errors"] += 1
                out.append(frame(stream, ERROR, error_body(ProtocolErr(
                    "Request is too big: length %d exceeds maximum allowed length %d." % (length, MAX_FRAME)
                    if length > 0 else "Invalid frame body length %d" % length))))
                self._close_after(out)
                return
            end = pos + 9 + length
            if end > blen:
                break
            body = bytes(buf[pos + 9:end])
            pos = end
            nframes += 1
            out.append(self.compress(self.handle(flags, stream, op, body)))
        if pos:
            del buf[:pos]
        if nframes > self.engine.stats["max_inflight"]:
            self.engine.stats["max_inflight"] = nframes
        if out:
            self.transport.write(b"".join(out))

    def _close_after(self, out):
        self.closing = True
        self.buf = bytearray()
        self.transport.write(b"".join(out))
        self.transport.close()

    def _bad_version(self, buf, pos, version):
        """Invalid/unsupported version: answer in a header the client can read, then close."""
        self.engine.stats["errors"] += 1
        v = version & 0x7F
        if version & 0x80 and v == 4:
            e = ProtocolErr("Wrong protocol direction (expected REQUEST, got RESPONSE)")
        else:
            e = ProtocolErr("Invalid or unsupported protocol version (%d)" % v)
        body = error_body(e)
        if 1 <= v <= 2:     # v1/v2 header: 8 bytes, 1-byte stream
            stream = struct.unpack_from(">b", buf, pos + 2)[0]
            return struct.pack(">BBbBi", 0x80 | v, 0, stream, ERROR, len(body)) + body
        stream = struct.unpack_from(">h", buf, pos + 2)[0]
        return frame(stream, ERROR, body, 0x80 | v if v == 3 else 0x84)

    def compress(self, f):
        """A response frame with its body lz4-compressed once agreed (the
        answer to STARTUP too, as the protocol allows)."""
        if not self.lz4 or len(f) <= 9:
            return f
        version, flags, stream, op, length = HDR.unpack_from(f, 0)
        body = S_INT.pack(length) + LZ4.compress(bytes(f[9:]), store_size=False)
        self.engine.stats["compressed_out"] += 1
        return HDR.pack(version, flags | 0x01, stream, op, len(body)) + body

    # -- dispatch
    def handle(self, flags, stream, op, body):
        eng = self.engine
        eng.stats["frames"] += 1
        try:
            if flags & 0x01:
                if not self.lz4:
                    raise ProtocolErr("Received a compressed frame but no compression was negotiated")
                if len(body) < 4:
                    raise ProtocolErr("Compressed frame body of %d bytes" % len(body))
                size = _unpack_int(body, 0)[0]
                try:
                    body = LZ4.decompress(body[4:], uncompressed_size=size)
                except Exception as e:
                    raise ProtocolErr("Invalid lz4 frame body: %s" % e)
                if len(body) != size:
                    raise ProtocolErr("lz4 frame body of %d bytes, %d announced" % (len(body), size))
                eng.stats["compressed_in"] += 1
            p = 0
            if flags & 0x04 and op in (QUERY, PREPARE, EXECUTE, BATCH):
                _, p = _bytes_map(body, 0)
            if op == EXECUTE and self.authed:
                return frame(stream, RESULT, self.on_execute(body, p))
            if op == BATCH and self.authed:
                return frame(stream, RESULT, self.on_batch(body, p))
            if op == QUERY and self.authed:
                return frame(stream, RESULT, self.on_query(body, p))
            if op == PREPARE and self.authed:
                return frame(stream, RESULT, self.on_prepare(body, p))
            if op == OPTIONS:
                return frame(stream, SUPPORTED, self.on_options())
            if op == STARTUP:
                return self.on_startup(stream, body)
            if op == AUTH_RESPONSE:
                return self.on_auth_response(stream, body)
            if op == REGISTER and self.authed:
                _string_list(body, 0)
                return frame(stream, READY, b"")
            if op in OPNAMES:
                if not self.started:
                    raise ProtocolErr("Unexpected message %s, expecting STARTUP or OPTIONS" % OPNAMES[op])
                raise ProtocolErr("Unexpected message %s, expecting AUTH_RESPONSE" % OPNAMES[op])
            if op in RESPONSE_OPS:
                raise ProtocolErr("Wrong protocol direction: opcode 0x%02X is a response" % op)
            raise ProtocolErr("Unknown opcode %d" % op)
        except CqlError as e:
            eng.stats["errors"] += 1
            if VERBOSE:
                log("stream %d: error 0x%04X %s" % (stream, e.code, e.message))
            return frame(stream, ERROR, error_body(e))
        except Exception as e:  # a bug here must not kill the server
            eng.stats["errors"] += 1
            log("internal error: %s\n%s" % (e, traceback.format_exc()))
            return frame(stream, ERROR, error_body(CqlError(T.SERVER_ERROR, "cqlserver internal error: %r" % e)))

    # -- connection setup
    def on_options(self):
        comps = self.srv.compressions
        out = [S_SHORT.pack(2), enc_string("CQL_VERSION"), S_SHORT.pack(1), enc_string(E.CQL_VERSION),
               enc_string("COMPRESSION"), S_SHORT.pack(len(comps))] + [enc_string(c) for c in comps]
        return b"".join(out)

    def on_startup(self, stream, body):
        if self.started:
            raise ProtocolErr("Unexpected message STARTUP, the connection is already initialized")
        opts, _ = _string_map(body, 0)
        cv = opts.get("CQL_VERSION")
        if cv is None:
            raise ProtocolErr("Missing value CQL_VERSION in STARTUP message")
        parts = cv.split(".")
        if not (2 <= len(parts) <= 3 and all(x.isdigit() for x in parts)) or parts[0] != "3":
            raise ProtocolErr("Invalid or unsupported CQL_VERSION %s (supported: %s)" % (cv, E.CQL_VERSION))
        comp = opts.get("COMPRESSION")
        if comp and comp not in self.srv.compressions:
            raise ProtocolErr("Unknown compression algorithm: %s" % comp)
        self.started = True
        self.lz4 = comp == "lz4"  # this answer already compressed
        if self.srv.auth is not None:
            return frame(stream, AUTHENTICATE, enc_string(AUTHENTICATOR))
        self.authed = True
        return frame(stream, READY, b"")

    def on_auth_response(self, stream, body):
        if not self.started:
            raise ProtocolErr("Unexpected message AUTH_RESPONSE, expecting STARTUP or OPTIONS")
        if self.srv.auth is None or self.authed:
            raise ProtocolErr("Unexpected message AUTH_RESPONSE: no authentication in progress")
        token, _ = _bytes(body, 0)
        parts = (token or b"").split(b"\x00")
        if len(parts) != 3:
            raise CqlError(T.BAD_CREDENTIALS, "Invalid SASL PLAIN token")
        user = parts[1].decode("utf-8", "replace")
        if not user:
            raise CqlError(T.BAD_CREDENTIALS, "Authentication ID must not be null")
        if (user, parts[2].decode("utf-8", "replace")) != self.srv.auth:
            raise CqlError(T.BAD_CREDENTIALS, "Provided username %s and/or password are incorrect" % user)
        self.authed = True
        return frame(stream, AUTH_SUCCESS, b"\xff\xff\xff\xff")

    # -- requests
    def _params(self, body, p, st):
        """<query_parameters> -> (QueryParams, values)."""
        qp = QueryParams()
        if p + 3 > len(body):
            raise ProtocolErr("Not enough bytes to read the query parameters")
        qp.consistency = _unpack_short(body, p)[0]
        flags = body[p + 2]
        p += 3
        if flags & 0x01:
            n, p = _short(body, p)
            if flags & 0x40:
                vals, p = read_named_values(body, p, st.specs, n)
            else:
                vals, p = read_values(body, p, st.checks, n)
        else:
            if st.specs:
                raise Invalid("Invalid amount of bind variables: expected %d, got 0" % len(st.specs))
            vals = []
        self._tail(body, p, flags, qp)
        return qp, vals

    @staticmethod
    def _tail(body, p, flags, qp):
        """The <query_parameters> after the values."""
        qp.skip_metadata = bool(flags & 0x02)
        if flags & 0x04:
            qp.page_size, p = _int(body, p)
        if flags & 0x08:
            qp.paging_state, p = _bytes(body, p)
        if flags & 0x10:
            qp.serial, p = _short(body, p)
        if flags & 0x20:
            if p + 8 > len(body):
                raise ProtocolErr("Not enough bytes to read a [long]")
            qp.ts = S_LONG.unpack_from(body, p)[0]
            if qp.ts < 0:
                raise ProtocolErr("Out of bound timestamp, must be in [0, %d] (got %d)" % ((1 << 63) - 1, qp.ts))

    def _consistency(self, body, p):
        return _unpack_short(body, p)[0] if p + 2 <= len(body) else 1

    def on_query(self, body, p):
        eng = self.engine
        eng.stats["queries"] += 1
        q, p = _long_string(body, p)
        st = eng.statement(q, self.keyspace)
        if st.is_write:
            eng.stats["writes"] += 1
            wt = "SIMPLE" if not isinstance(st, E.BatchStmt) else ("UNLOGGED_BATCH" if st.type == "unlogged" else "BATCH")
            eng.check_fail(wt, self._consistency(body, p))
            if eng.blackhole:
                return RESULT_VOID
        qp, vals = self._params(body, p, st)
        return st.execute(eng, self, vals, qp)

    def on_prepare(self, body, p):
        eng = self.engine
        eng.stats["prepares"] += 1
        q, p = _long_string(body, p)
        pid, st = eng.prepare(q, self.keyspace)
        return S_INT.pack(4) + S_SHORT.pack(len(pid)) + pid + st.prepared_metadata()

    def _lookup(self, pid):
        entry = self.engine.prepared.get(pid)
        if entry is None:
            raise CqlError(T.UNPREPARED,
                           "Prepared query with ID %s not found (either the query was not prepared on this host "
                           "(maybe the host has been restarted?) or you have prepared too many queries and it has "
                           "been evicted from the internal cache)" % pid.hex(), S_SHORT.pack(len(pid)) + pid)
        return entry[0]

    def on_execute(self, body, p):
        eng = self.engine
        eng.stats["executes"] += 1
        pid, p = _short_bytes(body, p)
        st = self._lookup(pid)
        if st.is_write:
            eng.stats["writes"] += 1
            eng.check_fail("SIMPLE", self._consistency(body, p))
            if eng.blackhole:
                return RESULT_VOID
            if st.fastrow is not None and p + 5 <= len(body):
                flags = body[p + 2]
                if flags & 0x41 == 0x01 and _unpack_short(body, p + 3)[0] == len(st.checks):
                    q, mut = st.fastrow(body, p + 5, len(body), int(time.time()))
                    qp = QueryParams()
                    self._tail(body, q, flags, qp)
                    apply_mutation(mut, qp.ts if qp.ts is not None else eng.next_ts())
                    return RESULT_VOID
        qp, vals = self._params(body, p, st)
        return st.execute(eng, self, vals, qp)

    def on_batch(self, body, p):
        eng = self.engine
        stats = eng.stats
        stats["batches"] += 1
        stats["writes"] += 1
        btype, p = _byte(body, p)
        n, p = _short(body, p)
        stats["batch_statements"] += n
        if btype == 2:
            raise Invalid("Cannot include non-counter statement in a counter batch")
        if btype > 2:
            raise ProtocolErr("Invalid BATCH message type %d" % btype)
        wt = "BATCH" if btype == 0 else "UNLOGGED_BATCH"
        if eng.blackhole:
            eng.check_fail(wt, 1)
            return RESULT_VOID
        muts = []
        append = muts.append
        prepared = eng.prepared
        last_pid = None
        st = None
        blen = len(body)
        now = int(time.time())
        for _ in range(n):
            if p >= blen:
                raise ProtocolErr("Not enough bytes to read a BATCH query")
            kind = body[p]
            p += 1
            if kind == 1:
                if p + 2 > blen:
                    raise ProtocolErr("Not enough bytes to read a [short bytes]")
                ln = _unpack_short(body, p)[0]
                pid = body[p + 2:p + 2 + ln]
                if len(pid) != ln:
                    raise ProtocolErr("Not enough bytes to read a [short bytes]")
                p += 2 + ln
                if pid != last_pid:
                    entry = prepared.get(pid)
                    st = entry[0] if entry is not None else self._lookup(pid)
                    last_pid = pid
                    if not st.is_write or isinstance(st, E.BatchStmt):
                        raise Invalid("Invalid statement in batch: only UPDATE, INSERT and DELETE statements are allowed.")
                    if getattr(st, "if_not_exists", False):
                        raise Invalid("Conditional statements in batches are not supported by cqlserver")
            elif kind == 0:
                q, p = _long_string(body, p)
                st = eng.statement(q, self.keyspace)
                last_pid = None
                if not st.is_write or isinstance(st, E.BatchStmt):
                    raise Invalid("Invalid statement in batch: only UPDATE, INSERT and DELETE statements are allowed.")
                if getattr(st, "if_not_exists", False):
                    raise Invalid("Conditional statements in batches are not supported by cqlserver")
            else:
                raise ProtocolErr("Invalid query kind in BATCH messages. Must be 0 or 1 but got %d" % kind)
            if p + 2 > blen:
                raise ProtocolErr("Not enough bytes to read a [short]")
            nv = _unpack_short(body, p)[0]
            if st.fastrow is not None and nv == len(st.checks):
                p, mut = st.fastrow(body, p + 2, blen, now)
            else:
                vals, p = read_values(body, p + 2, st.checks, nv)
                mut = st.mutation(vals, now)
            append(mut)
        if p + 3 > blen:
            raise ProtocolErr("Not enough bytes to read the BATCH consistency and flags")
        consistency = _unpack_short(body, p)[0]
        flags = body[p + 2]
        p += 3
        if flags & 0x40:
            raise ProtocolErr("Named values in BATCH are not supported")
        if flags & 0x10:
            _, p = _short(body, p)
        ts = None
        if flags & 0x20:
            if p + 8 > blen:
                raise ProtocolErr("Not enough bytes to read a [long]")
            ts = S_LONG.unpack_from(body, p)[0]
            if ts < 0:
                raise ProtocolErr("Out of bound timestamp, must be in [0, %d] (got %d)" % ((1 << 63) - 1, ts))
        eng.check_fail(wt, consistency)
        if ts is None:
            ts = eng.next_ts()
        for m in muts:
            apply_mutation(m, ts)
        return RESULT_VOID


# ---- server ------------------------------------------------------------------------

def bind_socket(host, port):
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, stype, proto, _, addr = infos[0]
    s = socket.socket(family, stype, proto)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(addr)
    s.listen(128)
    s.setblocking(False)
    return s


def tls_context(cert, key, client_ca):
    """The server's TLS context (client_encryption_options): its certificate
    and key (PEM files); with client_ca, clients must present a certificate
    that CA signed (require_client_auth)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    if client_ca:
        ctx.load_verify_locations(client_ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


class Server:
    def __init__(self, engine, host, port, auth, tls=None, compressions=()):
        self.engine = engine
        self.compressions = list(compressions)  # offered in SUPPORTED
        self.host = host
        self.port = port
        self.auth = auth
        self.tls = tls
        self.tls_seen = []   # per TLS connection: version, client certificate's CN
        self.conns = set()
        self.server = None

    async def up(self):
        if self.server is not None:
            return
        sock = bind_socket(self.host, self.port)
        self.port = sock.getsockname()[1]
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: CqlConnection(self), sock=sock,
                                               ssl=self.tls)

    def down(self):
        if self.server is not None:
            self.server.close()
            self.server = None
        for c in list(self.conns):
            c.closing = True
            if c.transport is not None:
                c.transport.abort()
        self.conns.clear()

    # -- control protocol
    async def control_client(self, reader, writer):
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                try:
                    resp = await self.command(line.decode("utf-8", "replace").strip())
                except Exception as e:
                    resp = {"ok": False, "error": str(e)}
                writer.write((json.dumps(resp, separators=(",", ":")) + "\n").encode())
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def command(self, line):
        words = line.split()
        if not words:
            return {"ok": False, "error": "empty command"}
        cmd = words[0].lower()
        eng = self.engine
        if cmd == "down" and len(words) == 1:
            self.down()
            return {"ok": True}
        if cmd == "up" and len(words) == 1:
            await self.up()
            return {"ok": True}
        if cmd == "fail" and len(words) == 3:
            eng.add_fail(words[1].lower(), int(words[2]))
            return {"ok": True}
        if cmd == "forget-prepared" and len(words) == 1:
            eng.prepared.clear()
            return {"ok": True}
        if cmd == "stats" and len(words) == 1:
            s = eng.stats
            out = {"connections": len(self.conns)}
            for k in ("frames", "queries", "prepares", "executes", "batches", "batch_statements",
                      "max_inflight", "errors", "connections_total", "writes", "compressed_in",
                      "compressed_out"):
                out[k] = s[k]
            out["tls"] = self.tls_seen
            return out
        if cmd == "dump" and len(words) == 2 and "." in words[1]:
            ks, table = words[1].split(".", 1)
            try:
                return eng.dump(ks, table)
            except CqlError as e:
                return {"ok": False, "error": e.message}
        if cmd == "reset" and len(words) == 1:
            eng.reset_user()
            return {"ok": True}
        return {"ok": False, "error": "unknown command: %s" % line[:80]}


async def amain(args):
    auth = None
    if args.auth is not None:
        if ":" not in args.auth:
            raise SystemExit("--auth wants USER:PASSWORD")
        auth = tuple(args.auth.split(":", 1))
    engine = Engine(blackhole=args.blackhole)
    tls = None
    if args.tls_cert or args.tls_key or args.tls_client_ca:
        if not (args.tls_cert and args.tls_key):
            raise SystemExit("--tls-cert and --tls-key go together")
        tls = tls_context(args.tls_cert, args.tls_key, args.tls_client_ca)
    if args.compression == "lz4" and LZ4 is None:
        raise SystemExit("--compression lz4 needs python3-lz4")
    srv = Server(engine, args.host, args.port, auth, tls,
                 ["lz4"] if args.compression == "lz4" else [])
    await srv.up()
    csock = bind_socket(args.host, args.control_port)
    control_port = csock.getsockname()[1]
    control = await asyncio.start_server(srv.control_client, sock=csock)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        sys.stdout.write("CQLSERVER port=%d control=%d\n" % (srv.port, control_port))
        sys.stdout.flush()
    except (BrokenPipeError, OSError):
        pass
    await stop.wait()
    control.close()
    srv.down()
    return 0


def main(argv=None):
    global VERBOSE
    ap = argparse.ArgumentParser(description="In-memory CQL native protocol v4 test server")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--control-port", type=int, default=0)
    ap.add_argument("--auth", metavar="USER:PASSWORD")
    ap.add_argument("--blackhole", action="store_true",
                    help="benchmarks: answer writes without decoding or storing them")
    ap.add_argument("--verbose", action="store_true", help="log connections and error responses to stderr")
    ap.add_argument("--tls-cert", metavar="PEM", help="serve TLS only, with this certificate chain")
    ap.add_argument("--tls-key", metavar="PEM", help="the private key of --tls-cert")
    ap.add_argument("--tls-client-ca", metavar="PEM",
                    help="require a client certificate signed by this CA")
    ap.add_argument("--compression", choices=("lz4", "none"),
                    default="lz4" if LZ4 is not None else "none",
                    help="what SUPPORTED offers (default lz4 when python3-lz4 is installed)")
    args = ap.parse_args(argv)
    VERBOSE = args.verbose
    # Stored rows are acyclic tuples/dicts: the default gen-0 threshold (700)
    # makes the cyclic GC rescan them over and over (halves write throughput).
    gc.set_threshold(100000, 100, 100)
    return asyncio.run(amain(args))


if __name__ == "__main__":
    sys.exit(main())
