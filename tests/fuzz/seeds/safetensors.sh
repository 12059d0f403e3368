#!/usr/bin/env bash
# Seeds for st-fuzz-safetensors: model files, as for st-fuzz-model.
exec bash "$(dirname "$0")/model.sh" "$@"
