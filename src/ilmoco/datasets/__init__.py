"""The datasets: what every reader returns (``base``), the readers of the real on-disk
layouts (``readers``, one module per dataset). Importing the package loads no reader, so a
stage that only needs :class:`~ilmoco.datasets.base.DatasetMeta` depends on no reader's code.
"""
