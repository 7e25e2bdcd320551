"""The stated bounds of pricer.vy's unchecked Horner evaluations, recomputed from the
contract's own coefficients. Every coefficient is positive and every argument is
non-negative, so the partial sums grow with the argument: their maxima are at the top of
each range (central: |d| = 0.67448975; middle: |d| = sqrt(32); asymptotic: z = 1/32)."""

import re
from pathlib import Path

SOURCE = (Path(__file__).resolve().parents[2] / "contracts" / "modules" / "pricer.vy").read_text()
K = {m[1]: int(m[2].replace("_", ""))
     for m in re.finditer(r"^([ABCDPQ]\d): constant\(uint256\) = ([\d_]+)", SOURCE, re.M)}
Q96 = 2**96


def _horner(top: str, lead: int, arg: int, num_key: str, den_key: str, steps: int):
    """Partial sums and products of `num = (num + c_i) * arg >> 96` (and den) as pricer.vy."""
    num, den, sums, products = K[top] * arg >> 96, lead, [], []
    for i in range(steps):
        a, b = num + K[f"{num_key}{i}"], den + K[f"{den_key}{i}"]
        sums += [a, b]
        products += [a * arg, b * arg]
        num, den = a * arg >> 96, b * arg >> 96
    return num, den, sums, products


def test_coefficients__all_positive__below_2_112():
    assert len(K) == 5 + 4 + 9 + 8 + 6 + 5
    assert all(0 < v < 2**112 for v in K.values())


def test_central_range__top__partial_sums_below_2_112():
    y = 674_489_750_000_000_000 * Q96 // 10**18
    x = y * y >> 96
    num, den, sums, products = _horner("A4", x, x, "A", "B", 3)
    assert max(sums) < 2**112 and max(products) < 2**208
    assert y * (num + K["A3"]) < 2**207
    assert y * (num + K["A3"]) // (den + K["B3"]) < 2**95


def test_middle_range__top__partial_sums_below_2_119():
    y = 5_656_854_249_492_380_195 * Q96 // 10**18 + 1
    assert y < 2**99
    num, den, sums, products = _horner("C8", y, y, "C", "D", 7)
    assert max(sums) < 2**119 and max(products) < 2**218
    assert (num + K["C7"]) < 2**118


def test_asymptotic_range__top__temp_below_inverse_sqrt_2pi():
    y = 5_656_854_249_492_380_195 * Q96 // 10**18 + 1
    inv = (Q96 << 96) // y
    z = inv * inv >> 96
    assert z < 2**92
    num, den, sums, products = _horner("P5", z, z, "P", "Q", 4)
    assert max(sums) < 2**98 and max(products) < 2**190
    temp = z * (num + K["P4"]) // (den + K["Q4"])
    assert temp < 0.0115 * Q96 < 31_607_463_825_455_920_808_620_519_744
