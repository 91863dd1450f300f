"""The contract as a user who generates their own client takes it: `buf generate` with the
documented template (protos/buf.gen.yaml) over protos/ alone, with the local plugins it
names, gives Go and TypeScript code for every file."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from support.clients import ROOT, TYPESCRIPT, require, run, typescript_dist

PROTOS = ROOT / "protos"


def test_buf_generate_with_the_documented_template(tmp_path: Path) -> None:
    go_plugin = require("protoc-gen-go", "Go")
    require("protoc-gen-go-grpc", "Go")
    typescript_dist()  # node_modules, with protoc-gen-es
    plugins = [str(Path(go_plugin).parent), str(TYPESCRIPT / "node_modules" / ".bin")]
    buf = Path(sys.executable).with_name("buf")
    run(
        [str(buf), "generate", "--template", "buf.gen.yaml", "-o", str(tmp_path)],
        PROTOS,
        {"PATH": os.pathsep.join([*plugins, os.environ.get("PATH", "")])},
    )
    sources = sorted(p.stem for p in (PROTOS / "taskgrove" / "v1").glob("*.proto"))
    go = tmp_path / "go" / "taskgrove" / "v1"
    typescript = tmp_path / "typescript" / "taskgrove" / "v1"
    assert sorted(p.name for p in go.glob("*.pb.go") if "_grpc" not in p.name) == [
        f"{name}.pb.go" for name in sources
    ]
    assert (go / "task_service_grpc.pb.go").is_file()
    assert sorted(p.name for p in typescript.glob("*.ts")) == [f"{name}_pb.ts" for name in sources]
    assert "package taskgrovev1" in (go / "task.pb.go").read_text()
    assert "TaskService" in (typescript / "task_service_pb.ts").read_text()
    assert (tmp_path / "typescript" / "google" / "rpc" / "error_details_pb.ts").is_file()
