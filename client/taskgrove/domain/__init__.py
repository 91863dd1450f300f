"""Rules shared by the SDK and the server (public; importing it loads no client code).

- `statuses`: the task statuses and which are terminal;
- `aggregation`: a subtree's status and progress from its executable tasks (DESIGN 3);
- `reasons`: the stable error reasons (the proto's `ErrorReason` enum, as strings);
- `json_values`: how deep a JSON value may nest, and which numbers it may hold;
- `wire`: statuses and JSON values to and from their protobuf forms.

Only `wire` touches protobuf, so layers that must not (the server's engine) use the rest.
"""
