// Against a real server: TASKGROVE_ADDRESS (plaintext, no auth) and, for the auth test,
// TASKGROVE_TEST_AUTH_ADDRESS + TASKGROVE_TEST_TOKEN (a server with a tokens file).
import assert from "node:assert/strict";
import { test } from "node:test";
import { TaskgroveClient, TaskgroveError, type TaskEvent, type TaskStatus } from "../src/index.js";

const address = process.env["TASKGROVE_ADDRESS"];
if (address === undefined || address === "") throw new Error("TASKGROVE_ADDRESS is not set");
const client = new TaskgroveClient({ address, tls: false, timeoutMs: 10_000 });

async function rejection(promise: Promise<unknown>): Promise<TaskgroveError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof TaskgroveError, `not a TaskgroveError: ${String(error)}`);
    return error;
  }
  assert.fail("the call succeeded");
}

async function waitForStatus(id: string, status: TaskStatus): Promise<void> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const task = await client.getTask(id);
    if (task.status === status) return;
    assert.ok(Date.now() < deadline, `task ${id} still ${task.status}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test("a tree with plain-object inputs reads back equal, Timestamps are Dates", async () => {
  const inputs = { resource: "cpu" };
  const params = { label: "x", nested: { list: [1, "two", true, null], n: 1.5 } };
  const before = Date.now();
  const { tasks, taskIds } = await client.createTaskTree([
    { id: "root", name: "root", params },
    { id: "leaf", name: "leaf", executor: "sleep_executor", parentId: "root", inputs: { seconds: 0 }, priority: 1 },
    { id: "info", name: "system_info_executor", parentId: "root", inputs, dependencies: [{ id: "leaf" }] },
  ]);
  assert.equal(tasks.length, 3);
  assert.deepEqual(Object.keys(taskIds).sort(), ["info", "leaf", "root"]);
  const info = await client.getTask(taskIds["info"] ?? "");
  assert.deepEqual(info.inputs, inputs);
  assert.deepEqual(info.dependencies, [{ id: taskIds["leaf"], required: true }]);
  assert.equal(info.parentId, taskIds["root"]);
  assert.equal(info.status, "PENDING");
  assert.ok(info.createTime instanceof Date);
  assert.ok(Math.abs(info.createTime.getTime() - before) < 60_000);
  assert.equal(info.endTime, undefined);
  const root = await client.getTask(taskIds["root"] ?? "");
  assert.deepEqual(root.params, params);
  const tree = await client.getTaskTree(taskIds["root"] ?? "");
  assert.deepEqual(tree.map((t) => t.id).sort(), Object.values(taskIds).sort());
});

test("execute: the tree completes, results are plain objects", async () => {
  const { taskIds } = await client.createTaskTree([
    { id: "root", name: "root" },
    { id: "info", name: "system_info_executor", parentId: "root", inputs: { resource: "cpu" } },
  ]);
  const rootId = taskIds["root"] ?? "";
  const { scheduledCount } = await client.executeTask(rootId);
  assert.ok(scheduledCount >= 1);
  await waitForStatus(rootId, "COMPLETED");
  const info = await client.getTask(taskIds["info"] ?? "");
  assert.equal(info.status, "COMPLETED");
  assert.equal(typeof info.result, "object");
  assert.ok(info.result !== null && !Array.isArray(info.result));
  assert.equal(typeof (info.result as Record<string, unknown>)["cores"], "number");
  assert.ok(info.endTime instanceof Date);
  const explained = await client.explainTask(rootId);
  assert.equal(explained.task?.status, "COMPLETED");
});

test("an unknown id is NOT_FOUND with reason TASK_NOT_FOUND", async () => {
  const error = await rejection(client.getTask("01a24b7c-0000-7000-8000-000000000000"));
  assert.equal(error.code, "NOT_FOUND");
  assert.equal(error.reason, "TASK_NOT_FOUND");
  assert.equal(error.domain, "taskgrove.dev");
});

test("a bad input is INVALID_ARGUMENT with field violations", async () => {
  const error = await rejection(
    client.createTaskTree([{ id: "a", name: "system_info_executor", inputs: { resource: 42 } }]),
  );
  assert.equal(error.code, "INVALID_ARGUMENT");
  assert.notEqual(error.reason, "");
  assert.ok(error.fieldViolations.length >= 1, JSON.stringify(error.fieldViolations));
  const violation = error.fieldViolations[0];
  assert.ok(violation !== undefined && violation.field.includes("inputs"), JSON.stringify(violation));
});

test("a mistyped status is a TypeError, not a silent UNSPECIFIED", async () => {
  await assert.rejects(client.listTasks({ statuses: ["DONE" as TaskStatus] }), TypeError);
  const page = await client.listTasks({ statuses: ["COMPLETED"], rootsOnly: true });
  assert.ok(page.tasks.every((t) => t.status === "COMPLETED"));
});

test("listTasks filters by name on the server, ignoring case, wildcards literal", async () => {
  const tag = `ts-${Date.now()}`;
  for (const name of [`${tag} Alpha 50%`, `${tag} alpha 50 tasks`, `${tag} beta`]) {
    await client.createTask({ name });
  }
  const names = async (nameContains: string): Promise<string[]> => {
    const found: string[] = [];
    for await (const task of client.allTasks({ nameContains, pageSize: 1 })) found.push(task.name);
    return found;
  };
  assert.deepEqual(await names(`${tag} ALPHA`), [`${tag} Alpha 50%`, `${tag} alpha 50 tasks`]);
  assert.deepEqual(await names(`${tag} alpha 50%`), [`${tag} Alpha 50%`]);
  const error = await rejection(client.listTasks({ nameContains: "x".repeat(256) }));
  assert.equal(error.reason, "NAME_TOO_LONG");
});

test("listExecutors lists the built-ins with plain input schemas", async () => {
  const executors = await client.listExecutors();
  const sleep = executors.find((e) => e.id === "sleep_executor");
  assert.ok(sleep !== undefined);
  assert.equal(typeof sleep.inputSchema, "object");
});

test("watch yields the tree's events in sequence order, ending with the root COMPLETED", async () => {
  const { taskIds } = await client.createTaskTree(
    [
      { id: "root", name: "root" },
      { id: "a", name: "a", executor: "sleep_executor", parentId: "root", inputs: { seconds: 0.1 } },
    ],
    { execute: true },
  );
  const rootId = taskIds["root"] ?? "";
  const events: TaskEvent[] = [];
  const signal = AbortSignal.timeout(20_000);
  for await (const event of client.watch({ rootId, signal, heartbeatIntervalMs: 100 })) {
    events.push(event);
    if (event.taskId === rootId && event.status === "COMPLETED") break;
  }
  const last = events.at(-1);
  assert.ok(last !== undefined && last.taskId === rootId && last.status === "COMPLETED", JSON.stringify(last));
  const sequences = events.map((e) => e.sequence);
  assert.deepEqual(sequences, [...sequences].sort((x, y) => x - y));
  assert.equal(new Set(sequences).size, sequences.length);
  assert.deepEqual(
    events.filter((e) => e.type === "CREATED").map((e) => e.taskId).sort(),
    [taskIds["a"], rootId].sort(),
  );
  assert.ok(events.every((e) => e.time instanceof Date && e.rootId === rootId));
  // Resuming after a sequence yields exactly what follows it.
  const middle = sequences[1] ?? 0;
  const resumed: number[] = [];
  for await (const event of client.watch({ rootId, afterSequence: middle, signal })) {
    resumed.push(event.sequence);
    if (event.taskId === rootId && event.status === "COMPLETED") break;
  }
  assert.deepEqual(resumed, sequences.filter((s) => s > middle));
});

const authAddress = process.env["TASKGROVE_TEST_AUTH_ADDRESS"];
const token = process.env["TASKGROVE_TEST_TOKEN"];
test("token auth: none is UNAUTHENTICATED with a reason, the right one works", { skip: authAddress === undefined }, async () => {
  const anonymous = new TaskgroveClient({ address: authAddress ?? "", tls: false });
  const error = await rejection(anonymous.listExecutors());
  assert.equal(error.code, "UNAUTHENTICATED");
  assert.notEqual(error.reason, "");
  const wrong = await rejection(new TaskgroveClient({ address: authAddress ?? "", token: "wrong-token-000000", tls: false }).listExecutors());
  assert.equal(wrong.code, "UNAUTHENTICATED");
  const authed = new TaskgroveClient({ address: authAddress ?? "", token: token ?? "", tls: false });
  const created = await authed.createTask({ name: "mine", inputs: { k: "v" } });
  assert.deepEqual((await authed.getTask(created.id)).inputs, { k: "v" });
});
