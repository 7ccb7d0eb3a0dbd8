"""Real local HTTP receivers for outgoing webhooks (and a fake Stripe API): threaded servers on loopback that keep
every request and answer from a script."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from jobs.broker import EmbeddedConsumer
from server.locks import Leases
from server.relay import Relay


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """Answers each request with the next status of `statuses` (the last one repeats)."""

    url: str
    statuses: list[int] = field(default_factory=lambda: [200])
    requests: list[Received] = field(default_factory=list)
    hold: threading.Event | None = None  # while set-up, requests wait for it before answering
    arrived: threading.Event = field(default_factory=threading.Event)
    respond: Callable[[Received], tuple[int, dict[str, str], bytes]] | None = None


@contextmanager
def http_receiver(statuses: list[int] | None = None, respond: Any = None) -> Iterator[Receiver]:
    box = Receiver(url="", statuses=list(statuses or [200]), respond=respond)

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            got = Received(
                self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, self.rfile.read(length)
            )
            box.requests.append(got)
            box.arrived.set()
            if box.hold is not None:
                box.hold.wait(30)
            if box.respond is not None:
                status, headers, body = box.respond(got)
            else:
                status = box.statuses[min(len(box.requests), len(box.statuses)) - 1]
                headers, body = {"content-type": "text/plain"}, f"status {status}".encode()
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_POST = do_GET = do_DELETE = _handle

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    box.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield box
    finally:
        if box.hold is not None:
            box.hold.set()
        server.shutdown()
        server.server_close()


async def settle(app: Any, rounds: int = 10) -> None:
    """What production does after commits, until nothing is left: the relay hands outbox events to the broker and
    a worker runs them (jobs that commit events of their own go round again)."""
    for _ in range(rounds):
        relayed = await Relay(Leases(None)).drain_once()
        ran = await EmbeddedConsumer(app.state.broker, max_retries=0).drain()
        if not relayed and not ran:
            return
