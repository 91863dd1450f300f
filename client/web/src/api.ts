// The console's one connection: the generated TaskService client over gRPC-Web to the
// server that served this page, with the signed-in bearer token on every call.
import { createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { TaskService } from "../../typescript/src/gen/taskgrove/v1/task_service_pb.js";
import { TaskgroveError } from "../../typescript/src/errors.js";

const TOKEN_KEY = "taskgrove.token";

export type Api = Client<typeof TaskService>;

export function token(): string {
  return sessionStorage.getItem(TOKEN_KEY) ?? "";
}

export function setToken(value: string): void {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

const bearer: Interceptor = (next) => (request) => {
  const current = token();
  if (current) request.header.set("authorization", `Bearer ${current}`);
  return next(request);
};

export const api: Api = createClient(
  TaskService,
  createGrpcWebTransport({ baseUrl: window.location.origin, interceptors: [bearer] }),
);

/** Listeners told when a call was refused for want of (valid) credentials. */
const signInNeeded = new Set<() => void>();

export function onSignInNeeded(listener: () => void): void {
  signInNeeded.add(listener);
}

/** A failed call as one line for people: code, reason, message. Asks for sign-in when
 * the server says the caller is unauthenticated. */
export function describe(error: unknown): string {
  const failed = TaskgroveError.from(error);
  if (failed.code === "UNAUTHENTICATED") for (const listener of signInNeeded) listener();
  const reason = failed.reason ? ` ${failed.reason}` : "";
  const hint =
    failed.code === "PERMISSION_DENIED"
      ? " (your token's roles do not allow this)"
      : failed.code === "UNAUTHENTICATED"
        ? " (sign in with a token)"
        : "";
  return `${failed.code}${reason}: ${failed.message}${hint}`;
}

export function isCode(error: unknown, code: string): boolean {
  return TaskgroveError.from(error).code === code;
}
