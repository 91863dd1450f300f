// One gRPC (HTTP/2) transport for the resolved options: TLS and the bearer token.
import type { Interceptor, Transport } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import type { ResolvedOptions } from "./config.js";

export function makeTransport(options: ResolvedOptions): Transport {
  const interceptors: Interceptor[] = [];
  const token = options.token;
  if (token !== undefined) {
    interceptors.push((next) => async (request) => {
      request.header.set("authorization", `Bearer ${token}`);
      return next(request);
    });
  }
  const tls = options.tls;
  return createGrpcTransport({
    baseUrl: `${tls === undefined ? "http" : "https"}://${options.address}`,
    interceptors,
    ...(tls !== undefined ? { nodeOptions: { ...tls } } : {}),
  });
}
