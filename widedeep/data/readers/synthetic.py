"""A click log with known structure, generated deterministically from a seed.

What each tower should learn is planted on purpose:
- users and items with low-rank latent affinities: the smooth part a deep tower generalises
  to (user, item) pairs it has never seen;
- a sparse set of (user, item) exceptions with strong effects, and a few (device, hour)
  exceptions: rank-breaking co-occurrences that wide cross features memorise;
- context fields (hour, device, position, item category), three dense features (one pure
  noise) and power-law user and item popularity.

The true logit of every row is kept (``true_logit``), and whether the row is an exception
(``is_exception``), so tests and diagnostics can check what was learned.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl


@dataclass(frozen=True)
class SyntheticConfig:
    n_rows: int = 300_000
    n_users: int = 3_000
    n_items: int = 1_500
    n_categories: int = 20
    latent_dim: int = 2
    affinity_scale: float = 2.0
    n_exceptions: int = 400
    exception_share: float = 0.10
    exception_effect: float = 3.0
    # 0: the replaying rows pick exception pairs uniformly (each seen about as often); > 0: by a
    # Zipf law with this exponent, a long tail of pairs seen once or twice beside a few common.
    exception_zipf: float = 0.0
    zipf_exponent: float = 0.9
    base_logit: float = -1.6
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("n_rows", "n_users", "n_items", "n_categories", "latent_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"synthetic: {name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.exception_share < 1.0:
            raise ValueError(
                f"synthetic: exception_share must be in [0, 1), got {self.exception_share}"
            )
        if self.exception_zipf < 0:
            raise ValueError(
                f"synthetic: exception_zipf must be >= 0, got {self.exception_zipf}"
            )
        if self.n_exceptions > self.n_users * self.n_items:
            raise ValueError("synthetic: more exceptions than (user, item) pairs")


def _zipf_probs(n: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    # Popularity ranks are shuffled so that id order carries no information.
    p = 1.0 / np.arange(1, n + 1) ** exponent
    return rng.permutation(p / p.sum())


def generate(cfg: SyntheticConfig = SyntheticConfig()) -> pl.DataFrame:
    """Rows: user, item, category, hour, device, position (ints), price, activity, noise
    (floats), label (0/1), true_logit, is_exception, exception_effect (0 off exceptions)."""
    rng = np.random.default_rng(cfg.seed)
    n = cfg.n_rows
    user_p = _zipf_probs(cfg.n_users, cfg.zipf_exponent, rng)
    item_p = _zipf_probs(cfg.n_items, cfg.zipf_exponent, rng)
    scale = np.sqrt(cfg.affinity_scale / cfg.latent_dim)
    user_vec = rng.normal(0.0, 1.0, (cfg.n_users, cfg.latent_dim)) * np.sqrt(scale)
    item_vec = rng.normal(0.0, 1.0, (cfg.n_items, cfg.latent_dim)) * np.sqrt(scale)
    item_category = rng.integers(0, cfg.n_categories, cfg.n_items)
    item_price = rng.lognormal(3.0, 1.0, cfg.n_items)
    user_activity = rng.gamma(2.0, 1.0, cfg.n_users)
    category_effect = rng.normal(0.0, 0.5, cfg.n_categories)
    hour_effect = 0.4 * np.sin(np.arange(24) / 24 * 2 * np.pi)
    device_effect = np.array([0.0, 0.3, -0.3, 0.1])
    position_effect = np.array([0.6, 0.3, 0.0, -0.3, -0.6])

    # Exceptions: distinct (user, item) pairs drawn among popular users and items, so that each
    # has enough training rows to be memorised; signs are balanced.
    pairs: set[tuple[int, int]] = set()
    while len(pairs) < cfg.n_exceptions:
        u = rng.choice(cfg.n_users, cfg.n_exceptions, p=user_p)
        i = rng.choice(cfg.n_items, cfg.n_exceptions, p=item_p)
        pairs.update(zip(u.tolist(), i.tolist(), strict=True))
    exc = np.array(sorted(pairs))[: cfg.n_exceptions]
    exc_effect = cfg.exception_effect * rng.choice([-1.0, 1.0], len(exc))
    exc_lookup = {(int(u), int(i)): k for k, (u, i) in enumerate(exc)}

    user = rng.choice(cfg.n_users, n, p=user_p)
    item = rng.choice(cfg.n_items, n, p=item_p)
    # A share of rows replays an exception pair (a user coming back to the same item).
    replay = rng.random(n) < cfg.exception_share
    if cfg.exception_zipf > 0:
        tail = _zipf_probs(len(exc), cfg.exception_zipf, rng)
        pick = rng.choice(len(exc), int(replay.sum()), p=tail)
    else:  # the original draw, so that exception_zipf=0 leaves the log exactly as it was
        pick = rng.integers(0, len(exc), int(replay.sum()))
    user[replay], item[replay] = exc[pick, 0], exc[pick, 1]
    hour = rng.integers(0, 24, n)
    device = rng.choice(4, n, p=[0.5, 0.3, 0.15, 0.05])
    position = rng.integers(0, 5, n)
    noise = rng.normal(0.0, 1.0, n)

    exc_index = np.array(
        [exc_lookup.get(k, -1) for k in zip(user.tolist(), item.tolist(), strict=True)]
    )
    is_exception = exc_index >= 0
    effect = np.where(is_exception, exc_effect[np.maximum(exc_index, 0)], 0.0)
    # (device, hour) exceptions: late-night tablets click far more, for instance.
    ctx_exception = np.zeros(n)
    ctx_exception[(device == 2) & (hour < 5)] = 1.5
    ctx_exception[(device == 3) & (hour >= 18)] = -1.5

    logit = (
        cfg.base_logit
        + np.einsum("nd,nd->n", user_vec[user], item_vec[item])
        + category_effect[item_category[item]]
        + hour_effect[hour]
        + device_effect[device]
        + position_effect[position]
        - 0.3 * (np.log(item_price[item]) - 3.0)
        + 0.2 * (user_activity[user] - 2.0)
        + effect
        + ctx_exception
    )
    label = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int8)
    return pl.DataFrame(
        {
            "user": user,
            "item": item,
            "category": item_category[item],
            "hour": hour,
            "device": device,
            "position": position,
            "price": item_price[item],
            "activity": user_activity[user],
            "noise": noise,
            "label": label,
            "true_logit": logit,
            "is_exception": is_exception,
            "exception_effect": effect,
        }
    )
