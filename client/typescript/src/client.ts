// TaskgroveClient: one method per RPC a user needs, plain objects in and out, every
// failure a TaskgroveError.
import { create } from "@bufbuild/protobuf";
import { FieldMaskSchema } from "@bufbuild/protobuf/wkt";
import { createClient, type CallOptions, type Client } from "@connectrpc/connect";
import { resolveOptions, type ClientOptions, type ResolvedOptions } from "./config.js";
import { executorFromProto, statusToProto, taskFromProto, taskToProto } from "./convert.js";
import { TaskgroveError } from "./errors.js";
import { TaskService, TaskView } from "./gen/taskgrove/v1/task_service_pb.js";
import type { Task as TaskPb } from "./gen/taskgrove/v1/task_pb.js";
import { makeTransport } from "./transport.js";
import type { Executor, Task, TaskInput, TaskStatus } from "./types.js";
import { watchEvents, type WatchOptions } from "./watch.js";
import type { TaskEvent } from "./types.js";

export interface CreateTreeResult {
  /** The created tasks (fewer fields with `basic: true`). */
  tasks: Task[];
  /** Client-local id -> server id. */
  taskIds: Record<string, string>;
}

export interface ListTasksOptions {
  pageSize?: number;
  pageToken?: string;
  statuses?: TaskStatus[];
  parentId?: string;
  rootsOnly?: boolean;
  userId?: string;
  /** Only names containing this, ignoring case; `%` and `_` are literal. */
  nameContains?: string;
}

export interface TaskPage {
  tasks: Task[];
  /** "" on the last page. */
  nextPageToken: string;
}

/** The fields UpdateTask may change; only those present are sent (and masked). */
export type TaskUpdate = Partial<
  Pick<TaskInput, "name" | "priority" | "dependencies" | "inputs" | "params" | "maxAttempts" | "retryBackoffMs" | "timeoutMs">
>;

const UPDATE_PATHS: Record<keyof TaskUpdate, string> = {
  name: "name",
  priority: "priority",
  dependencies: "dependencies",
  inputs: "inputs",
  params: "params",
  maxAttempts: "max_attempts",
  retryBackoffMs: "retry_backoff",
  timeoutMs: "timeout",
};

export interface ExplainResult {
  task: Task | undefined;
  reasons: string[];
  summary: string;
  queuePosition: number;
  running: number;
  concurrencyLimit: number;
}

function task(value: TaskPb | undefined): Task {
  if (value === undefined) throw new TaskgroveError("INTERNAL", "the server answered without a task");
  return taskFromProto(value);
}

export class TaskgroveClient {
  readonly options: ResolvedOptions;
  /** The generated Connect client, for what this layer does not cover. */
  readonly service: Client<typeof TaskService>;

  constructor(options: ClientOptions = {}) {
    this.options = resolveOptions(options);
    this.service = createClient(TaskService, makeTransport(this.options));
  }

  private async call<T>(run: (options: CallOptions) => Promise<T>): Promise<T> {
    try {
      return await run({ timeoutMs: this.options.timeoutMs });
    } catch (error) {
      if (error instanceof TypeError || error instanceof RangeError) throw error; // ours, before sending
      throw TaskgroveError.from(error);
    }
  }

  async createTask(input: TaskInput, requestId = ""): Promise<Task> {
    return task(await this.call((o) => this.service.createTask({ task: taskToProto(input), requestId }, o)));
  }

  /** Creates a whole tree in one commit; `execute` runs it too; `basic` asks for the BASIC view. */
  async createTaskTree(
    tasks: TaskInput[],
    options: { execute?: boolean; requestId?: string; basic?: boolean } = {},
  ): Promise<CreateTreeResult> {
    const response = await this.call((o) =>
      this.service.createTaskTree(
        {
          tasks: tasks.map(taskToProto),
          execute: options.execute ?? false,
          requestId: options.requestId ?? "",
          view: options.basic === true ? TaskView.BASIC : TaskView.FULL,
        },
        o,
      ),
    );
    return { tasks: response.tasks.map(taskFromProto), taskIds: { ...response.taskIds } };
  }

  async getTask(id: string): Promise<Task> {
    return task(await this.call((o) => this.service.getTask({ id }, o)));
  }

  /** The task and its descendants (`maxDepth` 0: all levels). */
  async getTaskTree(id: string, maxDepth = 0): Promise<Task[]> {
    const response = await this.call((o) => this.service.getTaskTree({ id, maxDepth }, o));
    return response.tasks.map(taskFromProto);
  }

  async listTasks(options: ListTasksOptions = {}): Promise<TaskPage> {
    const response = await this.call((o) =>
      this.service.listTasks(
        {
          pageSize: options.pageSize ?? 0,
          pageToken: options.pageToken ?? "",
          statuses: (options.statuses ?? []).map(statusToProto),
          parentId: options.parentId ?? "",
          rootsOnly: options.rootsOnly ?? false,
          userId: options.userId ?? "",
          nameContains: options.nameContains ?? "",
        },
        o,
      ),
    );
    return { tasks: response.tasks.map(taskFromProto), nextPageToken: response.nextPageToken };
  }

  /** Every matching task, page after page (at most `maxPages`, default 10,000). */
  async *allTasks(options: Omit<ListTasksOptions, "pageToken"> = {}, maxPages = 10_000): AsyncGenerator<Task, void, undefined> {
    let pageToken = "";
    for (let page = 0; page < maxPages; page++) {
      const result = await this.listTasks({ ...options, pageToken });
      yield* result.tasks;
      if (result.nextPageToken === "") return;
      pageToken = result.nextPageToken;
    }
  }

  async executeTask(id: string, requestId = ""): Promise<{ task: Task; scheduledCount: number }> {
    const response = await this.call((o) => this.service.executeTask({ id, requestId }, o));
    return { task: task(response.task), scheduledCount: response.scheduledCount };
  }

  async cancelTask(id: string, requestId = ""): Promise<{ task: Task; cancelledTaskIds: string[] }> {
    const response = await this.call((o) => this.service.cancelTask({ id, requestId }, o));
    return { task: task(response.task), cancelledTaskIds: [...response.cancelledTaskIds] };
  }

  async retryTask(id: string, requestId = ""): Promise<{ task: Task; retriedTaskIds: string[] }> {
    const response = await this.call((o) => this.service.retryTask({ id, requestId }, o));
    return { task: task(response.task), retriedTaskIds: [...response.retriedTaskIds] };
  }

  /** Changes the fields present in `update`; with `etag`, only if it still matches (ABORTED otherwise). */
  async updateTask(id: string, update: TaskUpdate, options: { etag?: string; requestId?: string } = {}): Promise<Task> {
    const keys = (Object.keys(update) as (keyof TaskUpdate)[]).filter((k) => update[k] !== undefined);
    for (const key of keys) {
      if (!Object.hasOwn(UPDATE_PATHS, key)) throw new TypeError(`UpdateTask cannot change ${String(key)}`);
    }
    const message = taskToProto({ name: "", ...update });
    message.id = id;
    message.etag = options.etag ?? "";
    const updateMask = create(FieldMaskSchema, { paths: keys.map((k) => UPDATE_PATHS[k]) });
    return task(
      await this.call((o) => this.service.updateTask({ task: message, updateMask, requestId: options.requestId ?? "" }, o)),
    );
  }

  async explainTask(id: string): Promise<ExplainResult> {
    const r = await this.call((o) => this.service.explainTask({ id }, o));
    return {
      task: r.task === undefined ? undefined : taskFromProto(r.task),
      reasons: [...r.reasons],
      summary: r.summary,
      queuePosition: r.queuePosition,
      running: r.running,
      concurrencyLimit: r.concurrencyLimit,
    };
  }

  async listExecutors(): Promise<Executor[]> {
    const response = await this.call((o) => this.service.listExecutors({}, o));
    return response.executors.map(executorFromProto);
  }

  /** See watchEvents in ./watch.ts: events in order, exactly once, resumed across restarts. */
  watch(options: WatchOptions = {}): AsyncGenerator<TaskEvent, void, undefined> {
    return watchEvents(this.service, options);
  }
}
