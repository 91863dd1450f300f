// The attempts timeline: each task that has started, as a bar from its (current)
// attempt's start to its end (or now), in start order, coloured by status; up to
// MAX_ROWS bars, the earliest first.
import { el } from "./dom.js";
import { statusLabel } from "./format.js";
import { svg } from "./svg.js";
import type { TreeModel } from "./tree_model.js";

const MAX_ROWS = 300;
const ROW = 18;
const LABEL = 180;
const WIDTH = 900;

export function attemptsTimeline(model: TreeModel, href: (id: string) => string): HTMLElement {
  const started = [...model.nodes.values()]
    .map((n) => n.task)
    .filter((t) => t.startTime && t.executor !== "")
    .sort((a, b) => a.startTime!.getTime() - b.startTime!.getTime());
  if (!started.length) return el("p", { class: "hint" }, "No task of this tree has started yet.");
  const shown = started.slice(0, MAX_ROWS);
  const now = Date.now();
  const begin = shown[0]!.startTime!.getTime();
  const end = Math.max(...shown.map((t) => t.endTime?.getTime() ?? now), begin + 1);
  const scale = (WIDTH - LABEL - 10) / (end - begin);
  const height = shown.length * ROW + 30;
  const root = svg("svg", { class: "timeline", width: WIDTH, height, viewBox: `0 0 ${WIDTH} ${height}`, role: "img", "aria-label": "Timeline of attempts" });
  shown.forEach((task, index) => {
    const y = index * ROW + 4;
    const x = LABEL + (task.startTime!.getTime() - begin) * scale;
    const w = Math.max(2, ((task.endTime?.getTime() ?? now) - task.startTime!.getTime()) * scale);
    const label = `${task.name} (attempt ${task.attempt || 1})`;
    root.append(
      svg(
        "a",
        { href: href(task.id), "aria-label": `${label}, ${statusLabel(task.status)}` },
        svg("text", { x: 4, y: y + 12, class: "label" }, label.length > 28 ? `${label.slice(0, 27)}…` : label),
        svg("rect", { class: `node ${task.status.toLowerCase()}`, x, y, width: w, height: ROW - 4, rx: 2 }),
      ),
    );
  });
  root.append(svg("text", { x: LABEL, y: height - 6, class: "label" }, `0 s … ${((end - begin) / 1000).toFixed(1)} s`));
  const more = started.length > MAX_ROWS ? el("p", { class: "hint" }, `${started.length - MAX_ROWS} later attempts not shown`) : null;
  const box = el("div", { class: "graph-box" }, root);
  if (more) box.append(more);
  return box;
}
