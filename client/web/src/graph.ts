// The dependency graph of a tree (up to MAX_TASKS tasks): every task that depends or is
// depended upon, in columns by dependency depth (a task sits right of all it waits for),
// coloured by status, each a link to its panel. Drawn again when the tree changes.
import { el } from "./dom.js";
import { statusLabel } from "./format.js";
import { svg } from "./svg.js";
import type { TreeModel } from "./tree_model.js";

export const MAX_TASKS = 500;
const W = 170;
const H = 26;
const GAP_X = 60;
const GAP_Y = 10;

export function dependencyGraph(model: TreeModel, href: (id: string) => string): HTMLElement {
  if (model.nodes.size > MAX_TASKS) {
    return el("p", { class: "hint" }, `The graph is drawn for trees of up to ${MAX_TASKS} tasks (this one has ${model.nodes.size}).`);
  }
  const inGraph = new Set<string>();
  for (const node of model.nodes.values()) {
    for (const dep of node.task.dependencies) {
      if (model.nodes.has(dep.id)) {
        inGraph.add(dep.id);
        inGraph.add(node.task.id);
      }
    }
  }
  if (!inGraph.size) return el("p", { class: "hint" }, "No task of this tree depends on another.");
  const level = new Map<string, number>();
  const depth = (id: string, seen: Set<string>): number => {
    const known = level.get(id);
    if (known !== undefined) return known;
    if (seen.has(id)) return 0; // cycles are refused at creation; never loop on bad data
    seen.add(id);
    const deps = model.nodes.get(id)?.task.dependencies.filter((d) => inGraph.has(d.id)) ?? [];
    const value = deps.length ? 1 + Math.max(...deps.map((d) => depth(d.id, seen))) : 0;
    level.set(id, value);
    return value;
  };
  const columns: string[][] = [];
  for (const id of inGraph) (columns[depth(id, new Set())] ??= []).push(id);
  const place = new Map<string, { x: number; y: number }>();
  columns.forEach((ids, column) =>
    ids.forEach((id, row) => place.set(id, { x: 10 + column * (W + GAP_X), y: 10 + row * (H + GAP_Y) })),
  );
  const width = 20 + columns.length * (W + GAP_X);
  const height = 20 + Math.max(...columns.map((c) => c.length)) * (H + GAP_Y);
  const root = svg("svg", { class: "graph", width, height, viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": "Dependency graph" });
  for (const id of inGraph) {
    const to = place.get(id)!;
    for (const dep of model.nodes.get(id)!.task.dependencies) {
      const from = place.get(dep.id);
      if (!from) continue;
      const x1 = from.x + W, y1 = from.y + H / 2, x2 = to.x, y2 = to.y + H / 2;
      root.append(svg("path", { class: dep.required ? "edge" : "edge optional", d: `M${x1},${y1} C${x1 + GAP_X / 2},${y1} ${x2 - GAP_X / 2},${y2} ${x2},${y2}` }));
    }
  }
  for (const id of inGraph) {
    const { x, y } = place.get(id)!;
    const task = model.nodes.get(id)!.task;
    const name = task.name.length > 22 ? `${task.name.slice(0, 21)}…` : task.name;
    root.append(
      svg(
        "a",
        { href: href(id), "aria-label": `${task.name}, ${statusLabel(task.status)}` },
        svg("rect", { class: `node ${task.status.toLowerCase()}`, x, y, width: W, height: H, rx: 4 }),
        svg("text", { x: x + 8, y: y + 17 }, name),
      ),
    );
  }
  return el("div", { class: "graph-box" }, root);
}
