// The runs page: root trees newest first (ListTasks roots_only, "create_time desc"),
// filtered by status, owner and name on the server; paged by the server's tokens; a
// search box that opens any task by id. Live without polling: the page's ListTasks
// sequence starts a WatchEvents of every task (of the owner filter), applied once per
// animation frame (runs_model.ts); group roots whose subtree moved read their progress
// again, at most once a second.
import { api, describe } from "./api.js";
import { clear, el, showError } from "./dom.js";
import { followEvents } from "./follow.js";
import { FrameBatch } from "./frame_batch.js";
import { metrics } from "./metrics.js";
import { STATUSES, duration, percent, statusLabel } from "./format.js";
import { RunsModel, type RunsFilters } from "./runs_model.js";
import { int64ToNumber, statusToProto, taskFromProto } from "../../typescript/src/convert.js";
import type { Task, TaskEvent, TaskStatus } from "../../typescript/src/types.js";

const PAGE_SIZE = 50;
const PROGRESS_READ_MS = 1000;

interface RunsState extends RunsFilters {
  /** Tokens of the pages before the current one (the first page's is ""). */
  tokens: string[];
  next: string;
}

/** The cells of a row that events change. */
interface RowCells {
  row: HTMLTableRowElement;
  status: HTMLElement;
  progress: HTMLProgressElement;
  percent: Text;
  duration: HTMLElement;
}

export function runsPage(root: HTMLElement, signal: AbortSignal): void {
  const state: RunsState = { status: "", owner: "", name: "", tokens: [""], next: "" };
  const status = el("select", { id: "filter-status" }, el("option", { value: "" }, "any status"));
  for (const value of STATUSES) status.append(el("option", { value }, statusLabel(value)));
  const owner = el("input", { id: "filter-owner", type: "text", autocomplete: "off" });
  const name = el("input", { id: "filter-name", type: "search", autocomplete: "off" });
  const search = el("input", { id: "search-id", type: "search", autocomplete: "off", placeholder: "task id" });
  const body = el("tbody");
  const previous = el("button", { type: "button", disabled: true }, "Previous page");
  const next = el("button", { type: "button", disabled: true }, "Next page");
  const pageInfo = el("span", { class: "page-info", "aria-live": "polite" });
  const fresh = el("button", { type: "button", class: "new-runs", hidden: true });
  const freshBox = el("p", { class: "new-runs-box", "aria-live": "polite" }, fresh);

  const filters = el(
    "form",
    { class: "filters", "aria-label": "Filter runs" },
    el("label", { for: "filter-status" }, "Status"), status,
    el("label", { for: "filter-owner" }, "Owner"), owner,
    el("label", { for: "filter-name" }, "Name contains"), name,
    el("button", { type: "submit" }, "Apply"),
  );
  const searchForm = el(
    "form",
    { class: "search", role: "search", "aria-label": "Open a task by id" },
    el("label", { for: "search-id" }, "Task id"), search,
    el("button", { type: "submit" }, "Open"),
  );
  const table = el(
    "table",
    { class: "runs", "aria-label": "Runs, newest first" },
    el("thead", {}, el("tr", {}, ...["Name", "Status", "Progress", "Duration", "Owner", "Created", "Id"].map((h) => el("th", { scope: "col" }, h)))),
    body,
  );
  clear(root);
  root.append(el("h1", {}, "Runs"), searchForm, filters, freshBox, table, el("nav", { class: "pager", "aria-label": "Pages" }, previous, pageInfo, next));

  let model = new RunsModel(state, true);
  const cells = new Map<string, RowCells>();
  let live = new AbortController();
  signal.addEventListener("abort", () => live.abort());

  const load = async (): Promise<void> => {
    live.abort();
    live = new AbortController();
    const listing = live.signal;
    const token = state.tokens[state.tokens.length - 1] ?? "";
    try {
      const reply = await api.listTasks({
        rootsOnly: true,
        orderBy: "create_time desc",
        pageSize: PAGE_SIZE,
        pageToken: token,
        statuses: state.status ? [statusToProto(state.status)] : [],
        userId: state.owner,
        nameContains: state.name,
      });
      if (listing.aborted) return;
      showError("");
      model = new RunsModel({ status: state.status, owner: state.owner, name: state.name }, state.tokens.length === 1);
      model.load(reply.tasks.map(taskFromProto));
      state.next = reply.nextPageToken;
      render();
      void follow(int64ToNumber(reply.sequence), listing);
    } catch (error) {
      if (listing.aborted) return;
      showError(describe(error));
      model.load([]);
      render();
    }
  };

  // Events, once per frame: rows change in place; new runs go to the top (or the count).
  const batch = new FrameBatch<TaskEvent>((events) => {
    metrics.runsEvents += events.length;
    metrics.runsFlushes++;
    const applied = model.apply(events);
    for (const id of applied.removed) {
      cells.get(id)?.row.remove();
      cells.delete(id);
    }
    for (const task of applied.added.reverse()) body.prepend(drawRow(task));
    if (applied.added.length) body.querySelector("tr.empty-row")?.remove();
    for (const id of applied.changed) {
      const task = model.rows.find((t) => t.id === id);
      if (task) updateRow(task);
    }
    showUnseen();
    if (model.stale.size) scheduleProgress();
  });
  signal.addEventListener("abort", () => batch.cancel());

  const follow = (after: number, listing: AbortSignal): Promise<void> =>
    followEvents(
      state.owner,
      after,
      {
        events: (events) => batch.push(events),
        failed: (text) => showError(text),
        connected: () => showError(""),
        restart: () => void load(),
      },
      listing,
    );

  // A group root's progress is its subtree's mean, which its own events do not carry
  // between status changes: read the roots whose subtree moved, together, once a second.
  let progressTimer = 0;
  const scheduleProgress = (): void => {
    if (progressTimer) return;
    progressTimer = window.setTimeout(() => {
      progressTimer = 0;
      const ids = [...model.stale];
      model.stale.clear();
      const reading = model;
      void Promise.all(
        ids.map(async (id) => {
          try {
            const task = taskFromProto(await api.getTask({ id }));
            const shown = reading.rows.find((t) => t.id === id);
            // Progress only: the status from the event stream may be newer than this read.
            if (shown && reading === model) {
              shown.progress = task.progress;
              updateRow(shown);
            }
          } catch {
            // Deleted meanwhile, or the connection broke: the stream says what follows.
          }
        }),
      );
    }, PROGRESS_READ_MS);
  };
  signal.addEventListener("abort", () => clearTimeout(progressTimer));

  const showUnseen = (): void => {
    const created = model.unseen.size;
    const matching = model.nowMatching.size;
    const parts: string[] = [];
    if (created) parts.push(created === 1 ? "1 new run" : `${created} new runs`);
    if (matching && state.status) {
      const now = statusLabel(state.status);
      parts.push(matching === 1 ? `1 run now ${now}` : `${matching} runs now ${now}`);
    }
    fresh.hidden = parts.length === 0;
    fresh.textContent = `${parts.join(", ")} — show`;
  };

  const drawRow = (task: Task): HTMLTableRowElement => {
    const link = el("a", { href: `#/tree/${encodeURIComponent(task.id)}` }, task.name || "(unnamed)");
    const statusCell = el("span");
    const progress = el("progress", { max: 1, "aria-label": `progress of ${task.name}` });
    const percentText = document.createTextNode("");
    const durationCell = el("td");
    const row = el(
      "tr",
      { "data-task-id": task.id },
      el("td", {}, link),
      el("td", {}, statusCell),
      el("td", {}, progress, " ", percentText),
      durationCell,
      el("td", {}, task.userId),
      el("td", {}, task.createTime?.toLocaleString() ?? ""),
      el("td", { class: "id" }, task.id),
    );
    cells.set(task.id, { row, status: statusCell, progress, percent: percentText, duration: durationCell });
    updateRow(task);
    return row;
  };

  const updateRow = (task: Task): void => {
    const cell = cells.get(task.id);
    if (!cell) return;
    cell.status.className = `status ${task.status.toLowerCase()}`;
    cell.status.dataset.status = task.status;
    cell.status.textContent = statusLabel(task.status);
    const shown = task.status === "COMPLETED" ? 1 : task.progress;
    cell.progress.value = shown;
    cell.percent.data = percent(shown);
    cell.duration.textContent = duration(task);
  };

  const render = (): void => {
    clear(body);
    cells.clear();
    for (const task of model.rows) body.append(drawRow(task));
    if (!model.rows.length) body.append(el("tr", { class: "empty-row" }, el("td", { colspan: 7, class: "empty" }, "No runs match.")));
    previous.disabled = state.tokens.length <= 1;
    next.disabled = !state.next;
    pageInfo.textContent = `page ${state.tokens.length}`;
    showUnseen();
  };

  filters.addEventListener("submit", (event) => {
    event.preventDefault();
    state.status = status.value as TaskStatus | "";
    state.owner = owner.value.trim();
    state.name = name.value.trim();
    state.tokens = [""];
    void load();
  });
  searchForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const id = search.value.trim();
    if (!id) return;
    void (async () => {
      try {
        const task = await api.getTask({ id });
        window.location.hash = `#/tree/${encodeURIComponent(task.rootId || task.id)}/${encodeURIComponent(task.id)}`;
      } catch (error) {
        showError(describe(error));
      }
    })();
  });
  fresh.addEventListener("click", () => {
    state.tokens = [""];
    void load();
  });
  next.addEventListener("click", () => {
    if (!state.next) return;
    state.tokens.push(state.next);
    void load();
  });
  previous.addEventListener("click", () => {
    if (state.tokens.length > 1) state.tokens.pop();
    void load();
  });
  void load();
}
