// Reads a tree's retained history once, up to `through` (the last sequence the tree page
// has applied): WatchEvents with the root and after_sequence 0, until an event or a
// heartbeat reaches `through` (the replay is then done; what follows is live, and the
// tree page's own stream brings it).
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { api } from "./api.js";
import { eventFromProto, int64ToNumber } from "../../typescript/src/convert.js";
import type { TaskEvent } from "../../typescript/src/types.js";

export async function readHistory(
  rootId: string,
  through: number,
  take: (events: TaskEvent[]) => void,
  signal: AbortSignal,
): Promise<void> {
  const done = new AbortController();
  const stop = (): void => done.abort();
  signal.addEventListener("abort", stop);
  try {
    const stream = api.watchEvents(
      { rootId, afterSequence: 0n, heartbeatInterval: durationFromMs(100) },
      { signal: done.signal },
    );
    for await (const reply of stream) {
      if (reply.events.length) {
        const events = reply.events.map(eventFromProto);
        take(events);
        if (events[events.length - 1]!.sequence >= through) return;
      }
      if (reply.heartbeat && int64ToNumber(reply.sequence) >= through) return;
    }
  } catch (error) {
    if (!done.signal.aborted) throw error;
  } finally {
    signal.removeEventListener("abort", stop);
    done.abort(); // ends the stream once the replay is read
  }
}
