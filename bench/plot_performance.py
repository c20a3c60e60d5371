"""Draw one portfolio's net worth, net contribution and cumulative time-weighted index as a PNG.

Reads snapshot.performance_series() from the database libpq's environment names
(PGHOST, PGPORT, PGUSER, PGDATABASE); run by scripts/plot_performance.sh against
the demo cluster of scripts/demo.sh.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import psycopg2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--portfolio", help="portfolio id (default: the demo portfolio with the most flows)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    conn = psycopg2.connect("")
    cur = conn.cursor()
    if args.portfolio is None:
        cur.execute("SELECT portfolio_id FROM snapshot.portfolio_snapshots"
                    " GROUP BY portfolio_id ORDER BY count(DISTINCT net_contribution) DESC, portfolio_id LIMIT 1")
        args.portfolio = cur.fetchone()[0]
    cur.execute("SELECT min(snapshot_date), max(snapshot_date), min(base_currency)"
                " FROM snapshot.portfolio_snapshots WHERE portfolio_id = %s", (args.portfolio,))
    first, last, currency = cur.fetchone()
    cur.execute("SELECT snapshot_date, net_worth, net_contribution, twr_index"
                " FROM snapshot.performance_series(%s, %s, %s)", (args.portfolio, first, last))
    rows = cur.fetchall()
    cur.execute("SELECT time_weighted_return, money_weighted_return, max_drawdown"
                " FROM snapshot.portfolio_performance(%s, %s, %s)", (args.portfolio, first, last))
    twr, mwr, drawdown = cur.fetchone()
    conn.close()

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dates = [r[0] for r in rows]
    fig, money = plt.subplots(figsize=(8, 4.2), dpi=110)
    money.plot(dates, [float(r[1]) for r in rows], label="net worth", color="tab:blue")
    money.plot(dates, [float(r[2]) for r in rows], label="net contribution", color="tab:gray", linestyle="--")
    money.set_ylabel(currency)
    index = money.twinx()
    index.plot(dates, [float(r[3]) for r in rows], label="time-weighted index (right)", color="tab:green")
    index.set_ylabel("time-weighted index (1 at the start)")
    lines = money.get_legend_handles_labels()[0] + index.get_legend_handles_labels()[0]
    labels = money.get_legend_handles_labels()[1] + index.get_legend_handles_labels()[1]
    money.legend(lines, labels, loc="upper left", fontsize=8)
    mwr_text = f"{float(mwr):+.2%}" if mwr is not None else "n/a"
    money.set_title(f"portfolio {str(args.portfolio)[:8]}…, {first} to {last}: TWR {float(twr):+.2%},"
                    f" MWR {mwr_text}, max drawdown {float(drawdown):.2%}", fontsize=9)
    money.grid(True, alpha=0.3)
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
