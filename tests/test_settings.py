"""Settings resolved once from the validated config: one field per schema key, result vs
execution fields, method variants and their terms, --config values, clear config errors."""

import dataclasses

import pytest
import yaml
from stagedata import SCHEMA, tiny_settings

from ilmoco.config.bases import BASES
from ilmoco.config.schema import coerce_to_schema, schema_at
from ilmoco.config.settings.bootstrap import BootstrapSettings
from ilmoco.config.settings.cka import CKASettings
from ilmoco.config.settings.data import SplitSettings
from ilmoco.config.settings.fields import TOP_LEVEL_FIELDS, digest, result_fields
from ilmoco.config.settings.finetune import FinetuneSettings
from ilmoco.config.settings.paired import PairedSettings
from ilmoco.config.settings.pretrain import KnnSettings, PretrainSettings
from ilmoco.config.settings.probe import ProbeSettings
from ilmoco.config.settings.training import OptimizerSettings
from ilmoco.config.terms import TERMS
from ilmoco.io import ConfigError

# ``pretrain`` also holds one section per registered base and term
PLUGGED = {b.name for b in BASES.values()} | {t.name for t in TERMS.values() if t.settings}
SECTIONS = {"pretrain": PretrainSettings, "finetune": FinetuneSettings,
            "probe": ProbeSettings, "cka": CKASettings, "bootstrap": BootstrapSettings,
            "split": SplitSettings, "paired": PairedSettings}
NESTED = {("pretrain", "optimizer"): OptimizerSettings, ("pretrain", "knn"): KnnSettings,
          ("finetune", "optimizer"): OptimizerSettings,
          **{("pretrain", b.name): b.settings for b in BASES.values()},
          **{("pretrain", t.name): t.settings for t in TERMS.values() if t.settings}}


def schema_properties(*path) -> set:
    schema = yaml.safe_load(SCHEMA.read_text())
    node = schema["properties"][path[0]]
    for p in path[1:]:
        node = schema_at(node, schema)["properties"][p]
    return set(schema_at(node, schema)["properties"])


@pytest.mark.parametrize("path,cls", [((k,), v) for k, v in SECTIONS.items()]
                         + list(NESTED.items()))
def test_one_dataclass_field_per_schema_key(path, cls):
    """A setting is added end to end by one schema property and one dataclass field: the
    two always name the same keys."""
    fields = {f.name for f in dataclasses.fields(cls)} - set(TOP_LEVEL_FIELDS)
    assert fields | (PLUGGED if path == ("pretrain",) else set()) == schema_properties(*path)


def test_top_level_result_fields_are_top_level_keys_and_reach_every_compute_section():
    top = set(yaml.safe_load(SCHEMA.read_text())["properties"])
    assert set(TOP_LEVEL_FIELDS) <= top
    s = tiny_settings(numerics="portable")
    for section in (s.pretrain, s.finetune, s.probe, s.cka, s.bootstrap):
        assert section.numerics == "portable"
        assert result_fields(section)["numerics"] == "portable"
    assert "numerics" not in result_fields(tiny_settings(numerics="native").pretrain)


def test_execution_fields_are_not_result_fields():
    s = tiny_settings()
    fields = result_fields(s.pretrain_run("dr", "moco_mse"))
    pre = fields["settings"]
    for name in ("device", "data_placement", "checkpoint_every", "compile", "channels_last",
                 "progress"):
        assert name not in pre
    assert {"epochs", "batch_size", "precision", "optimizer"} <= set(pre)
    assert set(fields["base_settings"]) >= {"queue_size", "temperature"}  # MoCo's own
    other = tiny_settings(pretrain={"checkpoint_every": 99, "device": "cuda", "compile": True})
    assert digest(other.pretrain_run("dr", "moco_mse")) == digest(
        s.pretrain_run("dr", "moco_mse"))
    changed = tiny_settings(pretrain={"epochs": 3})
    assert digest(changed.pretrain_run("dr", "moco_mse")) != digest(
        s.pretrain_run("dr", "moco_mse"))


def test_variants_resolve_to_their_terms():
    s = tiny_settings(
        methods=["supervised", "moco", "moco_mse", "moco_bt", "b3", "lam1", "bt_std", "by"],
        variants={"b3": {"base": "moco", "term": "mse", "blocks": [3]},
                  "lam1": {"base": "moco", "term": "mse", "weight": 1.0, "pool": [2, 2, 1, 1]},
                  "bt_std": {"base": "moco", "term": "bt", "lambda_on": 1.0,
                             "lambda_off": 0.0051, "display": "BT (standard)"},
                  "by": {"base": "byol", "term": "none"}},
        datasets={"dr": {"mse_pool": [8, 8, 2, 2]}})
    assert s.pretrain_run("dr", "moco").term.weights == (0, 0, 0, 0)
    mse = s.pretrain_run("dr", "moco_mse").term
    assert mse.weights == (0.25,) * 4 and mse.settings.pool == (8, 8, 2, 2)  # the dataset's
    assert s.pretrain_run("dr", "b3").term.weights == (0, 0, 0.25, 0)
    lam = s.pretrain_run("dr", "lam1").term
    assert lam.weights == (1.0,) * 4 and lam.settings.pool == (2, 2, 1, 1)  # the variant's
    bt = s.pretrain_run("dr", "bt_std").term
    assert (bt.kind, bt.settings.lambda_on, bt.settings.lambda_off) == ("bt", 1.0, 0.0051)
    assert s.pretrain_run("dr", "by").base == "byol"
    names = s.display_names
    assert names["b3"] == "MoCo+MSE[b3]" and names["lam1"] == "MoCo+MSE λ=1"
    assert names["bt_std"] == "BT (standard)" and names["by"] == "BYOL"
    assert s.ssl_methods == ["moco", "moco_mse", "moco_bt", "b3", "lam1", "bt_std", "by"]
    assert s.probe_methods()[-2:] == ["random_init", "supervised"]


@pytest.mark.parametrize("over,where,message", [
    ({"methods": ["moco", "simclr"]}, "methods", "'simclr' is neither a predefined method"),
    ({"methods": ["moco", "moco_mse"], "variants": {"moco_mse": {"base": "moco",
                                                                 "term": "bt"}}},
     "variants.moco_mse", "redefines a predefined method"),
    ({"methods": ["moco_mse", "moco_bt"]}, "paired.baseline", "'moco' is not one of"),
    ({"methods": ["moco", "z"], "variants": {"z": {"base": "moco", "term": "mse",
                                                   "weight": 0}}},
     "variants.z", "weight 0 on every block"),
    ({"probe": {"fraction": 50}}, "probe.fraction", "50 is not one of"),
    ({"pretrain": {"batch_size": 8, "moco": {"head": "mlp_bn", "bn": "split",
                                             "bn_splits": 8}}},
     "pretrain.moco.bn_splits", "leave one image per split"),
    # the per-dataset batch is checked too
    ({"by_format": {"eyepacs_dr": {"pretrain_batch_size": 5}}}, "pretrain.moco.bn_splits",
     "2 does not divide pretrain.batch_size 5 .dataset dr's pretrain_batch_size.$"),
    ({"by_format": {"nih_cxr14": {"subset": "bin2"}}, "datasets": {"dr": {
        "format": "nih_cxr14"}}}, "by_format.nih_cxr14.subset", "is not read by format"),
])
def test_config_errors_name_the_key(over, where, message):
    with pytest.raises(ConfigError, match=message) as e:
        tiny_settings(**over)
    assert e.value.where == where and str(e.value).startswith(f"config error at {where}: ")


def test_a_dataset_can_pretrain_for_its_own_number_of_epochs():
    s = tiny_settings(datasets={"dr": {"pretrain_epochs": 3},
                                "nih": {"format": "nih_cxr14", "root": "x"}},
                      use_datasets=["dr", "nih"], pretrain={"epochs": 5})
    assert s.pretrain_run("dr", "moco_bt").settings.epochs == 3
    assert s.pretrain_run("nih", "moco_bt").settings.epochs == 5 == s.pretrain.epochs
    by_format = tiny_settings(by_format={"eyepacs_dr": {"pretrain_epochs": 2}})
    assert by_format.pretrain_run("dr", "moco").settings.epochs == 2
    # the run's settings (and so its digest and its rerun) change with the dataset's epochs
    assert s.pretrain_run("dr", "moco") != tiny_settings(pretrain={"epochs": 5}).pretrain_run(
        "dr", "moco")
    with pytest.raises(Exception, match=r"0 is less than the minimum of 1") as e:
        tiny_settings(datasets={"dr": {"pretrain_epochs": 0}})  # the schema, at dry-run
    assert "['datasets']['dr']['pretrain_epochs']" in str(e.value)


def test_command_line_strings_are_read_as_the_schema_types():
    schema = yaml.safe_load(SCHEMA.read_text())
    got = coerce_to_schema({"seeds": ["0", "1"], "fractions": "[1, 6]",
                               "pretrain": {"epochs": "3", "compile": "true",
                                            "optimizer": {"lr": "0.1"}},
                               "datasets": {"x": {"root": "123", "image_size": "32"}},
                               "use_datasets": ["x"]}, schema)
    assert got["seeds"] == [0, 1] and got["fractions"] == [1, 6]
    assert got["pretrain"] == {"epochs": 3, "compile": True, "optimizer": {"lr": 0.1}}
    assert got["datasets"]["x"] == {"root": "123", "image_size": 32}  # strings stay strings
    bad = coerce_to_schema({"seeds": ["0", "x"]}, schema)
    assert bad["seeds"] == [0, "x"]  # left for the schema to report


def test_schema_defaults_are_the_documented_ones():
    from stagedata import validated

    c = validated({"datasets": {"m": {"format": "medmnist", "root": "x"}}, "use_datasets": ["m"]})
    assert c["pretrain"]["optimizer"] == {"name": "sgd", "lr": 0.03, "momentum": 0.9,
                                          "weight_decay": 0.0001, "decay_norm_and_bias": False,
                                          "fused": True,
                                          "schedule": "cosine", "warmup_epochs": 5}
    assert c["finetune"]["optimizer"]["name"] == "adam"
    assert c["finetune"]["optimizer"]["warmup_epochs"] == 0
    assert c["by_format"]["medmnist"]["image_size"] == 28
    assert c["by_format"]["nih_cxr14"]["image_size"] == 224
    assert (c["pretrain"]["arch"], c["pretrain"]["epochs"], c["pretrain"]["batch_size"]) == (
        "resnet50", 200, 256)


def test_epochs_by_fraction_sets_one_fractions_budget_and_reruns_only_it():
    base = tiny_settings(finetune={"epochs": 6, "epochs_by_fraction": {100: 6}})
    s = tiny_settings(finetune={"epochs": 6, "epochs_by_fraction": {100: 3}})
    assert s.finetune_run("dr", "moco", 100).settings.epochs == 3
    assert s.finetune_run("dr", "moco", 6).settings.epochs == 6
    # the 6 % run's result fields are those of a config without the entry
    assert digest(s.finetune_run("dr", "moco", 6)) == digest(
        base.finetune_run("dr", "moco", 6))
    assert digest(s.finetune_run("dr", "moco", 100)) != digest(
        base.finetune_run("dr", "moco", 100))
    with pytest.raises(ConfigError, match=r"epochs_by_fraction.50: 50 is not one of"):
        tiny_settings(finetune={"epochs_by_fraction": {"50": 2}})


def test_official_choices_resolve_per_dataset_and_method():
    """The official code's per-dataset and per-method choices reach each job's settings;
    the defaults leave every run as it was."""
    s = tiny_settings(
        by_format={"eyepacs_dr": {"pretrain_batch_size": 4, "probe_batch_size": 3,
                                  "select_metric": "auc_raw_logit", "probe_augment": "dataset",
                                  "official_subset_augment": True}},
        datasets={"dr": {"augment": "histo"}},
        pretrain={"zero_init_residual": "with_term", "val_views": "identical",
                  "val_max_images": None}, probe={"protocol": "official"})
    moco, mse = s.pretrain_run("dr", "moco").settings, s.pretrain_run("dr", "moco_mse").settings
    assert (moco.zero_init_residual, mse.zero_init_residual) == (False, True)
    assert moco.batch_size == 4 and s.pretrain.batch_size == 8  # the dataset's, not pretrain's
    assert (mse.val_views, mse.val_max_images) == ("identical", None)
    assert s.control_zero_init_residual is True
    assert s.finetune_run("dr", "moco", 6).select_metric == "auc_raw_logit"
    full, part = s.finetune_run("dr", "moco", 100).augment, s.finetune_run("dr", "moco", 6).augment
    assert (full.blur_p, full.hflip, full.rotation) == (0.5, 0.5, 0)  # with the demo's overrides
    # below 100 %: the dataset's own transform, the histopathology horizontal flip
    assert (part.crop_scale, part.hflip, part.jitter, part.blur_p) == (None, 0.5, None, 0.0)
    probe = s.probe_run("dr", "moco")
    assert probe.settings.batch_size == 3 and probe.augment == part
    assert s.linear_probe_run("dr", "moco").augment == full  # the probe fraction is 100
    # defaults: none of the new settings is recorded, so results keep their settings
    plain = tiny_settings()
    for run in (plain.pretrain_run("dr", "moco"), plain.finetune_run("dr", "moco", 6),
                plain.probe_run("dr", "moco")):
        fields = result_fields(run)
        assert "select_metric" not in fields
    assert "val_views" not in result_fields(plain.pretrain_run("dr", "moco"))["settings"]
    assert not {"protocol", "linear"} & set(result_fields(plain.probe_run("dr", "moco"))[
        "settings"])
    assert "augment" not in result_fields(plain.probe_run("dr", "moco"))
    assert "paper_interval_spread" not in result_fields(plain.bootstrap)
    official = result_fields(s.probe_run("dr", "moco"))
    assert official["settings"]["protocol"] == "official" and official["augment"]["hflip"] == 0.5


def test_the_zero_init_choice_from_the_command_line():
    schema = yaml.safe_load(SCHEMA.read_text())
    for text, value in (("with_term", "with_term"), ("false", False), ("true", True)):
        got = coerce_to_schema({"pretrain": {"zero_init_residual": text}}, schema)
        assert got["pretrain"]["zero_init_residual"] == value
