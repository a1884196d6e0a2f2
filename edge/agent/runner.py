"""The agent: wires identity, link, uplink queue, camera, telemetry, OTA and handlers; runs until stopped.

`run()` blocks; a `reboot` command restarts the whole loop in-process (link, camera,
workers) with the durable queue and state dir untouched.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

from edge.agent import AGENT_VERSION
from edge.agent.camera import Camera, model_identity
from edge.agent.config import AgentConfig
from edge.agent.handlers import DownHandlers
from edge.agent.identity import IdentityStore, write_atomic
from edge.agent.link import MqttLink
from edge.agent.media_store import MediaStore
from edge.agent.outbox import Outbox
from edge.agent.renewal import Renewal
from edge.agent.reporting import EventReporter
from edge.agent.sent_log import SentLog
from edge.agent.workers import LogRing, Worker
from edge.quality import CRASH_MARKER, process_system
from edge.telemetry import TelemetryBatcher
from edge.uplink import (
    BandwidthPolicy,
    Drainer,
    Item,
    MediaUploader,
    Shaper,
    UplinkDB,
    UplinkQueue,
    UploadGrant,
)
from edge.vision.events import DetectionEvent
from edge.vision.models import default_model_path
from protocol import topics
from protocol.messages import OtaOffer, Status, encode, make

log = logging.getLogger(__name__)

RENEWAL_CHECK_S = 60.0
MiB = 1024 * 1024


class Agent:
    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.state_dir = Path(config.state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.identities = IdentityStore(self.state_dir)
        self.device_id = self.identities.load().device_id  # raises not_enrolled first
        self.log_ring = LogRing(config.log_buffer_lines)
        logging.getLogger().addHandler(self.log_ring)
        self.db = UplinkDB(self.state_dir / "uplink.db")
        self.queue = UplinkQueue(
            self.db,
            quota_bytes=int(config.queue_quota_mb * MiB),
            min_free_bytes=int(config.queue_min_free_mb * MiB),
        )
        self.shaper = Shaper(self.db)
        self._upload_cls = "clip"
        self.uploader = MediaUploader(self.db, before_part=self._shape_part)
        self.media = MediaStore(self.state_dir / "media")
        self.config_revision, saved = self._load_saved_config()
        self.desired = saved or {"detection": dict(config.detection), "bandwidth": dict(config.bandwidth)}
        self.apply_bandwidth(BandwidthPolicy.from_config(self.desired.get("bandwidth")))
        self.started = time.monotonic()
        self.ota = self._open_ota()
        self.sent_log = SentLog(config.sent_log) if config.sent_log is not None else None
        self._stop = threading.Event()
        self._reboot = threading.Event()
        self.reboots = 0
        self._thread: threading.Thread | None = None
        self.ready = threading.Event()  # set once a loop is wired (tests wait on it)
        # Present while the agent runs; found at start, the previous run ended without close().
        self._marker = self.state_dir / CRASH_MARKER
        self._unclean_start = self._marker.exists()
        self._marker.touch()

    # -- persistent bits ---------------------------------------------------------

    @property
    def _config_file(self) -> Path:
        return self.state_dir / "config.json"

    def _load_saved_config(self) -> tuple[int, dict[str, Any] | None]:
        try:
            data = json.loads(self._config_file.read_text())
            return int(data["revision"]), dict(data["config"])
        except (OSError, ValueError, KeyError, TypeError):
            return 0, None

    def save_config(self, revision: int, config: dict[str, Any]) -> None:
        self.config_revision, self.desired = revision, config
        write_atomic(self._config_file, json.dumps({"revision": revision, "config": config}).encode())

    def apply_bandwidth(self, policy: BandwidthPolicy) -> None:
        self.shaper.set_policy(policy)
        self.queue.set_priority(policy.class_priority)

    def _open_ota(self):
        from edge.ota import DetectorHealthCheck, OtaClient, OtaError

        root = self.state_dir / "ota"
        try:
            return OtaClient(
                root,
                hardware_model=self.config.hardware_model,
                agent_version=AGENT_VERSION,
                root_public_key=self.config.ota_root_key,
                report=self._ota_report,
                grace_s=self.config.ota_grace_s,
                health_check=DetectorHealthCheck(
                    latency_budget_ms=self.config.ota_health_budget_ms,
                    required_labels=[label for label in self.config.alert_labels if label != "motion"],
                ),
                on_active_changed=lambda path: self.camera.set_model(path),
                on_shadow=lambda path, request: self.camera.set_shadow(path, request),
                download_origins=self._download_origins(),
            )
        except OtaError as exc:
            log.warning("OTA disabled: %s", exc)
            return None

    def _download_origins(self) -> tuple[str, ...]:
        identity = self.identities.load()
        named = identity.download_origins or ((identity.api_url,) if identity.api_url else ())
        return (*named, *self.config.download_origins)

    # -- status ------------------------------------------------------------------

    def _model_identity(self, path: Path | None) -> tuple[str, str]:
        """(model, version) for quality telemetry: the OTA release in that slot, else the file's name."""
        info = self.ota.release_at(path) if path is not None and self.ota is not None else None
        if info is not None and info.model and info.version:
            return info.model, info.version
        return model_identity(path)

    def _model_version(self) -> str | None:
        release = self.ota.active_release() if self.ota is not None else None
        return f"{release.model}@{release.version}" if release and release.model else None

    def _status(self, state: str, reason: str | None = None) -> bytes:
        fields: dict[str, Any] = {"state": state, "agent_version": AGENT_VERSION, "reason": reason}
        if state == "online":
            fields |= {
                "hardware_model": self.config.hardware_model,
                "uptime_s": round(time.monotonic() - self.started, 1),
                "config_revision": self.config_revision,
                "model_version": self._model_version(),
                "faults": self._faults(),
            }
        return encode(make(Status, **fields))

    def _faults(self) -> list[str]:
        camera = getattr(self, "camera", None)
        faults = camera.faults if camera is not None else {}
        return [f"{kind}: {text}"[:200] for kind, text in sorted(faults.items())]

    def publish_status(self) -> bool:
        return self.link.publish(topics.up(self.device_id, "status"), self._status("online"), retain=True)

    # -- wiring one loop ---------------------------------------------------------

    def _wire(self) -> None:
        cfg = self.config
        self.drainer = Drainer(self.queue, self.shaper, self._send, offline_backoff=(0.5, 10.0))
        self.outbox = Outbox(
            queue=self.queue, device_id=self.device_id, alert_labels=cfg.alert_labels, wake=self.drainer.wake
        )
        self.reporter = EventReporter(outbox=self.outbox, media=self.media, policy=lambda: self.shaper.policy)
        self.renewal = Renewal(
            store=self.identities,
            outbox=self.outbox,
            reconnect=lambda: self.link.reconnect(),
            renew_remaining=cfg.renew_remaining,
            retry_s=cfg.renew_retry_s,
        )
        self.control, self.ota_worker, self.media_worker = Worker("control"), Worker("ota"), Worker("media")
        self.handlers = DownHandlers(self)
        self.link = MqttLink(
            load_identity=self.identities.load,
            birth=lambda: self._status("online"),
            will=lambda: self._status("offline", "connection_lost"),
            on_message=self.handlers.dispatch,
            on_connected=self._on_connected,
            on_connect_failed=self.renewal.connect_failed,
            protocol=cfg.mqtt_protocol,
            keepalive_s=cfg.keepalive_s,
            backoff=(cfg.reconnect_min_s, cfg.reconnect_max_s),
            host=cfg.mqtt_host,
            port=cfg.mqtt_port,
        )
        self.camera = Camera(
            source=cfg.source,
            camera=cfg.camera,
            detection=self.desired.get("detection") or {},
            detector=(self.desired.get("detection") or {}).get("detector", cfg.detector),
            model_path=self.ota.active_model_path() if self.ota is not None else None,
            default_model=cfg.model_path or default_model_path(),
            threads=cfg.detector_threads,
            on_events=self.on_events,
            on_stats=lambda fps, ms: self.telemetry.observe(fps=fps, inference_ms=ms),
            on_faults=self._faults_changed,
            realtime=cfg.realtime,
            loop_source=cfg.loop_source,
            identify_model=self._model_identity,
            quality_system=process_system(),
        )
        if self._unclean_start:  # the previous run died (kill -9, power loss): its model crashed
            self._unclean_start = False
            self.camera.quality_meter(self.camera.initial_model(), "active").crashed()
        self.telemetry = TelemetryBatcher(
            queue=self.queue,
            disk_path=self.state_dir,
            interval_s=cfg.telemetry_interval_s,
            quality=self.camera.quality_windows,
        )

    def _faults_changed(self) -> None:
        """A camera or model fault came or went: the retained status says so (the log has the detail)."""
        link = getattr(self, "link", None)
        if link is not None and link.connected:
            self.control.submit(self.publish_status)

    def _send(self, item: Item) -> bool:
        d = topics.delivery("up", topics.parse(item.topic).kind)
        delivered = self.link.publish(
            item.topic, item.payload, qos=d.qos, retain=d.retain, timeout=self.config.publish_timeout_s
        )
        if delivered and self.sent_log is not None:
            self.sent_log.record(item.topic, item.payload)
        return delivered

    def _on_connected(self, identity) -> None:
        self.renewal.connected(identity)
        self.drainer.connected()

    # -- what the handlers call --------------------------------------------------

    def on_events(self, events: list[DetectionEvent]) -> None:
        """Pipeline output -> event reports (thumbnails inline where they fit), media requests, kept clips."""
        self.reporter.report(events)

    def upload(self, path: Path, grant: UploadGrant, kind: str) -> list[dict[str, Any]]:
        """Upload on the media worker (one upload at a time, so one current class)."""
        self._upload_cls = "thumbnail" if kind == "snapshot" else "clip"
        return self.uploader.upload(path, grant)

    def _shape_part(self, nbytes: int) -> None:
        # Media bytes share the token bucket and the daily budget with the MQTT queue.
        while (delay := self.shaper.delay_for(nbytes)) > 0 and not self._stop.is_set():
            time.sleep(min(delay, 1.0))
        self.shaper.record_sent(self._upload_cls, nbytes)

    def apply_ota(self, offer: OtaOffer) -> None:
        if self.ota is None:
            signed = offer.manifest.get("signed") if isinstance(offer.manifest, dict) else None
            signed = signed if isinstance(signed, dict) else {}
            serial = signed.get("serial")
            self.outbox.ota(
                deployment_id=offer.deployment_id,
                serial=serial if type(serial) is int and serial >= 0 else 0,
                model=str(signed.get("model") or "unknown")[:128],
                state="failed",
                reason="ota_not_configured",
            )
            return
        before = self._model_version()
        self.ota.apply(offer)
        if self._model_version() != before:
            # Refresh the retained status only on a change: the server takes every online status
            # for a (re)birth and re-sends unfinished offers, so a refresh after a revert to the
            # same model or a retained re-delivery would only draw the same offer again.
            self.publish_status()

    def ota_cleared(self) -> None:
        """down/ota emptied (the deployment was aborted): nothing to install, nothing to shadow."""
        self.camera.set_shadow(None, None)

    def _ota_report(self, state: str, reason: str | None = None, progress: float | None = None) -> None:
        job = self.ota.job if self.ota is not None else None
        if job is None:
            return
        self.outbox.ota(
            deployment_id=job.deployment_id,
            serial=job.serial,
            model=job.model,
            state=state,
            reason=reason[:200] if reason else None,
            progress=progress,
        )

    def request_reboot(self) -> None:
        self._reboot.set()

    # -- the loop ----------------------------------------------------------------

    def _run_once(self) -> None:
        self._wire()
        self.link.start()
        self.drainer.start()
        self.camera.start()
        if self.ota is not None:
            self.ota_worker.submit(self.ota.recover)
        self.ready.set()
        next_sample = time.monotonic() + self.config.telemetry_sample_s
        next_renewal = time.monotonic()
        try:
            while not self._stop.is_set() and not self._reboot.is_set():
                now = time.monotonic()
                if now >= next_sample:
                    next_sample = now + self.config.telemetry_sample_s
                    body = self.telemetry.tick()
                    if body is not None:
                        self.outbox.telemetry(body["samples"], body.get("quality"))
                if now >= next_renewal:
                    next_renewal = now + RENEWAL_CHECK_S
                    try:
                        self.renewal.check()
                    except Exception:
                        log.exception("renewal check failed")
                self._stop.wait(min(1.0, max(0.05, next_sample - time.monotonic())))
        finally:
            self.ready.clear()
            reason = "reboot" if self._reboot.is_set() and not self._stop.is_set() else "shutdown"
            self.camera.stop()
            self.drainer.stop()
            for worker in (self.control, self.ota_worker, self.media_worker):
                worker.stop(timeout=2.0)
            self.link.stop(goodbye=self._status("offline", reason))

    def run(self) -> None:
        """Run until stop(); a reboot command starts the loop over."""
        while not self._stop.is_set():
            self._reboot.clear()
            self._run_once()
            if self._reboot.is_set() and not self._stop.is_set():
                self.reboots += 1
                log.info("restarting the agent loop (reboot command)")

    def start(self) -> None:
        """Run in a background thread (tests, the demo)."""
        self._thread = threading.Thread(target=self.run, name="agent", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 15.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def close(self) -> None:
        self.stop()
        if self.ota is not None:
            self.ota.close()
        logging.getLogger().removeHandler(self.log_ring)
        self.db.close()
        if self.sent_log is not None:
            self.sent_log.close()
        self._marker.unlink(missing_ok=True)
