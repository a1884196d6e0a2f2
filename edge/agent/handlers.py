"""down/ handlers: one per kind, table-driven. Each runs on a worker thread, never on paho's.

A bad payload is refused and counted (never a crash); an empty payload on a retained topic
(down/config, down/ota) means "nothing desired" and is ignored.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import msgspec

from edge.uplink import BandwidthPolicy, UplinkError, UploadGrant
from edge.vision.errors import VisionError
from edge.vision.media import THUMBNAIL_CONTENT_TYPE, encode_thumbnail
from protocol import topics
from protocol.errors import MessageError, TopicError
from protocol.messages import (
    CertIssued,
    CertRefused,
    Command,
    Config,
    MediaGranted,
    MediaRefused,
    Message,
    OtaOffer,
    decode_down,
)

if TYPE_CHECKING:
    from edge.agent.runner import Agent

log = logging.getLogger(__name__)

RETAINED_KINDS = frozenset({"config", "ota"})
LOG_RESULT_BYTES = 200_000  # request_logs answer stays well inside the 256 KiB message limit
SEEN_COMMANDS = 1000


class DownHandlers:
    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.refused: dict[str, int] = {}
        self._seen: dict[str, None] = {}  # command ids already run (QoS 1 may redeliver)
        self.table = {
            "config": (agent.control, self.on_config),
            "cmd": (agent.control, self.on_cmd),
            "ota": (agent.ota_worker, self.on_ota),
            "media": (agent.media_worker, self.on_media),
            "cert": (agent.control, self.on_cert),
        }

    def _refuse(self, reason: str, detail: str) -> None:
        self.refused[reason] = self.refused.get(reason, 0) + 1
        log.warning("refused a down message (%s): %s", reason, detail[:300])

    def dispatch(self, topic: str, payload: bytes, retained: bool) -> None:
        """Called on the MQTT network thread: decode, then hand to the kind's worker."""
        try:
            t = topics.parse(topic)
        except TopicError as exc:
            return self._refuse(exc.reason, exc.detail)
        if t.direction != "down" or t.device_id != self.agent.device_id:
            return self._refuse("device_mismatch", topic)
        if not payload and t.kind in RETAINED_KINDS:
            log.info("retained down/%s cleared: nothing desired", t.kind)
            if t.kind == "ota":  # an aborted deployment: a candidate running in shadow stops
                self.agent.ota_worker.submit(self.agent.ota_cleared)
            return None
        try:
            msg = decode_down(t.kind, payload)
        except MessageError as exc:
            return self._refuse(exc.reason, exc.detail)
        worker, handler = self.table[t.kind]
        worker.submit(lambda: handler(msg))
        return None

    # -- down/config -------------------------------------------------------------

    def on_config(self, msg: Message) -> None:
        assert isinstance(msg, Config)
        agent = self.agent
        if msg.revision < agent.config_revision:
            log.info("ignoring config revision %s < applied %s", msg.revision, agent.config_revision)
            return
        detection = msgspec.to_builtins(msg.config.detection)
        policy = BandwidthPolicy.from_config(msg.config.bandwidth)
        try:
            agent.camera.apply(detection)
        except VisionError as exc:
            return self._refuse("schema", f"detection settings: {exc}")
        agent.apply_bandwidth(policy)
        agent.save_config(msg.revision, msgspec.to_builtins(msg.config))
        log.info("applied config revision %s", msg.revision)
        agent.publish_status()  # the retained status now names the revision in effect
        return None

    # -- down/cmd ----------------------------------------------------------------

    def on_cmd(self, msg: Message) -> None:
        assert isinstance(msg, Command)
        out = self.agent.outbox
        if msg.command_id in self._seen:
            return
        self._seen[msg.command_id] = None
        while len(self._seen) > SEEN_COMMANDS:
            self._seen.pop(next(iter(self._seen)))
        if msg.expires <= time.time():
            out.ack(msg.command_id, "failed", detail="expired")
            return
        out.ack(msg.command_id, "acknowledged")
        try:
            result = getattr(self, f"cmd_{msg.name}")(msg.args)
        except Exception as exc:
            log.warning("command %s (%s) failed: %s", msg.command_id, msg.name, exc)
            out.ack(msg.command_id, "failed", detail=str(exc)[:2000] or type(exc).__name__)
            return
        out.ack(msg.command_id, "succeeded", result=result)
        if msg.name == "reboot":
            self.agent.request_reboot()

    def cmd_reboot(self, args: dict[str, Any]) -> dict[str, Any]:
        # Acked before the restart: the ack is in the durable queue and goes out after it.
        return {"restarting": True}

    def cmd_set_log_level(self, args: dict[str, Any]) -> dict[str, Any]:
        level = str(args["level"])
        logging.getLogger().setLevel(level.upper())
        return {"log_level": level}

    def cmd_request_logs(self, args: dict[str, Any]) -> dict[str, Any]:
        lines = self.agent.log_ring.tail(int(args.get("lines", 1000)), max_bytes=LOG_RESULT_BYTES)
        return {"lines": lines}

    def cmd_snapshot(self, args: dict[str, Any]) -> dict[str, Any]:
        camera = self.agent.camera
        frame = camera.last_frame
        if frame is None:
            raise RuntimeError("no camera frame available" if camera.enabled else "this device has no camera")
        h, w = frame.image.shape[:2]
        jpeg = encode_thumbnail(frame.image, (0, 0, w, h), max_side=640, max_bytes=120_000)
        stored = self.agent.media.save("snapshot", jpeg, THUMBNAIL_CONTENT_TYPE)
        self.agent.outbox.media_request(
            request_id=stored.request_id,
            event_id=stored.request_id,
            kind="snapshot",
            size=stored.size,
            sha256=stored.sha256,
            content_type=stored.content_type,
        )
        return {"request_id": stored.request_id, "sha256": stored.sha256, "size": stored.size}

    def cmd_upload_clip(self, args: dict[str, Any]) -> dict[str, Any]:
        """Ask for a grant for the clip kept for args.event_id (acked once the request is queued;
        the upload itself is followed on the server as the Media of that request_id)."""
        event_id = str(args["event_id"])
        stored = self.agent.media.request_kept(event_id, "clip")
        if stored is None:
            raise RuntimeError(f"no clip kept for event {event_id} (never recorded, or evicted by the quota)")
        self.agent.outbox.media_request(
            requested=True,
            request_id=stored.request_id,
            event_id=event_id,
            kind="clip",
            size=stored.size,
            sha256=stored.sha256,
            content_type=stored.content_type,
        )
        return {
            "event_id": event_id,
            "request_id": stored.request_id,
            "sha256": stored.sha256,
            "size": stored.size,
        }

    # -- down/ota ----------------------------------------------------------------

    def on_ota(self, msg: Message) -> None:
        assert isinstance(msg, OtaOffer)
        self.agent.apply_ota(msg)

    # -- down/media --------------------------------------------------------------

    def on_media(self, msg: Message) -> None:
        agent = self.agent
        if isinstance(msg, MediaRefused):
            log.warning("upload %s refused: %s %s", msg.request_id, msg.error, msg.detail)
            agent.media.remove(msg.request_id)
            return
        assert isinstance(msg, MediaGranted)
        found = agent.media.find(msg.request_id)
        if found is None:
            log.warning("grant for unknown media request %s", msg.request_id)
            return
        grant = UploadGrant.from_message(msg)
        try:
            parts = agent.upload(found.path, grant, found.kind)
        except UplinkError as exc:
            # Finished parts are kept; the request stays queued-able: ask again for a new grant.
            log.warning("upload %s failed: %s", msg.request_id, exc)
            return
        agent.outbox.media_complete(found.kind, msg.request_id, parts, requested=found.requested)
        agent.media.remove(msg.request_id)
        agent.uploader.forget(grant.upload_id)

    # -- down/cert ---------------------------------------------------------------

    def on_cert(self, msg: Message) -> None:
        renewal = self.agent.renewal
        if isinstance(msg, CertRefused):
            renewal.refused(msg.request_id, msg.error, msg.detail)
        else:
            assert isinstance(msg, CertIssued)
            renewal.issued(msg.request_id, msg.certificate_pem, msg.ca_pem)
