"""margins_wad_csr (every book of an epoch at once, what the keeper puts in the leaves) gives
the same integers as ExactMargins.margins_wad book by book: both parameter sets (netted and
per-option short floors, decorrelated joint loss), an active liquidity add-on, flat books,
single contracts, zero sizes and ties between scenarios (perpetual-only books)."""

import numpy as np
import pytest
from test_leaf_rate_bound import N, _engine

from offchain.risk import load_params, params_from_dict
from offchain.risk.exact import ExactMargins, margins_wad_csr

WAD = 10**18


def _liquid(params):
    raw = params.raw
    under = {u: dict(c, liquidity_notional_threshold=20_000.0) for u, c in raw["underlyings"].items()}
    return params_from_dict(dict(raw, underlyings=under))


def _books(seed: int, n: int) -> list[dict[int, int]]:
    rng = np.random.default_rng(seed)
    out = [{}, {0: WAD}, {0: -WAD}, {0: 3 * WAD, 1: 0}, {0: -(2**90)}, {1: 5 * WAD, N - 1: -7 * WAD}]
    for _ in range(n):
        idx = rng.choice(N, rng.integers(1, 9), replace=False)
        out.append({int(i): int(rng.normal(0, 30) * WAD) + int(rng.integers(-WAD, WAD)) for i in idx})
    return out


@pytest.mark.parametrize("name,liquid", [("default-v1", False), ("default-v2", False), ("default-v2", True)])
def test_margins_wad_csr__random_books__equal_book_by_book(name, liquid):
    params = load_params(name)
    exact = ExactMargins(_engine(_liquid(params) if liquid else params))
    books = _books(3, 400)
    indptr = np.r_[0, np.cumsum([len(b) for b in books])]
    im, mm = margins_wad_csr(exact, indptr, [i for b in books for i in b], [v for b in books for v in b.values()])
    assert (list(im), list(mm)) == exact.margins_wad(books)
