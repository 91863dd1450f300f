// A virtualised list: only the rows in view (plus a margin) exist in the DOM, each
// positioned in a spacer as tall as every row together, so 10,000 rows scroll as easily
// as 10. Rows are focusable (Tab reaches the list; arrows move; Enter opens).
import { clear } from "./dom.js";

export const ROW_HEIGHT = 28;
const OVERSCAN = 10;

export interface ListSource<T> {
  count(): number;
  item(index: number): T;
  key(item: T): string;
  draw(item: T, row: HTMLElement): void;
  open(item: T): void;
  toggle(item: T, expand: boolean | undefined): void;
}

export class VirtualList<T> {
  readonly element: HTMLElement;
  private readonly spacer: HTMLElement;
  private focused = 0;
  private frame = 0;

  constructor(private readonly source: ListSource<T>, label: string) {
    this.spacer = document.createElement("div");
    this.spacer.className = "spacer";
    this.element = document.createElement("div");
    this.element.className = "vlist";
    this.element.setAttribute("role", "tree");
    this.element.setAttribute("aria-label", label);
    this.element.append(this.spacer);
    this.element.addEventListener("scroll", () => this.schedule());
    this.element.addEventListener("keydown", (event) => this.key(event));
    this.element.addEventListener("click", (event) => {
      const row = (event.target as HTMLElement).closest<HTMLElement>("[data-index]");
      if (!row) return;
      const index = Number(row.dataset.index);
      this.focused = index;
      if ((event.target as HTMLElement).closest(".twisty")) this.source.toggle(this.source.item(index), undefined);
      else this.source.open(this.source.item(index));
    });
  }

  /** Redraw on the next animation frame (many changes in one frame cost one draw). */
  schedule(): void {
    if (!this.frame) this.frame = requestAnimationFrame(() => this.draw());
  }

  draw(): void {
    this.frame = 0;
    const count = this.source.count();
    this.spacer.style.height = `${count * ROW_HEIGHT}px`;
    const top = this.element.scrollTop;
    const height = this.element.clientHeight || 600;
    const first = Math.max(0, Math.floor(top / ROW_HEIGHT) - OVERSCAN);
    const last = Math.min(count, Math.ceil((top + height) / ROW_HEIGHT) + OVERSCAN);
    const hadFocus = this.element.contains(document.activeElement) && document.activeElement !== this.element;
    clear(this.spacer);
    for (let index = first; index < last; index++) {
      const item = this.source.item(index);
      const row = document.createElement("div");
      row.className = "row";
      row.dataset.index = String(index);
      row.dataset.taskId = this.source.key(item);
      row.setAttribute("role", "treeitem");
      row.tabIndex = index === Math.min(this.focused, count - 1) ? 0 : -1;
      row.style.top = `${index * ROW_HEIGHT}px`;
      this.source.draw(item, row);
      this.spacer.append(row);
    }
    if (hadFocus) this.focusRow(false);
    if (!this.spacer.querySelector('[tabindex="0"]')) {
      this.spacer.querySelector<HTMLElement>(".row")?.setAttribute("tabindex", "0");
    }
  }

  private focusRow(scroll: boolean): void {
    const count = this.source.count();
    this.focused = Math.max(0, Math.min(this.focused, count - 1));
    if (scroll) {
      const y = this.focused * ROW_HEIGHT;
      if (y < this.element.scrollTop) this.element.scrollTop = y;
      else if (y + ROW_HEIGHT > this.element.scrollTop + this.element.clientHeight) {
        this.element.scrollTop = y + ROW_HEIGHT - this.element.clientHeight;
      }
      this.draw();
    }
    this.spacer.querySelector<HTMLElement>(`[data-index="${this.focused}"]`)?.focus();
  }

  private key(event: KeyboardEvent): void {
    const moves: Record<string, number> = { ArrowDown: 1, ArrowUp: -1, PageDown: 20, PageUp: -20 };
    const row = (event.target as HTMLElement).closest<HTMLElement>("[data-index]");
    if (row) this.focused = Number(row.dataset.index);
    if (event.key in moves) {
      this.focused += moves[event.key]!;
    } else if (event.key === "Home") {
      this.focused = 0;
    } else if (event.key === "End") {
      this.focused = this.source.count() - 1;
    } else if (row && (event.key === "Enter" || event.key === " ")) {
      this.source.open(this.source.item(this.focused));
    } else if (row && (event.key === "ArrowLeft" || event.key === "ArrowRight")) {
      this.source.toggle(this.source.item(this.focused), event.key === "ArrowRight");
    } else {
      return;
    }
    event.preventDefault();
    this.focusRow(true);
  }
}
