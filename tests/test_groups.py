"""The packing of short GPU jobs into group jobs: next fit within the cap, in dependency
order, singletons and over-cap jobs left alone."""

import random

import pytest

from ilmoco.cluster.groups import pack


def runs(groups: dict, members) -> list[list]:
    """The groups as runs of member keys, in member order."""
    out, last = [], None
    for key, _ in members:
        g = groups.get(key)
        if g is not None and g == last:
            out[-1].append(key)
        elif g is not None:
            out.append([key])
        last = g
    return out


@pytest.mark.parametrize("seed", range(20))
def test_groups_are_consecutive_within_the_cap_and_next_fit(seed):
    rng = random.Random(seed)
    cap = rng.choice([10, 60, 240])
    members = [(i, rng.choice([1, 5, 30, 90, 300])) for i in range(rng.randint(1, 40))]
    minutes = dict(members)
    groups = pack(members, cap, "d")
    found = runs(groups, members)
    # one id per run: a group never resumes after another member
    assert len(found) == len(set(groups.values()))
    for g in found:
        assert len(g) > 1 and sum(minutes[k] for k in g) <= cap
        assert g == list(range(g[0], g[-1] + 1))  # consecutive members
    # next fit: the member after a group either exceeds the cap alone or would not fit
    for g in found:
        after = g[-1] + 1
        if after < len(members) and groups.get(after) != groups[g[0]]:
            assert minutes[after] > cap or sum(minutes[k] for k in g) + minutes[after] > cap
    # a member left alone fits the cap neither alone nor with the member before it
    for key, m in members:
        if key not in groups and m <= cap and key > 0 and minutes[key - 1] <= cap \
                and key - 1 not in groups:
            assert minutes[key - 1] + m > cap


def test_examples():
    members = [("a", 10), ("b", 20), ("c", 100), ("d", 5), ("e", 5), ("f", 40)]
    assert pack(members, 40, "x") == {"a": "x.0", "b": "x.0", "d": "x.1", "e": "x.1"}
    assert pack(members, 1000, "x") == {k: "x.0" for k, _ in members}
    assert pack(members, 4, "x") == {}
    assert pack([], 10, "x") == {}
