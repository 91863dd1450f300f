# One venv per checkout; every target sets up what it needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# What `make run` needs (the server, no dev tools); a full install ($(STAMP)) has it too.
RUN_STAMP := $(VENV)/.installed-run
PROTO_SRC := $(shell find protos/taskgrove -name '*.proto')

.PHONY: install run test lint imports typecheck proto proto-python proto-typescript proto-go proto-check web web-check buf bench bench-peers check clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[server,postgres,dev]'
	touch $(STAMP)

install: $(STAMP)

$(RUN_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	test $(STAMP) -nt pyproject.toml || $(BIN)/python -m pip install --quiet --upgrade pip
	test $(STAMP) -nt pyproject.toml || $(BIN)/python -m pip install --quiet -e '.[server]'
	touch $(RUN_STAMP)

## Set up (the server only) and start it on embedded SQLite (127.0.0.1:50051); server
## flags through SERVE_ARGS, e.g. make run SERVE_ARGS='--allow-command echo'.
run: $(RUN_STAMP)
	$(BIN)/taskgrove serve $(SERVE_ARGS)

## Set up and run the whole test suite.
test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

## Generate every client from protos/: Python, TypeScript (client/typescript), Go (client/go).
proto: proto-python proto-typescript proto-go

proto-python: $(STAMP)
	rm -f client/taskgrove/v1/*_pb2*.py client/taskgrove/v1/*_pb2*.pyi
	$(BIN)/python -m grpc_tools.protoc -I protos \
		--plugin=protoc-gen-mypy=$(BIN)/protoc-gen-mypy \
		--plugin=protoc-gen-mypy_grpc=$(BIN)/protoc-gen-mypy_grpc \
		--python_out=client --grpc_python_out=client \
		--mypy_out=client --mypy_grpc_out=client \
		$(PROTO_SRC)

proto-typescript:
	bash client/typescript/scripts/generate.sh

proto-go:
	bash client/go/scripts/generate.sh

proto-check: proto
	git diff --exit-code -- client
	test -z "$$(git status --porcelain -- client)"

## Build the web console (client/web, pinned esbuild) into the server package; the
## built files are committed, so `make run` and `pip install` need no npm.
web:
	bash client/web/scripts/build.sh

web-check: web
	git diff --exit-code -- server/taskgrove_server/console/static
	test -z "$$(git status --porcelain -- server/taskgrove_server/console/static)"

buf: $(STAMP)
	cd protos && ../$(BIN)/buf lint && ../$(BIN)/buf format -d --exit-code

lint: $(STAMP)
	$(BIN)/ruff check client server tests bench
	$(BIN)/ruff format --check client server tests bench

typecheck: $(STAMP)
	$(BIN)/mypy client server

## Imports run one way (contracts in .importlinter; see ARCHITECTURE.md).
imports: $(STAMP)
	$(BIN)/lint-imports --no-cache

check: proto-check web-check buf lint imports typecheck

bench: $(STAMP)
	$(BIN)/python bench/run.py

## taskgrove beside Prefect 3 and Celery 5 (their venvs under build/peers; not in `test`).
bench-peers: $(STAMP)
	$(BIN)/python bench/run_peers.py $(BENCH_PEERS_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
