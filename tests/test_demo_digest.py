"""The README's demo numbers are what a user's `make demo` prints: the committed digest of
every printed result value (docs/demo/values.csv, written with the README's section) is
reproduced by a run of the demo's config (numerics: portable), and the README shows it."""

import os
import re

import pandas as pd
import pytest
from snakerun import DEMO, ROOT, snakemake

from ilmoco.reporting import digest

VALUES = ROOT / "docs" / "demo" / "values.csv"


def test_the_digest_holds_each_value_as_printed(tmp_path):
    pd.DataFrame({"dataset": ["a", "a"], "metric": ["macro_auc"] * 2, "fraction": [6, 100],
                  "method": ["moco", "moco"], "estimate": [0.95449, 0.7],
                  "ci_low": [0.9, 0.65], "ci_high": [0.99, 0.75]}).to_csv(
        tmp_path / "finetune.csv", index=False)
    got = digest.values(tmp_path)
    first = got.iloc[0]
    assert (first["table"], first["row"], first["column"], first["value"]) == (
        "finetune", "dataset=a;metric=macro_auc;fraction=6;method=moco", "estimate", "95.4")
    want = got.copy()
    want.loc[0, "value"] = "95.5"
    assert digest.differences(got, want) == [
        "finetune dataset=a;metric=macro_auc;fraction=6;method=moco estimate: 95.4 "
        "(digest 95.5)"]
    assert digest.differences(got.iloc[1:], want) == [
        "finetune dataset=a;metric=macro_auc;fraction=6;method=moco estimate: missing "
        "(digest 95.5)"]


def test_the_readme_prints_the_committed_digest():
    """Each fine-tuning cell of the README's demo table is the digest's, digit for digit."""
    values = digest.read(VALUES)
    ft = values[values["table"] == "finetune"].pivot(index="row", columns="column",
                                                     values="value")
    readme = (ROOT / "README.md").read_text()
    assert len(ft) >= 12
    flat = ft["one_class"].notna() if "one_class" in ft else pd.Series(False, ft.index)
    for row, r in ft[~flat].iterrows():
        cell = f"{r['estimate']} [{r['ci_low']}, {r['ci_high']}]"
        assert re.search(re.escape(cell), readme), (row, cell)
    # a model that predicted one class is printed as such, not as its score
    assert readme.count("predicts one class |") + readme.count("predicts one class in ") \
        >= int(flat.sum())


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("ILMOCO_TEST_DEMO"),
                    reason="runs the whole demo (about 10 min on 2 cores): "
                           "ILMOCO_TEST_DEMO=1 (CI sets it)")
def test_a_run_of_the_demo_reproduces_the_committed_digest(tmp_path):
    snakemake(workdir=tmp_path, configfiles=(DEMO,), timeout=3000)
    got = digest.values(tmp_path / "results" / "tables").astype(str)
    diff = digest.differences(got, digest.read(VALUES))
    assert not diff, f"{len(diff)} of {len(got)} values differ:\n" + "\n".join(diff[:30])
