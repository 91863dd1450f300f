// Plain types of the hand-written layer: what a user passes in and gets back.
import type { JsonObject, JsonValue } from "@bufbuild/protobuf";

export type { JsonObject, JsonValue };

/** A task's status: the proto's `TASK_STATUS_*` names without the prefix. */
export type TaskStatus = "PENDING" | "IN_PROGRESS" | "COMPLETED" | "FAILED" | "CANCELLED";

/** What happened to a task: the proto's `TASK_EVENT_TYPE_*` names without the prefix. */
export type TaskEventType = "CREATED" | "STATUS_CHANGED" | "PROGRESS" | "DELETED";

export const TERMINAL_STATUSES: readonly TaskStatus[] = ["COMPLETED", "FAILED", "CANCELLED"];

export interface Dependency {
  id: string;
  /** Defaults to true on the server. */
  required?: boolean;
}

/** What a new task is made of (CreateTask, CreateTaskTree). Durations in milliseconds. */
export interface TaskInput {
  /** In CreateTaskTree: a client-local id that `parentId` and dependencies refer to. */
  id?: string;
  name: string;
  parentId?: string;
  userId?: string;
  executor?: string;
  priority?: number;
  dependencies?: Dependency[];
  inputs?: JsonObject;
  params?: JsonObject;
  maxAttempts?: number;
  retryBackoffMs?: number;
  timeoutMs?: number;
}

export interface TaskError {
  reason: string;
  message: string;
  details: JsonObject | undefined;
}

/** A stored task. Timestamps are Dates (undefined when unset), durations milliseconds. */
export interface Task {
  id: string;
  parentId: string;
  rootId: string;
  userId: string;
  name: string;
  executor: string;
  priority: number | undefined;
  dependencies: { id: string; required: boolean }[];
  inputs: JsonObject | undefined;
  params: JsonObject | undefined;
  status: TaskStatus;
  result: JsonValue | undefined;
  error: TaskError | undefined;
  progress: number;
  progressMessage: string;
  attempt: number;
  maxAttempts: number;
  retryBackoffMs: number | undefined;
  timeoutMs: number | undefined;
  originalTaskId: string;
  hasChildren: boolean;
  createTime: Date | undefined;
  startTime: Date | undefined;
  updateTime: Date | undefined;
  endTime: Date | undefined;
  etag: string;
  executionRequested: boolean;
}

export interface TaskEvent {
  /** int64 on the wire; a JS number here (exact up to 2^53 - 1, checked). */
  sequence: number;
  taskId: string;
  rootId: string;
  userId: string;
  parentId: string;
  name: string;
  type: TaskEventType;
  status: TaskStatus;
  /** Undefined for CREATED. */
  previousStatus: TaskStatus | undefined;
  progress: number;
  progressMessage: string;
  error: TaskError | undefined;
  attempt: number;
  time: Date | undefined;
  isGroup: boolean;
}

export interface Executor {
  id: string;
  description: string;
  inputSchema: JsonObject | undefined;
}
