#!/usr/bin/env python3
"""The quick start's stand-in for an agent desk: it takes the gateways' event deliveries,
checks each signature, and prints one line per event, e.g.

    line message.received conversation=5d0e... text='Where is my refund?'

It only shows what arrives; agents answer through the agent API (see the README). Standard
library only. The signing secret comes from --secret or $DESK_SIGNING_SECRET.
"""

import argparse
import hashlib
import hmac
import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_AGE_SECONDS = 300


def verified(secret: bytes, header: str, body: bytes) -> bool:
    """Switchboard-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        stamp = int(parts.get("t", ""))
    except ValueError:
        return False
    if abs(time.time() - stamp) > MAX_AGE_SECONDS:
        return False
    expected = hmac.new(secret, f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts.get("v1", ""))


def handler(secret: bytes):
    class Desk(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if not verified(secret, self.headers.get("Switchboard-Signature", ""), body):
                self.send_response(401)
                self.end_headers()
                print(f"{self.path.strip('/')} refused: bad signature", flush=True)
                return
            event = json.loads(body)
            message = event.get("message") or {}
            text = message.get("text")
            line = f"{self.path.strip('/')} {event['type']} conversation={event['conversation']['id']}"
            if text is not None:
                line += f" text={text!r}"
            print(line, flush=True)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *_):
            pass

    return Desk


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:8070", help="address to listen on")
    parser.add_argument("--secret", default=os.environ.get("DESK_SIGNING_SECRET"), help="the workstreams' signing secret")
    args = parser.parse_args()
    if not args.secret:
        parser.error("give --secret or set DESK_SIGNING_SECRET")
    host, port = args.listen.rsplit(":", 1)
    server = ThreadingHTTPServer((host, int(port)), handler(args.secret.encode()))
    print(f"desk listening on http://{args.listen}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
