"""The current schema, as SQLAlchemy Core tables (migrations create and evolve it)."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    false,
)

metadata = MetaData()

# SQLite only auto-increments an INTEGER PRIMARY KEY.
_SeqType = BigInteger().with_variant(Integer(), "sqlite")

tasks = Table(
    "tasks",
    metadata,
    # Insertion order: the tie-breaker after priority, and the ListTasks page key.
    Column("seq", _SeqType, primary_key=True, autoincrement=True),
    Column("id", String(36), nullable=False, unique=True),
    Column("parent_id", String(36), nullable=True),
    Column("root_id", String(36), nullable=False),
    Column("user_id", String(255), nullable=False),
    Column("name", String(255), nullable=False),
    Column("executor", String(255), nullable=True),  # NULL: a group
    Column("priority", Integer, nullable=False),
    Column("dependencies", JSON, nullable=False),  # [{"id": ..., "required": bool}]
    Column("inputs", JSON, nullable=False),
    Column("params", JSON, nullable=False),
    Column("status", String(16), nullable=False),
    Column("execution_requested", Boolean, nullable=False),
    Column("result", JSON, nullable=True),
    Column("error", JSON, nullable=True),  # {"reason", "message", "details"}
    Column("progress", Float, nullable=False),
    Column("progress_message", Text, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("max_attempts", Integer, nullable=False),
    Column("retry_backoff_ms", BigInteger, nullable=False),
    Column("timeout_ms", BigInteger, nullable=True),
    Column("original_task_id", String(36), nullable=True),
    Column("has_children", Boolean, nullable=False),
    # Microseconds since the epoch (UTC): portable and cheap to compare.
    Column("created_us", BigInteger, nullable=False),
    Column("started_us", BigInteger, nullable=True),
    Column("updated_us", BigInteger, nullable=False),
    Column("ended_us", BigInteger, nullable=True),
    Column("version", Integer, nullable=False),
    Index("ix_tasks_parent", "parent_id", "seq"),
    Index("ix_tasks_root", "root_id", "seq"),
    Index("ix_tasks_user", "user_id", "seq"),
    # Finds executing trees to resume at start.
    Index("ix_tasks_active", "execution_requested", "status"),
)

task_events = Table(
    "task_events",
    metadata,
    # Assigned by the writer in commit order: the stream's resume point.
    Column("sequence", BigInteger, primary_key=True, autoincrement=False),
    Column("task_id", String(36), nullable=False),
    Column("root_id", String(36), nullable=False),
    Column("user_id", String(255), nullable=False),
    Column("parent_id", String(36), nullable=True),
    Column("name", String(255), nullable=False),
    Column("type", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("previous_status", String(16), nullable=True),
    Column("progress", Float, nullable=False),
    Column("progress_message", Text, nullable=False),
    Column("error", JSON, nullable=True),
    Column("attempt", Integer, nullable=False),
    Column("is_group", Boolean, nullable=False),
    Column("time_us", BigInteger, nullable=False),
    Index("ix_task_events_root", "root_id", "sequence"),
    Index("ix_task_events_task", "task_id", "sequence"),
    Index("ix_task_events_user", "user_id", "sequence"),
)

event_compaction = Table(
    "event_compaction",
    metadata,
    # Per tree: every event up to this sequence has been pruned.
    Column("root_id", String(36), primary_key=True),
    Column("user_id", String(255), nullable=False),
    Column("compacted_through", BigInteger, nullable=False),
    Index("ix_event_compaction_user", "user_id"),
)

task_dependencies = Table(
    "task_dependencies",
    metadata,
    # The reverse index of `tasks.dependencies`: who depends on a task.
    Column("task_id", String(36), primary_key=True),
    Column("depends_on", String(36), primary_key=True),
    Column("required", Boolean, nullable=False),
    Index("ix_task_dependencies_depends_on", "depends_on"),
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("request_id", String(255), primary_key=True),
    Column("method", String(64), nullable=False),
    Column("request_hash", String(64), nullable=False),
    Column("response", LargeBinary, nullable=False),
    Column("created_us", BigInteger, nullable=False),
    Index("ix_idempotency_keys_created", "created_us"),
)

task_logs = Table(
    # What executors logged, per attempt; the server keeps each attempt's last lines.
    "task_logs",
    metadata,
    Column("task_id", String(36), primary_key=True),
    Column("attempt", Integer, primary_key=True),
    Column("sequence", BigInteger, primary_key=True),
    Column("time_us", BigInteger, nullable=False),
    Column("text", Text, nullable=False),
)

remote_executors = Table(
    # Executors that workers registered: their tasks may be created while none is connected.
    "remote_executors",
    metadata,
    Column("id", String(100), primary_key=True),
    Column("description", Text, nullable=False),
    Column("input_schema", JSON, nullable=False),
    Column("update_us", BigInteger, nullable=False),
)

tree_leases = Table(
    # Which replica holds a tree's state in memory, until when, and its fencing token
    # (grows with every claim): a write of the tree commits only under the token it holds.
    "tree_leases",
    metadata,
    Column("root_id", String(36), primary_key=True),
    Column("replica_id", String(64), nullable=False),
    Column("token", BigInteger, nullable=False),
    Column("expires_us", BigInteger, nullable=False),
    # Handed to `replica_id` by the replica that held it (to the workers of its
    # executors): that replica has not loaded it yet (engine/placement.py).
    Column("adopt", Boolean, nullable=False, server_default=false()),
    Index("ix_tree_leases_replica", "replica_id"),
    Index("ix_tree_leases_expires", "expires_us"),
)

executor_presence = Table(
    # Which replica has workers serving which remote executor, until when (renewed while
    # they stay): a tree waiting for a worker goes to a replica that has one.
    "executor_presence",
    metadata,
    Column("replica_id", String(64), primary_key=True),
    Column("executor_id", String(100), primary_key=True),
    Column("workers", Integer, nullable=False),
    Column("expires_us", BigInteger, nullable=False),
    Index("ix_executor_presence_executor", "executor_id"),
)

event_head = Table(
    # One row: the last event sequence handed out. Taken under its row lock inside each
    # commit, so sequences follow commit order across replicas (ARCHITECTURE.md).
    "event_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("sequence", BigInteger, nullable=False),
)

cluster_commands = Table(
    # An operation on a tree another replica holds, sent to that replica, and its answer.
    "cluster_commands",
    metadata,
    Column("id", _SeqType, primary_key=True, autoincrement=True),
    Column("replica_id", String(64), nullable=False),
    Column("sender_id", String(64), nullable=False),
    Column("root_id", String(36), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("result", JSON, nullable=True),
    Column("created_us", BigInteger, nullable=False),
    Index("ix_cluster_commands_replica", "replica_id", "id"),
)
