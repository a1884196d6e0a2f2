"""The embedded broker for the demo and tests: amqtt 0.12 in-process, as strict as the Mosquitto setup.

Same device identities and topic isolation as Mosquitto; fleet/broker/amqtt_fleet.py
lists the amqtt holes it closes and how.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from fleet.broker import stats
from fleet.broker.amqtt_fleet import MAX_KEEPALIVE, FleetBroker

_PLUGINS = "fleet.broker.amqtt_fleet"


class EmbeddedBroker:
    """One mTLS listener for devices and server identities; usable from a thread or from asyncio.

    From a thread: `start()` runs the broker on its own event loop in a daemon thread
    and returns once it listens; `kick()` and `stop()` are thread-safe. From asyncio:
    `await start_async()`, `await kick_async(...)`, `await stop_async()` on the running loop.
    `is_revoked(serial)` is called once per CONNECT in the default executor (a thread),
    so it may do blocking I/O; an exception refuses the connection.
    `port=0` picks a free port; read `port` after start.
    """

    def __init__(
        self,
        host: str,
        port: int,
        ca_pem: bytes | str,
        cert_pem: bytes | str,
        key_pem: bytes | str,
        is_revoked: Callable[[int], bool],
        *,
        max_keepalive: int = MAX_KEEPALIVE,
        max_queued_bytes: int = stats.DEFAULT_MAX_QUEUED_BYTES,
    ) -> None:
        self.host = host
        self.port = port
        self._pems = tuple(p.decode() if isinstance(p, bytes) else p for p in (ca_pem, cert_pem, key_pem))
        self._is_revoked = is_revoked
        self._max_keepalive = max_keepalive
        self._max_queued_bytes = max_queued_bytes
        self._broker: FleetBroker | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop_event: asyncio.Event | None = None

    def _config(self, cert_file: Path, key_file: Path) -> dict[str, Any]:
        return {
            "listeners": {
                "default": {
                    "type": "tcp",
                    "bind": f"{self.host}:{self.port}",
                    "ssl": True,
                    "cadata": self._pems[0],
                    "certfile": str(cert_file),
                    "keyfile": str(key_file),
                }
            },
            # Setting plugins replaces amqtt's defaults (which admit anonymous clients).
            "plugins": {
                f"{_PLUGINS}.FleetAuthPlugin": {},
                f"{_PLUGINS}.FleetTopicPlugin": {},
            },
        }

    async def start_async(self) -> None:
        # ssl.load_cert_chain needs files: keep them only while the context is built.
        tmp = Path(tempfile.mkdtemp(prefix="fleet-broker-"))
        try:
            cert_file, key_file = tmp / "cert.pem", tmp / "key.pem"
            cert_file.write_text(self._pems[1])
            key_file.touch(mode=0o600)
            key_file.write_text(self._pems[2])
            broker = FleetBroker(
                self._config(cert_file, key_file),
                is_revoked=self._is_revoked,
                max_keepalive=self._max_keepalive,
                max_queued_bytes=self._max_queued_bytes,
            )
            await broker.start()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        self._broker = broker
        self._loop = asyncio.get_running_loop()
        sockets = broker._servers["default"].instance.sockets  # the bound port when port=0
        self.port = sockets[0].getsockname()[1]

    async def stop_async(self) -> None:
        if self._broker is not None:
            await self._broker.shutdown()
            self._broker = None

    async def kick_async(self, device_id: str) -> int:
        if self._broker is None:
            return 0
        return await self._broker.kick(device_id)

    def start(self, timeout: float = 10.0) -> None:
        """Run the broker in a daemon thread; returns once it accepts connections."""
        started: Future[None] = Future()

        async def main() -> None:
            self._stop_event = asyncio.Event()
            try:
                await self.start_async()
            except BaseException as exc:
                started.set_exception(exc)
                return
            started.set_result(None)
            await self._stop_event.wait()
            await self.stop_async()

        self._thread = threading.Thread(
            target=asyncio.run, args=(main(),), name="fleet-embedded-broker", daemon=True
        )
        self._thread.start()
        started.result(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread is None or self._loop is None or self._stop_event is None:
            return
        self._loop.call_soon_threadsafe(self._stop_event.set)
        self._thread.join(timeout)
        self._thread = None

    def kick(self, device_id: str, timeout: float = 5.0) -> int:
        """Thread-safe kick for a broker started with start(); returns the number of sessions closed."""
        if self._loop is None:
            return 0
        return asyncio.run_coroutine_threadsafe(self.kick_async(device_id), self._loop).result(timeout)
