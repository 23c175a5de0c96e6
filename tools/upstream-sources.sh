#!/usr/bin/env bash
# Fetch into Go's module cache the upstream sources the metric-name lists are checked against
# (tests/functional/data/metric_names.yml, key `module:`; tests/functional/test_metric_names_upstream.py).
# From the Go module proxy, once; a second run costs nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
modules=$(sed -n 's/^  module: *//p' tests/functional/data/metric_names.yml)
[ -n "$modules" ] || { echo "no module: lines in tests/functional/data/metric_names.yml" >&2; exit 1; }
# shellcheck disable=SC2086
(cd / && go mod download $modules)
