"""The event log: every state change as a `TaskEvent`, and live fan-out to watchers."""
