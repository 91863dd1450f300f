// watch --root-id ID [--after-sequence N]: one JSON line per event
// {"sequence":123,"task_id":"...","type":"STATUS_CHANGED","status":"COMPLETED"}, flushed;
// exits 0 after the root's event with a terminal status. Resumes across server restarts.
import { parseArgs } from "node:util";
import { TERMINAL_STATUSES, TaskgroveClient, TaskgroveError } from "../src/index.js";

function write(line: string): Promise<void> {
  return new Promise((resolve, reject) => process.stdout.write(line, (e) => (e ? reject(e) : resolve())));
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: { "root-id": { type: "string" }, "after-sequence": { type: "string", default: "0" } },
  });
  const rootId = values["root-id"];
  if (rootId === undefined || rootId === "") {
    process.stderr.write("usage: watch.js --root-id ID [--after-sequence N]\n");
    return 2;
  }
  const afterSequence = Number(values["after-sequence"]);
  if (!Number.isSafeInteger(afterSequence) || afterSequence < 0) {
    process.stderr.write("watch: --after-sequence must be a non-negative integer\n");
    return 2;
  }
  const client = new TaskgroveClient();
  for await (const event of client.watch({ rootId, afterSequence, maxBackoffMs: 1_000 })) {
    await write(
      `${JSON.stringify({ sequence: event.sequence, task_id: event.taskId, type: event.type, status: event.status })}\n`,
    );
    if (event.taskId === rootId && TERMINAL_STATUSES.includes(event.status)) return 0;
  }
  process.stderr.write("watch: the stream ended before the root finished\n");
  return 1;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    const e = TaskgroveError.from(error);
    process.stderr.write(`watch: ${e.code} ${e.reason} ${e.message}\n`);
    process.exit(1);
  },
);
