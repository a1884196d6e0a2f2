"""Simulated devices for the rollout benchmark: one MQTT 3.1.1 connection speaking for N devices.

Each device verifies its offer with the shared verifier (protocol.verify_keylist +
verify_manifest; the result is cached per distinct document, since every device would
compute the same answer) and reports on up/ota. A down/cmd (the baselines) is answered as its
args.answers say: one up/ack, or the messages a device sends in the rollout.

Ten thousand devices have ten thousand CPUs; this process has a share of two cores, next to the
server it measures. So it speaks MQTT itself on a plain socket (the PUBLISH, PUBACK, SUBSCRIBE and
PING packets of MQTT 3.1.1, nothing else): what one device says costs it a few microseconds
instead of paho's per-message bookkeeping, which held a run with five reports per device to this
process's speed (one core saturated) rather than the server's. The baseline's acks go the same way.
Pure Python, no Django: run as `python bench/rollout/sim.py HOST PORT ROOT_B64 final|full gates|-`.
"""

from __future__ import annotations

import socket
import sys
import threading
import time

from protocol import topics
from protocol.manifest import verify_keylist, verify_manifest
from protocol.messages import decode_down, encode, make
from protocol.signing import public_key_from_b64
from protocol.up import Ack, OtaReport, Telemetry

CONNECT, CONNACK, PUBLISH, PUBACK, SUBSCRIBE, SUBACK, PINGREQ = 1, 2, 3, 4, 8, 9, 12
KEEPALIVE_S = 60


def _length(n: int) -> bytes:
    """MQTT's variable-length remaining length."""
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _string(s: bytes) -> bytes:
    return len(s).to_bytes(2, "big") + s


class Wire:
    """A blocking MQTT 3.1.1 client on one socket: packets in, PUBLISH out (QoS 1, acknowledged)."""

    def __init__(self, host: str, port: int, client_id: str) -> None:
        self.sock = socket.create_connection((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.out: list[bytes] = []
        self.mid = 0
        body = (
            _string(b"MQTT") + bytes([4, 0x02]) + KEEPALIVE_S.to_bytes(2, "big") + _string(client_id.encode())
        )
        self.sock.sendall(bytes([CONNECT << 4]) + _length(len(body)) + body)
        kind, _, data = self.packet()
        if kind != CONNACK or data[1] != 0:
            raise RuntimeError(f"CONNACK refused: {data!r}")

    def packet(self) -> tuple[int, int, bytes]:
        """The next packet (type, flags, body), reading the socket as needed."""
        while True:
            got = self._parse()
            if got is not None:
                return got
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("broker closed the connection")
            self.buf += chunk

    def packets(self) -> list[tuple[int, int, bytes]]:
        """Every whole packet one read brings (at least one)."""
        out = [self.packet()]
        while (got := self._parse()) is not None:
            out.append(got)
        return out

    def _parse(self) -> tuple[int, int, bytes] | None:
        buf = self.buf
        if len(buf) < 2:
            return None
        n, shift, i = 0, 0, 1
        while True:
            if i >= len(buf):
                return None
            byte = buf[i]
            n |= (byte & 0x7F) << shift
            i += 1
            if not byte & 0x80:
                break
            shift += 7
        if len(buf) < i + n:
            return None
        first, body = buf[0], bytes(buf[i : i + n])
        del buf[: i + n]
        return first >> 4, first & 0x0F, body

    def subscribe(self, filters: list[str]) -> None:
        body = (1).to_bytes(2, "big") + b"".join(_string(f.encode()) + b"\x01" for f in filters)
        self.sock.sendall(bytes([SUBSCRIBE << 4 | 0x02]) + _length(len(body)) + body)
        while self.packet()[0] != SUBACK:
            pass

    def publish(self, topic: str, payload: bytes) -> None:
        """Queue a QoS 1 PUBLISH; flush() writes everything queued in one go."""
        self.mid = self.mid % 65535 + 1
        body = _string(topic.encode()) + self.mid.to_bytes(2, "big") + payload
        self.out.append(bytes([PUBLISH << 4 | 0x02]) + _length(len(body)) + body)

    def puback(self, mid: bytes) -> None:
        self.out.append(bytes([PUBACK << 4, 2]) + mid)

    def flush(self) -> None:
        if self.out:
            self.sock.sendall(b"".join(self.out))
            self.out.clear()

    def ping(self) -> None:
        self.sock.sendall(bytes([PINGREQ << 4, 0]))


STATES = ["downloading", "verifying", "installing", "health_check", "succeeded"]


def answers_for(reports: str, gates: bool) -> list[str]:
    """What a device sends for an offer: its OTA states, then (gates) one quality window of the new model."""
    return (STATES if reports == "full" else STATES[-1:]) + (["telemetry"] if gates else [])


def answer(wire: Wire, device_id: str, answers: list[str], *, deployment_id: str, serial: int, model: str,
           version: str) -> None:  # fmt: skip
    for what in answers:
        if what == "telemetry":
            end = time.time()
            window = {"model": model, "version": version, "start": end - 120, "end": end, "frames": 600,
                      "latency_p50_ms": 30.0, "latency_p95_ms": 44.0, "fps": 5.0, "detections": {"person": 30}}  # fmt: skip
            body = make(Telemetry, samples=[{"ts": end, "cpu_pct": 40.0, "mem_pct": 50.0}], quality=[window])
            wire.publish(topics.up(device_id, "telemetry"), encode(body))
        else:
            report = make(OtaReport, deployment_id=deployment_id, serial=serial, model=model, state=what)
            wire.publish(topics.up(device_id, "ota"), encode(report))


def main() -> None:
    host, port, root_b64, reports, gates = (
        sys.argv[1],
        int(sys.argv[2]),
        sys.argv[3],
        sys.argv[4],
        sys.argv[5],
    )
    rollout = answers_for(reports, gates == "gates")
    root = public_key_from_b64(root_b64)
    verified: dict[tuple[str, str], int] = {}
    wire = Wire(host, port, "bench-sim")

    def on_message(topic: str, payload: bytes) -> None:
        parsed = topics.parse(topic)
        if not payload:
            return
        if parsed.kind == "cmd":  # the baselines: an ack, or the messages of a rollout (bare)
            cmd = decode_down("cmd", payload)
            answers = cmd.args.get("answers", ["ack"])
            if answers == ["ack"]:
                ack = make(Ack, command_id=cmd.command_id, status="succeeded")
                wire.publish(topics.up(parsed.device_id, "ack"), encode(ack))
            else:
                answer(wire, parsed.device_id, answers, deployment_id="dep-0", serial=1, model="person-det",
                       version="2.0.0")  # fmt: skip
            return
        offer = decode_down("ota", payload)
        key = (offer.manifest["signatures"][0]["sig"], offer.keylist["signatures"][0]["sig"])
        if key not in verified:
            keylist = verify_keylist(
                offer.keylist, root_public_key=root, current_version=None, now=time.time()
            )
            manifest = verify_manifest(
                offer.manifest,
                keylist=keylist,
                installed_serial=0,
                hardware_model="cam-x1",
                agent_version="1.4.0",
                now=time.time(),
            )
            verified[key] = manifest.serial
        signed = offer.manifest["signed"]
        answer(wire, parsed.device_id, rollout, deployment_id=offer.deployment_id, serial=verified[key],
               model=signed["model"], version=signed["version"])  # fmt: skip

    def serve() -> None:
        last_ping = time.monotonic()
        wire.sock.settimeout(KEEPALIVE_S / 2)
        while True:
            try:
                batch = wire.packets()
            except TimeoutError:
                batch = []
            except OSError:
                return
            for kind, flags, body in batch:
                if kind != PUBLISH:
                    continue  # PUBACKs of what we sent, PINGRESP
                end = 2 + int.from_bytes(body[:2], "big")
                topic = body[2:end].decode()
                if flags & 0x06:  # QoS 1: a packet id, acknowledged once handled
                    mid, payload = body[end : end + 2], body[end + 2 :]
                    on_message(topic, payload)
                    wire.puback(mid)
                else:
                    on_message(topic, body[end:])
            wire.flush()
            if time.monotonic() - last_ping > KEEPALIVE_S / 2:
                wire.ping()
                last_ping = time.monotonic()

    wire.subscribe([f"{topics.ROOT}/+/down/ota", f"{topics.ROOT}/+/down/cmd"])
    threading.Thread(target=serve, daemon=True).start()
    print("ready", flush=True)
    sys.stdin.read()  # until the benchmark closes our stdin
    wire.sock.close()


if __name__ == "__main__":
    main()
