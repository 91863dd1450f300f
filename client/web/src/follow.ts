// Follows WatchEvents from a known sequence, without a snapshot: the runs page starts at
// the sequence its ListTasks page reflects, so nothing after the page is missed. A broken
// stream resumes after the last sequence seen (events or heartbeats), with backoff, like
// the tree's (watch.ts); history compacted meanwhile (OUT_OF_RANGE) asks for a restart.
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { api, describe, isCode } from "./api.js";
import { eventFromProto, int64ToNumber } from "../../typescript/src/convert.js";
import type { TaskEvent } from "../../typescript/src/types.js";

export interface FollowHandlers {
  events(events: TaskEvent[]): void;
  failed(text: string): void;
  connected(): void;
  /** The stream cannot resume where it was: read the page again (a new sequence). */
  restart(): void;
}

const MAX_BACKOFF_MS = 5000;

export async function followEvents(userId: string, after: number, handlers: FollowHandlers, signal: AbortSignal): Promise<void> {
  let backoff = 250;
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
        if (reply.events.length) {
          const events = reply.events.map(eventFromProto);
          after = Math.max(after, events[events.length - 1]!.sequence);
          handlers.events(events);
        }
        if (reply.heartbeat) after = Math.max(after, int64ToNumber(reply.sequence));
        backoff = 250;
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
    await new Promise((resolve) => setTimeout(resolve, backoff));
    backoff = Math.min(MAX_BACKOFF_MS, backoff * 2);
  }
}
