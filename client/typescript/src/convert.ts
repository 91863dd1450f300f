// Protobuf messages <-> the plain types of ./types.ts. Enum names are checked at run time
// too: a mistyped status is a TypeError, never a silent 0 (UNSPECIFIED).
import { create, toJson, type JsonValue } from "@bufbuild/protobuf";
import {
  ValueSchema,
  durationFromMs,
  durationMs,
  timestampDate,
  type Duration,
  type Timestamp,
} from "@bufbuild/protobuf/wkt";
import { TaskEventType as TaskEventTypePb, type TaskEvent as TaskEventPb } from "./gen/taskgrove/v1/event_pb.js";
import {
  DependencySchema,
  TaskSchema,
  TaskStatus as TaskStatusPb,
  type Executor as ExecutorPb,
  type Task as TaskPb,
  type TaskError as TaskErrorPb,
} from "./gen/taskgrove/v1/task_pb.js";
import type { Executor, Task, TaskError, TaskEvent, TaskEventType, TaskInput, TaskStatus } from "./types.js";

const STATUSES: Record<TaskStatus, TaskStatusPb> = {
  PENDING: TaskStatusPb.PENDING,
  IN_PROGRESS: TaskStatusPb.IN_PROGRESS,
  COMPLETED: TaskStatusPb.COMPLETED,
  FAILED: TaskStatusPb.FAILED,
  CANCELLED: TaskStatusPb.CANCELLED,
};

const EVENT_TYPES: Record<TaskEventType, TaskEventTypePb> = {
  CREATED: TaskEventTypePb.CREATED,
  STATUS_CHANGED: TaskEventTypePb.STATUS_CHANGED,
  PROGRESS: TaskEventTypePb.PROGRESS,
  DELETED: TaskEventTypePb.DELETED,
};

function inverse<K extends string>(table: Record<K, number>): Map<number, K> {
  return new Map(Object.entries(table).map(([name, value]) => [value as number, name as K]));
}
const STATUS_NAMES = inverse(STATUSES);
const EVENT_TYPE_NAMES = inverse(EVENT_TYPES);

/** The proto value of a status name; TypeError for anything else. */
export function statusToProto(status: TaskStatus): TaskStatusPb {
  if (!Object.hasOwn(STATUSES, status)) {
    throw new TypeError(`unknown task status ${JSON.stringify(status)}; one of ${Object.keys(STATUSES).join(", ")}`);
  }
  return STATUSES[status];
}

export function statusFromProto(value: TaskStatusPb): TaskStatus | undefined {
  return STATUS_NAMES.get(value);
}

function requiredStatus(value: TaskStatusPb): TaskStatus {
  const name = statusFromProto(value);
  if (name === undefined) throw new TypeError(`the server sent an unknown task status ${value}`);
  return name;
}

function eventType(value: TaskEventTypePb): TaskEventType {
  const name = EVENT_TYPE_NAMES.get(value);
  if (name === undefined) throw new TypeError(`the server sent an unknown event type ${value}`);
  return name;
}

/** int64 (bigint) -> number, refusing what a number cannot hold exactly. */
export function int64ToNumber(value: bigint): number {
  if (value > BigInt(Number.MAX_SAFE_INTEGER) || value < BigInt(Number.MIN_SAFE_INTEGER)) {
    throw new RangeError(`int64 ${value} does not fit a JS number exactly`);
  }
  return Number(value);
}

function date(value: Timestamp | undefined): Date | undefined {
  return value === undefined ? undefined : timestampDate(value);
}

function ms(value: Duration | undefined): number | undefined {
  return value === undefined ? undefined : durationMs(value);
}

function taskError(value: TaskErrorPb | undefined): TaskError | undefined {
  if (value === undefined) return undefined;
  return { reason: value.reason, message: value.message, details: value.details };
}

export function taskToProto(input: TaskInput): TaskPb {
  return create(TaskSchema, {
    id: input.id ?? "",
    name: input.name,
    parentId: input.parentId ?? "",
    userId: input.userId ?? "",
    executor: input.executor ?? "",
    ...(input.priority !== undefined ? { priority: input.priority } : {}),
    dependencies: (input.dependencies ?? []).map((d) =>
      create(DependencySchema, { id: d.id, ...(d.required !== undefined ? { required: d.required } : {}) }),
    ),
    ...(input.inputs !== undefined ? { inputs: input.inputs } : {}),
    ...(input.params !== undefined ? { params: input.params } : {}),
    maxAttempts: input.maxAttempts ?? 0,
    ...(input.retryBackoffMs !== undefined ? { retryBackoff: durationFromMs(input.retryBackoffMs) } : {}),
    ...(input.timeoutMs !== undefined ? { timeout: durationFromMs(input.timeoutMs) } : {}),
  });
}

export function taskFromProto(task: TaskPb): Task {
  return {
    id: task.id,
    parentId: task.parentId,
    rootId: task.rootId,
    userId: task.userId,
    name: task.name,
    executor: task.executor,
    priority: task.priority,
    dependencies: task.dependencies.map((d) => ({ id: d.id, required: d.required ?? true })),
    inputs: task.inputs,
    params: task.params,
    status: requiredStatus(task.status),
    result: task.result === undefined ? undefined : (toJson(ValueSchema, task.result) as JsonValue),
    error: taskError(task.error),
    progress: task.progress,
    progressMessage: task.progressMessage,
    attempt: task.attempt,
    maxAttempts: task.maxAttempts,
    retryBackoffMs: ms(task.retryBackoff),
    timeoutMs: ms(task.timeout),
    originalTaskId: task.originalTaskId,
    hasChildren: task.hasChildren,
    createTime: date(task.createTime),
    startTime: date(task.startTime),
    updateTime: date(task.updateTime),
    endTime: date(task.endTime),
    etag: task.etag,
    executionRequested: task.executionRequested,
  };
}

export function eventFromProto(event: TaskEventPb): TaskEvent {
  return {
    sequence: int64ToNumber(event.sequence),
    taskId: event.taskId,
    rootId: event.rootId,
    userId: event.userId,
    parentId: event.parentId,
    name: event.name,
    type: eventType(event.type),
    status: requiredStatus(event.status),
    previousStatus: statusFromProto(event.previousStatus),
    progress: event.progress,
    progressMessage: event.progressMessage,
    error: taskError(event.error),
    attempt: event.attempt,
    time: date(event.time),
    isGroup: event.isGroup,
  };
}

export function executorFromProto(executor: ExecutorPb): Executor {
  return { id: executor.id, description: executor.description, inputSchema: executor.inputSchema };
}
