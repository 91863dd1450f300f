// Items gathered between two animation frames and handed over once per frame: a page fed
// by thousands of events a second does its work (and draws) at most 60 times a second.
// A hidden tab gets no frames: past MAX_PENDING items they are handed over at once, so
// memory stays bounded.
const MAX_PENDING = 20_000;

export class FrameBatch<T> {
  private items: T[] = [];
  private frame = 0;

  constructor(private readonly flush: (items: T[]) => void) {}

  push(items: readonly T[]): void {
    for (const item of items) this.items.push(item);
    if (this.items.length >= MAX_PENDING) {
      this.cancelFrame();
      const taken = this.items;
      this.items = [];
      this.flush(taken);
      return;
    }
    if (!this.frame) {
      this.frame = requestAnimationFrame(() => {
        this.frame = 0;
        const taken = this.items;
        this.items = [];
        this.flush(taken);
      });
    }
  }

  cancel(): void {
    this.cancelFrame();
    this.items = [];
  }

  private cancelFrame(): void {
    if (this.frame) cancelAnimationFrame(this.frame);
    this.frame = 0;
  }
}
