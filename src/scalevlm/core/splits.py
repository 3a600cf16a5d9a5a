"""Stable hash splits: a sample's split depends only on its id, so adding data never moves a sample."""

from __future__ import annotations

import hashlib

SPLITS = ("train", "val", "test")


def hash_fraction(key: str, salt: str = "") -> float:
    """Map `key` to a uniform number in [0, 1) by SHA-256 (stable across runs, machines and Python versions)."""
    digest = hashlib.sha256(f"{salt}{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign_split(sample_id: str, val_fraction: float, test_fraction: float, salt: str = "") -> str:
    """`test` for the lowest `test_fraction` of hash space, then `val`, then `train`."""
    if not (val_fraction >= 0 and test_fraction >= 0 and val_fraction + test_fraction < 1):
        raise ValueError(
            f"split fractions must be >= 0 and sum to < 1; got val={val_fraction}, test={test_fraction}"
        )
    u = hash_fraction(sample_id, salt)
    if u < test_fraction:
        return "test"
    if u < test_fraction + val_fraction:
        return "val"
    return "train"
