// The tree page: the live tree of one root (watch.ts) in a virtualised list (vlist.ts),
// groups collapsible with their counts by status, and the task panel beside it.
import { describe } from "./api.js";
import { clear, el, showError } from "./dom.js";
import { dependencyGraph } from "./graph.js";
import { attemptsTimeline } from "./timeline.js";
import { AttemptHistory } from "./attempts.js";
import { readHistory } from "./history.js";
import { STATUSES, percent, statusLabel } from "./format.js";
import { FLASH_KEY, TaskPanel } from "./panel.js";
import { metrics } from "./metrics.js";
import { TreeModel, type Row } from "./tree_model.js";
import { VirtualList } from "./vlist.js";
import { watchTree } from "./watch.js";
import type { TaskEvent } from "../../typescript/src/types.js";

export function treePage(root: HTMLElement, rootId: string, selected: string, signal: AbortSignal): void {
  const model = new TreeModel();
  let rows: Row[] = [];
  let drawn = -1;
  const title = el("h1", {}, "Tree");
  const summary = el("p", { class: "summary", "aria-live": "polite" }, "loading…");
  const announce = el("p", { class: "announce", role: "status" }, sessionStorage.getItem(FLASH_KEY) ?? "");
  sessionStorage.removeItem(FLASH_KEY);
  const href = (id: string): string =>
    model.nodes.has(id) ? `#/tree/${encodeURIComponent(rootId)}/${encodeURIComponent(id)}` : `#/task/${encodeURIComponent(id)}`;
  const panel = new TaskPanel({
    dependents: (id) => model.dependents(id),
    href,
    acted: (text) => (announce.textContent = text),
  });
  const refreshRows = (): void => {
    if (drawn === model.version) return;
    rows = model.rows();
    drawn = model.version;
  };
  const list = new VirtualList<Row>(
    {
      count: () => {
        refreshRows();
        return rows.length;
      },
      item: (index) => rows[index]!,
      key: (row) => row.id,
      draw: (row, element) => drawRow(row, element, model.collapsed.has(row.id)),
      open: (row) => {
        window.location.hash = `#/tree/${encodeURIComponent(rootId)}/${encodeURIComponent(row.id)}`;
      },
      toggle: (row, expand) => {
        if (!row.node.children.length) return;
        const collapsed = model.collapsed.has(row.id);
        if (expand === undefined || expand === collapsed) model.toggle(row.id);
        list.schedule();
      },
    },
    "Tasks of the tree",
  );
  // The left pane: the list, or the graph or timeline (drawn again at most every 500 ms).
  type View = "list" | "graph" | "timeline";
  let view: View = "list";
  const pane = el("div", { class: "pane" }, list.element);
  const other = el("div", { class: "other", tabindex: 0 });
  // The attempts' history is read when the timeline is first shown (never otherwise):
  // the stored events up to what the tree shows, then the live ones (kept aside until the
  // replay ends, so the history is applied in order).
  const history = new AttemptHistory();
  let historyLive: TaskEvent[] | undefined;
  const loadHistory = (): void => {
    if (historyLive) return;
    historyLive = [];
    readHistory(rootId, model.sequence, (events) => history.apply(events), signal).then(
      () => {
        history.apply(historyLive ?? []);
        historyLive = [];
        history.loaded = true;
        drawOther();
      },
      (error: unknown) => {
        if (signal.aborted) return;
        showError(`the tree's history could not be read: ${describe(error)}`);
        history.apply(historyLive ?? []);
        historyLive = [];
        history.loaded = true; // drawn from the tasks' own fields, marked as pruned
        drawOther();
      },
    );
  };
  const drawOther = (): void => {
    if (view === "list") return;
    clear(other);
    if (view === "timeline") loadHistory();
    other.append(view === "graph" ? dependencyGraph(model, href) : attemptsTimeline(model, history, href));
  };
  let otherTimer = 0;
  const otherChanged = (): void => {
    if (view !== "list" && !otherTimer) {
      otherTimer = window.setTimeout(() => {
        otherTimer = 0;
        drawOther();
      }, 500);
    }
  };
  const switches = el("div", { class: "views", role: "group", "aria-label": "View" });
  for (const [value, label] of [["list", "Tree"], ["graph", "Dependency graph"], ["timeline", "Attempts timeline"]] as const) {
    const button = el("button", { type: "button", "aria-pressed": String(value === view), "data-view": value }, label);
    button.addEventListener("click", () => {
      view = value;
      for (const b of switches.querySelectorAll("button")) b.setAttribute("aria-pressed", String(b === button));
      clear(pane);
      if (view === "list") {
        pane.append(list.element);
        list.draw();
      } else {
        pane.append(other);
        drawOther();
      }
    });
    switches.append(button);
  }
  clear(root);
  root.append(
    el("nav", { "aria-label": "Breadcrumb" }, el("a", { href: "#/" }, "Runs"), " / ", rootId),
    title,
    summary,
    announce,
    switches,
    el("div", { class: "tree-layout" }, pane, panel.element),
  );

  const summarise = (): void => {
    const counts: Record<string, number> = {};
    for (const node of model.nodes.values()) counts[node.task.status] = (counts[node.task.status] ?? 0) + 1;
    const rootNode = model.nodes.get(model.rootId);
    summary.textContent =
      `${model.nodes.size} tasks · ` +
      STATUSES.filter((s) => counts[s]).map((s) => `${counts[s]} ${statusLabel(s)}`).join(" · ") +
      (rootNode ? ` · tree ${statusLabel(rootNode.task.status)} ${percent(rootNode.task.status === "COMPLETED" ? 1 : rootNode.task.progress)}` : "");
  };
  let summaryFrame = 0;
  const changed = (): void => {
    if (view === "list") list.schedule();
    otherChanged();
    if (!summaryFrame) {
      summaryFrame = requestAnimationFrame(() => {
        summaryFrame = 0;
        summarise();
      });
    }
  };
  signal.addEventListener("abort", () => panel.close());
  document.addEventListener("taskgrove:select", (event) => void panel.show((event as CustomEvent<string>).detail), { signal });
  let panelTimer = 0;
  void watchTree(
    rootId,
    {
      snapshot: (tasks, sequence) => {
        metrics.snapshotAt = performance.now();
        metrics.snapshotTasks = tasks.length;
        model.load(tasks);
        model.sequence = Math.max(model.sequence, sequence);
        title.textContent = model.nodes.get(model.rootId)?.task.name || "Tree";
        list.draw();
        drawOther();
        summarise();
        metrics.renderedAt = performance.now();
        requestAnimationFrame(() => (metrics.paintedAt = performance.now()));
        if (selected) void panel.show(selected);
      },
      events: (events) => {
        for (const event of events) model.apply(event);
        if (!history.loaded && historyLive) historyLive.push(...events);
        else if (history.loaded) history.apply(events);
        if (!metrics.events) metrics.firstEventAt = performance.now();
        metrics.events += events.length;
        metrics.lastEventAt = performance.now();
        changed();
        // The open task changed: read it again, at most every half second.
        if (panel.shown && !panelTimer && events.some((e) => e.taskId === panel.shown)) {
          panelTimer = window.setTimeout(() => {
            panelTimer = 0;
            void panel.show(panel.shown);
          }, 500);
        }
      },
      failed: (text) => showError(text),
      connected: () => showError(""),
    },
    signal,
  );
}

function drawRow(row: Row, element: HTMLElement, collapsed: boolean): void {
  const task = row.node.task;
  const hasChildren = row.node.children.length > 0;
  element.style.paddingLeft = `${row.depth * 16 + 4}px`;
  element.classList.add(task.status.toLowerCase());
  if (hasChildren) element.setAttribute("aria-expanded", String(!collapsed));
  element.setAttribute("aria-label", `${task.name}, ${statusLabel(task.status)}, ${percent(task.progress)}`);
  // Through the CSSOM: the console's CSP refuses style attributes.
  const fill = el("span");
  fill.style.width = percent(task.status === "COMPLETED" ? 1 : task.progress);
  const counts = row.counts
    ? el("span", { class: "counts" }, STATUSES.filter((s) => row.counts![s]).map((s) => `${row.counts![s]} ${statusLabel(s)}`).join(" · "))
    : "";
  element.append(
    el("span", { class: "twisty", "aria-hidden": "true" }, hasChildren ? (collapsed ? "▸" : "▾") : ""),
    el("span", { class: `status ${task.status.toLowerCase()}`, "data-status": task.status }, statusLabel(task.status)),
    el("span", { class: "name" }, task.name || task.id),
    el("span", { class: "bar", "aria-hidden": "true" }, fill),
    counts,
  );
}
