"""Short GPU jobs packed into few SLURM allocations (Snakemake group jobs).

On a cluster every job pays queue wait and start-up (importing torch, opening the cache),
and schedulers cap the jobs a user may queue; most of the paper's GPU jobs are short
(fine-tuning at 1 % and 6 %, probes, CKA). The workflow therefore assigns the GPU jobs of
one dataset, method by method and each after the jobs it depends on, to groups of at most
``cap`` minutes of runtime requests each (next fit, so a group never waits for a later
one): Snakemake submits each group as one job, runs its members one after the other inside
(one GPU job at a time: the profile's ``gpu_jobs`` resource), and requests the sum of their
runtimes, which therefore never exceeds the cap. A job whose own request exceeds the cap,
and a group of one, stay ungrouped.

Groups are only a cluster matter: a local run ignores them. A member's group is decided
when the workflow builds its DAG, from the same runtime model as its request.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence


def pack(members: Sequence[tuple[Hashable, float]], cap: float,
         prefix: str) -> dict[Hashable, str]:
    """``{key: group id}`` for ``members`` (``(key, minutes)`` with every member after
    those it depends on): consecutive members fill a group ``<prefix>.<i>`` until the next
    would take its runtime past ``cap``. Members left alone are absent (ungrouped)."""
    groups: list[list[Hashable]] = []
    total = cap + 1  # no open group yet
    for key, minutes in members:
        if minutes > cap:
            total = cap + 1  # alone; the next member opens a new group after it
            continue
        if total + minutes > cap:
            groups.append([])
            total = 0.0
        groups[-1].append(key)
        total += minutes
    return {key: f"{prefix}.{i}" for i, g in enumerate(groups) if len(g) > 1 for key in g}
