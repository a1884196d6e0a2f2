"""Drive many paho clients from one asyncio loop (paho's documented external-loop integration).

A thread per client costs ~8 MiB of stack address space and a context switch per packet; on a
2-core box a thousand simulated cameras fit on one event loop instead. Blocking work (TCP
connect + TLS handshake, which paho does synchronously) runs in a small thread pool; paho's
socket callbacks from those threads are marshalled onto the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from concurrent.futures import ThreadPoolExecutor

import paho.mqtt.client as mqtt

MISC_PERIOD_S = 1.0


class NetLoop:
    def __init__(self, loop: asyncio.AbstractEventLoop, *, connect_threads: int = 4) -> None:
        self.loop = loop
        self.clients: set[mqtt.Client] = set()
        self.pool = ThreadPoolExecutor(connect_threads, thread_name_prefix="sim-connect")
        self._misc: asyncio.Task | None = None
        self._loop_thread: int | None = None

    def start(self) -> None:
        self._loop_thread = threading.get_ident()
        self._misc = self.loop.create_task(self._misc_loop())

    def _on_loop(self, fn, *args) -> None:
        if threading.get_ident() == self._loop_thread:
            fn(*args)
        else:
            call_soon(self.loop, fn, *args)

    def attach(self, client: mqtt.Client) -> None:
        client.on_socket_open = lambda c, u, sock: self._on_loop(self._opened, c, sock)
        client.on_socket_close = lambda c, u, sock: self._on_loop(self._closed, c, sock)
        client.on_socket_register_write = lambda c, u, sock: self._on_loop(self._want_write, c, sock)
        client.on_socket_unregister_write = lambda c, u, sock: self._on_loop(self._no_write, c, sock)

    def _opened(self, client: mqtt.Client, sock) -> None:
        if sock.fileno() < 0:
            return
        self.clients.add(client)
        self.loop.add_reader(sock, client.loop_read)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)

    def _closed(self, client: mqtt.Client, sock) -> None:
        self.clients.discard(client)
        try:
            self.loop.remove_reader(sock)
            self.loop.remove_writer(sock)
        except (ValueError, OSError):  # already closed fd
            pass

    def _want_write(self, client: mqtt.Client, sock) -> None:
        if sock.fileno() >= 0:
            self.loop.add_writer(sock, client.loop_write)

    def _no_write(self, client: mqtt.Client, sock) -> None:
        with contextlib.suppress(ValueError, OSError):
            self.loop.remove_writer(sock)

    async def connect(self, client: mqtt.Client, host: str, port: int, keepalive: int) -> None:
        """TCP + TLS + CONNECT packet queued; CONNACK arrives later through loop_read."""
        self.attach(client)
        await self.loop.run_in_executor(self.pool, lambda: client.connect(host, port, keepalive))

    async def _misc_loop(self) -> None:
        while True:
            await asyncio.sleep(MISC_PERIOD_S)
            for client in list(self.clients):
                client.loop_misc()  # keepalive PINGREQ, and noticing a dead peer

    def close(self) -> None:
        if self._misc is not None:
            self._misc.cancel()
        self.pool.shutdown(wait=False, cancel_futures=True)


def call_soon(loop: asyncio.AbstractEventLoop, fn, *args) -> None:
    """Hand work from another thread (paho's, the detector's) to the loop, unless the loop has
    closed: the simulator stopped meanwhile, nothing is wanted, and raising printed a traceback."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(fn, *args)
