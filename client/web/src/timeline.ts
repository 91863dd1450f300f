// The attempts timeline: every attempt of every task that has started, each a bar from its
// start to its end (or now), in start order, coloured by how it ended (a failed attempt
// that was retried included); up to MAX_ROWS bars, the earliest first. Attempts come
// from the tree's event history (attempts.ts); a task whose history was pruned shows
// what the task itself keeps, its current attempt, marked as such.
import type { Attempt, AttemptHistory, Outcome } from "./attempts.js";
import { el } from "./dom.js";
import { svg } from "./svg.js";
import type { TreeModel } from "./tree_model.js";
import type { Task } from "../../typescript/src/types.js";

const MAX_ROWS = 300;
const ROW = 18;
const LABEL = 200;
const WIDTH = 900;

const LOOKS: Record<Outcome, [string, string]> = {
  IN_PROGRESS: ["in_progress", "in progress"],
  COMPLETED: ["completed", "completed"],
  FAILED: ["failed", "failed"],
  CANCELLED: ["cancelled", "cancelled"],
  RETRIED: ["failed", "failed, retried"],
  INTERRUPTED: ["pending", "interrupted"],
};

interface Bar {
  task: Task;
  attempt: Attempt;
  /** From the task's own fields: its history was pruned. */
  fallback: boolean;
}

export function attemptsTimeline(model: TreeModel, history: AttemptHistory, href: (id: string) => string): HTMLElement {
  if (!history.loaded) return el("p", { class: "hint" }, "Reading the tree's history…");
  const bars: Bar[] = [];
  let pruned = 0;
  for (const node of model.nodes.values()) {
    const task = node.task;
    const attempts = history.attempts(task.id); // none for groups: they run nothing
    for (const attempt of attempts) bars.push({ task, attempt, fallback: false });
    if (!history.isWhole(task.id) && task.startTime && task.executor !== "") {
      pruned++;
      if (!attempts.length) bars.push({ task, attempt: fromTask(task), fallback: true });
    }
  }
  if (!bars.length) return el("p", { class: "hint" }, "No task of this tree has started yet.");
  bars.sort((a, b) => a.attempt.start.getTime() - b.attempt.start.getTime());
  const shown = bars.slice(0, MAX_ROWS);
  const now = Date.now();
  const begin = shown[0]!.attempt.start.getTime();
  const end = Math.max(...shown.map((bar) => bar.attempt.end?.getTime() ?? now), begin + 1);
  const scale = (WIDTH - LABEL - 10) / (end - begin);
  const height = shown.length * ROW + 30;
  const root = svg("svg", { class: "timeline", width: WIDTH, height, viewBox: `0 0 ${WIDTH} ${height}`, role: "img", "aria-label": "Timeline of attempts" });
  shown.forEach(({ task, attempt, fallback }, index) => {
    const y = index * ROW + 4;
    const x = LABEL + (attempt.start.getTime() - begin) * scale;
    const w = Math.max(2, ((attempt.end?.getTime() ?? now) - attempt.start.getTime()) * scale);
    const [look, said] = LOOKS[attempt.outcome];
    const label = `${task.name} (attempt ${attempt.number || 1})${fallback ? " *" : ""}`;
    const error = attempt.error ? `: ${attempt.error.reason}` : "";
    root.append(
      svg(
        "a",
        { href: href(task.id), "aria-label": `${label}, ${said}${error}`, "data-outcome": attempt.outcome },
        svg("text", { x: 4, y: y + 12, class: "label" }, label.length > 32 ? `${label.slice(0, 31)}…` : label),
        svg("rect", { class: `node ${look}`, x, y, width: w, height: ROW - 4, rx: 2 }),
      ),
    );
  });
  root.append(svg("text", { x: LABEL, y: height - 6, class: "label" }, `0 s … ${((end - begin) / 1000).toFixed(1)} s`));
  const box = el("div", { class: "graph-box" }, root);
  if (bars.length > MAX_ROWS) box.append(el("p", { class: "hint" }, `${bars.length - MAX_ROWS} later attempts not shown`));
  if (pruned) {
    box.append(
      el(
        "p",
        { class: "hint pruned" },
        `The history of ${pruned === 1 ? "1 task" : `${pruned} tasks`} was pruned (older than the server's event retention): ` +
          "those marked * show only their current attempt, from the task itself.",
      ),
    );
  }
  return box;
}

/** The one attempt a task keeps: its current one. */
function fromTask(task: Task): Attempt {
  const outcome: Outcome = task.status === "IN_PROGRESS" || task.status === "PENDING" ? "IN_PROGRESS" : (task.status as Outcome);
  return { taskId: task.id, number: task.attempt, start: task.startTime!, end: task.endTime, outcome, error: task.error };
}
