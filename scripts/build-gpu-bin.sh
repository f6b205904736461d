#!/usr/bin/env bash
# Builds, here, the binaries that scripts/gpu-check.sh runs on a GPU machine (which has no
# Rust toolchain): the `ms` binary and the test executables that touch the CUDA device, in
# release, stripped, copied into gpu-bin/ (ignored by git). Run from the repository root.
set -euo pipefail
cd "$(dirname "$0")/.."
out=gpu-bin
rm -rf "$out"
mkdir -p "$out"
cargo build --release -p interpreter --bin ms
target="${CARGO_TARGET_DIR:-target}"
cp "$target/release/ms" "$out/ms"
# The test executables, found from cargo's JSON messages (their names carry a hash).
cargo test --release --no-run --message-format=json -p ms-tests --test cuda --test grad_f32 -p devices --lib \
  | python3 -c '
import json, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        print(m["target"]["name"], m["target"]["kind"][0], m["executable"])
' | while read -r name kind exe; do
    case "$kind" in
      lib) cp "$exe" "$out/$name-lib" ;;
      *) cp "$exe" "$out/$name" ;;
    esac
  done
strip "$out"/*
ls -l "$out"
du -sh "$out"
