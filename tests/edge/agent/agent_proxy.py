"""A small TCP forwarder for link tests: cut every connection, refuse new ones, add delay and loss.

Used in-process by the agent tests (to take the link down without touching the broker) and
as a script inside a network namespace by the netns test:

    python agent_proxy.py LISTEN_HOST LISTEN_PORT TARGET_HOST TARGET_PORT [--delay-ms 200] [--loss 0.01]

Loss on a byte stream: a TCP proxy cannot drop a segment without corrupting the stream,
so a "lost" chunk is held for one retransmission timeout (RTO_S) instead, which is what
the sender sees when a real segment is lost and resent.
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import random
import socket
import threading
import time

RTO_S = 0.2


class Pipe(threading.Thread):
    """One direction of one connection, with a fixed delay per chunk (order kept)."""

    def __init__(self, src: socket.socket, dst: socket.socket, delay_s: float, loss: float, rng) -> None:
        super().__init__(daemon=True)
        self.src, self.dst, self.delay_s, self.loss, self.rng = src, dst, delay_s, loss, rng
        self._out: list[tuple[float, int, bytes]] = []
        self._cv = threading.Condition()
        self._seq = 0
        self._closed = False
        self._last_due = 0.0
        threading.Thread(target=self._writer, daemon=True).start()

    def run(self) -> None:
        try:
            while True:
                data = self.src.recv(65536)
                if not data:
                    break
                due = time.monotonic() + self.delay_s
                if self.loss and self.rng.random() < self.loss:
                    due += RTO_S
                due = max(due, self._last_due)  # a held chunk holds everything behind it (TCP order)
                self._last_due = due
                with self._cv:
                    self._seq += 1
                    heapq.heappush(self._out, (due, self._seq, data))
                    self._cv.notify()
        except OSError:
            pass
        with self._cv:
            self._closed = True
            self._cv.notify()

    def _writer(self) -> None:
        try:
            while True:
                with self._cv:
                    while not self._out and not self._closed:
                        self._cv.wait()
                    if not self._out and self._closed:
                        break
                    due, _, data = self._out[0]
                    wait = due - time.monotonic()
                    if wait > 0:
                        self._cv.wait(wait)
                        continue
                    heapq.heappop(self._out)
                self.dst.sendall(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            self.dst.shutdown(socket.SHUT_WR)


class TcpProxy:
    def __init__(
        self,
        target: tuple[str, int],
        *,
        listen: tuple[str, int] = ("127.0.0.1", 0),
        delay_ms: float = 0.0,
        loss: float = 0.0,
        seed: int = 1,
    ) -> None:
        self.target = target
        self.delay_s = delay_ms / 1000.0
        self.loss = loss
        self.rng = random.Random(seed)
        self.server = socket.create_server(listen, reuse_port=False)
        self.port = self.server.getsockname()[1]
        self.up = True
        self.accepted = 0
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            if not self.up:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            for s in (client, upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._conns += [client, upstream]
                self.accepted += 1
            Pipe(client, upstream, self.delay_s, self.loss, self.rng).start()
            Pipe(upstream, client, self.delay_s, self.loss, self.rng).start()

    def cut(self) -> None:
        """Close every connection (both sides see a reset/EOF: no MQTT DISCONNECT)."""
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def set_up(self, up: bool) -> None:
        self.up = up
        if not up:
            self.cut()

    def close(self) -> None:
        self.server.close()
        self.cut()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("listen_host")
    parser.add_argument("listen_port", type=int)
    parser.add_argument("target_host")
    parser.add_argument("target_port", type=int)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    parser.add_argument("--loss", type=float, default=0.0)
    args = parser.parse_args()
    proxy = TcpProxy(
        (args.target_host, args.target_port),
        listen=(args.listen_host, args.listen_port),
        delay_ms=args.delay_ms,
        loss=args.loss,
    )
    print(f"listening {args.listen_host}:{proxy.port}", flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
