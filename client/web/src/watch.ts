// The live tree: WatchEvents with the tree's snapshot, then its events, resumed from the
// last sequence after a broken stream (backoff); no polling. Stops when `signal` aborts.
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { api, describe, isCode } from "./api.js";
import { int64ToNumber, taskFromProto } from "../../typescript/src/convert.js";
import type { Task, TaskEvent } from "../../typescript/src/types.js";
import { metrics } from "./metrics.js";
import { advance, FIRST_BACKOFF_MS, pause } from "./resume.js";

export interface WatchHandlers {
  /** The tree as of event `sequence` (the stream goes on after it). */
  snapshot(tasks: Task[], sequence: number): void;
  events(events: TaskEvent[]): void;
  failed(text: string): void;
  connected(): void;
}

export async function watchTree(rootId: string, handlers: WatchHandlers, signal: AbortSignal): Promise<void> {
  let after = 0;
  let needSnapshot = true;
  let backoff = FIRST_BACKOFF_MS;
  for (let round = 0; !signal.aborted; round++) {
    try {
      const stream = api.watchEvents(
        {
          rootId,
          includeSnapshot: needSnapshot,
          afterSequence: BigInt(after),
          heartbeatInterval: durationFromMs(15000),
        },
        { signal },
      );
      let pending: Task[] = [];
      for await (const reply of stream) {
        if (reply.snapshot.length) {
          if (!pending.length) metrics.snapshotFirstChunkAt = performance.now();
          pending = pending.concat(reply.snapshot.map(taskFromProto));
        }
        if (reply.snapshotComplete) {
          after = int64ToNumber(reply.sequence);
          handlers.snapshot(pending, after);
          pending = [];
          needSnapshot = false;
          handlers.connected();
        }
        after = advance(after, reply, handlers.events);
        backoff = FIRST_BACKOFF_MS;
      }
    } catch (error) {
      if (signal.aborted) return;
      if (isCode(error, "UNAUTHENTICATED") || isCode(error, "NOT_FOUND") || isCode(error, "PERMISSION_DENIED")) {
        handlers.failed(describe(error));
        return;
      }
      if (isCode(error, "OUT_OF_RANGE")) needSnapshot = true; // history compacted: start over
      handlers.failed(`${describe(error)} — reconnecting`);
    }
    backoff = await pause(backoff);
  }
}
