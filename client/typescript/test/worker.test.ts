// The Worker against a real server (TASKGROVE_ADDRESS, plaintext): a task served in this
// process end to end, a thrown error as the task's failure, a refused registration.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { test } from "node:test";
import { ExecutorFailure, TaskgroveClient, TaskgroveError, Worker, type WorkerContext } from "../src/index.js";

const address = process.env["TASKGROVE_ADDRESS"];
if (address === undefined || address === "") throw new Error("TASKGROVE_ADDRESS is not set");
const client = new TaskgroveClient({ address, tls: false, timeoutMs: 10_000 });

async function waitUntil(condition: () => boolean | Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (!(await condition())) {
    assert.ok(Date.now() < deadline, `timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function finished(id: string): Promise<Awaited<ReturnType<typeof client.getTask>>> {
  let task = await client.getTask(id);
  await waitUntil(async () => {
    task = await client.getTask(id);
    return task.status === "COMPLETED" || task.status === "FAILED" || task.status === "CANCELLED";
  }, `task ${id} to end`);
  return task;
}

/** A worker with executors of unique ids (the server remembers executors across tests). */
function testWorker(): { worker: Worker; echo: string; fail: string; seen: WorkerContext[] } {
  const suffix = randomUUID().slice(0, 8);
  const echo = `ts.echo.${suffix}`;
  const fail = `ts.fail.${suffix}`;
  const seen: WorkerContext[] = [];
  const worker = new Worker({ name: `ts-test-${suffix}`, slots: 2, logger: () => {} });
  worker.executor(echo, { description: "echoes", inputSchema: { type: "object", required: ["n"] } }, async (ctx) => {
    seen.push(ctx);
    ctx.reportProgress(0.5, "half");
    ctx.log("echo %d\nsecond line", ctx.inputs["n"]);
    return { n: ctx.inputs["n"], deps: Object.values(ctx.dependencyResults), when: new Date(0) };
  });
  worker.executor(fail, {}, () => {
    throw new ExecutorFailure("no good", "BAD_INPUT", { why: "asked to" });
  });
  return { worker, echo, fail, seen };
}

test("a worker serves a tree: inputs, params and dependency results decoded, JSON results", async () => {
  const { worker, echo, fail, seen } = testWorker();
  const running = worker.run({ address, tls: false });
  try {
    await waitUntil(() => worker.registered, "registration");
    const { taskIds } = await client.createTaskTree(
      [
        { id: "root", name: "root" },
        { id: "a", name: "a", parentId: "root", executor: echo, inputs: { n: 1 }, params: { p: [true, null] } },
        { id: "b", name: "b", parentId: "root", executor: echo, inputs: { n: 2 }, dependencies: [{ id: "a" }] },
      ],
      { execute: true },
    );
    const root = await finished(taskIds["root"] ?? "");
    assert.equal(root.status, "COMPLETED");
    const b = await client.getTask(taskIds["b"] ?? "");
    // A Date goes through JSON, as JSON.stringify writes it.
    assert.deepEqual(b.result, { n: 2, deps: [{ n: 1, deps: [], when: "1970-01-01T00:00:00.000Z" }], when: "1970-01-01T00:00:00.000Z" });
    const first = seen.find((ctx) => ctx.taskId === taskIds["a"]);
    assert.ok(first !== undefined);
    assert.deepEqual(first.params, { p: [true, null] });
    assert.equal(first.attempt, 1);
    assert.equal(first.deadline, undefined);
    assert.equal(first.signal.aborted, false);

    const failing = await client.createTask({ name: "f", executor: fail });
    await client.executeTask(failing.id);
    const failed = await finished(failing.id);
    assert.equal(failed.status, "FAILED");
    assert.equal(failed.error?.reason, "BAD_INPUT");
    assert.equal(failed.error?.message, "no good");
  } finally {
    worker.stop();
    await running;
  }
});

test("a registration the server refuses rejects run() with its code and reason", async () => {
  const worker = new Worker({ name: "conflicting", logger: () => {} });
  worker.executor("sleep_executor", {}, () => null); // the server runs it itself
  const error = await worker.run({ address, tls: false }).then(
    () => assert.fail("run() resolved"),
    (e: unknown) => e,
  );
  assert.ok(error instanceof TaskgroveError, String(error));
  assert.equal(error.code, "FAILED_PRECONDITION");
  assert.equal(error.reason, "EXECUTOR_CONFLICT");
});
