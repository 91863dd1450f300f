// The task panel: what GetTask and ExplainTask say about one task, its dependencies and
// dependents as links, and the actions (execute, cancel, retry, copy), each confirmed.
import { api, describe } from "./api.js";
import { confirmAction } from "./dialog.js";
import { LogView } from "./logs.js";
import { clear, el, showError } from "./dom.js";
import { duration, json, percent, statusLabel, time } from "./format.js";
import { taskFromProto, statusFromProto } from "../../typescript/src/convert.js";
import type { Task } from "../../typescript/src/types.js";

export interface PanelContext {
  /** The tasks of the open tree that depend on `id`. */
  dependents(id: string): Task[];
  /** A link's href for a task (in this tree or another). */
  href(id: string): string;
  /** Told after an action, with a line to announce. */
  acted(text: string): void;
}

const TERMINAL = new Set(["COMPLETED", "FAILED", "CANCELLED"]);
export const FLASH_KEY = "taskgrove.flash";

export class TaskPanel {
  readonly element = el("section", { class: "panel", "aria-label": "Task details", "aria-live": "polite" });
  private taskId = "";
  private loading = 0;
  private logs: LogView | undefined;

  constructor(private readonly context: PanelContext) {
    this.element.append(el("p", { class: "hint" }, "Select a task (Enter on a row) to see it here."));
  }

  get shown(): string {
    return this.taskId;
  }

  /** Stop following logs (the page is left). */
  close(): void {
    this.logs?.close();
  }

  async show(id: string): Promise<void> {
    this.taskId = id;
    if (this.logs?.taskId !== id) {
      this.logs?.close();
      this.logs = undefined;
    }
    const ticket = ++this.loading;
    try {
      const task = taskFromProto(await api.getTask({ id }));
      let explain: HTMLElement | null = null;
      if (!TERMINAL.has(task.status)) {
        try {
          const why = await api.explainTask({ id });
          explain = el(
            "div",
            { class: "explain" },
            el("h3", {}, "Why it is not done yet"),
            el("p", {}, why.summary),
            why.reasons.length ? el("p", {}, `reasons: ${why.reasons.join(", ")}`) : null,
            why.queuePosition ? el("p", {}, `queue position ${why.queuePosition}`) : null,
            ...why.waitingDependencies.map((d) =>
              el("p", {}, "waits for ", el("a", { href: this.context.href(d.id) }, d.name || d.id), ` (${statusLabel(statusFromProto(d.status) ?? "PENDING")}${d.required ? "" : ", optional"})`),
            ),
          );
        } catch (error) {
          explain = el("p", { class: "hint" }, `explain: ${describe(error)}`);
        }
      }
      if (ticket === this.loading) this.render(task, explain);
    } catch (error) {
      if (ticket !== this.loading) return;
      clear(this.element);
      this.element.append(el("p", { class: "failure", role: "alert" }, describe(error)));
    }
  }

  private render(task: Task, explain: HTMLElement | null): void {
    clear(this.element);
    const fields: [string, string][] = [
      ["id", task.id],
      ["status", statusLabel(task.status)],
      ["progress", `${percent(task.status === "COMPLETED" ? 1 : task.progress)} ${task.progressMessage}`],
      ["executor", task.executor || "(group)"],
      ["owner", task.userId],
      ["attempts", `${task.attempt} of ${task.maxAttempts || 1}`],
      ["priority", String(task.priority ?? "")],
      ["created", time(task.createTime)],
      ["started", time(task.startTime)],
      ["ended", time(task.endTime)],
      ["duration", duration(task)],
    ];
    if (task.originalTaskId) fields.push(["copy of", task.originalTaskId]);
    const list = el("dl", {});
    for (const [name, value] of fields) list.append(el("dt", {}, name), el("dd", {}, value));
    const links = (title: string, tasks: { id: string; label: string }[]): HTMLElement =>
      el(
        "div",
        { class: "links" },
        el("h3", {}, title),
        tasks.length
          ? el("ul", {}, ...tasks.map((t) => el("li", {}, el("a", { href: this.context.href(t.id) }, t.label))))
          : el("p", { class: "hint" }, "none"),
      );
    const dependents = this.context.dependents(task.id);
    const parts: (HTMLElement | null)[] = [
      el("h2", {}, task.name || task.id),
      this.actions(task),
      list,
      explain,
      links("Dependencies", task.dependencies.map((d) => ({ id: d.id, label: `${d.id}${d.required ? "" : " (optional)"}` }))),
      links("Dependents", dependents.map((t) => ({ id: t.id, label: t.name || t.id }))),
      block("Inputs", json(task.inputs)),
      block("Params", json(task.params)),
      block("Result", json(task.result)),
      task.error ? block("Error", `${task.error.reason}: ${task.error.message}\n${json(task.error.details)}`) : null,
      task.executor ? (this.logs ??= new LogView(task.id)).element : null,
    ];
    this.element.append(...parts.filter((part): part is HTMLElement => part !== null));
  }

  private actions(task: Task): HTMLElement {
    const bar = el("div", { class: "actions", role: "group", "aria-label": "Actions" });
    const add = (label: string, question: string, run: () => Promise<string>): void => {
      const button = el("button", { type: "button", "data-action": label.toLowerCase() }, label);
      button.addEventListener("click", () => {
        void (async () => {
          if (!(await confirmAction(question, label))) return;
          try {
            this.context.acted(await run());
            showError("");
            await this.show(task.id);
          } catch (error) {
            showError(describe(error));
          }
        })();
      });
      bar.append(button);
    };
    const name = task.name || task.id;
    add("Execute", `Execute "${name}" and everything below it?`, async () => {
      const reply = await api.executeTask({ id: task.id });
      return `executed ${name}: ${reply.scheduledCount} scheduled`;
    });
    add("Cancel", `Cancel "${name}" and every unfinished task below it?`, async () => {
      const reply = await api.cancelTask({ id: task.id });
      return `cancelled ${reply.cancelledTaskIds.length} task(s)`;
    });
    add("Retry", `Retry "${name}" and what failed or was cancelled with it?`, async () => {
      const reply = await api.retryTask({ id: task.id });
      return `retried ${reply.retriedTaskIds.length} task(s)`;
    });
    add("Copy", `Copy the tree of "${name}" into a new tree?`, async () => {
      const reply = await api.copyTaskTree({ id: task.id });
      const copy = reply.tasks.find((t) => !t.parentId) ?? reply.tasks[0];
      const text = `copied ${reply.tasks.length} task(s) from "${name}"`;
      // The copy's page says so: it is a new page, where this panel's status is gone.
      sessionStorage.setItem(FLASH_KEY, text);
      if (copy) window.location.hash = `#/tree/${encodeURIComponent(copy.id)}`;
      return text;
    });
    return bar;
  }
}

function block(title: string, text: string): HTMLElement | null {
  if (!text) return null;
  return el("div", { class: "block" }, el("h3", {}, title), el("pre", { tabindex: 0, "aria-label": title }, text));
}
