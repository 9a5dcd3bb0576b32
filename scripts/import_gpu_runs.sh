#!/usr/bin/env bash
# Unpack the runs scripts/gpu_study.sh trained on a GPU machine (its study_runs_*.tar) into a
# study's results/experiments/runs: each run folder holds final weights, config and logs, and
# `cclnn ablate` scores it where it finds it ("trained" in --plan). A run already scored here
# is kept; a run folder a worker holds (its lock) is left alone; a run started here on the CPU
# and not finished is replaced by the finished GPU run (its checkpoint removed).
# Usage: scripts/import_gpu_runs.sh TAR_DIR [STUDY_CHECKOUT (default: this one)]
set -eu
tars=${1:?the folder holding study_runs_*.tar}
runs=$(cd "${2:-$(dirname "$0")/..}" && pwd)/results/experiments/runs
mkdir -p "$runs"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
for t in "$tars"/study_runs_*.tar; do tar -C "$tmp" -xf "$t"; done
for new in "$tmp"/*/; do
  name=$(basename "$new"); run=$runs/$name
  if [ -f "$run/metrics.json" ]; then echo "$name: scored here already, kept"; continue; fi
  if [ -d "$run" ] && [ -e "$run/.lock" ] && ! flock -n "$run/.lock" true; then
    echo "$name: in use by a worker here, left alone"; continue
  fi
  if [ -d "$run" ] && ! cmp -s "$new/config.yaml" "$run/config.yaml"; then
    echo "$name: its config here differs from the GPU run's, left alone" >&2; continue
  fi
  rm -rf "$run" && mkdir -p "$run" && cp "$new"/* "$run"/
  echo "$name: imported (trained on the GPU, to be scored)"
done
