"""Both Celery brokers the stack supports (STACK_CELERY_BROKER): the stack's own worker service on
RabbitMQ and on Redis answers the readiness ping and runs a task sent through that broker.

The full stack runs on the default (RabbitMQ) in test_stack_e2e.py; this starts only the broker
check and the worker, with the stack's definitions (stack/services.py).
"""

from __future__ import annotations

import io
import os
import uuid

import pytest

from stack.config import stack_config
from stack.services import build_services, celery_ping, worker_node
from stack.supervisor import Supervisor
from tests.stack.conftest import fleet_variable_names

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("broker", ["rabbitmq", "redis"])
def test_the_stack_worker_runs_tasks_on_either_broker(broker, tmp_path):
    from celery import Celery

    isolation = f"fleet-brokers-{uuid.uuid4().hex[:8]}"
    names = fleet_variable_names()
    environ = {k: v for k, v in os.environ.items() if k not in names and not k.startswith("STACK_")}
    environ.update(
        {
            "STACK_DIR": str(tmp_path),
            "STACK_CELERY_BROKER": broker,
            "STACK_WORKER_CONCURRENCY": "1",
            "CELERY_TASK_DEFAULT_QUEUE": isolation,
            "CELERY_CONTROL_EXCHANGE": isolation,
            "CELERY_RESULT_BACKEND": "redis://127.0.0.1:6379/14",
        }
    )
    config = stack_config(environ)
    wanted = {"rabbitmq": ("redis", "rabbitmq", "worker"), "redis": ("redis", "worker")}[broker]
    services = [s for s in build_services(config) if s.name in wanted]
    assert [s.name for s in services] == list(wanted)
    out = io.StringIO()
    supervisor = Supervisor(services, out=out)
    supervisor.start()
    try:
        expected_url = "amqp://" if broker == "rabbitmq" else "redis://127.0.0.1:6379/0"
        assert config.celery_broker_url.startswith(expected_url)
        assert celery_ping(config, worker_node())
        client = Celery(
            "e2e-client", broker=config.celery_broker_url, backend=environ["CELERY_RESULT_BACKEND"]
        )
        try:
            result = client.send_task("celery.accumulate", args=(broker, 2), queue=isolation)
            assert result.get(timeout=30) == [broker, 2]
        finally:
            client.close()
    finally:
        supervisor.stop()
    assert "worker    worker1@" in out.getvalue()
