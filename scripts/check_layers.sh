#!/usr/bin/env bash
# scripts/check_layers.sh: the C files are layers that call strictly
# downward.  Reads each object file's undefined symbols (nm) and fails when
# one is defined by an object of the same or a higher layer.  The order, top
# first, is written here and nowhere else; objects on one line are peers.
set -euo pipefail
cd "$(dirname "$0")/.."
LAYERS=(
    "snapshot.o"                                   # entry points, settings, runs
    "snapshot_parallel.o snapshot_performance.o"   # valuation workers; returns
    "snapshot_capture.o"                           # configuration, walk, writer
    "snapshot_source.o"                            # reads of the sources, as their owner
    "snapshot_valuation.o"                         # ledger -> figures, no SPI
    "snapshot_amount.o"                            # exact amounts
)
declare -A level
for i in "${!LAYERS[@]}"; do for o in ${LAYERS[$i]}; do level[$o]=$i; done; done
for o in *.o; do
    [ -n "${level[$o]:-}" ] || { echo "check_layers: $o has no layer in scripts/check_layers.sh" >&2; exit 1; }
done
declare -A owner
for o in "${!level[@]}"; do
    while read -r sym; do owner[$sym]=$o; done < <(nm --defined-only -g "$o" | awk '{print $3}')
done
bad=0
for o in "${!level[@]}"; do
    while read -r sym; do
        d=${owner[$sym]:-}
        [ -n "$d" ] && [ "$d" != "$o" ] || continue
        if [ "${level[$d]}" -le "${level[$o]}" ]; then
            echo "check_layers: $o uses $sym of $d, which is not below it" >&2
            bad=1
        fi
    done < <(nm --undefined-only "$o" | awk '{print $2}')
done
[ $bad -eq 0 ] && echo "check_layers: ${#level[@]} objects, every call downward"
exit $bad
