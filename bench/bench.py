"""The snapshot benchmark: capture_all_snapshots against the best set-based SQL
and against a PL/pgSQL loop of capture_snapshot, at N and 4N portfolios.

Run by bench/run.sh, which starts the cluster and passes its socket and port.
Every timing runs in a fresh backend after TRUNCATE of the outputs and a
CHECKPOINT, so each one writes the same rows into empty tables and its
backend's peak memory is its own. Methods alternate within each round.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path

import psycopg2

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
METHODS = {
    "a": "capture_all_snapshots",
    "b": "set-based SQL (simpler valuation)",
    "c": "PL/pgSQL loop of capture_snapshot",
}


@dataclass
class Timing:
    method: str
    scale: int
    seconds: float
    vm_hwm_kb: int
    peak_rss_anon_kb: int
    workers: int = 0
    worker_vm_hwm_kb: int = 0
    run_vm_hwm_kb: int = 0      # (a): the run's own worker, which plans and takes batches too
    max_workers: int | None = None  # (a) of the sweep: snapshot.max_workers, else the default


@dataclass
class Results:
    timings: list[Timing] = field(default_factory=list)
    checks: dict[str, object] = field(default_factory=dict)

    def of(self, method: str, scale: int) -> list[Timing]:
        return [t for t in self.timings if t.method == method and t.scale == scale and t.max_workers is None]

    def sweep(self, scale: int) -> dict[int, list[Timing]]:
        """(a) at this scale by snapshot.max_workers, for the scaling chart."""
        out: dict[int, list[Timing]] = {}
        for t in self.timings:
            if t.method == "a" and t.scale == scale and t.max_workers is not None:
                out.setdefault(t.max_workers, []).append(t)
        return dict(sorted(out.items()))

    def median(self, method: str, scale: int) -> float:
        return statistics.median(t.seconds for t in self.of(method, scale))

    def peak_hwm(self, method: str, scale: int) -> int:
        return max(t.vm_hwm_kb for t in self.of(method, scale))

    def peak_anon(self, method: str, scale: int) -> int:
        return max(t.peak_rss_anon_kb for t in self.of(method, scale))

    def peak_worker_hwm(self, method: str, scale: int) -> int:
        return max(t.worker_vm_hwm_kb for t in self.of(method, scale))

    def peak_run_hwm(self, method: str, scale: int) -> int:
        return max(t.run_vm_hwm_kb for t in self.of(method, scale))

    def peak_any_hwm(self, method: str, scale: int) -> int:
        """The largest peak of any process of the capture: caller, run's worker, valuation worker."""
        return max(max(t.vm_hwm_kb, t.run_vm_hwm_kb, t.worker_vm_hwm_kb) for t in self.of(method, scale))

    def workers(self, method: str, scale: int) -> int:
        return max(t.workers for t in self.of(method, scale))


def connect(args: argparse.Namespace, dbname: str):
    conn = psycopg2.connect(host=args.host, port=args.port, user=args.user, dbname=dbname)
    conn.autocommit = True
    return conn


@contextmanager
def session(args: argparse.Namespace, dbname: str):
    """A cursor on an autocommit connection, closed afterwards."""
    conn = connect(args, dbname)
    try:
        with conn.cursor() as cur:
            yield cur
    finally:
        conn.close()


def psql(args: argparse.Namespace, dbname: str, *extra: str) -> None:
    subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", args.host, "-p", str(args.port),
                    "-U", args.user, "-d", dbname, *extra], check=True)


def load(args: argparse.Namespace, scale: int) -> str:
    """A database with the reference schema and the deterministic dataset at this scale."""
    dbname = f"bench_{scale}"
    with session(args, "postgres") as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {dbname}")
        cur.execute(f"CREATE DATABASE {dbname}")
    started = time.perf_counter()
    psql(args, dbname, "-f", str(ROOT / "examples" / "schema.sql"))
    psql(args, dbname, "-v", f"portfolios={scale}", "-v", "assets=2000", "-v", "days=60",
         "-f", str(ROOT / "examples" / "demo_data.sql"))
    psql(args, dbname, "-c", "VACUUM (ANALYZE) transactions, portfolios, assets, asset_prices, fx_rates")
    psql(args, dbname, "-c", "CREATE EXTENSION snapshot",
         "-c", "SELECT snapshot.snapshot_configure(fx_rates => 'fx_rates')",
         "-f", str(HERE / "set_based.sql"))
    with session(args, dbname) as cur:
        cur.execute("SELECT count(*) FROM transactions")
        rows = cur.fetchone()[0]
    print(f"  loaded {scale:,} portfolios, {rows:,} transactions in {time.perf_counter() - started:.0f} s",
          flush=True)
    return dbname


def memory_kb(pid: int) -> dict[str, int]:
    out = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmHWM", "RssAnon"):
                out[key] = int(value.split()[0])
    return out


def capture_pids() -> dict[str, list[int]]:
    """The processes of the capture under way (the benchmark runs one at a time), by their titles:
    the run's worker ("snapshot capture run") and its valuation workers."""
    pids: dict[str, list[int]] = {"run": [], "worker": []}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                title = f.read()
        except OSError:
            continue
        if b"snapshot capture run" in title:
            pids["run"].append(int(entry))
        elif b"snapshot valuation worker" in title:
            pids["worker"].append(int(entry))
    return pids


def run_method(args: argparse.Namespace, dbname: str, method: str, scale: int, day: date,
               max_workers: int | None = None) -> Timing:
    with session(args, dbname) as cur:
        cur.execute("TRUNCATE snapshot.portfolio_snapshots, snapshot.snapshot_runs CASCADE;"
                    " TRUNCATE bench_simple_snapshots")
        cur.execute("CHECKPOINT")
    conn = connect(args, dbname)
    cur = conn.cursor()
    cur.execute("SELECT pg_backend_pid()")
    pid = cur.fetchone()[0]
    if max_workers is not None:
        cur.execute("SET snapshot.max_workers = %s", (max_workers,))
    if method == "b":
        cur.execute("SET work_mem = %s", (args.work_mem,))
        cur.execute("PREPARE b(date, timestamptz) AS " + (HERE / "set_based_query.sql").read_text())
    peak = {"anon": 0, "worker_hwm": 0, "run_hwm": 0}
    done = threading.Event()

    def sample() -> None:
        # the capture's processes are looked for every 0.25 s: a scan of /proc
        # every 20 ms took CPU from the capture's own processes on 2 cores,
        # and from (a) only; VmHWM is a peak, so reading it every 20 ms of the
        # processes found misses nothing
        found: dict[str, list[int]] = {}
        scanned = 0.0
        while not done.is_set():
            try:
                peak["anon"] = max(peak["anon"], memory_kb(pid).get("RssAnon", 0))
            except OSError:
                return
            if method == "a":
                if time.perf_counter() - scanned >= 0.25:
                    found = capture_pids()
                    scanned = time.perf_counter()
                for kind, pids in found.items():
                    for other in pids:
                        try:
                            key = "run_hwm" if kind == "run" else "worker_hwm"
                            peak[key] = max(peak[key], memory_kb(other).get("VmHWM", 0))
                        except OSError:
                            pass
            done.wait(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    workers = 0
    if method == "a":
        cur.execute("SELECT status, captured, workers FROM snapshot.capture_all_snapshots(%s, 'bench')", (day,))
        status, captured, workers = cur.fetchone()
        assert status == "succeeded" and captured == scale, (status, captured)
    elif method == "b":
        cur.execute("EXECUTE b(%s, %s::date + 1)", (day, day))
        assert cur.rowcount == scale, cur.rowcount
    else:
        cur.execute("DO $$ DECLARE p record; BEGIN FOR p IN SELECT id FROM portfolios LOOP"
                    " PERFORM snapshot.capture_snapshot(p.id, %s::date); END LOOP; END $$" % f"'{day}'")
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    hwm = memory_kb(pid)["VmHWM"]
    conn.close()
    if method == "c":
        with session(args, dbname) as c2:
            c2.execute("SELECT count(*) FROM snapshot.portfolio_snapshots")
            assert c2.fetchone()[0] == scale
    extra = f"  run's worker VmHWM {peak['run_hwm'] / 1024:.1f} MB" if method == "a" else ""
    extra += f", {workers} valuation workers, each VmHWM <= {peak['worker_hwm'] / 1024:.1f} MB" if workers else ""
    extra += f"  (snapshot.max_workers = {max_workers})" if max_workers is not None else ""
    print(f"  {scale:>9,}  ({method}) {METHODS[method]:<36} {seconds:8.2f} s"
          f"  VmHWM {hwm / 1024:6.1f} MB  peak private {peak['anon'] / 1024:6.1f} MB{extra}", flush=True)
    return Timing(method, scale, seconds, hwm, peak["anon"], workers, peak["worker_hwm"], peak["run_hwm"],
                  max_workers)


def check_agreement(args: argparse.Namespace, dbname: str, day: date, sample: int) -> int:
    """After a capture of all, capture_snapshot must give every sampled portfolio the same row."""
    with session(args, dbname) as cur:
        cur.execute("SELECT status FROM snapshot.capture_all_snapshots(%s, 'bench')", (day,))
        cur.execute("CREATE TEMP TABLE from_all AS SELECT * FROM snapshot.portfolio_snapshots"
                    " WHERE snapshot_date = %s ORDER BY md5(portfolio_id::text) LIMIT %s", (day, sample))
        cur.execute("""
            SELECT count(*) FROM from_all a
              JOIN LATERAL snapshot.capture_snapshot(a.portfolio_id, a.snapshot_date) s ON true
             WHERE (a.base_currency, a.market_value, a.cash_balance, a.net_worth, a.total_cost,
                    a.unrealized_pnl, a.realized_pnl, a.income, a.fees, a.net_contribution, a.day_flow,
                    a.position_count, a.missing_prices, a.stale_prices, a.missing_fx, a.positions)
                IS DISTINCT FROM
                   (s.base_currency, s.market_value, s.cash_balance, s.net_worth, s.total_cost,
                    s.unrealized_pnl, s.realized_pnl, s.income, s.fees, s.net_contribution, s.day_flow,
                    s.position_count, s.missing_prices, s.stale_prices, s.missing_fx, s.positions)""")
        return cur.fetchone()[0]


def performance(args: argparse.Namespace, dbname: str, day: date, rounds: int) -> dict[str, object]:
    """Backfill the dataset's history, then time the time-weighted return of every portfolio over it:
    (d) snapshot.portfolio_performance through LATERAL, (e) the same rule as window functions."""
    with session(args, dbname) as cur:
        cur.execute("SELECT min(transaction_date)::date FROM transactions")
        first = cur.fetchone()[0]
    started = time.perf_counter()
    conn = connect(args, dbname)
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute("TRUNCATE snapshot.portfolio_snapshots, snapshot.snapshot_runs CASCADE")
    days = 0
    for ordinal in range(first.toordinal(), day.toordinal() + 1):
        cur.execute("SELECT status FROM snapshot.capture_all_snapshots(%s, 'backfill')", (date.fromordinal(ordinal),))
        days += 1
    cur.execute("VACUUM ANALYZE snapshot.portfolio_snapshots")
    cur.execute("SELECT count(*) FROM snapshot.portfolio_snapshots")
    snapshots = cur.fetchone()[0]
    print(f"  backfilled {days} days, {snapshots:,} snapshots in {time.perf_counter() - started:.0f} s", flush=True)
    function_sql = ("SELECT pf.id, p.time_weighted_return FROM portfolios pf,"
                    " LATERAL snapshot.portfolio_performance(pf.id, %(first)s, %(last)s) p")
    window_sql = "\n".join(line for line in (HERE / "performance_sql.sql").read_text().splitlines()
                           if not line.startswith("--")).replace("$1", "%(first)s").replace("$2", "%(last)s")
    timings: dict[str, list[float]] = {"d": [], "e": []}
    results: dict[str, dict] = {}
    for _ in range(rounds):
        for method, sql in (("d", function_sql), ("e", window_sql)):
            conn2 = connect(args, dbname)
            cur2 = conn2.cursor()
            t0 = time.perf_counter()
            cur2.execute(sql, {"first": first, "last": day})
            rows = cur2.fetchall()
            timings[method].append(time.perf_counter() - t0)
            conn2.close()
            results[method] = {str(pid): float(twr) for pid, twr in rows if twr is not None}
    differ = sum(1 for pid, twr in results["d"].items()
                 if abs(twr - results["e"].get(pid, float("nan"))) > 1e-9 or pid not in results["e"])
    conn.close()
    d, e = statistics.median(timings["d"]), statistics.median(timings["e"])
    print(f"  (d) portfolio_performance x {len(results['d']):,} {d:8.2f} s, (e) window functions {e:8.2f} s,"
          f" (d)/(e) {d / e:.2f}, {differ} portfolios differ by more than 1e-9", flush=True)
    return {"days": days, "snapshots": snapshots, "function_s": d, "window_s": e,
            "portfolios": len(results["d"]), "differ": differ, "rounds": rounds}


def machine(args: argparse.Namespace) -> dict[str, str]:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor())
    mem_kb = next(int(line.split()[1]) for line in open("/proc/meminfo") if line.startswith("MemTotal"))
    with session(args, "postgres") as cur:
        cur.execute("SELECT version(), current_setting('shared_buffers'), current_setting('work_mem')")
        version, shared_buffers, work_mem = cur.fetchone()
    return {"cpu": cpu, "cores": str(os.cpu_count()), "memory": f"{mem_kb / 1024 / 1024:.0f} GiB",
            "postgres": version.split(" on ")[0], "shared_buffers": shared_buffers,
            "work_mem": f"{work_mem} (b: {args.work_mem})",
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d")}


def report(results: Results, n: int, info: dict[str, str]) -> str:
    lines = [f"Machine: {info['cpu']}, {info['cores']} cores, {info['memory']}; {info['postgres']};"
             f" shared_buffers {info['shared_buffers']}, work_mem {info['work_mem']}; {info['date']}.",
             "",
             "| method | N | runs | median s | portfolios/s | backend VmHWM MB | peak private MB"
             " | run's worker VmHWM MB | valuation workers (VmHWM MB each) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for scale in (n, 4 * n):
        for method in "abc":
            runs = results.of(method, scale)
            if not runs:
                continue
            med = results.median(method, scale)
            workers = results.workers(method, scale)
            worker_cell = (f"{workers} ({results.peak_worker_hwm(method, scale) / 1024:.0f})"
                           if workers else "-")
            run_cell = f"{results.peak_run_hwm(method, scale) / 1024:.0f}" if method == "a" else "-"
            lines.append(f"| ({method}) {METHODS[method]} | {scale:,} | {len(runs)} | {med:.2f} |"
                         f" {scale / med:,.0f} | {results.peak_hwm(method, scale) / 1024:.0f} |"
                         f" {results.peak_anon(method, scale) / 1024:.0f} | {run_cell} | {worker_cell} |")
    a_n, b_n, c_n = (results.median(m, n) for m in "abc")
    a_4n = results.median("a", 4 * n)
    hwm_n, hwm_4n = results.peak_any_hwm("a", n), results.peak_any_hwm("a", 4 * n)
    targets = [
        (f"(a) / (b) at N = {n:,}", a_n / b_n, "<= 0.30", a_n / b_n <= 0.30),
        ("(a) / (c) at N", a_n / c_n, "<= 0.2", a_n / c_n <= 0.2),
        ("(a) time 4N / N", a_4n / a_n, "<= 4.4", a_4n / a_n <= 4.4),
        ("(a) VmHWM 4N / N, largest of caller, run's worker, valuation workers", hwm_4n / hwm_n, "<= 1.2",
         hwm_4n / hwm_n <= 1.2),
        ("(a) VmHWM at 4N, MB, largest of caller, run's worker, valuation workers", hwm_4n / 1024, "< 256",
         hwm_4n / 1024 < 256),
        ("(a) vs capture_snapshot, differing sampled rows", results.checks["disagreements"], "= 0",
         results.checks["disagreements"] == 0),
    ]
    perf = results.checks.get("performance")
    if perf:
        lines += ["", f"Returns over the backfilled history ({perf['days']} days, {perf['snapshots']:,} snapshots),"
                  f" time-weighted return of all {perf['portfolios']:,} portfolios in one statement, median of"
                  f" {perf['rounds']}:", "",
                  "| method | median s | portfolios/s |", "|---|---:|---:|",
                  f"| (d) `LATERAL snapshot.portfolio_performance` | {perf['function_s']:.2f} |"
                  f" {perf['portfolios'] / perf['function_s']:,.0f} |",
                  f"| (e) window functions (`bench/performance_sql.sql`) | {perf['window_s']:.2f} |"
                  f" {perf['portfolios'] / perf['window_s']:,.0f} |",
                  "", f"(d) / (e) = {perf['function_s'] / perf['window_s']:.2f};"
                  f" portfolios whose returns differ by more than 1e-9: {perf['differ']}."]
    sweep = results.sweep(n)
    if sweep:
        base = statistics.median(t.seconds for t in sweep[min(sweep)])
        lines += ["", f"(a) at N = {n:,} against `snapshot.max_workers` (with workers, the run's worker only"
                  f" reads their queues, so k workers are k processes valuing and writing; with none, the run's"
                  f" worker alone; {info['cores']} cores), median of {max(len(v) for v in sweep.values())}:", "",
                  "| snapshot.max_workers | processes valuing | workers started | median s | portfolios/s"
                  " | speed-up |",
                  "|---:|---:|---:|---:|---:|---:|"]
        for k, runs in sweep.items():
            med = statistics.median(t.seconds for t in runs)
            started = max(t.workers for t in runs)
            lines.append(f"| {k} | {max(started, 1)} | {started} | {med:.2f} | {n / med:,.0f} |"
                         f" {base / med:.2f} |")
    lines += ["", "| target | measured | goal | met |", "|---|---:|---|---|"]
    for name, value, goal, ok in targets:
        shown = f"{value:.3f}" if isinstance(value, float) else str(value)
        lines.append(f"| {name} | {shown} | {goal} | {'yes' if ok else 'NO'} |")
    return "\n".join(lines)


def chart(results: Results, n: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for method, marker in zip("abc", "os^"):
        scales = [s for s in (n, 4 * n) if results.of(method, s)]
        ax.plot(scales, [results.median(method, s) for s in scales], marker=marker,
                label=f"({method}) {METHODS[method]}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks([n, 4 * n], [f"{n:,}", f"{4 * n:,}"])
    ax.set_xlabel("portfolios (N)")
    ax.set_ylabel("seconds (median)")
    ax.set_title("Daily snapshot of every portfolio: time against N")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)


def scaling_chart(results: Results, n: int, path: Path, cores: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sweep = results.sweep(n)
    ks = list(sweep)
    rates = [n / statistics.median(t.seconds for t in sweep[k]) for k in ks]
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    ax.plot(ks, rates, marker="o", label="(a) capture_all_snapshots")
    ax.axhline(rates[0], color="grey", linestyle=":", label="no valuation workers")
    ax.set_xticks(ks)
    ax.set_xlabel("snapshot.max_workers (valuation workers; 0: the run's worker alone)")
    ax.set_ylabel("portfolios per second")
    ax.set_ylim(bottom=0)
    ax.set_title(f"Capture throughput against valuation workers, N = {n:,}, {cores} cores")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--user", default="postgres")
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3, help="timings of each method at N")
    parser.add_argument("--loop-rounds", type=int, default=None, help="timings of (c) at N (default: --rounds)")
    parser.add_argument("--rounds-4n", type=int, default=3, help="timings of (a) and (b) at 4N")
    parser.add_argument("--loop-rounds-4n", type=int, default=1, help="timings of (c) at 4N (slow)")
    parser.add_argument("--work-mem", default="512MB", help="work_mem of the set-based statement")
    parser.add_argument("--sample", type=int, default=200, help="portfolios checked against capture_snapshot")
    parser.add_argument("--performance-rounds", type=int, default=3,
                        help="timings of the returns over the backfilled history at N (0: skip)")
    parser.add_argument("--workers", default="0,1,2,4",
                        help="snapshot.max_workers values timed for the scaling chart at N ('' to skip)")
    parser.add_argument("--workers-rounds", type=int, default=3, help="timings of each of --workers")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    day = datetime.now(timezone.utc).date()
    results = Results()
    info = machine(args)
    loop_rounds_n = args.rounds if args.loop_rounds is None else args.loop_rounds
    for scale, rounds, loop_rounds in ((args.n, args.rounds, loop_rounds_n), (4 * args.n, args.rounds_4n, args.loop_rounds_4n)):
        print(f"N = {scale:,}", flush=True)
        dbname = load(args, scale)
        for r in range(max(rounds, loop_rounds)):
            for method in "abc":
                if r < (loop_rounds if method == "c" else rounds):
                    results.timings.append(run_method(args, dbname, method, scale, day))
        if scale == args.n and args.workers:
            for r in range(args.workers_rounds):
                for k in (int(w) for w in args.workers.split(",")):
                    results.timings.append(run_method(args, dbname, "a", scale, day, max_workers=k))
        if scale == args.n:
            if args.performance_rounds:
                results.checks["performance"] = performance(args, dbname, day, args.performance_rounds)
            results.checks["disagreements"] = check_agreement(args, dbname, day, args.sample)
            print(f"  capture_snapshot agrees with capture_all_snapshots on {args.sample} sampled portfolios:"
                  f" {results.checks['disagreements']} differ", flush=True)
        with session(args, "postgres") as cur:
            cur.execute(f"DROP DATABASE {dbname}")
    table = report(results, args.n, info)
    print()
    print(table)
    (args.out / "results.md").write_text(table + "\n")
    (args.out / "timings.json").write_text(json.dumps({"machine": info, "timings": [t.__dict__ for t in results.timings],
                                                       "checks": results.checks}, indent=2) + "\n")
    chart(results, args.n, args.out / "bench.png")
    if results.sweep(args.n):
        scaling_chart(results, args.n, args.out / "workers.png", info["cores"])
    print(f"\nwrote {args.out / 'results.md'}, {args.out / 'timings.json'}, {args.out / 'bench.png'}"
          f" and {args.out / 'workers.png'}")


if __name__ == "__main__":
    main()
