"""The typed settings of each stage and of each job, frozen, read by the stages.

The schema (``workflow/schemas/config.schema.yaml``) is the only place defaults live:
Snakemake's ``validate`` fills them in and :mod:`ilmoco.config.resolve` turns the filled
config into these objects. Every field is read by name from its config section, so a setting
is added end to end by one schema property and one dataclass field. The settings of a base
or an intermediate term live beside its registry entry (:mod:`ilmoco.config.bases`,
:mod:`ilmoco.config.terms`), not here, so adding one changes no stage's code.

One module per stage (``pretrain``, ``finetune``, ``linear_probe``, ``probe``, ``cka``,
``paired``, ``init``, ``data``), what several share in its own (``training``: the network
and optimiser of pretraining and fine-tuning; ``bootstrap``: the intervals of evaluation,
probes and the paired comparison; ``backbone``; ``fields``: the field kinds and
``result_fields``). A rule reruns when the code its job imports changes, file by file
(:mod:`ilmoco.codehash`), so an edit of one stage's settings reruns that stage and what
follows from its results only. This package's ``__init__`` imports nothing: it is part of
every stage's code.

Fields come in two kinds (:mod:`.fields`):

* **result fields** change what a stage produces; they are hashed into the rule's params
  (Snakemake reruns the stage when one changes), into resume-checkpoint fingerprints, and
  recorded next to each result;
* **execution fields** (``metadata={"execution": True}``: device, data placement,
  checkpoint interval, compile, channels_last, progress, and the import paths a run's
  implementation is found by) only change how a stage runs: a finished run is not redone and
  a resume checkpoint stays valid when they change.

A result field added after results were recorded without it (:func:`.fields.added`) is left
out of ``result_fields`` while it holds the value that reproduces the behaviour from before
it existed, so a run that does not use it records exactly the settings it recorded before.
"""
