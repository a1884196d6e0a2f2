"""Run the OTA client by hand (and in the power-cut tests):

    python -m edge.ota --state-dir D --hardware-model M --agent-version V [--root-key B64] apply OFFER.json
    python -m edge.ota --state-dir D --hardware-model M --agent-version V recover
    python -m edge.ota --state-dir D --hardware-model M --agent-version V status

Every report() is printed as one JSON line on stdout; the exit code is 0 for
succeeded / no-op, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edge.ota.client import OtaClient
from edge.ota.errors import OtaError
from edge.ota.health import OnnxHealthCheck
from protocol.errors import MessageError
from protocol.messages import OtaOffer, decode_down


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edge.ota")
    parser.add_argument("--state-dir", required=True, type=Path)
    parser.add_argument("--hardware-model", required=True)
    parser.add_argument("--agent-version", required=True)
    parser.add_argument("--root-key", help="base64 raw Ed25519 root public key (first start only)")
    parser.add_argument("--grace-s", type=float, default=30.0)
    parser.add_argument("--latency-budget-ms", type=float, default=1000.0)
    parser.add_argument("--download-chunk-kib", type=int, default=256)
    parser.add_argument(
        "--download-origin", action="append", default=[], metavar="URL",
        help="where artifacts may be fetched from (repeat; file:// for local files)",
    )  # fmt: skip
    sub = parser.add_subparsers(dest="command", required=True)
    apply_p = sub.add_parser("apply")
    apply_p.add_argument("offer", type=Path, help="a down/ota message (JSON)")
    sub.add_parser("recover")
    sub.add_parser("status")
    args = parser.parse_args(argv)

    def report(state: str, reason: str | None = None, progress: float | None = None) -> None:
        job = client.job
        line = {"state": state, "reason": reason, "progress": progress}
        if job is not None:
            line |= {"deployment_id": job.deployment_id, "serial": job.serial, "model": job.model}
        print(json.dumps(line), flush=True)

    try:
        client = OtaClient(
            args.state_dir,
            hardware_model=args.hardware_model,
            agent_version=args.agent_version,
            root_public_key=args.root_key,
            report=report,
            health_check=OnnxHealthCheck(latency_budget_ms=args.latency_budget_ms),
            grace_s=args.grace_s,
            download_chunk_size=args.download_chunk_kib * 1024,
            download_origins=args.download_origin,
        )
    except OtaError as exc:
        print(json.dumps({"error": exc.reason, "detail": exc.detail}), file=sys.stderr)
        return 1
    with client:
        if args.command == "apply":
            try:
                offer = decode_down("ota", args.offer.read_bytes())
            except MessageError as exc:
                print(json.dumps({"error": exc.reason, "detail": exc.detail}), file=sys.stderr)
                return 1
            assert isinstance(offer, OtaOffer)
            return 0 if client.apply(offer) == "succeeded" else 1
        if args.command == "recover":
            return 0 if client.recover() in (None, "succeeded") else 1
        active = client.active_release()
        print(json.dumps({"active": client.state.active, "release": None if active is None else active.model,
                          "version": None if active is None else active.version,
                          "committed_serial": client.installed_serial, "trial": client.in_trial()}))  # fmt: skip
        return 0


if __name__ == "__main__":
    sys.exit(main())
