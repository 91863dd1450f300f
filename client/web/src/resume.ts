// Where a live event stream stands and how it waits to reconnect: shared by the tree's
// stream (watch.ts) and the runs page's (follow.ts), which differ only in how they start.
import { eventFromProto, int64ToNumber } from "../../typescript/src/convert.js";
import type { WatchEventsResponse } from "../../typescript/src/gen/taskgrove/v1/task_service_pb.js";
import type { TaskEvent } from "../../typescript/src/types.js";

export const FIRST_BACKOFF_MS = 250;
const MAX_BACKOFF_MS = 5000;

/** Hands `reply`'s events on; returns the sequence to resume after (an idle stream's
 * heartbeat moves it too, so a reconnect does not replay what was already passed). */
export function advance(after: number, reply: WatchEventsResponse, take: (events: TaskEvent[]) => void): number {
  if (reply.events.length) {
    const events = reply.events.map(eventFromProto);
    after = Math.max(after, events[events.length - 1]!.sequence);
    take(events);
  }
  if (reply.heartbeat) after = Math.max(after, int64ToNumber(reply.sequence));
  return after;
}

/** Waits `backoff` ms; returns the next wait (doubled, at most 5 s). */
export async function pause(backoff: number): Promise<number> {
  await new Promise((resolve) => setTimeout(resolve, backoff));
  return Math.min(MAX_BACKOFF_MS, backoff * 2);
}
