// Client options and their defaults from the environment (the same variables as the
// Python SDK): TASKGROVE_ADDRESS, TASKGROVE_TOKEN, TASKGROVE_CA_FILE, TASKGROVE_CERT_FILE,
// TASKGROVE_KEY_FILE.
import { readFileSync } from "node:fs";

export const DEFAULT_ADDRESS = "127.0.0.1:50051";

/** PEM contents (string or Buffer) of the CA, the client certificate and its key. */
export interface TlsOptions {
  ca?: string | Buffer;
  cert?: string | Buffer;
  key?: string | Buffer;
}

export interface ClientOptions {
  /** HOST:PORT (default TASKGROVE_ADDRESS, else 127.0.0.1:50051). */
  address?: string;
  /** Bearer token (default TASKGROVE_TOKEN); sent as `authorization: Bearer <token>`. */
  token?: string;
  /** true: TLS with the system CAs; an object: TLS with these PEMs; false: plaintext.
   * Default: TLS when TASKGROVE_CA_FILE or TASKGROVE_CERT_FILE is set, else plaintext. */
  tls?: TlsOptions | boolean;
  /** Deadline of each unary call in milliseconds (default 30 s). */
  timeoutMs?: number;
}

export interface ResolvedOptions {
  address: string;
  token: string | undefined;
  tls: TlsOptions | undefined;
  timeoutMs: number;
}

function envValue(env: NodeJS.ProcessEnv, name: string): string | undefined {
  const value = env[name];
  return value === undefined || value === "" ? undefined : value;
}

function tlsFromEnv(env: NodeJS.ProcessEnv): TlsOptions | undefined {
  const ca = envValue(env, "TASKGROVE_CA_FILE");
  const cert = envValue(env, "TASKGROVE_CERT_FILE");
  const key = envValue(env, "TASKGROVE_KEY_FILE");
  if (ca === undefined && cert === undefined) return undefined;
  if ((cert === undefined) !== (key === undefined)) {
    throw new TypeError("TASKGROVE_CERT_FILE and TASKGROVE_KEY_FILE go together");
  }
  return {
    ...(ca !== undefined ? { ca: readFileSync(ca) } : {}),
    ...(cert !== undefined ? { cert: readFileSync(cert) } : {}),
    ...(key !== undefined ? { key: readFileSync(key) } : {}),
  };
}

export function resolveOptions(options: ClientOptions = {}, env: NodeJS.ProcessEnv = process.env): ResolvedOptions {
  const address = options.address ?? envValue(env, "TASKGROVE_ADDRESS") ?? DEFAULT_ADDRESS;
  if (address.includes("://")) throw new TypeError(`address is HOST:PORT, not a URL: ${address}`);
  let tls: TlsOptions | undefined;
  if (options.tls === undefined) tls = tlsFromEnv(env);
  else if (options.tls === true) tls = {};
  else if (options.tls === false) tls = undefined;
  else tls = options.tls;
  return {
    address,
    token: options.token ?? envValue(env, "TASKGROVE_TOKEN"),
    tls,
    timeoutMs: options.timeoutMs ?? 30_000,
  };
}
