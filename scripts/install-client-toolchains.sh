#!/usr/bin/env bash
# The toolchains of the non-Python clients, from Debian's packages and the npm registry only
# (nothing downloads a toolchain at run time): Go with gRPC for client/go, the pinned npm
# packages of client/typescript and client/web, and Debian's Chromium for the browser
# tests (Playwright drives /usr/bin/chromium; never `playwright install`). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

debian_packages=(golang-go protoc-gen-go protoc-gen-go-grpc golang-google-grpc-dev
  golang-google-protobuf-dev golang-github-golang-protobuf-1-5-dev golang-google-genproto-dev
  chromium chromium-driver)
if ! dpkg -s "${debian_packages[@]}" >/dev/null 2>&1; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install as root: apt-get install -y ${debian_packages[*]}" >&2
    exit 1
  fi
  apt-get install -y -q "${debian_packages[@]}" >/dev/null
fi

for package in client/typescript client/web; do
  if [ -f "$package/package-lock.json" ]; then
    (cd "$package" && npm ci --no-audit --no-fund --prefer-offline --loglevel=error)
  fi
done
