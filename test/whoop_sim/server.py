"""server.py -- HTTP/1.1 on 127.0.0.1 with keep-alive: requests to the
simulator's areas (/developer, /oauth, /_sim), answers as the simulator
built them, and the faults only a socket can play (reset, partial, slow)."""

import io
import socket
import struct
import sys
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .response import Resp, err

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "whoop-sim/1.0"
    sys_version = ""
    timeout = 120

    def setup(self):
        super().setup()
        try:    # small responses must not wait for delayed ACKs (Nagle)
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass

    def log_message(self, fmt, *args):
        if self.server.sim.verbose:
            sys.stderr.write("%s %s\n" % (self.address_string(), fmt % args))

    def log_request(self, code="-", size="-"):
        if self.server.sim.verbose:
            super().log_request(code, size)

    def do_GET(self):
        self._serve("GET")

    def do_POST(self):
        self._serve("POST")

    def do_DELETE(self):
        self._serve("DELETE")

    def do_PUT(self):
        self._serve("PUT")

    def do_PATCH(self):
        self._serve("PATCH")

    def _read_body(self):
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            out = bytearray()
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                out += self.rfile.read(size)
                self.rfile.readline(65537)
            return bytes(out)
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def _serve(self, method):
        sim = self.server.sim
        try:
            body = self._read_body()
        except (ValueError, OSError):
            self.close_connection = True
            return
        url = urllib.parse.urlsplit(self.path)
        path = url.path
        query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        if path == "/_sim" or path.startswith("/_sim/"):
            if not self.client_address[0].startswith("127."):
                return self._send(Resp(403, {"error": "control plane is loopback only"}))
            status, obj = sim.control(method, path if path != "/_sim" else "/_sim/", query, body)
            return self._send(Resp(status, obj))
        if path.startswith("/developer/"):
            area, apath = "api", path[len("/developer"):]
        elif path.startswith("/oauth/"):
            area, apath = "oauth", path
        else:
            return self._send(err(404, "not_found", "No resource at %s" % path))
        try:
            resp = sim.handle(method, area, apath, query, self.headers, body,
                              self.client_address[1])
        except Exception as e:  # a bug in the simulator: say so, keep serving
            sim.bugs += 1
            if sim.bugs <= 5 and not sim.quiet:      # nobody may be reading stderr
                import traceback
                traceback.print_exc()
            resp = Resp(500, {"error": "server_error", "error_description": "simulator bug: %r" % e})
        self._send(resp)

    def _send(self, resp):
        if resp.mode == "reset":
            return self._abort()
        if resp.mode == "delay" and resp.delay_ms > 0:
            time.sleep(resp.delay_ms / 1000)
        body = resp.body
        self.send_response(resp.status)
        for k, v in resp.headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self._headers_buffer.append(b"\r\n")
        try:
            if resp.mode == "partial":
                self._headers_buffer.append(body[:len(body) // 2])
                self.flush_headers()
                self.close_connection = True
            elif resp.mode == "slow":
                self.flush_headers()
                n = max(1, min(len(body), 16))
                step = -(-len(body) // n)
                pause = resp.delay_ms / 1000 / n
                for i in range(0, len(body), step):
                    time.sleep(pause)
                    self.wfile.write(body[i:i + step])
            else:       # headers and body in one write
                self._headers_buffer.append(body)
                self.flush_headers()
        except OSError:
            self.close_connection = True

    def _abort(self):
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        try:
            self.rfile.close()
        except OSError:
            pass
        try:
            self.connection.close()
        except OSError:
            pass
        self.close_connection = True
        self.wfile = io.BytesIO()


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def handle_error(self, request, client_address):
        if self.sim.verbose:
            super().handle_error(request, client_address)
