"""httpfixture - a small local HTTP server for integration tests (stdlib only).

    with HttpFixture() as srv:
        srv.route("/status.json", Response.file(path, etag=True))
        url = srv.url("/status.json")
        ...
        srv.route("/status.json", Response(status=503, headers={"Retry-After": "2"}))
        reqs = srv.requests("/status.json")     # what the server got, with headers

It listens on 127.0.0.1 on an ephemeral port, one thread per connection,
HTTP/1.1 with keep-alive. Routes can be switched at any time; a route given
a list of responses serves them in turn and then keeps serving the last.
Besides plain responses it misbehaves on demand:

- any status code and headers (429 + Retry-After, 5xx, redirects, loops,
  redirects to other schemes);
- ETag / Last-Modified with 304 answers to If-None-Match / If-Modified-Since;
- slow responses (delay before the status line), truncated bodies (a
  Content-Length that the connection does not deliver), endless or huge
  bodies streamed until the client gives up (bytes actually sent recorded),
  gzip when the client accepts it;
- stop_listening() / start_listening(): connection refused, then back on the
  same port;
- https only with HttpFixture(tls=(certificate, key)), client certificates
  required with client_ca.

Every request is recorded (monotonic and wall time, method, path, headers,
the status answered, body bytes sent) so tests can assert on what a client
sent and when. Nothing here sleeps except a response asked to be slow, and
closing the fixture interrupts those.
"""
import email.utils
import gzip as gzip_mod
import http.server
import os
import socket
import ssl
import threading
import time

__all__ = ["HttpFixture", "Response", "http_date"]


def http_date(epoch=None):
    """An IMF-fixdate (RFC 9110) for an epoch time (default: now)."""
    return email.utils.formatdate(time.time() if epoch is None else epoch, usegmt=True)


class Response:
    """One canned response.

    body          bytes (str is UTF-8 encoded)
    status        HTTP status code; reason: custom reason phrase
    headers       extra headers (dict)
    content_type  Content-Type of a non-empty body
    etag          ETag value (e.g. '"v1"'); If-None-Match matching it gives 304
    last_modified HTTP date string or epoch seconds; If-Modified-Since not
                  older gives 304 (only when the request has no If-None-Match)
    date          Date header to send instead of the current time (string or
                  epoch); False sends none
    delay         seconds to wait before answering (slow server)
    truncate_at   announce len(body) but send only body[:truncate_at], then
                  close the connection
    stream        send this many filler bytes as the body, without a
                  Content-Length (close-delimited) unless announce is True,
                  until the client disconnects
    gzip          gzip-encode the body when the client accepts gzip
    close         close the connection after the response
    """

    def __init__(self, body=b"", status=200, headers=None, content_type="application/json",
                 etag=None, last_modified=None, date=None, delay=0.0, truncate_at=None,
                 stream=None, announce=False, gzip=False, close=False, reason=None):
        self.body = body.encode() if isinstance(body, str) else bytes(body)
        self.status = status
        self.reason = reason
        self.headers = dict(headers or {})
        self.content_type = content_type
        self.etag = etag
        if isinstance(last_modified, (int, float)):
            last_modified = http_date(last_modified)
        self.last_modified = last_modified
        if isinstance(date, (int, float)) and not isinstance(date, bool):
            date = http_date(date)
        self.date = date
        self.delay = delay
        self.truncate_at = truncate_at
        self.stream = stream
        self.announce = announce
        self.gzip = gzip
        self.close = close

    @classmethod
    def file(cls, path, etag=False, last_modified=False, **kw):
        """The bytes of a file; etag=True derives an ETag from size and
        mtime, last_modified=True uses the file's mtime."""
        with open(path, "rb") as f:
            data = f.read()
        st = os.stat(path)
        if etag is True:
            etag = '"%x-%x"' % (st.st_size, int(st.st_mtime))
        if last_modified is True:
            last_modified = st.st_mtime
        return cls(data, etag=etag or None, last_modified=last_modified or None, **kw)

    @classmethod
    def redirect(cls, location, status=302, **kw):
        h = dict(kw.pop("headers", {}) or {})
        h["Location"] = location
        return cls(b"", status=status, headers=h, **kw)


class _Route:
    def __init__(self, responses):
        self.responses = list(responses)
        self.served = 0

    def next(self):
        r = self.responses[min(self.served, len(self.responses) - 1)]
        self.served += 1
        return r


def _etag_matches(header, etag):
    if header.strip() == "*":
        return True
    tags = [t.strip() for t in header.split(",")]
    bare = etag[2:] if etag.startswith("W/") else etag
    return any((t[2:] if t.startswith("W/") else t) == bare for t in tags)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "httpfixture/1"

    def log_message(self, fmt, *args):  # quiet: tests read .requests() instead
        pass

    def do_GET(self):
        self._serve(head=False)

    def do_HEAD(self):
        self._serve(head=True)

    def _serve(self, head):
        fx = self.server.fixture
        rec = {"t": time.monotonic(), "wall": time.time(), "method": self.command,
               "path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()},
               "status": None, "bytes_sent": 0, "client_gone": False}
        resp = fx._take(self.path)
        fx._record(rec)
        try:
            self._answer(fx, resp, rec, head)
        except (BrokenPipeError, ConnectionResetError, socket.timeout, OSError):
            rec["client_gone"] = True
            self.close_connection = True
        finally:
            fx._done(rec)

    def _answer(self, fx, resp, rec, head):
        if resp is None:
            resp = Response(b'{"error":"no route"}', status=404)
        if resp.delay and fx._closing.wait(resp.delay):
            self.close_connection = True
            return
        status, body, extra = resp.status, resp.body, {}
        inm = self.headers.get("If-None-Match")
        ims = self.headers.get("If-Modified-Since")
        if 200 <= status < 300:
            if resp.etag and inm is not None:
                if _etag_matches(inm, resp.etag):
                    status, body = 304, b""
            elif resp.last_modified and ims is not None:
                try:
                    since = email.utils.parsedate_to_datetime(ims).timestamp()
                    lm = email.utils.parsedate_to_datetime(resp.last_modified).timestamp()
                    if lm <= since:
                        status, body = 304, b""
                except (TypeError, ValueError):
                    pass
        if resp.etag:
            extra["ETag"] = resp.etag
        if resp.last_modified:
            extra["Last-Modified"] = resp.last_modified
        if (status != 304 and resp.gzip and body and
                "gzip" in (self.headers.get("Accept-Encoding") or "")):
            body = gzip_mod.compress(body)
            extra["Content-Encoding"] = "gzip"

        rec["status"] = status
        self.send_response_only(status, resp.reason)
        if resp.date is not False:
            self.send_header("Date", resp.date or self.date_time_string())
        self.send_header("Server", self.server_version)
        for k, v in extra.items():
            self.send_header(k, v)
        for k, v in resp.headers.items():
            self.send_header(k, v)
        if resp.stream is not None and status != 304:
            self._stream(resp, rec, head)
            return
        if body:
            self.send_header("Content-Type", resp.content_type)
        if status != 304 and not (100 <= status < 200) and status != 204:
            self.send_header("Content-Length", str(len(body)))
        if resp.close or resp.truncate_at is not None:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if head or status == 304:
            return
        out = body if resp.truncate_at is None else body[:resp.truncate_at]
        self.wfile.write(out)
        self.wfile.flush()
        rec["bytes_sent"] = len(out)

    def _stream(self, resp, rec, head):
        self.send_header("Content-Type", resp.content_type)
        if resp.announce:
            self.send_header("Content-Length", str(resp.stream))
        self.send_header("Connection", "close")
        self.close_connection = True
        self.end_headers()
        if head:
            return
        chunk = b'{"filler":"' + b"x" * 65500 + b'"},'
        left = resp.stream
        while left > 0 and not self.server.fixture._closing.is_set():
            part = chunk[:left]
            self.wfile.write(part)
            rec["bytes_sent"] += len(part)
            left -= len(part)
        self.wfile.flush()


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def process_request_thread(self, request, client_address):
        if self.fixture.tls is not None:
            # TLS in the connection's own thread: a client that fails the
            # handshake never holds up the others.
            try:
                request = self.fixture.tls.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError):
                request.close()
                return
        # Connections are tracked so stop_listening() can drop kept-alive
        # ones too: a client must not keep talking to a "down" server.
        with self.fixture._lock:
            self.fixture._conns.add(request)
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self.fixture._lock:
                self.fixture._conns.discard(request)


class HttpFixture:
    """A local HTTP server; see the module docstring."""

    def __init__(self, host="127.0.0.1", port=0, tls=None, client_ca=None):
        """tls: (certificate, key) PEM files: https only; client_ca: a PEM
        file, client certificates it signed required."""
        self.tls = None
        if tls:
            self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.tls.load_cert_chain(*tls)
            if client_ca:
                self.tls.load_verify_locations(client_ca)
                self.tls.verify_mode = ssl.CERT_REQUIRED
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._routes = {}
        self._requests = []
        self._conns = set()
        self._closing = threading.Event()
        self.host = host
        self._server = None
        self._thread = None
        self.port = port
        self.start_listening()

    # ---- listening ----

    def start_listening(self):
        """Listens (again) on the fixture's port."""
        assert self._server is None, "already listening"
        srv = _Server((self.host, self.port), _Handler)
        srv.fixture = self
        self.port = srv.server_address[1]
        self._server = srv
        self._thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True, name="httpfixture")
        self._thread.start()

    def stop_listening(self):
        """Stops accepting connections and drops the open ones (kept-alive
        included): clients get 'connection refused' on this port until
        start_listening()."""
        srv, self._server = self._server, None
        if srv is None:
            return
        srv.shutdown()
        srv.server_close()
        self._thread.join(10)
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self):
        self._closing.set()
        self.stop_listening()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    # ---- routes ----

    def url(self, path="/"):
        return "%s://%s:%d%s" % ("https" if self.tls else "http", self.host, self.port, path)

    def route(self, path, responses):
        """Serves path with a Response, or a list of them in turn (the last
        one repeats). Replaces what path served before, at once."""
        if isinstance(responses, Response):
            responses = [responses]
        with self._lock:
            self._routes[path] = _Route(responses)

    set = route

    def remove(self, path):
        with self._lock:
            self._routes.pop(path, None)

    def _take(self, path):
        with self._lock:
            r = self._routes.get(path) or self._routes.get(path.split("?", 1)[0])
            return r.next() if r else None

    # ---- request log ----

    def _record(self, rec):
        with self._cond:
            self._requests.append(rec)
            self._cond.notify_all()

    def _done(self, rec):
        with self._cond:
            rec["done"] = True
            self._cond.notify_all()

    def requests(self, path=None):
        """Copies of the requests received so far (for path, or all), oldest first."""
        with self._lock:
            return [dict(r) for r in self._requests
                    if path is None or r["path"] == path or r["path"].split("?", 1)[0] == path]

    def count(self, path=None):
        return len(self.requests(path))

    def clear(self):
        with self._lock:
            self._requests = []

    def wait_requests(self, path, n, timeout=30.0):
        """Blocks until path got at least n requests (answered or given up);
        returns them. AssertionError after timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                got = [r for r in self._requests
                       if (r["path"] == path or r["path"].split("?", 1)[0] == path)
                       and r.get("done")]
                if len(got) >= n:
                    return [dict(r) for r in got]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("timed out after %.1fs waiting for %d requests to %s "
                                         "(got %d)" % (timeout, n, path, len(got)))
                self._cond.wait(min(left, 0.1))
