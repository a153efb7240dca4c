#!/usr/bin/env python3
"""The quick start's stand-in for an agent desk: it takes the gateways' event deliveries,
checks each signature, and prints one line per event, e.g.

    line message.received conversation=5d0e... text='Where is my refund?'

It only shows what arrives; agents answer through the agent API (see the README). Standard
library only. The signing secret comes from --secret or $DESK_SIGNING_SECRET.
"""

import argparse
import base64
import binascii
import hashlib
import hmac
import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_AGE_SECONDS = 300


def signing_key(secret: str) -> bytes:
    """A Standard Webhooks `whsec_` secret is the base64 after the prefix; any other value is the
    key bytes as written."""
    if secret.startswith("whsec_"):
        return base64.b64decode(secret[len("whsec_"):], validate=True)
    return secret.encode()


def verified(key: bytes, headers, body: bytes) -> bool:
    """Standard Webhooks: webhook-signature holds space-separated `v1,<base64 HMAC-SHA256 of
    "<webhook-id>.<webhook-timestamp>.<body>">`, one per key while a key is rotated."""
    event_id = headers.get("webhook-id", "")
    try:
        stamp = int(headers.get("webhook-timestamp", ""))
    except ValueError:
        return False
    if not event_id or abs(time.time() - stamp) > MAX_AGE_SECONDS:
        return False
    digest = hmac.new(key, f"{event_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
    expected = base64.b64encode(digest).decode()
    offered = [s.split(",", 1)[1] for s in headers.get("webhook-signature", "").split(" ") if s.startswith("v1,")]
    return any(hmac.compare_digest(expected, s) for s in offered)


def handler(key: bytes):
    class Desk(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if not verified(key, self.headers, body):
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
    try:
        key = signing_key(args.secret)
    except binascii.Error:
        parser.error("the secret starts with whsec_ but what follows is not base64")
    server = ThreadingHTTPServer((host, int(port)), handler(key))
    print(f"desk listening on http://{args.listen}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
