"""Intermediate Layers Matter in Momentum Contrastive Self-Supervised Learning (Kaku et al.,
NeurIPS 2021) as a library: datasets, pretraining, evaluation and reporting stages that the
Snakemake workflow runs (and that tests and notebooks call directly)."""
