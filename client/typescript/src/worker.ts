// Worker: serve executors from a Node.js process over WorkerService.Connect.
//
//   const worker = new Worker({ name: "images", slots: 4 });
//   worker.executor("resize", { inputSchema: { type: "object" } }, async (ctx) => ({ ok: true }));
//   await worker.run("127.0.0.1:50051");   // until worker.stop()
//
// Like the Python SDK's Worker (client/taskgrove/_worker.py): attempts belong to the
// worker, not to one stream. When the stream breaks, running attempts go on, the worker
// reconnects with the same id (jittered backoff) and resends every outcome the server has
// not acknowledged; the server's fencing decides whether each still counts.
import { create, fromJson, toJson, type JsonObject, type JsonValue, type MessageInitShape } from "@bufbuild/protobuf";
import { ValueSchema, timestampDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { randomUUID } from "node:crypto";
import { format } from "node:util";
import { resolveOptions, type ClientOptions } from "./config.js";
import { TaskgroveError } from "./errors.js";
import {
  AttemptFailureSchema,
  AttemptOutcomeSchema,
  ConnectRequestSchema,
  WorkerService,
  WorkerRegistrationSchema,
  type Assignment,
  type OutcomeAcknowledged,
  type ConnectRequest,
} from "./gen/taskgrove/v1/worker_service_pb.js";
import { makeTransport } from "./transport.js";
import { backoffMs } from "./watch.js";

/** A registration the server refuses is refused again: reconnecting would not help. */
const FATAL = new Set<Code>([
  Code.InvalidArgument,
  Code.FailedPrecondition,
  Code.PermissionDenied,
  Code.Unauthenticated,
  Code.Unimplemented,
]);
const MAX_BACKOFF_MS = 10_000;
const LOG_FLUSH_MS = 50;
const MAX_LOG_LINE = 16_384;
const MAX_DETAIL = 16_000;
/** After `stop()`, how long attempts get to notice their signal, and the server to close. */
const STOP_GRACE_MS = 5_000;
/** The server sends `cancel` (TIMEOUT) at the deadline, but not to a worker disconnected
 * then (nor again after it reconnects): a local timer, a little later so that the server's
 * verdict normally comes first, aborts the attempt and reports it as a TIMEOUT failure
 * (refused as stale if the server got there first; recorded if its clock is behind). */
const DEADLINE_GRACE_MS = 1_000;

/** Throw from an executor to fail its task with a chosen reason and JSON details. */
export class ExecutorFailure extends Error {
  override readonly name = "ExecutorFailure";
  constructor(
    message: string,
    readonly reason = "EXECUTOR_ERROR",
    readonly details: JsonObject = {},
  ) {
    super(message);
  }
}

/** One attempt of one task, as an executor function sees it. */
export interface WorkerContext {
  taskId: string;
  rootId: string;
  name: string;
  executor: string;
  attempt: number;
  userId: string;
  inputs: JsonObject;
  params: JsonObject;
  /** Results of the completed dependencies, by task id. */
  dependencyResults: Record<string, JsonValue>;
  /** When the server ends the attempt as TIMEOUT (undefined: no timeout). */
  deadline: Date | undefined;
  /** Aborted when the server cancels the attempt (reason CANCELLED or TIMEOUT) or the
   * worker stops; `signal.reason` is an AbortError naming why. */
  signal: AbortSignal;
  /** How far the attempt has come, in [0, 1] (the server keeps the latest). */
  reportProgress(fraction: number, message?: string): void;
  /** Lines stored with the attempt on the server (util.format-style arguments). */
  log(...values: unknown[]): void;
}

export type ExecutorFunction = (ctx: WorkerContext) => unknown;

export interface ExecutorOptions {
  description?: string;
  /** JSON schema of the inputs (default `{type: "object"}`, as the Python SDK sends). */
  inputSchema?: JsonObject;
}

export interface WorkerOptions {
  /** For people: shown by ListExecutors. */
  name: string;
  /** Attempts run at once (default 4). */
  slots?: number;
  labels?: Record<string, string>;
  /** Stable for the life of the process (default a random UUID). */
  workerId?: string;
  /** Where the worker says what happens to it (default: stderr). */
  logger?: (message: string) => void;
}

interface Served {
  run: ExecutorFunction;
  description: string;
  inputSchema: JsonObject;
}

interface Running {
  abort: AbortController;
  /** The server cancelled the attempt: it has already recorded how the task ended. */
  cancelled: boolean;
  /** The local deadline timer fired. */
  timedOut: boolean;
  done: Promise<void>;
}

/** The request stream of one connection: an async iterable fed by `push`. */
class Requests implements AsyncIterable<ConnectRequest> {
  private readonly items: ConnectRequest[] = [];
  private wake: (() => void) | undefined;
  private closed = false;

  push(item: ConnectRequest): void {
    if (this.closed) return;
    this.items.push(item);
    this.wake?.();
  }

  close(): void {
    this.closed = true;
    this.wake?.();
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<ConnectRequest> {
    for (;;) {
      const item = this.items.shift();
      if (item !== undefined) {
        yield item;
        continue;
      }
      if (this.closed) return;
      await new Promise<void>((resolve) => (this.wake = resolve));
      this.wake = undefined;
    }
  }
}

type RequestKind = MessageInitShape<typeof ConnectRequestSchema>["kind"];
type OutcomeKind = MessageInitShape<typeof AttemptOutcomeSchema>["outcome"];

function request(kind: RequestKind): ConnectRequest {
  return create(ConnectRequestSchema, { kind });
}

function abortError(message: string): Error {
  return new DOMException(message, "AbortError");
}

const timeoutFailure = { message: "the attempt passed its deadline", reason: "TIMEOUT", detail: "" };

/** Wait until these attempts have ended, or `ms` has passed. */
async function settledWithin(attempts: Running[], ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    Promise.allSettled(attempts.map((r) => r.done)),
    new Promise((resolve) => (timer = setTimeout(resolve, ms))),
  ]);
  clearTimeout(timer);
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}

export class Worker {
  readonly name: string;
  readonly slots: number;
  readonly labels: Record<string, string>;
  readonly workerId: string;
  private readonly logger: (message: string) => void;
  private readonly served = new Map<string, Served>();
  /** Lease id -> the attempt running it. */
  private readonly running = new Map<string, Running>();
  /** Assignments waiting for a local slot: after a lease was lost, the server may assign
   * new attempts while the old ones still run here; they wait so `slots` is never exceeded. */
  private readonly queued: Assignment[] = [];
  /** Outcomes not acknowledged yet, by lease id (resent after a reconnect). */
  private readonly undelivered = new Map<string, ConnectRequest>();
  private readonly logs = new Map<string, string[]>();
  /** The stream of the current registered connection (undefined while not registered). */
  private send: Requests | undefined;
  private readonly stopping = new AbortController();

  constructor(options: WorkerOptions) {
    this.name = options.name;
    this.slots = options.slots ?? 4;
    this.labels = { ...(options.labels ?? {}) };
    this.workerId = options.workerId ?? randomUUID();
    this.logger = options.logger ?? ((message) => process.stderr.write(`${message}\n`));
    if (!Number.isInteger(this.slots) || this.slots < 1) throw new RangeError(`slots must be a positive integer: ${this.slots}`);
  }

  /** Whether the worker is registered with a server now. */
  get registered(): boolean {
    return this.send !== undefined;
  }

  /** Serve `id` with `run`: it returns (or resolves to) the task's result, plain JSON
   * (undefined is null), or throws to fail it. */
  executor(id: string, options: ExecutorOptions, run: ExecutorFunction): this {
    if (this.served.has(id)) throw new Error(`executor ${JSON.stringify(id)} is served twice`);
    this.served.set(id, {
      run,
      description: options.description ?? "",
      inputSchema: options.inputSchema ?? { type: "object" },
    });
    return this;
  }

  /** End `run()`: stop taking work, abort running attempts (the server runs those that
   * do not finish again), disconnect. */
  stop(): void {
    this.stopping.abort();
  }

  /** Serve until `stop()`, reconnecting while the server is unreachable. Rejects with a
   * TaskgroveError when the server refuses the registration. A string is the address. */
  async run(options: ClientOptions | string = {}): Promise<void> {
    if (this.served.size === 0) throw new Error("the worker serves no executor (use worker.executor)");
    const resolved = resolveOptions(typeof options === "string" ? { address: options } : options);
    const client = createClient(WorkerService, makeTransport(resolved));
    const flusher = setInterval(() => this.flushLogs(), LOG_FLUSH_MS);
    let failures = 0;
    try {
      while (!this.stopping.signal.aborted) {
        try {
          await this.connection(client, () => (failures = 0));
        } catch (error) {
          const connect = ConnectError.from(error);
          if (FATAL.has(connect.code)) throw TaskgroveError.from(error);
          if (!this.stopping.signal.aborted) {
            this.logger(`worker ${this.name}: connection lost (${TaskgroveError.from(error).code}); reconnecting`);
          }
        }
        if (this.stopping.signal.aborted) break;
        failures += 1;
        await sleep(backoffMs(failures, MAX_BACKOFF_MS), this.stopping.signal);
      }
    } finally {
      clearInterval(flusher);
      this.abortAll("the worker stopped");
      // Bounded: a function that ignores its signal must not keep run() from returning.
      await settledWithin([...this.running.values()], STOP_GRACE_MS);
    }
  }

  /** One stream: register, then serve what the server sends until it ends. */
  private async connection(client: Client<typeof WorkerService>, onRegistered: () => void): Promise<void> {
    const requests = new Requests();
    requests.push(request({ case: "register", value: this.registration() }));
    const call = new AbortController();
    let heartbeat: NodeJS.Timeout | undefined;
    const leave = (): void => void this.leave(requests, call);
    this.stopping.signal.addEventListener("abort", leave, { once: true });
    try {
      for await (const response of client.connect(requests, { signal: call.signal })) {
        const kind = response.kind;
        if (kind.case === "registered") {
          this.send = requests;
          for (const outcome of this.undelivered.values()) requests.push(outcome);
          const interval = kind.value.heartbeatIntervalSeconds || 5;
          heartbeat = setInterval(() => requests.push(request({ case: "heartbeat", value: {} })), interval * 1000);
          onRegistered();
          this.logger(`worker ${this.name} registered (${this.workerId})`);
        } else if (kind.case === "assignment") {
          this.assigned(kind.value);
        } else if (kind.case === "assignments") {
          for (const assignment of kind.value.assignments) this.assigned(assignment);
        } else if (kind.case === "cancel") {
          this.cancel(kind.value.leaseId, kind.value.reason);
        } else if (kind.case === "acknowledged") {
          this.acknowledged(kind.value);
        } else if (kind.case === "acknowledgements") {
          for (const ack of kind.value.acknowledgements) this.acknowledged(ack);
        }
      }
    } finally {
      if (this.send === requests) this.send = undefined;
      this.stopping.signal.removeEventListener("abort", leave);
      clearInterval(heartbeat);
      requests.close();
      call.abort();
    }
  }

  /** Stopping: abort the attempts, give them a grace to report, then end the requests;
   * the server closes the stream once it has read them (or it is cut after the grace). */
  private async leave(requests: Requests, call: AbortController): Promise<void> {
    for (const assignment of this.queued.splice(0)) this.outcome(assignment, { case: "cancelled", value: {} });
    this.abortAll("the worker stopped");
    await settledWithin([...this.running.values()], STOP_GRACE_MS);
    this.flushLogs();
    requests.close();
    await sleep(STOP_GRACE_MS, call.signal);
    call.abort();
  }

  private registration(): MessageInitShape<typeof WorkerRegistrationSchema> {
    return {
      workerId: this.workerId,
      name: this.name,
      labels: this.labels,
      slots: this.slots,
      executors: [...this.served].map(([id, served]) => ({
        id,
        description: served.description,
        inputSchema: served.inputSchema,
      })),
    };
  }

  /** Send now if registered (else it is lost, unless it is an outcome: see `outcome`). */
  private emit(kind: RequestKind): void {
    this.send?.push(request(kind));
  }

  // ----------------------------------------------------------------- attempts

  private acknowledged(ack: OutcomeAcknowledged): void {
    this.undelivered.delete(ack.leaseId);
    if (!ack.accepted) this.logger(`outcome of lease ${ack.leaseId} refused: ${ack.reason}`);
  }

  private assigned(assignment: Assignment): void {
    const leaseId = assignment.leaseId;
    if (this.running.has(leaseId) || this.undelivered.has(leaseId) || this.queued.some((a) => a.leaseId === leaseId)) {
      return; // already ours
    }
    if (this.stopping.signal.aborted) {
      this.outcome(assignment, { case: "cancelled", value: {} }); // the server runs it again
    } else if (this.running.size >= this.slots) {
      this.queued.push(assignment);
    } else {
      this.start(assignment);
    }
  }

  private cancel(leaseId: string, reason: string): void {
    const running = this.running.get(leaseId);
    if (running !== undefined) {
      running.cancelled = true;
      running.abort.abort(abortError(`the attempt was stopped by the server (${reason || "CANCELLED"})`));
      return;
    }
    const index = this.queued.findIndex((a) => a.leaseId === leaseId);
    if (index >= 0) {
      const [assignment] = this.queued.splice(index, 1);
      if (assignment !== undefined) this.outcome(assignment, { case: "cancelled", value: {} });
    }
  }

  private abortAll(why: string): void {
    for (const running of this.running.values()) running.abort.abort(abortError(why));
  }

  private start(assignment: Assignment): void {
    const leaseId = assignment.leaseId;
    const abort = new AbortController();
    const deadline = assignment.deadline === undefined ? undefined : timestampDate(assignment.deadline);
    const context: WorkerContext = {
      taskId: assignment.taskId,
      rootId: assignment.rootId,
      name: assignment.name,
      executor: assignment.executor,
      attempt: assignment.attempt,
      userId: assignment.userId,
      inputs: assignment.inputs ?? {},
      params: assignment.params ?? {},
      dependencyResults: Object.fromEntries(
        Object.entries(assignment.dependencyResults).map(([id, value]) => [id, toJson(ValueSchema, value)]),
      ),
      deadline,
      signal: abort.signal,
      reportProgress: (fraction, message = "") => {
        const clamped = Math.min(1, Math.max(0, Number(fraction) || 0));
        this.emit({ case: "progress", value: { leaseId, fraction: clamped, message: String(message) } });
      },
      log: (...values) => {
        const lines = format(...values).split(/\r?\n/).map((line) => line.slice(0, MAX_LOG_LINE));
        const buffered = this.logs.get(leaseId);
        if (buffered === undefined) this.logs.set(leaseId, lines);
        else buffered.push(...lines);
      },
    };
    const running: Running = { abort, cancelled: false, timedOut: false, done: Promise.resolve() };
    this.running.set(leaseId, running);
    running.done = this.attempt(assignment, context, running);
  }

  private async attempt(assignment: Assignment, context: WorkerContext, running: Running): Promise<void> {
    const leaseId = assignment.leaseId;
    let timer: NodeJS.Timeout | undefined;
    const ms = context.deadline === undefined ? Infinity : context.deadline.getTime() - Date.now() + DEADLINE_GRACE_MS;
    if (ms < 2 ** 31 - 1) {
      // (setTimeout fires at once beyond 2^31 - 1 ms: far deadlines get no local timer)
      timer = setTimeout(() => {
        running.timedOut = true;
        running.abort.abort(abortError("the attempt passed its deadline (TIMEOUT)"));
      }, Math.max(0, ms));
    }
    this.emit({ case: "accepted", value: { leaseId } });
    let outcome: OutcomeKind;
    try {
      const served = this.served.get(assignment.executor);
      if (served === undefined) throw new ExecutorFailure(`this worker does not serve ${assignment.executor}`);
      const result = await served.run(context);
      // Through JSON, as a JS user expects: Dates become strings, undefined becomes null.
      const json = JSON.stringify(result ?? null) as string | undefined;
      outcome = running.cancelled
        ? { case: "cancelled", value: {} }
        : running.timedOut
          ? { case: "failure", value: timeoutFailure }
          : { case: "result", value: fromJson(ValueSchema, json === undefined ? null : (JSON.parse(json) as JsonValue)) };
    } catch (error) {
      // Aborted: the server has recorded how the task ended (its cancel), the deadline
      // passed unseen by the server (TIMEOUT), or the worker is stopping (`cancelled`: the
      // server runs the attempt again).
      if (running.cancelled) outcome = { case: "cancelled", value: {} };
      else if (running.timedOut) outcome = { case: "failure", value: timeoutFailure };
      else if (context.signal.aborted) outcome = { case: "cancelled", value: {} };
      else outcome = { case: "failure", value: failure(error) };
    } finally {
      clearTimeout(timer);
      this.running.delete(leaseId);
    }
    this.flushLogs(leaseId);
    this.outcome(assignment, outcome);
    const next = this.queued.shift();
    if (next !== undefined) this.start(next);
  }

  /** Remember the outcome until acknowledged, and send it if connected. */
  private outcome(assignment: Assignment, outcome: OutcomeKind): void {
    const message = request({
      case: "outcome",
      value: { leaseId: assignment.leaseId, fencingToken: assignment.fencingToken, outcome },
    });
    this.undelivered.set(assignment.leaseId, message);
    this.send?.push(message);
  }

  // ----------------------------------------------------------------- logs

  private flushLogs(leaseId?: string): void {
    for (const key of leaseId === undefined ? [...this.logs.keys()] : [leaseId]) {
      const lines = this.logs.get(key);
      this.logs.delete(key);
      if (lines !== undefined && lines.length > 0) this.emit({ case: "log", value: { leaseId: key, lines } });
    }
  }
}

function failure(error: unknown): MessageInitShape<typeof AttemptFailureSchema> {
  if (error instanceof ExecutorFailure) {
    // Details through JSON: a value protobuf cannot encode would break the whole stream.
    let details: JsonObject = {};
    try {
      details = JSON.parse(JSON.stringify(error.details ?? {})) as JsonObject;
    } catch {
      details = { unencodable: true };
    }
    return { message: error.message, reason: error.reason, detail: (error.stack ?? "").slice(-MAX_DETAIL), details };
  }
  if (error instanceof Error) {
    return {
      message: error.message.slice(0, 2000),
      reason: "EXECUTOR_ERROR",
      detail: (error.stack ?? String(error)).slice(-MAX_DETAIL),
      details: { type: error.name },
    };
  }
  return { message: String(error).slice(0, 2000), reason: "EXECUTOR_ERROR", detail: "", details: { type: typeof error } };
}
