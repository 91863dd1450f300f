// watch(): WatchEvents as an AsyncIterable of events that survives server restarts.
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { TaskService } from "./gen/taskgrove/v1/task_service_pb.js";
import { eventFromProto, int64ToNumber, taskFromProto } from "./convert.js";
import { TaskgroveError } from "./errors.js";
import type { Task, TaskEvent } from "./types.js";

export interface WatchOptions {
  /** Only the events of this tree. */
  rootId?: string;
  /** Only the events of this task. */
  taskId?: string;
  /** Only the events of this owner. */
  userId?: string;
  /** Resume after this sequence (0: everything still retained). */
  afterSequence?: number;
  /** Start with a snapshot (given to `onSnapshot`) instead of replaying history. */
  includeSnapshot?: boolean;
  /** Called once with the whole snapshot, before any event. */
  onSnapshot?: (tasks: Task[]) => void;
  /** How often an idle stream sends a heartbeat (server default 5 s). */
  heartbeatIntervalMs?: number;
  /** Cap of the jittered exponential backoff between reconnects (default 5,000 ms). */
  maxBackoffMs?: number;
  /** Failed reconnects in a row before the error is thrown (default 30). */
  maxReconnects?: number;
  /** Told of each reconnect (the error and the attempt number). */
  onReconnect?: (error: TaskgroveError, attempt: number) => void;
  /** Aborting ends the iteration (the stream is cancelled). */
  signal?: AbortSignal;
}

const FIRST_BACKOFF_MS = 50;
const RESUMABLE = new Set<Code>([Code.Unavailable, Code.ResourceExhausted]);

/** Jittered exponential backoff before reconnect number `failures` (1, 2, ...). */
export function backoffMs(failures: number, maxBackoffMs: number): number {
  const ceiling = Math.min(maxBackoffMs, FIRST_BACKOFF_MS * 2 ** Math.min(failures, 10));
  return ceiling / 2 + Math.random() * (ceiling / 2);
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}

/**
 * The events matching `options`, in sequence order, each exactly once, across reconnects:
 * on UNAVAILABLE (a server restart) or RESOURCE_EXHAUSTED it reconnects after a jittered,
 * capped exponential backoff and resumes after the last sequence it has seen (an event it
 * yielded, or a heartbeat's "everything up to here was sent"). Heartbeats move the resume
 * point and are not yielded. Leaving the loop (break, return, throw) cancels the stream.
 * Other errors are thrown as TaskgroveError.
 */
export async function* watchEvents(
  service: Client<typeof TaskService>,
  options: WatchOptions = {},
): AsyncGenerator<TaskEvent, void, undefined> {
  let last = options.afterSequence ?? 0;
  let needSnapshot = options.includeSnapshot ?? false;
  const maxBackoffMs = options.maxBackoffMs ?? 5_000;
  const maxReconnects = options.maxReconnects ?? 30;
  let failures = 0;
  const aborted = (): boolean => options.signal?.aborted === true;
  while (!aborted()) {
    const abort = new AbortController();
    const onAbort = (): void => abort.abort();
    options.signal?.addEventListener("abort", onAbort, { once: true });
    const snapshot: Task[] = [];
    try {
      const stream = service.watchEvents(
        {
          rootId: options.rootId ?? "",
          taskId: options.taskId ?? "",
          userId: options.userId ?? "",
          afterSequence: BigInt(last),
          includeSnapshot: needSnapshot,
          ...(options.heartbeatIntervalMs !== undefined
            ? { heartbeatInterval: durationFromMs(options.heartbeatIntervalMs) }
            : {}),
        },
        { signal: abort.signal },
      );
      for await (const response of stream) {
        failures = 0;
        if (needSnapshot) {
          // A snapshot may span several messages; it is whole at the one marked complete.
          snapshot.push(...response.snapshot.map(taskFromProto));
          if (response.snapshotComplete) {
            needSnapshot = false;
            last = int64ToNumber(response.sequence);
            options.onSnapshot?.(snapshot.splice(0));
          }
          continue;
        }
        for (const message of response.events) {
          const event = eventFromProto(message);
          if (event.sequence <= last) continue; // a repeat after resuming
          last = event.sequence;
          yield event;
        }
        last = Math.max(last, int64ToNumber(response.sequence));
      }
      return;
    } catch (error) {
      if (aborted()) return;
      const connect = ConnectError.from(error);
      failures += 1;
      if (!RESUMABLE.has(connect.code) || failures > maxReconnects) throw TaskgroveError.from(error);
      options.onReconnect?.(TaskgroveError.from(error), failures);
      await sleep(backoffMs(failures, maxBackoffMs), options.signal);
    } finally {
      options.signal?.removeEventListener("abort", onAbort);
      abort.abort();
    }
  }
}
