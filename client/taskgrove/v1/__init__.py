"""Generated protobuf and gRPC code of the taskgrove.v1 API (do not edit; `make proto`)."""
