// TaskgroveError: a failed call with its gRPC code name and the google.rpc details the
// server attaches (one ErrorInfo, BadRequest field violations).
import { Code, ConnectError } from "@connectrpc/connect";
import { BadRequestSchema, ErrorInfoSchema } from "./gen/google/rpc/error_details_pb.js";

/** gRPC canonical code names, e.g. "NOT_FOUND". */
export type GrpcCodeName =
  | "OK" | "CANCELLED" | "UNKNOWN" | "INVALID_ARGUMENT" | "DEADLINE_EXCEEDED" | "NOT_FOUND"
  | "ALREADY_EXISTS" | "PERMISSION_DENIED" | "RESOURCE_EXHAUSTED" | "FAILED_PRECONDITION"
  | "ABORTED" | "OUT_OF_RANGE" | "UNIMPLEMENTED" | "INTERNAL" | "UNAVAILABLE" | "DATA_LOSS"
  | "UNAUTHENTICATED";

const CODE_NAMES: Record<number, GrpcCodeName> = {
  0: "OK", 1: "CANCELLED", 2: "UNKNOWN", 3: "INVALID_ARGUMENT", 4: "DEADLINE_EXCEEDED",
  5: "NOT_FOUND", 6: "ALREADY_EXISTS", 7: "PERMISSION_DENIED", 8: "RESOURCE_EXHAUSTED",
  9: "FAILED_PRECONDITION", 10: "ABORTED", 11: "OUT_OF_RANGE", 12: "UNIMPLEMENTED",
  13: "INTERNAL", 14: "UNAVAILABLE", 15: "DATA_LOSS", 16: "UNAUTHENTICATED",
};

export interface FieldViolation {
  field: string;
  description: string;
  reason: string;
}

export class TaskgroveError extends Error {
  override readonly name = "TaskgroveError";
  /** The gRPC code name. */
  readonly code: GrpcCodeName;
  /** The ErrorInfo reason (e.g. "TASK_NOT_FOUND"); "" when the server sent none. */
  readonly reason: string;
  /** The ErrorInfo domain ("taskgrove.dev"). */
  readonly domain: string;
  /** The ErrorInfo metadata. */
  readonly metadata: Readonly<Record<string, string>>;
  readonly fieldViolations: readonly FieldViolation[];

  constructor(
    code: GrpcCodeName,
    message: string,
    details: { reason?: string; domain?: string; metadata?: Record<string, string>; fieldViolations?: FieldViolation[] } = {},
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.code = code;
    this.reason = details.reason ?? "";
    this.domain = details.domain ?? "";
    this.metadata = details.metadata ?? {};
    this.fieldViolations = details.fieldViolations ?? [];
  }

  /** A TaskgroveError from whatever a call threw (a ConnectError, or anything else). */
  static from(error: unknown): TaskgroveError {
    if (error instanceof TaskgroveError) return error;
    const connect = ConnectError.from(error);
    const info = connect.findDetails(ErrorInfoSchema)[0];
    const fieldViolations = connect
      .findDetails(BadRequestSchema)
      .flatMap((bad) => bad.fieldViolations)
      .map((v) => ({ field: v.field, description: v.description, reason: v.reason }));
    return new TaskgroveError(
      CODE_NAMES[connect.code] ?? "UNKNOWN",
      connect.rawMessage,
      {
        reason: info?.reason ?? "",
        domain: info?.domain ?? "",
        metadata: { ...(info?.metadata ?? {}) },
        fieldViolations,
      },
      { cause: error },
    );
  }
}

export function isUnavailable(error: unknown): boolean {
  return error instanceof ConnectError ? error.code === Code.Unavailable : false;
}
