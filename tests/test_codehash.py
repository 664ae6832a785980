"""The code hash behind precise reruns: blind to comments, docstrings and formatting, and
covering exactly the modules a stage's script imports."""

from snakerun import ROOT

from ilmoco.codehash import code_hash, module_closure, normalized_source

SCRIPTS = ROOT / "workflow" / "scripts"


def test_comments_docstrings_and_formatting_do_not_count(tmp_path):
    a = tmp_path / "a.py"
    a.write_text('"""Module doc."""\n\ndef f(x):\n    """Doc."""\n    return x + 1  # one\n')
    b = tmp_path / "b.py"
    b.write_text('"""Another doc,\nlonger."""\ndef f( x ):\n\n    return (x+1)\n# trailing\n')
    assert normalized_source(a) == normalized_source(b)
    c = tmp_path / "c.py"
    c.write_text('def f(x):\n    return x + 2\n')
    assert normalized_source(a) != normalized_source(c)
    d = tmp_path / "d.py"  # a string that is not a docstring is code
    d.write_text('def f(x):\n    y = "text"\n    return x + 1\n')
    assert normalized_source(a) != normalized_source(d)


def test_each_stage_depends_only_on_what_it_imports():
    def names(script):
        return {p.relative_to(ROOT / "src/ilmoco").as_posix()
                for p in module_closure(str(SCRIPTS / script))}

    pre = names("pretrain.py")
    assert {"moco.py", "byol.py", "losses.py", "intermediate.py", "augment.py", "loop.py",
            "backbone.py", "batches.py"} <= pre
    assert not {"tables.py", "figures.py", "decode.py", "datasets/nih.py",
                "datasets/medmnist.py", "synthetic.py"} & pre
    manifest = names("manifest.py")  # each format's reader is added per dataset
    assert "datasets/readers.py" in manifest and "datasets/nih.py" not in manifest
    assert "datasets/nih.py" not in names("synthetic.py")
    assert {"split.py", "datasets/base.py"} <= names("split.py")
    assert "moco.py" not in names("split.py")
    nih = code_hash(SCRIPTS / "manifest.py", "ilmoco.datasets.nih")
    dr = code_hash(SCRIPTS / "manifest.py", "ilmoco.datasets.eyepacs")
    assert nih != dr != code_hash(SCRIPTS / "manifest.py")
    assert code_hash(SCRIPTS / "pretrain.py") != code_hash(SCRIPTS / "split.py")
