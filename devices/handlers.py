"""up/cert: certificate renewal over MQTT. Every request gets a down/cert answer (issued or refused).

The broker's ACL lets a certificate with CN X publish only under X's up/, so the topic's
device id is the authenticated sender; the handler checks the ingest's reading of it
against the topic again (protocol.topics.check_sender) before signing anything.
The answer is published after the batch commits. The old certificate stays valid
until it expires: the device switches to the new one when it reconnects.
"""

from __future__ import annotations

import logging

from devices.enrollment import EnrollmentError, certificate_renew
from fleet import broker_runtime, mqtt
from protocol import topics
from protocol.errors import TopicError
from protocol.messages import CertIssued, CertRefused, CertRequest, encode, make
from telemetry.ingest.types import Inbound

log = logging.getLogger(__name__)


def _answer(device_id: str, message: CertIssued | CertRefused) -> None:
    delivery = topics.delivery("down", "cert")
    mqtt.publish_on_commit(
        topics.down(device_id, "cert"), encode(message), qos=delivery.qos, retain=delivery.retain
    )


def handle_cert(*, items: list[Inbound]) -> None:
    for item in items:
        request: CertRequest = item.message  # type: ignore[assignment]
        try:
            topics.check_sender(topics.parse(item.topic), item.device_id)
        except TopicError as exc:
            # Not answerable: the topic's device is not the one the ingest attributes it to.
            log.warning("up/cert refused: %s", exc)
            continue
        try:
            _, cert_pem = certificate_renew(device_id=item.device_id, csr_pem=request.csr_pem)
        except EnrollmentError as exc:
            _answer(
                item.device_id,
                make(CertRefused, request_id=request.request_id, error=exc.code, detail=exc.message[:2000]),
            )
            continue
        _answer(
            item.device_id,
            make(
                CertIssued,
                request_id=request.request_id,
                certificate_pem=cert_pem,
                ca_pem=broker_runtime.ca_pem(),
            ),
        )
