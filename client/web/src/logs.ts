// A task's log lines, live: StreamTaskLogs with `follow` (the latest attempt, then each
// retry as it starts) until the task ends or the view is closed. At most MAX_LINES kept.
import { api, describe } from "./api.js";
import { el } from "./dom.js";

const MAX_LINES = 2000;

export class LogView {
  readonly element: HTMLElement;
  private readonly text = el("pre", { class: "logs", tabindex: 0, "aria-label": "Log lines" });
  private readonly state = el("p", { class: "hint" }, "no log lines yet");
  private readonly stop = new AbortController();
  private lines: string[] = [];

  constructor(readonly taskId: string) {
    this.element = el("div", { class: "block" }, el("h3", {}, "Logs"), this.state, this.text);
    void this.follow();
  }

  close(): void {
    this.stop.abort();
  }

  private async follow(): Promise<void> {
    let attempt = 0;
    try {
      for await (const reply of api.streamTaskLogs({ taskId: this.taskId, follow: true }, { signal: this.stop.signal })) {
        if (reply.attempt !== attempt) {
          attempt = reply.attempt;
          this.lines.push(`— attempt ${attempt} —`);
        }
        if (reply.cutLines) this.lines.push(`(${reply.cutLines} earlier lines were cut)`);
        for (const line of reply.lines) this.lines.push(line.text);
        if (this.lines.length > MAX_LINES) this.lines = this.lines.slice(-MAX_LINES);
        this.text.textContent = this.lines.join("\n");
        this.state.textContent = reply.attemptEnded ? `attempt ${attempt} ended` : `attempt ${attempt}, following`;
      }
      if (!this.lines.length) this.state.textContent = "no log lines";
    } catch (error) {
      if (!this.stop.signal.aborted) this.state.textContent = `logs: ${describe(error)}`;
    }
  }
}
