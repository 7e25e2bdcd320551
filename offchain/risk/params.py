"""Versioned risk-parameter files and their content hash (`params_hash`, stored on-chain as bytes32).

A parameter set is plain JSON; its hash is sha256 over the canonical encoding (sorted keys, no
whitespace), so any change of any coefficient changes the hash every epoch root carries."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from offchain.errors import UserError

PARAMS_DIR = Path(__file__).parent / "params"
DEFAULT_PARAMS = "default-v2"
MODES = ("matrix", "span16")
SHORT_OPTION_MODES = ("addon", "netted_floor")
BASIS_TARGETS = ("all", "linear")
# add-on coefficients (set-wide in `addons`, or per underlying) and their upper bounds
ADDON_BOUNDS = {"basis_rate_per_sqrt_year": 10.0, "basis_min_days": 3650.0,
                "short_option_min_rate": 10.0, "liquidity_rate": 10.0,
                "liquidity_notional_threshold": 1e18}


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def params_hash(raw: dict) -> str:
    """0x-prefixed 32-byte hex sha256 of the canonical JSON."""
    return "0x" + hashlib.sha256(canonical_json(raw)).hexdigest()


@dataclass(frozen=True)
class Params:
    raw: dict
    hash: str

    @property
    def mode(self) -> str:
        return self.raw["mode"]

    @property
    def mm_factor(self) -> float:
        return float(self.raw["mm_factor"])

    @property
    def decorrelation(self) -> float:
        return float(self.raw["decorrelation"])

    @property
    def addons(self) -> dict:
        return self.raw["addons"]

    @property
    def label(self) -> str:
        return f"{self.raw['name']}-v{self.raw['version']}"

    def coeff(self, name: str, key: str, section: str = "addons"):
        """Per-underlying coefficient `key`: the underlying's own entry (or `default`) when it
        sets it, else the set-wide value in `section` (older files keep add-ons set-wide)."""
        own = self.underlying(name)
        if key in own:
            return own[key]
        node = self.raw.get(section, {})
        if key not in node:
            raise UserError(f"params.underlyings.{name}.{key}: missing, and no set-wide "
                            f"{section}.{key} in {self.label}")
        return node[key]

    @property
    def short_option_netted(self) -> bool:
        """True: the short-option minimum is a floor under each risk unit's scenario loss,
        netted per strike and expiry (calls against puts); False: an add-on per short contract."""
        return self.addons.get("short_option_mode", "addon") == "netted_floor"

    @property
    def basis_on_options(self) -> bool:
        """Whether the roll/basis shock also moves options' forwards (False: futures/perps only)."""
        return self.addons.get("basis_applies_to", "all") == "all"

    def underlying(self, name: str) -> dict:
        """Coefficients for `name`, falling back to the `default` entry when present."""
        table = self.raw["underlyings"]
        if name in table:
            return table[name]
        if "default" in table:
            return table["default"]
        raise UserError(f"market.{name}: no risk parameters for this underlying in {self.label}, "
                        f"expected one of {sorted(table)}")


def _require_number(raw: dict, path: str, lo: float, hi: float) -> None:
    node: Any = raw
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            raise UserError(f"params.{path}: missing, expected a number in [{lo}, {hi}]")
        node = node[key]
    if isinstance(node, bool) or not isinstance(node, int | float) or not lo <= node <= hi:
        raise UserError(f"params.{path}: must be a number in [{lo}, {hi}], got {node!r}")


def validate_params(raw: Any) -> dict:
    if not isinstance(raw, dict):
        raise UserError(f"params: must be a JSON object, got {type(raw).__name__}")
    if raw.get("mode") not in MODES:
        raise UserError(f"params.mode: must be one of {list(MODES)}, got {raw.get('mode')!r}")
    for key in ("name", "version", "underlyings", "addons"):
        if key not in raw:
            raise UserError(f"params.{key}: missing")
    _require_number(raw, "mm_factor", 1e-6, 1.0)
    _require_number(raw, "decorrelation", 0.0, 1.0)
    if not isinstance(raw["underlyings"], dict) or not raw["underlyings"] \
            or not all(isinstance(v, dict) for v in raw["underlyings"].values()):
        raise UserError("params.underlyings: must be a non-empty object of objects")
    if not isinstance(raw["addons"], dict):
        raise UserError(f"params.addons: must be an object, got {raw['addons']!r}")
    if raw["addons"].get("short_option_mode", "addon") not in SHORT_OPTION_MODES:
        raise UserError(f"params.addons.short_option_mode: must be one of "
                        f"{list(SHORT_OPTION_MODES)}, got {raw['addons']['short_option_mode']!r}")
    if raw["addons"].get("basis_applies_to", "all") not in BASIS_TARGETS:
        raise UserError(f"params.addons.basis_applies_to: must be one of {list(BASIS_TARGETS)}, "
                        f"got {raw['addons']['basis_applies_to']!r}")
    for key, hi in ADDON_BOUNDS.items():
        # set-wide, or on every underlying
        if key in raw["addons"]:
            _require_number(raw, f"addons.{key}", 0.0, hi)
        else:
            for name in raw["underlyings"]:
                _require_number(raw, f"underlyings.{name}.{key}", 0.0, hi)
    if raw["mode"] == "matrix":
        _require_number(raw, "matrix.price_steps", 2, 1001)
        if int(raw["matrix"]["price_steps"]) % 2 == 0:
            raise UserError(f"params.matrix.price_steps: must be odd (to include no move), "
                            f"got {raw['matrix']['price_steps']}")
        for key in ("reference_days", "min_days"):
            _require_number(raw, f"matrix.vol_scaling.{key}", 1e-6, 3650.0)
        for key in ("power_short", "power_long"):
            _require_number(raw, f"matrix.vol_scaling.{key}", 0.0, 5.0)
        _require_number(raw, "matrix.vol_down_min_factor", 1e-6, 1.0)
        n_tail = None
        for name in raw["underlyings"]:
            where = "underlyings." + name if "tail_moves" in raw["underlyings"][name] else "matrix"
            moves = raw["underlyings"][name].get("tail_moves", raw["matrix"].get("tail_moves"))
            if not isinstance(moves, list) or not all(
                    isinstance(m, int | float) and not isinstance(m, bool) and m > -1 and m != 0
                    for m in moves):
                raise UserError(f"params.{where}.tail_moves: must be a list of non-zero moves "
                                f"> -1, got {moves!r}")
            if n_tail is not None and len(moves) != n_tail:
                raise UserError(f"params.{where}.tail_moves: every underlying needs the same "
                                f"number of tail moves ({n_tail}), got {len(moves)}")
            n_tail = len(moves)
            for key, lo, hi in (("vol_up_floor", 0.0, 10.0), ("tail_weight", 0.0, 1.0)):
                if key in raw["underlyings"][name]:
                    _require_number(raw, f"underlyings.{name}.{key}", lo, hi)
                elif key in raw["matrix"] or key == "vol_up_floor":
                    _require_number(raw, f"matrix.{key}", lo, hi)
        if raw["matrix"].get("tail_vol") not in ("up", "flat", "down"):
            raise UserError(f"params.matrix.tail_vol: must be up, flat or down, "
                            f"got {raw['matrix'].get('tail_vol')!r}")
        for name in raw["underlyings"]:
            _require_number(raw, f"underlyings.{name}.price_range", 1e-6, 0.99)
            _require_number(raw, f"underlyings.{name}.vol_up", 0.0, 10.0)
            _require_number(raw, f"underlyings.{name}.vol_down", 0.0, 1.0)
    else:
        _require_number(raw, "span16.extreme_multiple", 1.0, 10.0)
        _require_number(raw, "span16.extreme_weight", 0.0, 1.0)
        _require_number(raw, "span16.min_vol", 1e-6, 1.0)
        for name in raw["underlyings"]:
            _require_number(raw, f"underlyings.{name}.price_scan_range", 1e-6, 0.49)
            _require_number(raw, f"underlyings.{name}.vol_scan_range", 0.0, 5.0)
    return raw


def params_from_dict(raw: Any) -> Params:
    raw = validate_params(raw)
    return Params(raw=raw, hash=params_hash(raw))


def load_params(name_or_path: str | Path | None = None) -> Params:
    """Load a bundled parameter set by name (`default-v2`, `default-v1`, `span16-v1`) or a JSON
    file path. Keys starting with `_` are documentation (they are part of the hash, like the
    rest of the file)."""
    name_or_path = name_or_path or DEFAULT_PARAMS
    path = Path(name_or_path)
    if not path.exists():
        path = PARAMS_DIR / f"{name_or_path}.json"
    if not path.exists():
        bundled = sorted(p.stem for p in PARAMS_DIR.glob("*.json"))
        raise UserError(f"--params: no such file or bundled set, got {str(name_or_path)!r}, "
                        f"expected a JSON path or one of {bundled}")
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"--params: malformed JSON in {path} at line {exc.lineno}: {exc.msg}") from exc
    return params_from_dict(raw)
