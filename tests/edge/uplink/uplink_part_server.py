"""A small multipart-part store on 127.0.0.1 for the media upload tests.

PUT /{upload_id}/{number} stores the body and answers with an S3-style quoted MD5
ETag. `plan[number]` lists what to do on successive attempts at a part:
"500" answers 500, "403" answers 403, "drop" reads half the body and closes the
connection without an answer, "hold" stores the part, then waits (bounded) before
answering so a test can kill the client with the part in flight.
"""

from __future__ import annotations

import hashlib
import socket
import threading
from collections import Counter, defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class PartServer:
    def __init__(self) -> None:
        self.parts: dict[tuple[str, int], bytes] = {}
        self.puts: Counter[int] = Counter()
        self.headers: list[dict[str, str]] = []  # of every PUT, in arrival order
        self.plan: dict[int, list[str]] = defaultdict(list)
        self.holding = threading.Event()
        self.release = threading.Event()
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_PUT(self) -> None:
                upload_id, number = self.path.strip("/").split("/")
                number = int(number)
                length = int(self.headers["Content-Length"])
                with server._lock:
                    server.puts[number] += 1
                    server.headers.append(dict(self.headers.items()))
                    action = server.plan[number].pop(0) if server.plan[number] else "ok"
                if action == "drop":
                    self.rfile.read(length // 2)
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                body = self.rfile.read(length)
                if len(body) != length:
                    return  # client went away mid-body: nothing stored
                if action in ("500", "403"):
                    self.send_response(int(action))
                    self.end_headers()
                    return
                with server._lock:
                    server.parts[(upload_id, number)] = body
                if action == "hold":
                    server.holding.set()
                    server.release.wait(10)
                etag = f'"{hashlib.md5(body).hexdigest()}"'  # S3-style ETag
                try:
                    self.send_response(200)
                    self.send_header("ETag", etag)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the client was killed while we held the answer

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05})
        self._thread.start()

    def url(self, upload_id: str, number: int) -> str:
        return f"http://127.0.0.1:{self.port}/{upload_id}/{number}"

    def grant(self, upload_id: str, size: int, part_size: int, expires: float) -> dict:
        count = max(1, -(-size // part_size))
        return {
            "request_id": f"req-{upload_id}",
            "upload_id": upload_id,
            "part_size": part_size,
            "parts": [{"number": n, "url": self.url(upload_id, n)} for n in range(1, count + 1)],
            "expires": expires,
        }

    def assembled(self, upload_id: str) -> bytes:
        numbers = sorted(n for (u, n) in self.parts if u == upload_id)
        assert numbers == list(range(1, len(numbers) + 1)), numbers
        return b"".join(self.parts[(upload_id, n)] for n in numbers)

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(5)
