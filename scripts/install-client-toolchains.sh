#!/usr/bin/env bash
# The toolchains of the non-Python clients, from Debian's packages and the npm registry only
# (nothing downloads a toolchain at run time): Go with gRPC for client/go, the pinned npm
# packages of client/typescript. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

go_packages=(golang-go protoc-gen-go protoc-gen-go-grpc golang-google-grpc-dev
  golang-google-protobuf-dev golang-github-golang-protobuf-1-5-dev golang-google-genproto-dev)
if ! dpkg -s "${go_packages[@]}" >/dev/null 2>&1; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install as root: apt-get install -y ${go_packages[*]}" >&2
    exit 1
  fi
  apt-get install -y -q "${go_packages[@]}" >/dev/null
fi

if [ -f client/typescript/package-lock.json ]; then
  (cd client/typescript && npm ci --no-audit --no-fund --loglevel=error)
fi
