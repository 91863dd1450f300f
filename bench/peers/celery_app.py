"""The Celery 5 app of the peer benchmark (runs in build/peers/celery/venv): one trivial
task, a broker and a result backend on SQLite files in $CELERY_PEER_DIR, and the broker's
polling interval from $CELERY_PEER_POLLING_S (unset: kombu's default, 1 s). The worker is
`celery -A celery_app worker` with this folder on its path and touches `worker.ready` in
that directory once it consumes; `celery_peer.py` sends."""

from __future__ import annotations

import os
from pathlib import Path

from celery import Celery
from celery.signals import worker_ready
from kombu.transport import sqlalchemy as kombu_sqlalchemy

directory = Path(os.environ["CELERY_PEER_DIR"])
app = Celery(
    "celery_app",
    broker=f"sqla+sqlite:///{directory / 'broker.db'}",
    backend=f"db+sqlite:///{directory / 'results.db'}",
)
if polling := os.environ.get("CELERY_PEER_POLLING_S"):
    # The documented `broker_transport_options={"polling_interval": ...}` cannot be used
    # with this transport: kombu 5.7's SQLAlchemy channel passes every transport option on
    # to `create_engine`, which rejects it, and the worker dies at start (TypeError:
    # "Invalid argument(s) 'polling_interval' sent to create_engine()"). The class
    # attribute is the default the option would have overridden; measured: a 20-task
    # chain 0.88 s with the default 1 s, 0.25 s with 0.01 (bench/README.md, Peers).
    kombu_sqlalchemy.Transport.polling_interval = float(polling)
app.conf.broker_connection_retry_on_startup = True


@app.task
def noop() -> None:
    return None


@worker_ready.connect
def _announce_ready(**_: object) -> None:
    # A file rather than a log line: the worker's default log level hides "ready.".
    (directory / "worker.ready").touch()
