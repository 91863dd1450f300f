// Every attempt of every task of a tree, rebuilt from its events (the CLI's `get` does the
// same for one task, client/taskgrove/cli/history.py): a task keeps only its current
// attempt's start and end, while its `status_changed` events carry each attempt's number,
// status and time. The history comes from WatchEvents with the root and after_sequence 0
// (what is retained), then the tree page's live events extend it.
import type { TaskError, TaskEvent } from "../../typescript/src/types.js";

/** How an attempt ended: "retried" failed with another attempt to follow, "interrupted"
 * went back to pending without an error (the server stopped and hands it back). */
export type Outcome = "IN_PROGRESS" | "COMPLETED" | "FAILED" | "CANCELLED" | "RETRIED" | "INTERRUPTED";

export interface Attempt {
  taskId: string;
  number: number;
  start: Date;
  end: Date | undefined;
  outcome: Outcome;
  error: TaskError | undefined;
}

export class AttemptHistory {
  private readonly byTask = new Map<string, Attempt[]>();
  /** Tasks whose `created` event was seen: their history is whole. */
  private readonly whole = new Set<string>();
  /** The last sequence applied: a replayed and a live event are applied once. */
  sequence = 0;
  /** The replay of the stored history has ended (until then, nothing is drawn). */
  loaded = false;

  apply(events: readonly TaskEvent[]): void {
    for (const event of events) {
      if (event.sequence <= this.sequence) continue;
      this.sequence = event.sequence;
      if (event.type === "CREATED") this.whole.add(event.taskId);
      if (event.type !== "STATUS_CHANGED" || event.isGroup) continue;
      let attempts = this.byTask.get(event.taskId);
      const current = attempts?.[attempts.length - 1];
      if (event.status === "IN_PROGRESS") {
        if (!current || current.number !== event.attempt || current.end) {
          if (!attempts) this.byTask.set(event.taskId, (attempts = []));
          attempts.push({
            taskId: event.taskId, number: event.attempt, start: event.time ?? new Date(),
            end: undefined, outcome: "IN_PROGRESS", error: undefined,
          });
        }
        continue;
      }
      if (!current || current.end) continue; // e.g. a pending task cancelled
      current.end = event.time ?? new Date();
      current.error = event.error;
      if (event.status === "PENDING") current.outcome = event.error ? "RETRIED" : "INTERRUPTED";
      else current.outcome = event.status as Outcome;
    }
  }

  attempts(taskId: string): readonly Attempt[] {
    return this.byTask.get(taskId) ?? [];
  }

  /** Whether the task's history starts at its creation (else older events were pruned). */
  isWhole(taskId: string): boolean {
    return this.whole.has(taskId);
  }
}
