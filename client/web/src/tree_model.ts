// One tree in memory: tasks by id, children in creation order, which groups are
// collapsed. Events change it in place; `rows()` flattens what is visible (O(n), run at
// most once per animation frame) with each group's counts of descendants by status.
import type { Task, TaskEvent, TaskStatus } from "../../typescript/src/types.js";
import { applyEvent, taskFromEvent } from "./event_task.js";

export interface Node {
  task: Task;
  children: string[];
}

export interface Row {
  id: string;
  depth: number;
  node: Node;
  /** Descendants by status (groups and tasks with children only). */
  counts: Partial<Record<TaskStatus, number>> | undefined;
}

export class TreeModel {
  readonly nodes = new Map<string, Node>();
  readonly collapsed = new Set<string>();
  rootId = "";
  /** The last event sequence applied (where a reconnection resumes). */
  sequence = 0;
  version = 0;

  load(tasks: Task[]): void {
    this.nodes.clear();
    for (const task of tasks) this.nodes.set(task.id, { task, children: [] });
    for (const task of tasks) this.link(task);
    this.version++;
  }

  private link(task: Task): void {
    const parent = task.parentId ? this.nodes.get(task.parentId) : undefined;
    if (parent && !parent.children.includes(task.id)) parent.children.push(task.id);
    if (!task.parentId) this.rootId = task.id;
  }

  apply(event: TaskEvent): void {
    this.sequence = Math.max(this.sequence, event.sequence);
    const node = this.nodes.get(event.taskId);
    if (event.type === "DELETED") {
      if (node) {
        this.nodes.delete(event.taskId);
        const parent = this.nodes.get(node.task.parentId);
        if (parent) parent.children = parent.children.filter((id) => id !== event.taskId);
      }
    } else if (!node) {
      const task = taskFromEvent(event);
      this.nodes.set(task.id, { task, children: [] });
      this.link(task);
    } else {
      applyEvent(node.task, event);
    }
    this.version++;
  }

  toggle(id: string): void {
    if (this.collapsed.has(id)) this.collapsed.delete(id);
    else this.collapsed.add(id);
    this.version++;
  }

  /** The tasks that depend on `id` (within this tree). */
  dependents(id: string): Task[] {
    const found: Task[] = [];
    for (const node of this.nodes.values()) if (node.task.dependencies.some((d) => d.id === id)) found.push(node.task);
    return found;
  }

  rows(): Row[] {
    const rows: Row[] = [];
    const root = this.nodes.get(this.rootId);
    if (!root) return rows;
    // Iterative: a deep tree must not overflow the stack. Counts are summed on the way out.
    const counts = new Map<string, Partial<Record<TaskStatus, number>>>();
    const stack: { id: string; depth: number; visible: boolean; exit: boolean }[] = [
      { id: this.rootId, depth: 0, visible: true, exit: false },
    ];
    const rowOf = new Map<string, Row>();
    while (stack.length) {
      const item = stack.pop()!;
      const node = this.nodes.get(item.id);
      if (!node) continue;
      if (item.exit) {
        if (node.children.length) {
          const mine: Partial<Record<TaskStatus, number>> = {};
          for (const child of node.children) {
            const childNode = this.nodes.get(child);
            if (!childNode) continue;
            const status = childNode.task.status;
            mine[status] = (mine[status] ?? 0) + 1;
            for (const [key, n] of Object.entries(counts.get(child) ?? {})) {
              mine[key as TaskStatus] = (mine[key as TaskStatus] ?? 0) + (n ?? 0);
            }
          }
          counts.set(item.id, mine);
          const row = rowOf.get(item.id);
          if (row) row.counts = mine;
        }
        continue;
      }
      if (item.visible) {
        const row: Row = { id: item.id, depth: item.depth, node, counts: undefined };
        rows.push(row);
        rowOf.set(item.id, row);
      }
      stack.push({ ...item, exit: true });
      const open = item.visible && !this.collapsed.has(item.id);
      for (let i = node.children.length - 1; i >= 0; i--) {
        stack.push({ id: node.children[i]!, depth: item.depth + 1, visible: open, exit: false });
      }
    }
    return rows;
  }
}
