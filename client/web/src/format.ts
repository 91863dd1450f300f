// How values read on screen: statuses, progress, durations, JSON.
import type { Task, TaskStatus } from "../../typescript/src/types.js";

export const STATUSES: readonly TaskStatus[] = ["PENDING", "IN_PROGRESS", "COMPLETED", "FAILED", "CANCELLED"];

export function statusLabel(status: TaskStatus): string {
  return status.toLowerCase().replace("_", " ");
}

export function percent(progress: number): string {
  return `${Math.round(Math.max(0, Math.min(1, progress)) * 100)}%`;
}

export function duration(task: Pick<Task, "startTime" | "endTime">, now = Date.now()): string {
  if (!task.startTime) return "";
  const ms = (task.endTime?.getTime() ?? now) - task.startTime.getTime();
  if (ms < 1000) return `${Math.max(0, ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.round(s % 60)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

export function json(value: unknown): string {
  return value === undefined ? "" : JSON.stringify(value, null, 2);
}

export function time(value: Date | undefined): string {
  return value ? value.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z") : "";
}
