"""Use-cases: what each request means (`Tasks`), with creation, validation, updates,
copies and idempotency. Plain records in and out: no protobuf, no SQL."""
