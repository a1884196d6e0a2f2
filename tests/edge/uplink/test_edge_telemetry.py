"""Telemetry sampling and batching."""

from __future__ import annotations

import msgspec

from edge.telemetry import TelemetryBatcher, guess_link, read_temperature, sample_system
from edge.uplink import UplinkQueue
from protocol.up import TelemetrySample

ROUTE_HEADER = "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT\n"


def test_system_sample_has_protocol_shape():
    s = sample_system()
    assert 0 <= s["cpu_pct"] <= 100 and 0 < s["mem_pct"] <= 100
    assert s["disk_free_mb"] > 0
    assert s["temp_c"] is None or -40 <= s["temp_c"] <= 150
    msgspec.convert({"ts": 1.0, **s}, TelemetrySample)


def test_link_guess_follows_the_default_route(tmp_path):
    route = tmp_path / "route"
    net = tmp_path / "net"
    (net / "wlan0" / "wireless").mkdir(parents=True)
    route.write_text(
        ROUTE_HEADER
        + "eth0\t0000A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"  # a LAN, not the default
        + "wwan0\t00000000\t0101A8C0\t0003\t0\t0\t700\t00000000\t0\t0\t0\n"
        + "wlan0\t00000000\t0101A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0\n"
    )
    assert guess_link(route_file=route, net_root=net) == "wifi"  # lowest metric wins
    route.write_text(ROUTE_HEADER + "wwan0\t00000000\t0101A8C0\t0003\t0\t0\t700\t00000000\t0\t0\t0\n")
    assert guess_link(route_file=route, net_root=net) == "cellular"
    route.write_text(ROUTE_HEADER)
    assert guess_link(route_file=route, net_root=net) == "unknown"
    assert guess_link(route_file=tmp_path / "missing", net_root=net) == "unknown"


def test_temperature_from_thermal_zones_when_psutil_has_none(tmp_path, monkeypatch):
    import psutil

    monkeypatch.setattr(psutil, "sensors_temperatures", lambda: {})
    assert read_temperature(thermal_root=tmp_path) is None
    for n, milli in enumerate(["48500", "61250", "-273000"]):  # the last is a broken sensor
        zone = tmp_path / f"thermal_zone{n}"
        zone.mkdir()
        (zone / "temp").write_text(milli + "\n")
    assert read_temperature(thermal_root=tmp_path) == 61.2


def test_batches_every_n_seconds_or_m_samples_with_queue_figures(tmp_path):
    now = [0.0]
    q = UplinkQueue.open(tmp_path / "uplink.db", quota_bytes=10**6)
    q.ack(q.put("alert", "t", b"a" * 99))  # sent before the batcher started: not reported
    system = {"cpu_pct": 12.5, "mem_pct": 40.0, "temp_c": None, "disk_free_mb": 900.0, "link": "cellular"}
    b = TelemetryBatcher(
        queue=q,
        interval_s=60,
        max_samples=3,
        clock=lambda: now[0],
        wall=lambda: 1e9 + now[0],
        system=lambda: system,
    )
    b.observe(fps=5.0, inference_ms=20.0)
    b.observe(fps=7.0, inference_ms=30.0)
    q.ack(q.put("event", "t", b"e" * 199))
    q.put("clip", "t", b"c" * 10)
    assert b.tick() is None  # one sample, 0 s: not due
    now[0] = 10
    assert b.tick() is None
    now[0] = 20
    body = b.tick()  # third sample: the count triggers
    assert body is not None and len(body["samples"]) == 3
    first, second = body["samples"][0], body["samples"][1]
    assert first["fps"] == 6.0 and first["inference_ms"] == 25.0 and second["fps"] is None
    # Classes with nothing sent or nothing queued are left out (the protocol reads them as 0).
    assert first["bytes_sent"] == {"event": 200} and second["bytes_sent"] == {}
    assert first["queue_depth"] == {"clip": 1}
    msgspec.convert(body, msgspec.defstruct("Body", [("samples", list[TelemetrySample])]))

    now[0] = 50
    assert b.tick() is None
    now[0] = 81  # 61 s since the last body
    body = b.tick()
    assert body is not None and [s["ts"] for s in body["samples"]] == [1e9 + 50, 1e9 + 81]
    assert b.flush() is None
