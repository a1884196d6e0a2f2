"""One virtual device: the real protocol and identity, simulated camera and OTA work.

Lives entirely on the simulator's event loop; call its methods from other threads only
through Simulator.call().
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import ssl
import time
from collections import Counter
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt

from edge.agent.identity import Identity
from edge.agent.link import full_jitter
from edge.sim.netloop import call_soon
from protocol import topics
from protocol.errors import ManifestError, MessageError, TopicError
from protocol.images import encode_inline_thumbnail, fits_inline
from protocol.manifest import verify_keylist, verify_manifest
from protocol.messages import (
    Ack,
    Command,
    Config,
    Events,
    Message,
    OtaOffer,
    OtaReport,
    Status,
    Telemetry,
    decode_down,
    encode,
    make,
)

if TYPE_CHECKING:
    from edge.sim.settings import SimSettings
    from edge.sim.vision import Episode
    from edge.simulate import Simulator
    from edge.vision.events import DetectionEvent

log = logging.getLogger(__name__)

# The uplink class of each kind a device publishes, for its data usage (bytes_sent).
UPLINK_CLASS_OF = {"events": "event", "telemetry": "telemetry"}

BAD_PAYLOADS = (
    b"not json at all",
    b'{"v": 2, "id": "future-1", "ts": 1.0, "events": []}',  # unknown_version
    b'{"v": 1, "id": "bad-schema", "ts": 1.0, "events": []}',  # schema: at least one event
)


@dataclass
class DeviceStats:
    connects: int = 0
    disconnects: int = 0
    published: int = 0
    bad_sent: int = 0
    events: int = 0  # finished events reported
    # Payload bytes published, by uplink class (what telemetry's bytes_sent reports as data usage).
    bytes_sent: Counter = field(default_factory=Counter)
    refused_down: int = 0
    acks: list[tuple[str, str]] = field(default_factory=list)  # (command_id, status)
    ota: list[tuple[str, str, str | None]] = field(default_factory=list)  # (deployment, state, reason)


def sim_thumbnail(bbox: list[float], colour: int) -> str | None:
    """A drawn stand-in for the best frame: a dim scene with the box where the detection is, as
    base64 WebP within the inline cap (protocol.images). None without OpenCV or if it came out too big."""
    try:
        import cv2
        import numpy as np
    except ImportError:
        return None
    w, h = 160, 100
    img = np.full((h, w, 3), (60, 64, 70), np.uint8)
    cv2.rectangle(img, (0, int(h * 0.7)), (w, h), (80, 96, 88), -1)  # ground
    x, y, bw, bh = (int(bbox[0] * w), int(bbox[1] * h), int(bbox[2] * w), int(bbox[3] * h))
    fill = (colour & 0xFF, (colour >> 8) & 0xFF, (colour >> 16) & 0xFF)
    cv2.rectangle(img, (x, y), (x + max(bw, 4), y + max(bh, 4)), fill, -1)
    ok, buf = cv2.imencode(".webp", img, [cv2.IMWRITE_WEBP_QUALITY, 50])
    if not ok or not fits_inline(buf.tobytes()):
        return None
    return encode_inline_thumbnail(buf.tobytes())


class VirtualDevice:
    def __init__(
        self,
        sim: Simulator,
        index: int,
        identity: Identity,
        *,
        fails_health: bool,
        flaky: bool,
        bad_payloads: bool,
        seed: int,
        clip: Path | None = None,
    ) -> None:
        self.sim = sim
        self.settings: SimSettings = sim.settings
        self.index = index
        self.identity = identity
        self.device_id = identity.device_id
        self.fails_health = fails_health
        self.flaky = flaky
        self.bad_payloads = bad_payloads
        self.rng = random.Random(seed)
        self.stats = DeviceStats()
        self.installed_serial: int | None = None
        self.model_version: str | None = None
        self.keylist_version: int | None = None
        self.config_revision = 0
        self.connected = False
        self.started = time.monotonic()
        self._client: mqtt.Client | None = None
        self._lost = asyncio.Event()
        self._connack: asyncio.Future | None = None
        self._offline_until = 0.0
        self._ota_task: asyncio.Task | None = None
        self._ota_deployment: str | None = None
        # Real detection (sim.vision): the clip this camera watches and its last episode's figures.
        self.clip = clip if sim.vision is not None else None
        self._watching = False
        self._vision: tuple[float, float] | None = None  # (sampled fps, inference ms)
        self._bytes_base: Counter = Counter()

    # -- connection ------------------------------------------------------------

    def _make_client(self) -> mqtt.Client:
        s = self.settings
        kwargs: dict[str, Any] = {"client_id": self.device_id, "reconnect_on_failure": False}
        kwargs["protocol"] = mqtt.MQTTv5 if s.mqtt_protocol == "5" else mqtt.MQTTv311
        if s.mqtt_protocol != "5":
            kwargs["clean_session"] = False
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, **kwargs)
        client.connect_timeout = 15
        client.tls_set(
            ca_certs=str(self.identity.ca_file),
            certfile=str(self.identity.cert_file),
            keyfile=str(self.identity.key_file),
        )
        client.will_set(self._topic("status"), self._status("offline", "connection_lost"), qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    async def _connect_once(self) -> bool:
        s = self.settings
        loop = asyncio.get_running_loop()
        self._lost = asyncio.Event()
        self._connack = loop.create_future()
        try:
            client = await loop.run_in_executor(self.sim.net.pool, self._make_client)
            self._client = client
            host, port = s.mqtt_host or self.identity.mqtt.host, s.mqtt_port or self.identity.mqtt.port
            await self.sim.net.connect(client, host, port, s.keepalive_s)
            return await asyncio.wait_for(self._connack, 30)
        except (OSError, ssl.SSLError, TimeoutError, ValueError) as exc:
            log.debug("%s: connect failed: %s", self.device_id, exc)
            return False

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        ok = not reason_code.is_failure
        if ok:
            self.connected = True
            self.stats.connects += 1
            client.subscribe(topics.device_subscription(self.device_id), qos=1)
            self.publish("status", self._status("online"), raw=True)
        if self._connack is not None and not self._connack.done():
            self._connack.set_result(ok)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if self.connected:
            self.stats.disconnects += 1
        self.connected = False
        self._lost.set()
        if self._connack is not None and not self._connack.done():
            self._connack.set_result(False)

    async def run(self) -> None:
        """Connect, live, reconnect with full-jitter backoff, until the simulator stops."""
        attempt = 0
        while not self.sim.stopping:
            delay = self._offline_until - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if await self._connect_once():
                attempt = 0
                await self._online()
            else:
                attempt += 1
                self._close_client()
            if not self.sim.stopping:
                await asyncio.sleep(
                    full_jitter(attempt, base=1.0, cap=self.settings.reconnect_max_s, rng=self.rng)
                )

    async def _online(self) -> None:
        s, rng = self.settings, self.rng
        now = time.monotonic()
        due = {"telemetry": now + rng.uniform(0, s.telemetry_s)}
        if self.clip is not None:
            due["watch"] = now + rng.uniform(*s.first_watch_s)
        elif s.events_per_min > 0:
            due["event"] = now + rng.expovariate(s.events_per_min / 60)
        if self.flaky:
            due["drop"] = now + rng.expovariate(1 / s.drop_every_s)
        if self.bad_payloads:
            due["bad"] = now + rng.expovariate(1 / s.bad_every_s)
        while self.connected and not self.sim.stopping:
            what = min(due, key=due.__getitem__)
            try:
                await asyncio.wait_for(self._lost.wait(), max(0.0, due[what] - time.monotonic()))
                break  # connection lost
            except TimeoutError:
                pass
            now = time.monotonic()
            if what == "telemetry":
                self._telemetry()
                due[what] = now + s.telemetry_s
            elif what == "watch":
                self._watch()
                due[what] = now + rng.expovariate(1 / s.watch_every_s)
            elif what == "event":
                self._event()
                due[what] = now + rng.expovariate(s.events_per_min / 60)
            elif what == "drop":
                self.go_offline(rng.uniform(*s.offline_s))
                due[what] = now + rng.expovariate(1 / s.drop_every_s)
            elif what == "bad":
                self.send_bad_payload()
                due[what] = now + rng.expovariate(1 / s.bad_every_s)

    def go_offline(self, seconds: float) -> None:
        """Lose the link without DISCONNECT (the broker publishes the will); back after `seconds`."""
        self._offline_until = time.monotonic() + seconds
        client = self._client
        sock = client.socket() if client is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # paho sees EOF on its next read: connection lost

    def disconnect(self, *, reason: str = "shutdown") -> None:
        """Clean stop: retained offline status with a reason, then DISCONNECT (no will)."""
        if self._client is not None and self.connected:
            self.publish("status", self._status("offline", reason), raw=True)
            self._client.disconnect()

    def _close_client(self) -> None:
        if self._client is not None:
            sock = self._client.socket()
            if sock is not None:
                self.sim.net._closed(self._client, sock)
                with contextlib.suppress(OSError):
                    sock.close()

    # -- publishing ----------------------------------------------------------------

    def _topic(self, kind: str) -> str:
        return topics.up(self.device_id, kind)

    def _status(self, state: str, reason: str | None = None) -> bytes:
        fields: dict[str, Any] = {
            "state": state,
            "reason": reason,
            "agent_version": self.settings.agent_version,
        }
        if state == "online":
            fields |= {
                "hardware_model": self.settings.hardware_model,
                "model_version": self.model_version,
                "uptime_s": round(time.monotonic() - self.started, 1),
                "config_revision": self.config_revision,
            }
        return encode(make(Status, **fields))

    def publish(self, kind: str, msg: Message | bytes, *, raw: bool = False) -> None:
        if self._client is None or not self.connected:
            return
        payload = msg if isinstance(msg, bytes) else encode(msg)
        d = topics.delivery("up", kind)
        self._client.publish(self._topic(kind), payload, qos=d.qos, retain=d.retain)
        self.stats.published += 1
        if kind in UPLINK_CLASS_OF:
            self.stats.bytes_sent[UPLINK_CLASS_OF[kind]] += len(payload)

    def _telemetry(self) -> None:
        r = self.rng
        # Data usage: the bytes this device really published since the last sample.
        sent = {cls: n - self._bytes_base[cls] for cls, n in self.stats.bytes_sent.items()}
        self._bytes_base = Counter(self.stats.bytes_sent)
        sample = {
            "ts": time.time(),
            "cpu_pct": round(r.uniform(10, 70), 1),
            "mem_pct": round(r.uniform(30, 80), 1),
            "temp_c": round(r.uniform(40, 70), 1),
            "fps": round(r.uniform(4.5, 5.0), 2),
            "inference_ms": round(r.uniform(20, 60), 1),
            "link": "cellular" if self.index % 3 == 0 else "ethernet",
            "queue_depth": {"alert": 0, "event": r.randint(0, 3), "clip": r.randint(0, 5)},
            "bytes_sent": {cls: n for cls, n in sent.items() if n > 0},
        }
        if self.clip is not None:  # the detector's own figures, or none before its first episode
            fps, inference_ms = self._vision or (None, None)
            sample |= {"fps": fps, "inference_ms": inference_ms}
        self.publish("telemetry", make(Telemetry, samples=[sample]))

    # -- real detection (sim.vision) ------------------------------------------------

    def _watch(self) -> None:
        """One episode of the camera's clip on the shared detector; its events follow in real time."""
        if self._watching or self.clip is None:
            return  # the worker is behind: skip this one rather than queue without bound
        from edge.sim.vision import View

        self._watching = True
        view = View(mirror=self.rng.random() < 0.5, gain=self.rng.uniform(0.8, 1.2))
        loop = asyncio.get_running_loop()
        future = self.sim.vision.submit(self.clip, view=view, start=time.time())
        future.add_done_callback(lambda f: call_soon(loop, self._watched, f))

    def _watched(self, future: Future[Episode]) -> None:
        self._watching = False
        if future.cancelled() or self.sim.stopping:
            return
        if future.exception() is not None:
            log.warning("%s: detection episode failed: %s", self.device_id, future.exception())
            return
        episode = future.result()
        fps = episode.frames_sampled / episode.duration_s if episode.duration_s else None
        self._vision = (round(fps, 2) if fps else None, round(episode.inference_ms, 1))
        loop = asyncio.get_running_loop()
        for event in episode.events:
            due = event.start if event.end is None else event.end
            loop.call_later(max(0.0, due - time.time()), self._report_event, event)

    def _report_event(self, event: DetectionEvent) -> None:
        # The simulator uploads no media: a thumbnail too big to travel inline is left out.
        inline = event.thumbnail is not None and fits_inline(event.thumbnail)
        report = (event if inline else replace(event, thumbnail=None)).metadata(inline_thumbnail=inline)
        self.publish("events", make(Events, events=[report]))
        if event.end is not None:
            self.stats.events += 1

    def _event(self) -> None:
        r = self.rng
        label = r.choice(self.settings.labels)
        x, y = r.uniform(0, 0.7), r.uniform(0, 0.6)
        start = time.time()
        det = {
            "event_id": f"{self.device_id[-10:]}-{r.getrandbits(48):012x}",
            "camera": "cam0",
            "label": label,
            "score": round(r.uniform(0.55, 0.99), 3),
            "bbox": [round(x, 3), round(y, 3), round(r.uniform(0.05, 0.3), 3), round(r.uniform(0.1, 0.4), 3)],
            "start": start,
        }
        self.publish("events", make(Events, events=[det]))
        end = {**det, "end": start + r.uniform(2, 10)}
        if self.settings.thumbnails:
            end["thumbnail"] = sim_thumbnail(det["bbox"], r.randrange(1 << 24))

        def finish() -> None:
            self.publish("events", make(Events, events=[end]))
            self.stats.events += 1

        asyncio.get_running_loop().call_later(end["end"] - start, finish)

    def send_bad_payload(self) -> None:
        self.publish("events", self.rng.choice(BAD_PAYLOADS), raw=True)
        self.stats.bad_sent += 1

    # -- down/ -----------------------------------------------------------------------

    def _on_message(self, client, userdata, message: mqtt.MQTTMessage) -> None:
        try:
            t = topics.parse(message.topic)
        except TopicError:
            self.stats.refused_down += 1
            return
        if not message.payload:  # a cleared retained topic: nothing desired
            return
        try:
            msg = decode_down(t.kind, message.payload)
        except MessageError:
            self.stats.refused_down += 1
            return
        if isinstance(msg, Command):
            asyncio.get_running_loop().create_task(self._command(msg))
        elif isinstance(msg, OtaOffer):
            self._offer(msg)
        elif isinstance(msg, Config):
            self.config_revision = msg.revision
            self.publish("status", self._status("online"), raw=True)

    async def _command(self, cmd: Command) -> None:
        def ack(status: str, **kw: Any) -> None:
            self.stats.acks.append((cmd.command_id, status))
            self.publish("ack", make(Ack, command_id=cmd.command_id, status=status, **kw))

        if cmd.expires <= time.time():
            return ack("failed", detail="expired")
        ack("acknowledged")
        await asyncio.sleep(self.rng.uniform(0.05, 0.3))
        result: dict[str, Any] = {"simulated": True}
        if cmd.name == "set_log_level":
            result = {"log_level": cmd.args["level"]}
        elif cmd.name == "request_logs":
            result = {"lines": [f"simulated log line {i}" for i in range(min(20, cmd.args.get("lines", 20)))]}
        elif cmd.name == "upload_clip":  # a simulated camera records no clips
            return ack("failed", detail=f"no clip kept for event {cmd.args['event_id']}")
        ack("succeeded", result=result)
        if cmd.name == "reboot":
            self.disconnect(reason="reboot")
            self._offline_until = time.monotonic() + self.settings.reboot_s

    # -- OTA ---------------------------------------------------------------------------

    def _offer(self, offer: OtaOffer) -> None:
        if self._ota_task is not None and not self._ota_task.done():
            if self._ota_deployment == offer.deployment_id:
                return  # retained redelivery of the offer being worked on
            self._ota_task.cancel()
        self._ota_deployment = offer.deployment_id
        self._ota_task = asyncio.get_running_loop().create_task(self._ota(offer))

    def _report(self, offer: OtaOffer, serial: int, model: str, state: str, **kw: Any) -> None:
        self.stats.ota.append((offer.deployment_id, state, kw.get("reason")))
        self.publish(
            "ota",
            make(OtaReport, deployment_id=offer.deployment_id, serial=serial, model=model, state=state, **kw),
        )

    async def _ota(self, offer: OtaOffer) -> None:
        s = self.settings
        signed = offer.manifest.get("signed") if isinstance(offer.manifest.get("signed"), dict) else {}
        serial = signed.get("serial") if type(signed.get("serial")) is int and signed["serial"] >= 0 else 0
        model = signed.get("model") if isinstance(signed.get("model"), str) and signed["model"] else "unknown"
        if s.root_public_key is None:
            return self._report(offer, serial, model[:128], "failed", reason="ota_not_configured")
        try:
            keylist = verify_keylist(
                offer.keylist,
                root_public_key=s.root_public_key,
                current_version=self.keylist_version,
                now=time.time(),
            )
            manifest = verify_manifest(
                offer.manifest,
                keylist=keylist,
                installed_serial=self.installed_serial,
                hardware_model=s.hardware_model,
                agent_version=s.agent_version,
                now=time.time(),
            )
        except ManifestError as exc:
            if exc.reason == "rollback" and serial == self.installed_serial:
                return self._report(offer, serial, model, "succeeded")  # already running it
            return self._report(offer, serial, model[:128], "failed", reason=exc.reason)
        self.keylist_version = max(self.keylist_version or 0, keylist.version)
        step = s.ota_step_s
        for state, progress in (
            ("downloading", 0.0),
            ("downloading", 0.5),
            ("verifying", None),
            ("installing", None),
        ):
            self._report(offer, manifest.serial, manifest.model, state, progress=progress)
            await asyncio.sleep(step * self.rng.uniform(0.5, 1.5))
        self._report(offer, manifest.serial, manifest.model, "health_check")
        await asyncio.sleep(step * self.rng.uniform(0.5, 1.5))
        if self.fails_health:
            return self._report(
                offer, manifest.serial, manifest.model, "rolled_back", reason="health_check_failed: simulated"
            )
        self.installed_serial = manifest.serial
        self.model_version = f"{manifest.model}@{manifest.version}"
        self._report(offer, manifest.serial, manifest.model, "succeeded")
        self.publish("status", self._status("online"), raw=True)
        return None
