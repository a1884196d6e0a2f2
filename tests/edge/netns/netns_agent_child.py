"""Runs inside the test's network namespace: the real Agent, a clip backlog, then an alert every 0.5 s.

    python netns_agent_child.py CONFIG.json CLIPS CLIP_BYTES ALERTS

Exits once the uplink queue is empty (or after a bounded wait).
"""

from __future__ import annotations

import logging
import os
import sys
import time

from edge.agent.config import load_config
from edge.agent.runner import Agent


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config_path, clips, clip_bytes, alerts = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    agent = Agent(load_config(config_path))
    agent.start()
    try:
        if not agent.ready.wait(10) or not agent.link.wait_connected(20):
            print("agent did not connect", file=sys.stderr)
            return 1
        for _ in range(clips):
            stored = agent.media.save("clip", os.urandom(clip_bytes), "video/mp4")
            agent.outbox.media_request(
                request_id=stored.request_id,
                event_id=stored.request_id,
                kind="clip",
                size=stored.size,
                sha256=stored.sha256,
                content_type="video/mp4",
            )
        for i in range(alerts):
            time.sleep(0.5)
            now = time.time()
            agent.outbox.events(
                [
                    {
                        "event_id": f"al-{i}",
                        "camera": "cam0",
                        "label": "person",
                        "score": 0.9,
                        "bbox": [0.1, 0.1, 0.2, 0.4],
                        "start": now,
                    }
                ]
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (len(agent.queue) or list(agent.media.dir.iterdir())):
            time.sleep(0.2)
        return 0
    finally:
        agent.close()


if __name__ == "__main__":
    sys.exit(main())
