"""Intermediate Layers Matter in Momentum Contrastive Self-Supervised Learning (Kaku et al.,
NeurIPS 2021) as a library; docs/architecture.md maps its packages."""
