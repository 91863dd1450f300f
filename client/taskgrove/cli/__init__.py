"""The client commands of the `taskgrove` command line (everything but `serve`).

`taskgrove._cli` builds the parser; the commands live here, one module per concern:
`parser` (arguments), `session` (connecting, error handling and exit codes), `tree_file`
(JSON/YAML tree files), `state` (a tree kept up to date from watch events), `render`
(rich views of a tree), `summary` (how a run ended), the commands themselves (`run`,
`watch`, `commands` for get/tree/ls/executors, `control` for cancel/retry/explain), and
`output` (JSON and text output helpers).
"""

from __future__ import annotations
