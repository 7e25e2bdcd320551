"""Scenario construction from the versioned parameter files."""

import copy

import numpy as np
import pytest

from offchain.errors import UserError
from offchain.risk import build_scenarios, load_params, params_from_dict


def test_build_scenarios__default_matrix__9_steps_x_3_vols_plus_8_tails():
    scen = build_scenarios(load_params("default-v1"), ["BTC", "ETH"])
    assert scen.n == 27 + 8
    core = scen.move[:, :27]
    assert np.allclose(np.unique(core[0]), np.linspace(-0.16, 0.16, 9))
    assert np.allclose(np.unique(core[1]), np.linspace(-0.18, 0.18, 9))
    assert list(scen.vol_dir[:3]) == [1, 0, -1]
    tails = np.array([-0.66, -0.33, 0.5, 1, 2, 3, 4, 5])
    assert np.allclose(scen.move[0, 27:], tails)
    assert np.allclose(scen.weight[0, 27:], 0.16 / np.abs(tails))
    assert np.allclose(scen.weight[1, 27:], 0.18 / np.abs(tails))
    assert np.all(scen.vol_dir[27:] == 1) and np.all(scen.weight[:, :27] == 1)


def test_shocked_vols__tenor_scaling__power_030_under_30d_013_beyond_and_up_floor():
    scen = build_scenarios(load_params("default-v1"), ["BTC"])
    tenors = np.array([7, 30, 90, 0.1]) / 365
    vols = scen.shocked_vols(np.full(4, 0.6), tenors, np.zeros(4, dtype=int))
    scale = np.array([(30 / 7) ** 0.30, 1.0, (30 / 90) ** 0.13, 30.0 ** 0.30])  # min 1 day
    up = [scen.vol_dir == 1][0]
    down = scen.vol_dir == -1
    assert np.allclose(vols[:, up][:, 0], 0.6 * (1 + 0.5 * scale))
    assert np.allclose(vols[:, down][:, 0], 0.6 * np.maximum(1 - 0.25 * scale, 0.05))
    low = scen.shocked_vols(np.array([0.2]), np.array([2.0]), np.zeros(1, dtype=int))
    assert np.isclose(low[0, up][0], 0.5)   # shocked-up vol floored at 50%


def test_build_scenarios__span16__14_scans_and_two_extremes_at_35pct():
    scen = build_scenarios(load_params("span16-v1"), ["BTC"])
    assert scen.n == 16
    assert np.allclose(scen.move[0, 14:], [0.32, -0.32])
    assert np.allclose(scen.weight[0], [1] * 14 + [0.35, 0.35])
    assert np.isclose(np.abs(scen.move[0, :14]).max(), 0.16)
    vols = scen.shocked_vols(np.array([0.5]), np.array([0.1]), np.zeros(1, dtype=int))[0]
    assert np.allclose(vols[:2], [0.65, 0.35])


def test_params_hash__any_coefficient_change__changes_hash_and_key_order_does_not():
    p = load_params("default-v1")
    assert p.hash.startswith("0x") and len(p.hash) == 66
    raw = copy.deepcopy(p.raw)
    raw["underlyings"]["BTC"]["price_range"] = 0.17
    assert params_from_dict(raw).hash != p.hash
    reordered = dict(reversed(list(copy.deepcopy(p.raw).items())))
    assert params_from_dict(reordered).hash == p.hash


def test_params_from_dict__bad_coefficient__names_field_and_value():
    raw = copy.deepcopy(load_params("default-v1").raw)
    raw["mm_factor"] = 1.5
    with pytest.raises(UserError, match=r"params\.mm_factor: .*got 1\.5"):
        params_from_dict(raw)


def _documented(doc_keys):
    """Expand `_doc` keys ('a.b / c' also documents 'a.c'; '*' matches one segment)."""
    out = []
    for key in doc_keys:
        first, *more = [k.strip() for k in key.split(" / ")]
        out.append(first)
        prefix = first.rsplit(".", 1)[0] + "." if "." in first else ""
        out += [prefix + m for m in more]
    return out


def _leaves(node, path=""):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _leaves(v, f"{path}.{k}" if path else k)
    else:
        yield path


def _covered(path, pattern):
    p, q = path.split("."), pattern.split(".")
    return len(q) <= len(p) and all(a == b or b == "*" for a, b in zip(p, q, strict=False))


@pytest.mark.parametrize("name", ["default-v2", "default-v1", "span16-v1"])
def test_params_file__every_field__is_documented_in_doc(name):
    raw = load_params(name).raw
    docs = _documented(raw["_doc"])
    fields = list(_leaves({k: v for k, v in raw.items() if k != "_doc"}))
    missing = [f for f in fields if not any(_covered(f, d) for d in docs)]
    assert not missing, f"{name}: undocumented fields {missing}"
