"""response.py -- the answer to one request, as the endpoints build it and
before the HTTP server sends it (or mangles or withholds it for a fault)."""

import json

def jbytes(obj):
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


class Resp:
    __slots__ = ("status", "headers", "body", "mode", "delay_ms", "fault")

    def __init__(self, status, body=b"", headers=None, ctype="application/json"):
        self.status = status
        if isinstance(body, (dict, list)):
            body = jbytes(body)
        self.body = body
        self.headers = list(headers or [])
        if body or status not in (204, 302):
            self.headers.insert(0, ("Content-Type", ctype))
        self.mode = None
        self.delay_ms = 0
        self.fault = None


def err(status, error, desc, extra_headers=None):
    return Resp(status, {"error": error, "error_description": desc}, extra_headers)


HTML_ERR = (b"<html>\r\n<head><title>%d %s</title></head>\r\n<body>\r\n<center><h1>%d %s</h1>"
            b"</center>\r\n</body>\r\n</html>\r\n")
