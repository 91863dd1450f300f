// Follows WatchEvents from a known sequence, without a snapshot: the runs page starts at
// the sequence its ListTasks page reflects, so nothing after the page is missed. A broken
// stream resumes after the last sequence seen (events or heartbeats), with backoff, like
// the tree's (watch.ts); history compacted meanwhile (OUT_OF_RANGE) asks for a restart.
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { api, describe, isCode } from "./api.js";
import type { TaskEvent } from "../../typescript/src/types.js";
import { advance, FIRST_BACKOFF_MS, pause } from "./resume.js";

export interface FollowHandlers {
  events(events: TaskEvent[]): void;
  failed(text: string): void;
  connected(): void;
  /** The stream cannot resume where it was: read the page again (a new sequence). */
  restart(): void;
}

export async function followEvents(userId: string, after: number, handlers: FollowHandlers, signal: AbortSignal): Promise<void> {
  let backoff = FIRST_BACKOFF_MS;
  let broken = false;
  while (!signal.aborted) {
    try {
      const stream = api.watchEvents(
        { userId, afterSequence: BigInt(after), heartbeatInterval: durationFromMs(15000) },
        { signal },
      );
      for await (const reply of stream) {
        if (broken) {
          broken = false;
          handlers.connected();
        }
        after = advance(after, reply, handlers.events);
        backoff = FIRST_BACKOFF_MS;
      }
    } catch (error) {
      if (signal.aborted) return;
      if (isCode(error, "UNAUTHENTICATED") || isCode(error, "PERMISSION_DENIED")) {
        handlers.failed(describe(error));
        return;
      }
      if (isCode(error, "OUT_OF_RANGE")) {
        handlers.restart();
        return;
      }
      broken = true;
      handlers.failed(`${describe(error)} — reconnecting`);
    }
    backoff = await pause(backoff);
  }
}
