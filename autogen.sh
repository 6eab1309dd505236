#!/bin/sh
# Generate ./configure from configure.ac (run once after cloning).
set -e
cd "$(dirname "$0")"
mkdir -p m4
autoreconf -fi
