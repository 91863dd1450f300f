// The runs on screen and what the event stream changes in them, with no DOM: a root on
// screen takes its status, progress and times from its own events; events of tasks below
// it mark it for a progress read (a group's progress is its subtree's mean, and groups
// send events only when their status changes); a new root that matches the filters goes
// to the top of the first page (on another page it is counted as new), and a root off
// screen that comes to match the status filter is counted too. Any other change of a
// root off screen is not shown: it is not new, and its place is where it was.
import type { Task, TaskEvent, TaskStatus } from "../../typescript/src/types.js";
import { applyEvent, taskFromEvent } from "./event_task.js";

export interface RunsFilters {
  status: TaskStatus | "";
  owner: string;
  name: string;
}

export interface Applied {
  /** Roots on screen whose row must be drawn again. */
  changed: Set<string>;
  /** Roots added at the top. */
  added: Task[];
  /** Roots on screen that were deleted. */
  removed: string[];
}

export class RunsModel {
  rows: Task[] = [];
  private byId = new Map<string, Task>();
  /** Roots on screen with events below them since their progress was last read. */
  readonly stale = new Set<string>();
  /** New roots that match the filters, not on screen (shown as "N new runs"). */
  readonly unseen = new Set<string>();
  /** Older roots, not on screen, that came to match the status filter. */
  readonly nowMatching = new Set<string>();

  constructor(
    readonly filters: RunsFilters,
    /** On the first page, new runs are shown at the top; on another they are counted. */
    readonly firstPage: boolean,
  ) {}

  load(tasks: Task[]): void {
    this.rows = tasks;
    this.byId = new Map(tasks.map((task) => [task.id, task]));
    this.stale.clear();
    this.unseen.clear();
    this.nowMatching.clear();
  }

  has(id: string): boolean {
    return this.byId.has(id);
  }

  apply(events: TaskEvent[]): Applied {
    const applied: Applied = { changed: new Set(), added: [], removed: [] };
    for (const event of events) {
      const shown = this.byId.get(event.taskId);
      if (shown) {
        if (event.type === "DELETED") {
          this.byId.delete(shown.id);
          this.rows = this.rows.filter((task) => task.id !== shown.id);
          applied.removed.push(shown.id);
          applied.changed.delete(shown.id);
        } else {
          applyEvent(shown, event);
          applied.changed.add(shown.id);
        }
      } else if (event.parentId) {
        if (this.byId.has(event.rootId)) this.stale.add(event.rootId);
      } else if (event.type === "CREATED" && this.matches(event)) {
        if (this.firstPage) {
          const task = taskFromEvent(event);
          this.byId.set(task.id, task);
          this.rows.unshift(task);
          applied.added.push(task);
        } else {
          this.unseen.add(event.taskId);
        }
      } else if (event.type === "STATUS_CHANGED" && this.filters.status && this.matches(event)) {
        if (!this.unseen.has(event.taskId)) this.nowMatching.add(event.taskId);
      }
    }
    return applied;
  }

  private matches(event: TaskEvent): boolean {
    const { status, owner, name } = this.filters;
    return (
      (!status || event.status === status) &&
      (!owner || event.userId === owner) &&
      (!name || event.name.toLowerCase().includes(name.toLowerCase()))
    );
  }
}
