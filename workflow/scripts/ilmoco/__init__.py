"""The library for job scripts that run where it is not installed (e.g. a conda env made by
`--sdm conda`, which has only the third-party packages): Snakemake puts this directory on
each script's sys.path, and this package redirects to the library in this checkout.
Where the library is installed (`make install`), the installed one is found first."""

from pathlib import Path

__path__ = [str(Path(__file__).resolve().parents[3] / "src" / "ilmoco")]
exec(compile((Path(__path__[0]) / "__init__.py").read_text(), __path__[0], "exec"))
