"""Runtime requests from the work model and the throughput table; calibration from
benchmark files recovers the rates that produced them.

Tolerances: the ``pytest.approx`` defaults (rel 1e-6) compare float64 formulas of a few
dozen operations on the same numbers, in another order (~1e-15 apart); one image more or
less in counts of <= 10**5 would move them by >= 1e-5."""

import json
import math

import pandas as pd
import pytest
import yaml
from stagedata import ROOT, TINY, demo_config, merge, validated

from ilmoco.cluster import resources as res
from ilmoco.config.formats import FORMATS
from ilmoco.config.resolve import resolve
from ilmoco.data.decode import Header

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
    # the same float64 formula: approx's default rel 1e-6 is rounding room only
    assert res.seconds(work, "finetune", 224, TABLE) == pytest.approx(expected)
    # 448 px costs four times the compute of 224 px
    assert res.seconds(work, "finetune", 448, TABLE) == pytest.approx(4 * expected)
    # a fraction's own epochs (epochs_by_fraction) are the ones requested
    short = resolve(validated(merge(demo_config(), {"finetune": {
        "epochs": 100, "epochs_by_fraction": {100: 10}}})))
    # the same float64 formula on a tenth of the images
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
    # calibrate rounds a fitted GPU rate to 0.1 images/s (round(r, 1)): within 0.05 of the
    # rates the benchmark times were made from (float64 noise before it: ~1e-12)
    assert fitted["gpu"]["pretrain"]["resnet18"] == pytest.approx(900, abs=0.05)
    assert fitted["gpu"]["finetune"]["resnet18"] == pytest.approx(1500, abs=0.05)
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
    # a float64 sum of the same per-job hours
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


# ------------------------------------------------------------------ the cache job

def jpeg_dataset(tmp_path, name, size, copies=5000):
    """An EyePACS root of 4 JPEGs of ``size`` and a manifest listing them ``copies`` times
    (the count of a real dataset; the sample reads the headers of 64 rows)."""
    from layouts import write_eyepacs
    from stagedata import read_format

    root = write_eyepacs(tmp_path / name, {f"{i}_left": 0 for i in range(4)}, sizes=(size,))
    df, _ = read_format("eyepacs_dr", root)
    many = pd.concat([df] * copies, ignore_index=True)
    many["image_id"] = [f"{i}" for i in range(len(many))]
    manifest = tmp_path / f"{name}.csv"
    many.to_csv(manifest, index=False)
    return root, manifest


def half_unit_3g(x):
    """The most that writing ``x`` with 3 significant digits (``:.3g``) moves it."""
    return 0.5 * 10.0 ** (math.floor(math.log10(abs(x))) - 2)


def model_ms(w, h, s, size, rates):
    """The decode model of throughput.yaml written out: a 3-band JPEG decoded at 1/s."""
    jpeg = rates["jpeg"]
    return (jpeg["image_ms"] + jpeg["source_ms"] * w * h * 3 / 1e6
            + jpeg["decoded_ms"] * -(-w // s) * -(-h // s) * 3 / 1e6
            + rates["output_ms"] * size * size * 3 / 1e6)


def test_cache_request_grows_with_the_source_pixels(tmp_path):
    small_root, small = jpeg_dataset(tmp_path, "small", (640, 480))
    big_root, big = jpeg_dataset(tmp_path, "big", (3888, 2592))
    rates = TABLE["cpu"]["decode"]
    args = dict(public_images=88_702, threads=4, size=299, table=TABLE)
    m_small = res.cache_request(small, small_root, **args)
    m_big = res.cache_request(big, big_root, **args)
    assert m_small < m_big
    # the arithmetic: 20,000 images at the model's cost (640x480 is decoded whole, 3888x2592
    # at 1/4 since 648 px >= 2 x 299), over 4 threads, plus the overhead and safety factor
    for minutes, (w, h, s) in ((m_small, (640, 480, 1)), (m_big, (3888, 2592, 4))):
        work_s = 20_000 * model_ms(w, h, s, 299, rates) / 1000 / 4
        assert minutes == math.ceil(TABLE["overhead_minutes"] + TABLE["safety"] * work_s / 60)
    assert res.cache_request(big, big_root, **{**args, "attempt": 2}) == 2 * m_big
    # before the manifest exists: the public dataset's size, at the output's cost
    assert res.cache_request(tmp_path / "none.csv", big_root, **args) >= \
        TABLE["overhead_minutes"]


def test_paper_eyepacs_cache_estimate():
    """The paper preset's EyePACS cache: 88,702 images of 3888x2592 to 299 px (fundus crop)
    on the rule's 4 threads; the benchmark compares this with the measured cost."""
    header = Header("JPEG", 3888, 2592, 3)
    secs = res.cache_seconds([header], 88_702, 4, 299, TABLE)
    # the same float64 model, evaluated once per image and once for all
    assert secs == pytest.approx(88_702 * model_ms(3888, 2592, 4, 299,
                                                   TABLE["cpu"]["decode"]) / 1000 / 4)


def test_calibration_refits_the_decode_model_from_cache_benchmarks(tmp_path):
    from ilmoco.config.schema import result_config

    root, manifest = jpeg_dataset(tmp_path, "raw", (3888, 2592), copies=250)
    cfg = validated(merge(merge(demo_config(), TINY), {"by_format": {
        "eyepacs_dr": {"image_size": 299}}}))
    cfg["datasets"]["dr"]["root"] = str(root)
    results, bench = tmp_path / "results", tmp_path / "benchmarks"
    (results / "dr/data").mkdir(parents=True)
    (results / "dr/logs").mkdir(parents=True)
    (bench / "dr").mkdir(parents=True)
    (results / "resolved_config.yaml").write_text(yaml.safe_dump(result_config(cfg)))
    (results / "dr/data/manifest.csv").write_text(manifest.read_text())
    # the machine is 2.5 x slower than the table says; the last attempt resumed at image
    # 200 and decoded the other 800 on 3 threads
    rates = TABLE["cpu"]["decode"]
    fmt_ms = model_ms(3888, 2592, 4, 299, rates) - rates["output_ms"] * 299 * 299 * 3 / 1e6
    true_ms = 2.5 * fmt_ms + rates["output_ms"] * 299 * 299 * 3 / 1e6
    (results / "dr/logs/cache.json").write_text(json.dumps(
        {"images": 800, "resumed_at": 200, "total": 1000, "threads": 3}))
    secs = 800 * true_ms / 1000 / 3
    (bench / "dr/cache.tsv").write_text(f"s\th:m:s\tmax_rss\n{secs}\t0:00:00\t1\n")
    fitted = res.calibrate(results, bench, TABLE, min_seconds=0)
    refit = fitted["cpu"]["decode"]
    keys = ("image_ms", "source_ms", "decoded_ms")
    for key in keys:
        want = 2.5 * rates["jpeg"][key]
        # calibrate writes a refitted decode rate with 3 significant digits (:.3g)
        assert refit["jpeg"][key] == pytest.approx(want, abs=half_unit_3g(want))
    assert refit["png"] == rates["png"] and refit["output_ms"] == rates["output_ms"]
    samples = (1, 3888 * 2592 * 3 / 1e6, 972 * 648 * 3 / 1e6)  # per image, source, at 1/4
    bound = sum(half_unit_3g(2.5 * rates["jpeg"][k]) * m for k, m in zip(keys, samples)) / 1000
    # the cost is those rates times the image's millions of samples (output term unchanged):
    # off by at most their roundings times the samples
    assert res.decode_cost(Header("JPEG", 3888, 2592, 3), 299, fitted) == pytest.approx(
        true_ms / 1000, abs=bound)
    assert fitted["measured"]["jobs"] == {"cache/jpeg": 1}
