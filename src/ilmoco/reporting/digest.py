"""The result values of a run as the tables print them, one per line: a digest that a rerun
can be checked against digit by digit.

For every table of :data:`ilmoco.reporting.specs.TABLES`, each row's estimate and interval
bounds, scaled and rounded as the Markdown tables show them (``TableSpec.scale``,
``.digits``), and a fine-tuning's flag where its model predicted one class. The demo's
digest is committed beside the README's demo section (``docs/demo/values.csv``, written by
the ``readme`` rule); with ``numerics: portable`` a demo run on any x86-64 CPU with AVX2
reproduces it, and ``make demo`` says whether it did.

    python -m ilmoco.reporting.digest check results/tables docs/demo/values.csv
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from ilmoco.io import write_csv
from ilmoco.reporting.specs import TABLES

VALUES = ("estimate", "ci_low", "ci_high")


def values(tables_dir) -> pd.DataFrame:
    """``table, row, column, value``: each printed value of the tables under ``tables_dir``
    (``row``: the table's key columns and the method, ``a=b`` joined by ``;``)."""
    out = []
    for name, spec in TABLES.items():
        path = Path(tables_dir) / f"{name}.csv"
        if not path.exists() or not path.read_text().strip():
            continue
        df = pd.read_csv(path)
        keys = [c for c in (*spec.rows, "method", "seed") if c in df]
        for _, r in df.iterrows():
            row = ";".join(f"{k}={r[k]}" for k in keys)
            for col in VALUES:
                if col in df and pd.notna(r[col]):
                    out.append((name, row, col, f"{r[col] * spec.scale:.{spec.digits}f}"))
            if "one_class" in df and pd.notna(r["one_class"]) and r["one_class"] > 0:
                out.append((name, row, "one_class", f"{r['one_class']:.2f}"))  # its flag
    return pd.DataFrame(out, columns=["table", "row", "column", "value"])


def differences(got: pd.DataFrame, want: pd.DataFrame) -> list[str]:
    """One line per value that differs, is missing or is new."""
    key = ["table", "row", "column"]
    both = got.merge(want, on=key, how="outer", suffixes=("_got", "_want"), indicator=True)
    lines = []
    for _, r in both.iterrows():
        where = f"{r['table']} {r['row']} {r['column']}"
        if r["_merge"] == "left_only":
            lines.append(f"{where}: {r['value_got']} (not in the digest)")
        elif r["_merge"] == "right_only":
            lines.append(f"{where}: missing (digest {r['value_want']})")
        elif str(r["value_got"]) != str(r["value_want"]):
            lines.append(f"{where}: {r['value_got']} (digest {r['value_want']})")
    return lines


def read(path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("action", choices=["write", "check"])
    ap.add_argument("tables", help="a run's results/tables")
    ap.add_argument("digest", help="the digest CSV")
    a = ap.parse_args(argv)
    got = values(a.tables)
    if a.action == "write":
        write_csv(a.digest, got, index=False)
        return 0
    diff = differences(got.astype(str), read(a.digest))
    if not diff:
        print(f"all {len(got)} printed result values equal {a.digest}")
        return 0
    print(f"{len(diff)} of {len(got)} printed result values differ from {a.digest} "
          "(expected unless the run used its config with numerics: portable):",
          *diff[:20], sep="\n  ")
    return 1


if __name__ == "__main__":
    sys.exit(main())
