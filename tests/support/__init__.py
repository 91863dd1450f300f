"""Helpers shared by the test modules (tree specs, bounded waits, event streams, test
executors, status details). `tests/` is on `sys.path` (pytest's default `prepend` import
mode puts the folder of `tests/conftest.py` there), so test modules import them as
`from support.trees import ...`."""
