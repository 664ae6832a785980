"""TensorBoard event files of the training jobs, read back with TensorBoard's own reader:
every scalar of metrics.csv (pretraining) and history.csv (fine-tuning) at its step, one
curve across a resume, nothing without the package or with ``tensorboard: false``."""

import math

import pandas as pd
import pytest
from stagedata import Crash, crash_once_at, prepare, tiny_settings

from ilmoco.data.formats.base import DatasetMeta
from ilmoco.io import ConfigError
from ilmoco.stages import finetune, pretrain
from ilmoco.training import events

pytest.importorskip("tensorboard")


def read_events(log_dir) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)]
            for tag in acc.Tags()["scalars"]}


def csv_curves(path) -> dict[str, list[tuple[int, float]]]:
    """The (step, value) pairs of every column of a metrics.csv / history.csv but the
    epoch."""
    df = pd.read_csv(path)
    out = {}
    for col in df.columns.drop(["step", "epoch"]):
        values = pd.to_numeric(df[col], errors="coerce") if df[col].dtype != bool \
            else df[col].astype(float)
        out[col] = [(int(s), float(v)) for s, v in zip(df["step"], values) if not math.isnan(v)]
    return out


def assert_same_curves(got, want):
    assert set(got) == set(want)
    for tag, points in want.items():
        assert [s for s, _ in got[tag]] == [s for s, _ in points], tag
        # the CSVs keep 6 significant digits (%.6g, <= 5e-6 relative); events hold float32
        assert [v for _, v in got[tag]] == pytest.approx([v for _, v in points], rel=1e-5), tag


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return prepare(tmp_path_factory.mktemp("dr"))


def pretrain_job(paths, out, **over):
    out.mkdir(parents=True, exist_ok=True)
    return pretrain.PretrainJob(
        run=tiny_settings(pretrain=over).pretrain_run("dr", "moco_mse"),
        split_csv=str(paths["split"]),
        meta=DatasetMeta.from_dict(__import__("json").loads(paths["meta"].read_text())),
        cache_images=str(paths["images"]), cache_index=str(paths["index"]),
        out_encoder=str(out / "encoder.pt"), out_metrics=str(out / "metrics.csv"),
        resume_path=str(out / "resume.pt"), events_dir=str(out / "tb"))


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory):
    """An uninterrupted pretraining with its event files."""
    job = pretrain_job(data[0], tmp_path_factory.mktemp("full"))
    pretrain.run(job)
    return job


def test_pretraining_events_are_the_metrics(reference):
    got = read_events(reference.events_dir)
    assert {"loss", "infonce", "mse_block1", "mse_block4", "lr", "val_loss"} <= set(got)
    assert_same_curves(got, csv_curves(reference.out_metrics))


def test_finetuning_events_are_the_history(data, tmp_path):
    paths, meta = data
    s = tiny_settings()
    job = finetune.FinetuneJob(
        run=s.finetune_run("dr", "supervised"), pct=100, seed=0,
        split_csv=str(paths["split"]), meta=meta, cache_images=str(paths["images"]),
        cache_index=str(paths["index"]), encoder=None,
        out_predictions=str(tmp_path / "p.csv"), out_predictions_last=str(tmp_path / "l.csv"),
        out_selection=str(tmp_path / "s.json"), out_model=str(tmp_path / "model.pt"),
        out_history=str(tmp_path / "history.csv"), resume_path=str(tmp_path / "r.pt"),
        events_dir=str(tmp_path / "tb"))
    finetune.run(job)
    got = read_events(tmp_path / "tb")
    assert {"loss", "lr", "val_macro_auc", "best"} <= set(got)
    assert_same_curves(got, csv_curves(job.out_history))


def test_a_resumed_job_continues_its_curve(data, reference, tmp_path, monkeypatch):
    """Killed in its second epoch, after the first epoch's events were written and two steps
    after a checkpoint; the resumed job's events are the uninterrupted run's curve: each
    step once, in order."""
    paths, _ = data
    crash_once_at(monkeypatch, 11)
    job = pretrain_job(paths, tmp_path / "resumed")
    with pytest.raises(Crash):
        pretrain.run(job)
    before = read_events(tmp_path / "resumed" / "tb")
    assert before and max(s for s, _ in before["loss"]) == 7  # epoch 0 (7 steps) written
    pretrain.run(job)  # resumes from the checkpoint at epoch 1, step 2
    got = read_events(tmp_path / "resumed" / "tb")
    for tag, points in got.items():
        steps = [s for s, _ in points]
        assert steps == sorted(set(steps)), tag  # no duplicated or restarted steps
    want = csv_curves(reference.out_metrics)
    want.pop("throughput"), got.pop("throughput")  # timing
    assert_same_curves(got, want)


def test_no_event_files_when_off_or_without_the_package(data, tmp_path, monkeypatch,
                                                        capsys):
    paths, _ = data
    pretrain.run(pretrain_job(paths, tmp_path / "off", tensorboard=False, epochs=1))
    assert not (tmp_path / "off" / "tb").exists()
    monkeypatch.setattr(events, "installed", lambda package: False)
    pretrain.run(pretrain_job(paths, tmp_path / "auto", epochs=1))
    assert not (tmp_path / "auto" / "tb").exists()
    assert "no TensorBoard event files: tensorboard: auto without the tensorboard package: " \
           "pip install tensorboard==2.21.0" in capsys.readouterr().err


def test_tensorboard_true_without_the_package_is_a_config_error(monkeypatch):
    from ilmoco.config import resolve

    monkeypatch.setattr(resolve, "installed", lambda package: False)
    with pytest.raises(ConfigError, match=r"config error at finetune\.tensorboard: true needs "
                                          r"the tensorboard package: pip install "
                                          r"tensorboard==2\.21\.0"):
        tiny_settings(finetune={"tensorboard": True})
