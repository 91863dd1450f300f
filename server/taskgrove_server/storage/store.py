"""`TaskStore`: what the engine and the use-cases hold of storage, reads and the writer."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from taskgrove_server.events.event import Event
from taskgrove_server.storage.memory import MemoryStore
from taskgrove_server.storage.readers import Reader
from taskgrove_server.storage.reads import TaskReads
from taskgrove_server.storage.repository import SqlReads
from taskgrove_server.storage.sql_writes import SqlWrites
from taskgrove_server.storage.writer import Writer


@dataclass(slots=True)
class TaskStore:
    reads: TaskReads
    writer: Writer


def sql_store(
    db: AsyncEngine, url: str, reader: Reader, publish: Callable[[list[Event]], None]
) -> TaskStore:
    """The store over `db`; its reads run on `reader`, which closing the reads closes."""
    return TaskStore(SqlReads(reader), Writer(SqlWrites(db, url), publish))


def memory_store(
    publish: Callable[[list[Event]], None] | None = None,
) -> tuple[TaskStore, MemoryStore]:
    """A store over dicts, and the dicts (for unit tests)."""
    memory = MemoryStore()
    return TaskStore(memory, Writer(memory, publish)), memory
