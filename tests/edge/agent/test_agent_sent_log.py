"""The agent's sent log: one line per acknowledged message, with what the server stores rows of."""

from __future__ import annotations

import pytest

from edge.agent.config import AgentConfig
from edge.agent.errors import AgentError
from edge.agent.sent_log import SentLog, read
from protocol import topics
from protocol.messages import Events, Telemetry, encode, make


def test_each_line_names_the_message_and_its_samples_or_events(tmp_path):
    log = SentLog(tmp_path / "sent.jsonl")
    telemetry = make(
        Telemetry,
        samples=[
            {"ts": 100.5, "cpu_pct": 1.0, "mem_pct": 2.0},
            {"ts": 102.5, "cpu_pct": 1.0, "mem_pct": 2.0},
        ],
    )
    events = make(
        Events,
        events=[
            {
                "event_id": "ev-1",
                "camera": "cam0",
                "label": "motion",
                "score": 0.9,
                "bbox": [0, 0, 0.1, 0.1],
                "start": 99.0,
            },
            {
                "event_id": "ev-2",
                "camera": "cam0",
                "label": "motion",
                "score": 0.9,
                "bbox": [0, 0, 0.1, 0.1],
                "start": 98.0,
                "end": 99.5,
            },
        ],
    )
    log.record(topics.up("cam-1", "telemetry"), encode(telemetry))
    log.record(topics.up("cam-1", "events"), encode(events))
    log.close()
    first, second = read(tmp_path / "sent.jsonl")
    assert (first["kind"], first["id"], first["samples"]) == ("telemetry", telemetry.id, [100.5, 102.5])
    assert (second["kind"], second["id"], second["events"]) == (
        "events",
        events.id,
        [["ev-1", False], ["ev-2", True]],
    )
    assert read(tmp_path / "missing.jsonl") == []


def test_config_resolves_the_sent_log_beside_the_config_and_checks_the_health_budget(tmp_path):
    config = AgentConfig.from_dict({"state_dir": "state", "sent_log": "sent.jsonl"}, base_dir=tmp_path)
    assert config.sent_log == tmp_path / "sent.jsonl" and AgentConfig(state_dir=tmp_path).sent_log is None
    with pytest.raises(AgentError, match=r"ota_health_budget_ms must lie in \(0, 600000\]"):
        AgentConfig(state_dir=tmp_path, ota_health_budget_ms=0)
