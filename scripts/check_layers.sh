#!/usr/bin/env bash
# scripts/check_layers.sh: the C files are layers that call strictly
# downward.  Reads each object file's undefined symbols (nm) and fails when
# one is defined by an object of the same or a higher layer.  The order, top
# first, is written here and nowhere else; objects on one line are peers.
set -euo pipefail
cd "$(dirname "$0")/.."
LAYERS=(
    "snapshot.o"                                            # entry points, settings, runs
    "snapshot_run.o"                                        # runs that own themselves: their worker
    "snapshot_leader.o snapshot_worker.o snapshot_performance.o"  # valuation workers; returns
    "snapshot_batches.o"                                    # a run's batches, committed in order
    "snapshot_walk.o snapshot_writer.o"                     # the ordered walk; the caller's sink
    "snapshot_reads.o"                                      # every read and its SQL
    "snapshot_source.o"                                     # checks, owner's rights, cursors
    "snapshot_row.o"                                        # the snapshot row's descriptor
    "snapshot_valuation.o"                                  # ledger -> figures, no SPI
    "snapshot_positions.o snapshot_amount.o"                # jsonb positions; exact amounts
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

# The layers below the reads use no SPI: their files do not even see it.
incdir=$(${PG_CONFIG:-pg_config} --includedir-server)
for c in snapshot_row.c snapshot_valuation.c snapshot_positions.c snapshot_amount.c; do
    if gcc -M -I. -I"$incdir" "$c" 2>/dev/null | grep -q 'executor/spi\.h'; then
        echo "check_layers: $c includes executor/spi.h" >&2
        bad=1
    fi
done

# The library exports only what the server calls by name: the module magic,
# _PG_init, the valuation worker's main, and each SQL function with its
# pg_finfo_ record.
exports=$(nm -D --defined-only snapshot.so | awk '{print $3}')
for sym in $exports; do
    case $sym in
        Pg_magic_func|_PG_init|snapshot_valuation_worker|snapshot_batch_worker|snapshot_run_worker) ;;
        pg_finfo_*) ;;
        *) echo "$exports" | grep -qx "pg_finfo_$sym" || { echo "check_layers: snapshot.so exports $sym" >&2; bad=1; } ;;
    esac
done
[ $bad -eq 0 ] && echo "check_layers: no SPI below the reads; snapshot.so exports $(echo "$exports" | wc -l) symbols"
exit $bad
