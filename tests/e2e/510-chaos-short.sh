#!/usr/bin/env bash
# A short chaos soak for `make check`: tests/chaos/soak.sh for 20 s of
# faults (link down, nftables drop, kill -9 / restart of either node with
# promotion of the secondary) under the acknowledged-writes checker and fio
# verify; ends with identical images and every acknowledged write present.
# CHAOS_SEED=N reproduces a run (the seed is printed first); CHAOS_DURATION
# changes the length.  The long soak: sudo bash tests/chaos/soak.sh --duration 600
exec bash "$(dirname "$0")/../chaos/soak.sh" --duration "${CHAOS_DURATION:-20}" ${CHAOS_SEED:+--seed "$CHAOS_SEED"}
