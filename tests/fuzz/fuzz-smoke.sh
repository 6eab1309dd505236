#!/usr/bin/env bash
# tests/fuzz/fuzz-smoke.sh - the 'make check' entry for the fuzzers: replay
# the seed corpora and regression inputs, then fuzz each harness for a few
# seconds.  Exit 77 (skip) when clang/libFuzzer are not available.
exec bash "$(dirname "${BASH_SOURCE[0]}")/run-fuzzers.sh" --smoke "$@"
