// A task as its events tell it: the one rule the tree and the runs page both apply.
import type { Task, TaskEvent } from "../../typescript/src/types.js";

/** The task's status, progress, attempt and times after `event` (not DELETED). */
export function applyEvent(task: Task, event: TaskEvent): void {
  task.status = event.status;
  task.progress = event.progress;
  task.progressMessage = event.progressMessage;
  task.attempt = event.attempt;
  if (event.error) task.error = event.error;
  if (event.status === "IN_PROGRESS" && !task.startTime) task.startTime = event.time;
  if (event.status === "COMPLETED" || event.status === "FAILED" || event.status === "CANCELLED") task.endTime = event.time;
  if (event.status === "PENDING") task.endTime = undefined;
}

/** A task first seen in an event (created after the snapshot or page was read). */
export function taskFromEvent(event: TaskEvent): Task {
  return {
    id: event.taskId, parentId: event.parentId, rootId: event.rootId, userId: event.userId,
    name: event.name, executor: "", priority: undefined, dependencies: [], inputs: undefined,
    params: undefined, status: event.status, result: undefined, error: event.error,
    progress: event.progress, progressMessage: event.progressMessage, attempt: event.attempt,
    maxAttempts: 0, retryBackoffMs: undefined, timeoutMs: undefined, originalTaskId: "",
    hasChildren: false, createTime: event.time, startTime: undefined, updateTime: event.time,
    endTime: undefined, etag: "", executionRequested: false,
  };
}
