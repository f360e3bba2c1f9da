#!/bin/sh
# Lints the OpenAPI document that `portico-gateway --openapi` prints.
# Usage: openapi_lint.sh <portico-gateway> <redocly> <redocly.yaml> <output.json>
set -eu
gateway=$1 redocly=$2 config=$3 out=$4
"$gateway" --openapi > "$out"
# No usage reports or update checks from a test.
REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true \
  "$redocly" lint --config "$config" --format stylish "$out"
