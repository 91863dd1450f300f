// The runs page: root trees newest first (ListTasks roots_only, "create_time desc"),
// filtered by status and owner on the server and by name within the page; paged by
// the server's tokens; a search box that opens any task by id.
import { api, describe } from "./api.js";
import { clear, el, showError } from "./dom.js";
import { STATUSES, duration, percent, statusLabel } from "./format.js";
import { statusToProto, taskFromProto } from "../../typescript/src/convert.js";
import type { Task, TaskStatus } from "../../typescript/src/types.js";

const PAGE_SIZE = 50;

interface RunsState {
  status: TaskStatus | "";
  owner: string;
  name: string;
  /** Tokens of the pages before the current one (the first page's is ""). */
  tokens: string[];
  next: string;
}

export function runsPage(root: HTMLElement): void {
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
  root.append(el("h1", {}, "Runs"), searchForm, filters, table, el("nav", { class: "pager", "aria-label": "Pages" }, previous, pageInfo, next));

  const load = async (): Promise<void> => {
    const token = state.tokens[state.tokens.length - 1] ?? "";
    try {
      const reply = await api.listTasks({
        rootsOnly: true,
        orderBy: "create_time desc",
        pageSize: PAGE_SIZE,
        pageToken: token,
        statuses: state.status ? [statusToProto(state.status)] : [],
        userId: state.owner,
      });
      showError("");
      const tasks = reply.tasks.map(taskFromProto).filter((t) => !state.name || t.name.includes(state.name));
      state.next = reply.nextPageToken;
      render(tasks);
    } catch (error) {
      showError(describe(error));
      render([]);
    }
  };

  const render = (tasks: Task[]): void => {
    clear(body);
    for (const task of tasks) {
      const link = el("a", { href: `#/tree/${encodeURIComponent(task.id)}` }, task.name || "(unnamed)");
      body.append(
        el(
          "tr",
          { "data-task-id": task.id },
          el("td", {}, link),
          el("td", {}, el("span", { class: `status ${task.status.toLowerCase()}` }, statusLabel(task.status))),
          el("td", {}, el("progress", { max: 1, value: task.progress, "aria-label": `progress of ${task.name}` }), " ", percent(task.status === "COMPLETED" ? 1 : task.progress)),
          el("td", {}, duration(task)),
          el("td", {}, task.userId),
          el("td", {}, task.createTime?.toLocaleString() ?? ""),
          el("td", { class: "id" }, task.id),
        ),
      );
    }
    if (!tasks.length) body.append(el("tr", {}, el("td", { colspan: 7, class: "empty" }, "No runs match.")));
    previous.disabled = state.tokens.length <= 1;
    next.disabled = !state.next;
    pageInfo.textContent = `page ${state.tokens.length}`;
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
