// Reads {"tasks":[{id,name,executor,inputs,params,parent_id,dependencies,priority}],
// "execute":false} on stdin; prints {"root_id":"...","task_ids":{"a":"<server id>",...}}.
// Address and token from TASKGROVE_ADDRESS / TASKGROVE_TOKEN (and the TLS variables).
import { text } from "node:stream/consumers";
import { TaskgroveClient, TaskgroveError, type JsonObject, type TaskInput } from "../src/index.js";

interface WireTask {
  id?: string;
  name: string;
  executor?: string;
  inputs?: JsonObject;
  params?: JsonObject;
  parent_id?: string;
  user_id?: string;
  priority?: number;
  dependencies?: { id: string; required?: boolean }[];
  max_attempts?: number;
}

function taskInput(t: WireTask): TaskInput {
  return {
    name: t.name,
    ...(t.id !== undefined ? { id: t.id } : {}),
    ...(t.executor !== undefined ? { executor: t.executor } : {}),
    ...(t.inputs !== undefined ? { inputs: t.inputs } : {}),
    ...(t.params !== undefined ? { params: t.params } : {}),
    ...(t.parent_id !== undefined ? { parentId: t.parent_id } : {}),
    ...(t.user_id !== undefined ? { userId: t.user_id } : {}),
    ...(t.priority !== undefined ? { priority: t.priority } : {}),
    ...(t.dependencies !== undefined ? { dependencies: t.dependencies } : {}),
    ...(t.max_attempts !== undefined ? { maxAttempts: t.max_attempts } : {}),
  };
}

async function main(): Promise<number> {
  const request = JSON.parse(await text(process.stdin)) as { tasks: WireTask[]; execute?: boolean };
  const client = new TaskgroveClient();
  const result = await client.createTaskTree(request.tasks.map(taskInput), {
    execute: request.execute ?? false,
    basic: true,
  });
  const root = result.tasks.find((t) => t.parentId === "") ?? result.tasks[0];
  process.stdout.write(`${JSON.stringify({ root_id: root?.rootId ?? "", task_ids: result.taskIds })}\n`);
  return 0;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    const e = TaskgroveError.from(error);
    process.stderr.write(`create-tree: ${e.code} ${e.reason} ${e.message}\n`);
    process.exit(1);
  },
);
