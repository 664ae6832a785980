"""The kNN monitor of pretraining (as in solo-learn and lightly): how well the encoder's
features already separate the labels, without training anything.

Each query image gets, per class (or label), the similarity-weighted vote of its k nearest
labelled bank images (cosine similarity of the L2-normalised block-4 features):

    score_c(q) = Σ_{j ∈ top-k(q)} exp(s_qj / T) · y_jc  /  Σ_{j ∈ top-k(q)} exp(s_qj / T)

The scores are read like probabilities by the dataset's metric. The monitor uses labels only
to *report* progress; pretraining never sees them.
"""

from __future__ import annotations

import numpy as np


def knn_scores(bank: np.ndarray, bank_labels: np.ndarray, queries: np.ndarray, k: int,
               temperature: float, task: str, n_classes: int) -> np.ndarray:
    """Vote scores of ``queries`` (n, d) against ``bank`` (m, d) with labels: multi-label
    (m, L) 0/1 -> (n, L); binary (m,) -> (n,) score of class 1; multi-class (m,) -> (n, C)."""
    bank = bank / np.maximum(np.linalg.norm(bank, axis=1, keepdims=True), 1e-12)
    queries = queries / np.maximum(np.linalg.norm(queries, axis=1, keepdims=True), 1e-12)
    sim = queries.astype(np.float64) @ bank.astype(np.float64).T  # (n, m)
    k = min(k, bank.shape[0])
    top = np.argpartition(-sim, k - 1, axis=1)[:, :k]
    w = np.exp(np.take_along_axis(sim, top, axis=1) / temperature)
    w = w / w.sum(axis=1, keepdims=True)
    if task == "multilabel":
        votes = np.asarray(bank_labels, np.float64)  # (m, L)
        if (votes < 0).any():  # ignored labels (-1): each label's vote among known ones
            known = (votes >= 0).astype(np.float64)
            num = np.einsum("nk,nkc->nc", w, (votes * known)[top])
            den = np.einsum("nk,nkc->nc", w, known[top])
            return np.where(den > 0, num / np.where(den > 0, den, 1), 0.5)
    else:
        votes = np.eye(max(n_classes, 2))[np.asarray(bank_labels, int)]  # (m, C)
    scores = np.einsum("nk,nkc->nc", w, votes[top])
    return scores[:, 1] if task == "binary" else scores
