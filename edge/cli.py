"""`python -m edge enroll | run | simulate`."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from edge.agent import AGENT_VERSION
from edge.agent.errors import AgentError


def _enroll(args: argparse.Namespace) -> int:
    from edge.enroll import enroll

    identity = enroll(
        server_url=args.server,
        token=args.token,
        state_dir=args.state_dir,
        serial=args.serial,
        hardware_model=args.hardware_model,
        verify=args.ca_file or True,
    )
    print(f"enrolled as {identity.device_id}; identity in {identity.cert_file.parent}")
    print(f"MQTT {identity.mqtt.host}:{identity.mqtt.port} (tls={identity.mqtt.tls})")
    return 0


def _run(args: argparse.Namespace) -> int:
    from edge.agent.config import load_config
    from edge.agent.runner import Agent

    config = load_config(args.config)
    logging.getLogger().setLevel(config.log_level.upper())
    agent = Agent(config)
    stop = threading.Event()

    def on_signal(signum, frame) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    agent.start()
    try:
        while not stop.wait(0.5):
            pass
    finally:
        agent.close()
    return 0


def _simulate(args: argparse.Namespace) -> int:
    from edge.simulate import main as simulate_main

    return simulate_main(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m edge", description=f"Fleet edge agent {AGENT_VERSION}")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("enroll", help="make a key pair and CSR here and get a certificate")
    p.add_argument("--server", required=True, help="server base URL, e.g. https://fleet.example.com")
    p.add_argument("--token", required=True, help="enrollment token")
    p.add_argument("--state-dir", type=Path, default=Path("/var/lib/fleet-agent"))
    p.add_argument("--serial", help="hardware serial (default: the machine id)")
    p.add_argument("--hardware-model", default="generic")
    p.add_argument("--ca-file", help="CA bundle to verify the server's HTTPS certificate")
    p.set_defaults(func=_enroll)

    p = sub.add_parser("run", help="run the agent")
    p.add_argument("--config", required=True, type=Path, help="agent config (.toml or .json)")
    p.set_defaults(func=_run)

    from edge.simulate import add_arguments

    p = sub.add_parser("simulate", help="N virtual devices speaking the real protocol")
    add_arguments(p)
    p.set_defaults(func=_simulate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return args.func(args)
    except AgentError as exc:
        print(f"error ({exc.reason}): {exc.message}", file=sys.stderr)
        return 2
