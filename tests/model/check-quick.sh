#!/usr/bin/env bash
# tests/model/check-quick.sh - the `make check` entry: check.sh --quick
# (Automake runs TESTS without arguments).
exec bash "$(dirname "$0")/check.sh" --quick "$@"
