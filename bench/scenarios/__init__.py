"""The benchmark's scenarios, one module each; `runner` chooses and runs them.

- `throughput`: a tree run to completion, seen by polling and by a watcher (the table);
- `event_latency`: how soon a watcher process receives an event;
- `fanout`: what 1 and 100 watchers of one tree cost;
- `create_latency`: the round trip of CreateTaskTree;
- `workers`: trees and single tasks run by `taskgrove worker` processes, beside the
  built-in executor.

Each starts a fresh server per run (`harness.started_server`) and formats its own lines.
"""
