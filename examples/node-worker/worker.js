// A Node.js worker serving three executors over WorkerService (see README.md):
//
//   node examples/node-worker/worker.js --address 127.0.0.1:50051 --slots 4
//
// Plain ESM over the built TypeScript client (npm --prefix client/typescript run build).
import { parseArgs } from "node:util";
import { ExecutorFailure, Worker } from "../../client/typescript/dist/src/index.js";

const { values: args } = parseArgs({
  options: {
    address: { type: "string" },
    slots: { type: "string", default: "4" },
    name: { type: "string", default: "node-worker" },
  },
});

const worker = new Worker({ name: args.name, slots: Number(args.slots), labels: { language: "node", pid: String(process.pid) } });

/** The value a result carries: itself when plain, else its `value` (or `result`) field. */
function valueOf(result) {
  if (result === null || typeof result !== "object") return result;
  if ("value" in result) return result.value;
  if ("result" in result) return result.result; // sleep_executor's
  return JSON.stringify(result);
}

worker.executor(
  "node.concat",
  {
    description: "Joins `parts`, then the values of the dependencies' results (sorted), with `separator`.",
    inputSchema: {
      type: "object",
      properties: { parts: { type: "array", items: { type: "string" } }, separator: { type: "string" } },
      additionalProperties: false,
    },
  },
  async (ctx) => {
    // Dependency results come by task id, whose order means nothing: sort the values.
    const fromDependencies = Object.values(ctx.dependencyResults).map((r) => String(valueOf(r))).sort();
    const parts = [...(ctx.inputs.parts ?? []), ...fromDependencies];
    ctx.log("joining %d parts", parts.length);
    ctx.reportProgress(1, "joined");
    return { value: parts.join(ctx.inputs.separator ?? " "), parts: parts.length, by: "node" };
  },
);

worker.executor(
  "node.square",
  {
    description: "Squares `x`, or the sum of the dependencies' numeric values when `x` is absent.",
    inputSchema: { type: "object", properties: { x: { type: "number" } }, additionalProperties: false },
  },
  (ctx) => {
    const numbers = Object.values(ctx.dependencyResults).map(valueOf).filter((v) => typeof v === "number");
    const x = ctx.inputs.x ?? numbers.reduce((sum, v) => sum + v, 0);
    if (typeof x !== "number") throw new ExecutorFailure("nothing to square", "BAD_INPUT");
    return { value: x * x, x, by: "node" };
  },
);

worker.executor(
  "node.sleep",
  {
    description: "Sleeps `seconds`, reporting progress; stops early when the attempt is cancelled.",
    inputSchema: { type: "object", properties: { seconds: { type: "number", minimum: 0 } }, additionalProperties: false },
  },
  async (ctx) => {
    const seconds = ctx.inputs.seconds ?? 1;
    console.error(`started ${ctx.taskId} attempt ${ctx.attempt}`);
    const started = Date.now();
    try {
      for (let step = 1; step <= 10; step += 1) {
        // setTimeout/promises with a signal reject with an AbortError when it aborts.
        await new Promise((resolve, reject) => {
          const timer = setTimeout(resolve, (seconds * 1000) / 10);
          ctx.signal.addEventListener("abort", () => (clearTimeout(timer), reject(ctx.signal.reason)), { once: true });
        });
        ctx.reportProgress(step / 10, `slept ${((Date.now() - started) / 1000).toFixed(2)}s`);
      }
    } catch (error) {
      console.error(`aborted ${ctx.taskId}: ${ctx.signal.reason?.message ?? error}`);
      throw error;
    }
    return { slept_seconds: seconds, by: "node" };
  },
);

for (const signal of ["SIGINT", "SIGTERM"]) process.on(signal, () => worker.stop());

try {
  await worker.run(args.address !== undefined ? { address: args.address } : {});
} catch (error) {
  console.error(`worker ${worker.name} refused: ${error.code ?? ""} ${error.reason ?? ""} ${error.message}`);
  process.exitCode = 1;
}
