# What the report shows and reads: its targets, the inputs of its rules, the presentation.
from ilmoco.config.bases import BASES  # noqa: E402
from ilmoco.reporting.seeds import settings_digest  # noqa: E402
from ilmoco.reporting.specs import FIGURES, TABLES  # noqa: E402

SEED_TABLE = REPO / "bench" / "results" / "seed_variance.csv"


def seed_table():
    """The seed-variance benchmark's table, where one is recorded."""
    return {"seeds": str(SEED_TABLE)} if SEED_TABLE.is_file() else {}


def report_targets():
    out = expand("results/tables/{table}.{ext}", table=list(TABLES), ext=["csv", "md", "tex"])
    out += expand(f"{FIG}.{{ext}}", dataset=DATASETS, figure=figures(), ext=["png", "pdf"])
    return out + data_report_targets()


# The data report, built by the data_report rule: per dataset its tables and contact
# sheet, and one summary of all datasets.
DATA_REPORT = "results/data_report"
DATA_REPORT_FILES = {"splits": "splits.csv", "prevalence": "prevalence.csv",
                     "files": "files.csv", "sheet": "contact_sheet.png"}


def data_report_targets():
    return [f"{DATA_REPORT}/summary.md"] + [f"{DATA_REPORT}/{d}/{f}" for d in DATASETS
                                            for f in DATA_REPORT_FILES.values()]


def data_report_output(dataset, kind):
    return report(f"{DATA_REPORT}/{dataset}/{DATA_REPORT_FILES[kind]}",
                  caption=f"../report/data_{kind}.rst", category="Data", subcategory=dataset,
                  labels={"dataset": dataset, "item": kind})


def figures():
    """The per-dataset figures this run produces."""
    return [f for f in FIGURES if (f != "ks_cdf" or HAS_FULL)
            and (f != "paired_difference" or len(METHODS) > 1)]


def ablation(name):
    """With variants configured, the paired comparisons form the report's Ablations."""
    return name == "paired_difference" and bool(config.get("variants"))


def table_output(name, ext):
    path = f"results/tables/{name}.{ext}"
    if ext != "csv":
        return path
    return report(path, caption=f"../report/table_{name}.rst",
                  category="Ablations" if ablation(name) else "Tables", labels={"table": name})


def figure_output(name, ext):
    path = FIG.replace("{figure}", name) + f".{ext}"
    if ext != "png":
        return path
    return report(path, caption=f"../report/fig_{name}.rst",
                  category="Ablations" if ablation(name) else "{dataset}",
                  subcategory="{dataset}" if ablation(name) else name.replace("_", " "),
                  labels={"dataset": "{dataset}", "figure": name})



def table_inputs(wildcards):
    d = DATASETS
    return {
        "finetune": expand(f"{FT}/metrics.json", dataset=d, method=METHODS, pct=PCTS,
                           seed=SEEDS),
        "probes": expand(PROBE, dataset=d, method=S.probe_methods()),
        "linear": expand(LINEAR_PROBE, dataset=d, method=linear_probe_methods()),
        "ckas": expand(CKA, dataset=d, method=ENCODERS),
        "kss": expand(KS, dataset=d) if HAS_FULL else [],
        "paireds": expand(PAIRED, dataset=d) if len(METHODS) > 1 else [],
    }


def presentation():
    """How tables and figures show the run: method order and display names, interval level,
    each base's loss and its chance level (so a caption or a name reruns only the report)."""
    return {
        "order": METHODS + [RANDOM_INIT],
        "display": S.display_names,
        "datasets": {d: ds.display for d, ds in S.datasets.items()},
        "level": S.bootstrap.level,
        "supervised_from_finetune": S.probe.supervised_reference == "finetune",
        "probe_protocol": S.probe.protocol,
        "paper_datasets": {d: ds.paper for d, ds in S.datasets.items()},
        "losses": {col: label for b in BASES.values() for col, label in b.losses.items()},
        "chance": {m: S.base_chance(m) for m in SSL},
    }


def figure_inputs(wildcards):
    d = wildcards.dataset
    out = {
        "metrics": expand(f"{FT}/metrics.json", dataset=d, method=METHODS, pct=PCTS,
                          seed=SEEDS),
        "probes": expand(PROBE, dataset=d, method=S.probe_methods()),
        "ckas": expand(CKA, dataset=d, method=ENCODERS),
        **{f"pretrain:{m}": PRETRAIN_METRICS.format(dataset=d, method=m) for m in SSL},
        **runs(d, ["predictions"]),
    }
    if HAS_FULL:
        out["ks"] = KS.format(dataset=d)
    if len(METHODS) > 1:
        out["paired"] = PAIRED.format(dataset=d)
    return out
