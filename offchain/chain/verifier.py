"""ScenarioVerifier's view of a risk-parameter set: the generating parameters as WAD integers
(constructor arguments) and their hash, which must equal the contract's `generator_hash`.

The contract prices with exactly what `verifier_config(params)` returns; anyone holding the
JSON file recomputes it and compares hashes, so the on-chain scenario table follows the file
named by `params_hash` without storing the table itself.
"""

from __future__ import annotations

import numpy as np
from eth_abi import encode
from eth_utils import keccak

from offchain.chain.eip712 import symbol_to_bytes32
from offchain.chain.wad import Rounding, to_wad
from offchain.risk.params import Params
from offchain.risk.scenarios import VOL_DIRS

MODE_CODES = {"matrix": 0, "span16": 1}
DEFAULT_SYMBOL = "default"
GENERATOR_ABI = ("(uint8,uint256,int256,uint256,uint256,uint256,uint256,uint256,uint256,"
                 "uint256,uint256,uint256,uint256,bool,bool)")
COEFFICIENTS_ABI = ("(bytes32,uint256,uint256,uint256,uint256,uint256,int256[],uint256,"
                    "uint256,uint256,uint256,uint256)[]")
LEG_ABI = "(int256,uint8,uint256,uint256,uint256,uint256,uint256,uint256,int256,uint256)"


def _wad(value, field: str) -> int:
    return to_wad(value, Rounding.NEAREST, field=field)


def verifier_config(params: Params) -> tuple[tuple, list[tuple]]:
    """(generator, coefficient rows) for the ScenarioVerifier constructor. Rows are sorted by
    symbol; each holds the underlying's resolved coefficients (its own, else the set-wide
    value), `default` included when the file has one."""
    raw = params.raw
    matrix = params.mode == "matrix"
    m = raw.get("matrix", {})
    vs = m.get("vol_scaling", {})
    sp = raw.get("span16", {})
    generator = (
        MODE_CODES[params.mode],
        int(m.get("price_steps", 0)),
        VOL_DIRS[m["tail_vol"]] if matrix else 0,
        _wad(vs.get("reference_days", 0), "matrix.vol_scaling.reference_days"),
        _wad(vs.get("min_days", 0), "matrix.vol_scaling.min_days"),
        _wad(vs.get("power_short", 0), "matrix.vol_scaling.power_short"),
        _wad(vs.get("power_long", 0), "matrix.vol_scaling.power_long"),
        _wad(m.get("vol_down_min_factor", 0), "matrix.vol_down_min_factor"),
        _wad(sp.get("extreme_multiple", 0), "span16.extreme_multiple"),
        _wad(sp.get("extreme_weight", 0), "span16.extreme_weight"),
        _wad(sp.get("min_vol", 0), "span16.min_vol"),
        _wad(params.decorrelation, "decorrelation"),
        _wad(params.mm_factor, "mm_factor"),
        params.short_option_netted,
        params.basis_on_options,
    )
    rows = []
    for name in sorted(raw["underlyings"]):
        own = params.underlying(name)

        def coeff(key, section="addons", name=name):
            return _wad(params.coeff(name, key, section), f"underlyings.{name}.{key}")

        if matrix:
            shape = (coeff("price_range", "matrix"), coeff("vol_up", "matrix"),
                     coeff("vol_down", "matrix"), coeff("vol_up_floor", "matrix"),
                     coeff("tail_weight", "matrix") if "tail_weight" in m or "tail_weight" in own
                     else 10**18,
                     [_wad(x, f"underlyings.{name}.tail_moves")
                      for x in params.coeff(name, "tail_moves", "matrix")])
        else:
            scan = coeff("vol_scan_range", "span16")
            shape = (coeff("price_scan_range", "span16"), scan, scan, 0, 0, [])
        rows.append((symbol_to_bytes32(name), *shape,
                     coeff("basis_rate_per_sqrt_year"), coeff("basis_min_days"),
                     coeff("short_option_min_rate"), coeff("liquidity_notional_threshold"),
                     coeff("liquidity_rate")))
    return generator, rows


def generator_hash(params: Params) -> bytes:
    """keccak256(abi_encode(generator, coefficients)): the verifier's `generator_hash`."""
    generator, rows = verifier_config(params)
    return keccak(encode([GENERATOR_ABI, COEFFICIENTS_ABI], [generator, rows]))


def params_hash_bytes(params: Params) -> bytes:
    return bytes.fromhex(params.hash[2:])


def check_arguments(engine, sizes, scenarios=None, joint_scenario=None) -> tuple:
    """(legs, units, scenarios, joint_scenario) for `ScenarioVerifier.check` of one book of
    `engine` (a RiskEngine; sizes in contracts, one per instrument, zeros skipped). Without
    `scenarios` the binding ones are named (the engine's binding index per unit, and the
    argmax of the summed unit losses for the joint term): then `check` returns the engine's
    maintenance margin."""
    q = engine.book_vector(sizes)
    x = engine.inputs
    held = np.flatnonzero(q)
    units_idx = sorted({int(x.u_idx[i]) for i in held})
    position = {u: k for k, u in enumerate(units_idx)}
    legs = [(_wad(float(q[i]), f"sizes[{i}]"), int(x.kind[i]), position[int(x.u_idx[i])],
             _wad(float(x.fwd[i]), f"fwd[{i}]"), _wad(float(x.spot[i]), f"spot[{i}]"),
             _wad(float(x.strike[i]) if x.is_option[i] else 0.0, f"strike[{i}]"),
             _wad(float(x.tenor[i]), f"tenor[{i}]"), _wad(float(x.vol[i]), f"vol[{i}]"),
             _wad(float(x.rate[i]), f"rate[{i}]"), _wad(float(x.contract_size[i]), f"contract_size[{i}]"))
            for i in held]
    units = [symbol_to_bytes32(engine.underlyings[u]) for u in units_idx]
    if scenarios is None or joint_scenario is None:
        binding, joint = engine.binding_scenarios(q[None, :])
        if scenarios is None:
            scenarios = [int(binding[0, u]) for u in units_idx]
        if joint_scenario is None:
            joint_scenario = int(joint[0])
    return legs, units, [int(s) for s in scenarios], int(joint_scenario)
