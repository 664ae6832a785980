"""Runtime requests from the work model and the throughput table; calibration from
benchmark files recovers the rates that produced them."""

import pytest
import yaml
from stagedata import ROOT, TINY, demo_config, merge, validated

from ilmoco.cluster import resources as res
from ilmoco.config.formats import FORMATS
from ilmoco.config.resolve import resolve

TABLE = res.load_table(ROOT / "workflow/resources/throughput.yaml")


def test_finetune_requests_grow_with_the_labelled_images():
    s = resolve(validated(merge(demo_config(), {"finetune": {"epochs": 100,
                                                             "epochs_by_fraction": {100: 100}}})))
    n = res.split_counts(100_000, (0.7, 0.2, 0.1))
    mins = {pct: res.runtime_minutes(res.seconds(res.finetune_work(n, s.finetune, pct),
                                                 "finetune", 224, TABLE), TABLE)
            for pct in (1, 6, 100)}
    assert mins[1] < mins[6] < mins[100]
    work = res.finetune_work(n, s.finetune, 100)
    expected = 100 * 70_000 / TABLE["gpu"]["finetune"]["resnet18"] + (
        100 * 20_000 + 2 * 10_000) / TABLE["gpu"]["inference"]["resnet18"]
    assert res.seconds(work, "finetune", 224, TABLE) == pytest.approx(expected)
    # 448 px costs four times the compute of 224 px
    assert res.seconds(work, "finetune", 448, TABLE) == pytest.approx(4 * expected)
    # a fraction's own epochs (epochs_by_fraction) are the ones requested
    short = resolve(validated(merge(demo_config(), {"finetune": {
        "epochs": 100, "epochs_by_fraction": {100: 10}}})))
    assert res.finetune_work(n, short.finetune, 100).train == pytest.approx(work.train / 10)


def test_retries_double_and_the_site_maximum_caps():
    assert res.runtime_minutes(600, TABLE, attempt=1) == int(
        TABLE["overhead_minutes"] + TABLE["safety"] * 10)
    assert res.runtime_minutes(600, TABLE, attempt=2) == 2 * res.runtime_minutes(600, TABLE)
    assert res.runtime_minutes(10**7, TABLE, max_runtime=2880) == 2880


def test_image_count_falls_back_to_the_manifest_then_the_public_size(tmp_path):
    (tmp_path / "manifest.csv").write_text("image_id,path\n" + "a,b\n" * 7)
    nih, dr = FORMATS["nih_cxr14"].public_images, FORMATS["eyepacs_dr"].public_images
    assert res.image_count(tmp_path / "none.npy", tmp_path / "manifest.csv", nih) == 7
    assert res.image_count(None, tmp_path / "none.csv", nih) == 112_120
    assert res.image_count(None, None, dr) == 88_702


def test_calibration_recovers_the_rates(tmp_path):
    from ilmoco.config.schema import result_config

    cfg = validated(merge(merge(demo_config(), TINY), {"pretrain": {"epochs": 50},
                                                        "finetune": {"epochs": 40}}))
    cfg["datasets"]["dr"]["root"] = str(tmp_path / "raw")
    results, bench = tmp_path / "results", tmp_path / "benchmarks"
    (results / "dr/data").mkdir(parents=True)
    # what the workflow writes: the config without its execution settings
    (results / "resolved_config.yaml").write_text(yaml.safe_dump(result_config(cfg)))
    # the fine-tuning stopped early, after 12 of its 40 epochs
    done = results / "dr/finetune/moco/labeled_100/seed0"
    done.mkdir(parents=True)
    (done / "metrics.json").write_text('{"epochs_run": 12}')
    (results / "dr/data/manifest.csv").write_text("image_id\n" + "x\n" * 20_000)
    s = resolve(cfg)
    n = res.split_counts(20_000, s.split.ratios)
    true = {"pretrain": 900.0, "finetune": 1500.0}
    overhead = 60 * TABLE["overhead_minutes"] / TABLE["safety"]
    size = s.datasets["dr"].image_size
    scale = (224 / size) ** 2
    (bench / "dr").mkdir(parents=True)
    jobs = {"pretrain_moco.tsv": res.pretrain_work(n, s.pretrain),
            "finetune_moco_labeled_100_seed0.tsv": res.finetune_work(n, s.finetune, 100, 12)}
    for name, work in jobs.items():
        stage = name.split("_")[0]
        secs = overhead + work.train / (true[stage] * scale) + work.infer / (
            TABLE["gpu"]["inference"][work.arch] * scale)
        (bench / "dr" / name).write_text(f"s\th:m:s\tmax_rss\n{secs}\t0:00:00\t1\n")
    fitted = res.calibrate(results, bench, TABLE, min_seconds=0)
    assert fitted["gpu"]["pretrain"]["resnet18"] == pytest.approx(900, rel=1e-3)
    assert fitted["gpu"]["finetune"]["resnet18"] == pytest.approx(1500, rel=1e-3)
    assert fitted["gpu"]["pretrain"]["resnet50"] == TABLE["gpu"]["pretrain"]["resnet50"]
    assert fitted["measured"]["jobs"] == {"pretrain/resnet18": 1, "finetune/resnet18": 1}


def test_estimate_of_a_run_before_any_data():
    cfg = validated(merge(merge(demo_config(), TINY), {"fractions": [1, 100]}))
    hours = res.estimate(cfg, TABLE)["dr"]
    assert hours["pretrain"] > 0 and hours["finetune"] > 0 and hours["probe"] > 0
    s = resolve(cfg)
    n = res.split_counts(FORMATS["eyepacs_dr"].public_images, s.split.ratios)
    size = s.datasets["dr"].image_size
    one = sum(res.seconds(res.finetune_work(n, s.finetune, p), "finetune", size, TABLE)
              for p in (1, 100))
    assert hours["finetune"] == pytest.approx(len(s.method_names) * one / 3600)


def test_the_official_probes_are_modelled_as_a_backbone_pass_per_epoch():
    """Under the official protocol a probe runs the backbone over the labelled and the
    validation images every epoch (the frozen one extracts features once); the --only-ll
    probe runs the fine-tuning's epochs."""
    n = {"train": 1000.0, "val": 200.0, "test": 300.0}
    once = res.probe_work(n, 100, "resnet50")
    assert once.infer == 1500 and once.train == 0
    assert res.probe_work(n, 100, "resnet50", epochs=10).infer == 1500 + 10 * 1200
    s = resolve(validated(merge(merge(demo_config(), TINY), {"finetune": {"epochs": 7}})))
    assert res.linear_probe_work(n, s.finetune, 100, "resnet18").infer == 1500 + 7 * 1200
    cfg = validated(merge(merge(demo_config(), TINY), {"probe": {"protocol": "official",
                                                                 "linear": "only_ll"}}))
    hours, plain = res.estimate(cfg, TABLE)["dr"], res.estimate(validated(merge(
        demo_config(), TINY)), TABLE)["dr"]
    assert hours["probe"] > 10 * plain["probe"] and hours["linear_probe"] > 0
    assert plain["linear_probe"] == 0
