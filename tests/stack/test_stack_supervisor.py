"""The stack's supervisor on small real processes: order, readiness, loud restarts, stop with SIGKILL
after the grace period; and its configuration (stack/config.py) from environment variables."""

from __future__ import annotations

import io
import os
import signal
import sys
import threading
import time

import pytest

from stack.config import stack_config
from stack.supervisor import Service, StackError, Supervisor

PY = sys.executable


def sleeper(name: str, tmp_path, *, code: str = "import time; time.sleep(60)", **kwargs) -> Service:
    marker = tmp_path / f"{name}.started"
    argv = [PY, "-c", f"open({str(marker)!r}, 'a').write('x'); {code}"]
    return Service(
        name, argv, dict(os.environ), lambda s: marker.exists(), log_file=tmp_path / f"{name}.log", **kwargs
    )


def test_starts_in_order_prints_one_line_each_and_stops_the_last_first(tmp_path):
    out = io.StringIO()
    sup = Supervisor([sleeper("one", tmp_path), sleeper("two", tmp_path)], out=out)
    sup.start()
    first, second = sup.service("one"), sup.service("two")
    assert first.alive() and second.alive()
    sup.stop()
    lines = out.getvalue().splitlines()
    assert [line.split()[1] for line in lines] == ["one", "two", "two", "one"]
    assert lines[0].endswith(f"pid {first.pid}  log {tmp_path / 'one.log'}")
    assert lines[2] == "stack: two       stopped (signal 15 (SIGTERM))"
    assert not first.alive() and not second.alive()


def test_a_process_that_ignores_sigterm_is_killed_after_the_grace_period(tmp_path):
    stubborn = sleeper(
        "stubborn",
        tmp_path,
        code="import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)",
        grace_s=0.5,
    )
    out = io.StringIO()
    sup = Supervisor([stubborn], out=out)
    sup.start()
    time.sleep(0.2)  # let it install its handler
    started = time.monotonic()
    sup.stop()
    assert time.monotonic() - started < 5
    assert stubborn.proc.returncode == -signal.SIGKILL
    assert f"stack: stubborn (pid {stubborn.pid}) still running after 0.5 s: SIGKILL" in out.getvalue()


def test_a_killed_process_is_restarted_and_said_so(tmp_path):
    out = io.StringIO()
    sup = Supervisor([sleeper("svc", tmp_path)], out=out)
    sup.start()
    stop = threading.Event()
    watcher = threading.Thread(target=sup.watch, args=(stop, 0.05))
    watcher.start()
    try:
        old = sup.kill("svc", signal.SIGKILL)
        deadline = time.monotonic() + 10
        while not any(what == "restarted" for _, _, what in sup.events) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sup.service("svc").alive() and sup.service("svc").pid != old
        assert (
            f"stack: svc (pid {old}) exited with signal 9 (SIGKILL): restarting (1 in 60 s)" in out.getvalue()
        )
    finally:
        sup.stop()
        stop.set()
        watcher.join(5)


def test_restart_never_stops_the_stack_when_a_process_exits(tmp_path):
    sup = Supervisor([sleeper("svc", tmp_path)], out=io.StringIO(), restart="never")
    sup.start()
    sup.kill("svc", signal.SIGKILL)
    sup.service("svc").proc.wait(5)
    with pytest.raises(StackError, match="svc exited with signal 9"):
        sup.poll()
    sup.stop()


def test_a_process_that_keeps_exiting_makes_the_stack_give_up(tmp_path):
    flaky = sleeper("flaky", tmp_path, code="import time; time.sleep(0.3); raise SystemExit(3)")
    sup = Supervisor([flaky], out=io.StringIO(), max_restarts=2)
    sup.start()
    with pytest.raises(StackError, match=r"flaky keeps exiting \(code 3\)"):
        sup.watch(threading.Event(), interval=0.05)
    sup.stop()


def test_a_failed_start_says_why_and_stops_what_started(tmp_path):
    first = sleeper("first", tmp_path)
    broken = Service(
        "broken",
        [PY, "-c", "print('no config'); raise SystemExit(2)"],
        dict(os.environ),
        lambda s: False,
        log_file=tmp_path / "broken.log",
    )
    sup = Supervisor([first, broken], out=io.StringIO())
    with pytest.raises(StackError, match=r"broken exited \(code 2\) before it was ready(.|\n)*no config"):
        sup.start()
    assert not first.alive()


def test_a_oneshot_step_shows_its_output_and_a_failing_one_stops_the_start(tmp_path):
    out = io.StringIO()
    ok = Service(
        "prepare", [PY, "-c", "print('database migrated')"], dict(os.environ), lambda s: True, kind="oneshot"
    )
    bad = Service(
        "keys",
        [PY, "-c", "import sys; sys.exit('no passphrase')"],
        dict(os.environ),
        lambda s: True,
        kind="oneshot",
    )
    sup = Supervisor([ok, bad], out=out)
    with pytest.raises(StackError, match="keys failed \\(code 1\\):\nno passphrase"):
        sup.start()
    assert out.getvalue() == "stack: prepare   database migrated\n"


def test_config_fills_in_local_defaults_and_keeps_what_the_environment_sets(tmp_path):
    config = stack_config({"STACK_DIR": str(tmp_path), "DATABASE_URL": "postgres://db.example/fleet"})
    env = config.env
    assert env["DATABASE_URL"] == "postgres://db.example/fleet"  # set by the caller: kept
    assert env["CELERY_BROKER_URL"] == "amqp://guest:guest@127.0.0.1:5672//"  # RabbitMQ by default
    assert (env["MQTT_BROKER"], env["STORAGE_BACKEND"], env["CELERY_TASK_ALWAYS_EAGER"]) == (
        "mosquitto",
        "s3",
        "false",
    )
    assert env["INGEST_SHARED_SUBSCRIPTION"] == "false"  # one replica: lossless across broker restarts
    # Secrets are made once and kept, private, in STACK_DIR.
    assert (tmp_path / "secrets.env").stat().st_mode & 0o777 == 0o600
    again = stack_config({"STACK_DIR": str(tmp_path)}).env
    assert all(again[k] == env[k] for k in ("SECRET_KEY", "PKI_CA_PASSPHRASE", "OTA_KEY_PASSPHRASE"))
    on_redis = stack_config({"STACK_DIR": str(tmp_path), "STACK_CELERY_BROKER": "redis"})
    assert (
        on_redis.env["CELERY_BROKER_URL"] == "redis://127.0.0.1:6379/0" and on_redis.celery_broker == "redis"
    )
    with pytest.raises(ValueError, match="STACK_CELERY_BROKER must be one of rabbitmq, redis, not 'kafka'"):
        stack_config({"STACK_DIR": str(tmp_path), "STACK_CELERY_BROKER": "kafka"})
