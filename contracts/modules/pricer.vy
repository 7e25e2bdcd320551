# pragma version 0.4.3
# pragma nonreentrancy off
"""
@title pricer
@custom:contract-name pricer
@license MIT
@notice Black-76 in WAD fixed point: the premium of a European call or put on its expiry
        forward, its forward delta, and the value of one unit of any netmargin instrument
        (futures at their forward, perpetuals at spot, options at Black-76). Mirrors
        offchain/risk/pricing.py: the same formulas, the same minimum standard deviation,
        the same kind codes.
@dev The normal CDF is W. J. Cody's rational Chebyshev approximation (the one behind R's
     `pnorm`, at least 18 significant digits), evaluated in 2**96 fixed point:
       |d| <  0.67448975:  N(d) = 1/2 + d * A(d^2) / B(d^2)
       |d| <= sqrt(32):    N(-|d|) = exp(-d^2/2) * C(|d|) / D(|d|)
       |d| >  sqrt(32):    N(-|d|) = exp(-d^2/2) * (1/sqrt(2 pi) - d^-2 P(d^-2) / Q(d^-2)) / |d|
     Tails are written G(y) * exp(-y^2/2) with G(y) = Q(y) / exp(-y^2/2) (y >= 0). Because
     F * exp(-d1^2/2) = K * exp(-d2^2/2), one exponential gives both tails' weight
     `A = F * exp(-d1^2/2)`, and an out-of-the-money price with both d in the same tail is
     A * (G(y1) - G(y2)): no subtraction of two nearly equal premiums, so deep OTM prices
     keep their relative precision down to WAD resolution. snekmate's `_wad_ln` and
     `_wad_exp` give ln(F / K), the density and the discount factor.
     Accuracy against the float64 engine (tests/pricer): |price - python| <=
     1e-9 * max(python, 1e-9 * F) on the documented test domain (docs/verification.md).
@custom:security Pure functions. Inputs outside the stated bounds revert with a
     "pricer: ..." reason naming the input; inside them no unchecked operation overflows
     (each one says why next to it).
"""

from snekmate.utils import math


#### CONSTANTS ####

WAD: constant(uint256) = 10**18
WAD_I: constant(int256) = 10**18
# Premiums are carried at 1e27 per unit until the single final rounding.
FINE: constant(uint256) = 10**27
# Instrument kind codes (offchain/risk/pricing.py, IInstrumentRegistry).
KIND_FUTURE: constant(uint8) = 0
KIND_PERPETUAL: constant(uint8) = 1
KIND_CALL: constant(uint8) = 2
KIND_PUT: constant(uint8) = 3

# Input bounds. Prices (forward, spot, strike) in (0, 2**128] wei; forward / strike in
# [1e-9, 1e9]; tenor <= 100 years; vol <= 10 (1000 %); |rate| <= 1 (100 % a year).
MAX_PRICE: constant(uint256) = 2**128
MIN_MONEYNESS_WAD: constant(uint256) = 10**9
MAX_MONEYNESS_WAD: constant(uint256) = 10**27
MAX_TENOR_WAD: constant(uint256) = 100 * 10**18
MAX_VOL_WAD: constant(uint256) = 10 * 10**18
MAX_ABS_RATE_WAD: constant(int256) = 10**18
# Below this standard deviation (1e-12, pricing.py's _MIN_STDEV) the option is priced with
# it, as the engine does: a near-intrinsic value.
MIN_STDEV_WAD: constant(uint256) = 10**6
# exp(-d^2/2) is 0 in WAD for |d| >= 9.11; 10 keeps d^2 < 1e38 (no overflow).
MAX_DENSITY_D_WAD: constant(uint256) = 10 * 10**18

# Cody's break points: 0.67448975 (the 3rd quartile) and sqrt(32).
Y_CENTRAL_WAD: constant(uint256) = 674_489_750_000_000_000
Y_ASYMPTOTIC_WAD: constant(uint256) = 5_656_854_249_492_380_195
Q96: constant(uint256) = 2**96
# 1/sqrt(2 pi) in 2**96 fixed point.
INV_SQRT_2PI_Q96: constant(uint256) = 31_607_463_825_455_920_808_620_519_744

# Cody's coefficients (R nmath/pnorm.c) times 2**96, rounded; every one is positive.
# Central range: A(x) / B(x), x = d^2.
A0: constant(uint256) = 177_094_911_525_819_218_304_649_482_683  # 2.2352520354606839287
A1: constant(uint256) = 12_757_970_860_484_054_856_742_070_167_726  # 161.02823106855587881
A2: constant(uint256) = 84_591_076_068_825_540_852_234_273_925_138  # 1067.6894854603709582
A3: constant(uint256) = 1_438_385_805_183_326_120_566_629_188_321_439  # 18154.981253343561249
A4: constant(uint256) = 5_203_890_942_900_566_529_033_788_668  # 0.065682337918207449113
B0: constant(uint256) = 3_739_773_830_237_513_102_291_045_766_738  # 47.20258190468824187
B1: constant(uint256) = 77_334_494_687_018_628_505_703_780_948_524  # 976.09855173777669322
B2: constant(uint256) = 812_954_804_572_313_706_857_907_959_445_381  # 10260.932208618978205
B3: constant(uint256) = 3_605_498_529_100_403_173_008_286_083_070_635  # 45507.789335026729956
# Middle range: C(y) / D(y), y = |d|.
C0: constant(uint256) = 31_607_402_953_405_084_178_169_459_138  # 0.39894151208813466764
C1: constant(uint256) = 703_795_635_548_356_084_741_660_368_696  # 8.8831497943883759412
C2: constant(uint256) = 7_408_360_548_205_619_162_718_620_132_525  # 93.506656132177855979
C3: constant(uint256) = 47_320_626_523_146_814_190_462_632_508_209  # 597.27027639480026226
C4: constant(uint256) = 197_637_629_205_326_181_927_835_665_021_035  # 2494.5375852903726711
C5: constant(uint256) = 542_569_545_943_721_689_284_445_222_083_929  # 6848.1904505362823326
C6: constant(uint256) = 919_256_753_698_287_010_405_487_007_998_606  # 11602.651437647350124
C7: constant(uint256) = 779_820_210_797_046_855_399_292_387_608_739  # 9842.7148383839780218
C8: constant(uint256) = 852_936_866_188_092_947_912  # 1.0765576773720192317e-8
D0: constant(uint256) = 1_764_148_779_030_454_708_639_772_951_021  # 22.266688044328115691
D1: constant(uint256) = 18_649_350_936_325_505_562_898_682_935_159  # 235.38790178262499861
D2: constant(uint256) = 120_377_495_366_394_570_828_213_556_988_878  # 1519.377599407554805
D3: constant(uint256) = 513_838_866_850_814_582_494_850_171_295_373  # 6485.558298266760755
D4: constant(uint256) = 1_474_877_535_259_974_993_764_575_734_441_835  # 18615.571640885098091
D5: constant(uint256) = 2_765_138_354_093_609_645_002_696_319_515_515  # 34900.952721145977266
D6: constant(uint256) = 3_082_926_520_106_185_648_821_238_270_254_183  # 38912.003286093271411
D7: constant(uint256) = 1_559_640_421_601_385_449_651_948_841_511_810  # 19685.429676859990727
# Asymptotic range: P(z) / Q(z), z = d^-2.
P0: constant(uint256) = 17_105_244_142_935_250_397_484_819_813  # 0.21589853405795699
P1: constant(uint256) = 10_093_759_900_910_059_859_865_101_624  # 0.1274011611602473639
P2: constant(uint256) = 1_761_660_208_685_668_399_622_843_420  # 0.022235277870649807
P3: constant(uint256) = 112_632_276_474_456_899_158_600_487  # 0.001421619193227893466
P4: constant(uint256) = 2_306_559_587_888_656_494_126_801  # 2.9112874951168792e-5
P5: constant(uint256) = 1_828_066_393_916_094_194_379_040_561  # 0.02307344176494017303
Q0: constant(uint256) = 101_749_567_607_953_768_463_279_850_059  # 1.28426009614491121
Q1: constant(uint256) = 37_097_653_193_822_617_646_510_299_429  # 0.468238212480865118
Q2: constant(uint256) = 5_228_118_911_093_152_054_863_337_464  # 0.0659881378689285515
Q3: constant(uint256) = 299_672_311_287_238_634_231_090_290  # 0.00378239633202758244
Q4: constant(uint256) = 5_781_687_480_122_959_817_537_969  # 7.29751555083966205e-5


#### INTERNAL ####


@internal
@pure
def _black76(fwd: uint256, strike: uint256, tenor: uint256, vol: uint256, rate: int256,
             is_call: bool) -> uint256:
    """
    @dev Black-76 premium of one option, WAD: exp(-rate T) (F N(d1) - K N(d2)) for a call,
         exp(-rate T) (K N(-d2) - F N(-d1)) for a put.
    @param fwd The expiry forward F, WAD, in (0, 2**128].
    @param strike The strike K, WAD, in (0, 2**128]; F / K in [1e-9, 1e9].
    @param tenor Years to expiry T, WAD, <= 100.
    @param vol Implied volatility, WAD, <= 10.
    @param rate Discount rate, WAD, |rate| <= 1.
    @param is_call True for a call, False for a put.
    @return uint256 The premium, WAD.
    """
    fine: uint256 = 0
    d1: int256 = 0
    fine, d1 = self._black76_undiscounted(fwd, strike, tenor, vol, rate, is_call)
    return self._round_fine(fine, tenor, rate)


@internal
@pure
def _black76_delta(fwd: uint256, strike: uint256, tenor: uint256, vol: uint256, rate: int256,
                   is_call: bool) -> (uint256, int256):
    """
    @dev Premium and forward delta dV/dF (exp(-rT) N(d1) for a call, -exp(-rT) N(-d1) for a
         put), both WAD; same bounds as `_black76`.
    @return uint256 The premium, WAD.
    @return int256 The forward delta, WAD, in [-exp(-rT), exp(-rT)].
    """
    fine: uint256 = 0
    d1: int256 = 0
    fine, d1 = self._black76_undiscounted(fwd, strike, tenor, vol, rate, is_call)
    factor: uint256 = self._discount_factor(tenor, rate)
    # N(d1) = 1 * N(d1), with weight 1 * exp(-d1^2/2) at scale 1e36; n_d1 <= WAD.
    n_d1: uint256 = self._x_cdf(WAD, d1, unsafe_mul(WAD, self._density(d1)))
    n: int256 = convert(n_d1, int256)
    if not is_call:
        n -= WAD_I
    # |n| <= WAD and factor < 2**204 (checked anyway).
    delta: int256 = n * convert(factor, int256) // WAD_I
    return (fine * factor + FINE // 2) // FINE, delta


@internal
@pure
def _unit_value(kind: uint8, fwd: uint256, spot: uint256, strike: uint256, tenor: uint256,
                vol: uint256, rate: int256) -> uint256:
    """
    @dev Value of one unit of an instrument, WAD (pricing.py `unit_value`): a perpetual at
         spot, a dated future at its forward, an option at its Black-76 premium.
    @param kind The instrument kind code (0 future, 1 perpetual, 2 call, 3 put).
    @return uint256 The unit value, WAD.
    """
    if kind == KIND_PERPETUAL:
        return spot
    if kind == KIND_FUTURE:
        return fwd
    assert kind == KIND_CALL or kind == KIND_PUT, "pricer: unknown kind"
    return self._black76(fwd, strike, tenor, vol, rate, kind == KIND_CALL)


@internal
@pure
def _discount_factor(tenor: uint256, rate: int256) -> uint256:
    """
    @dev exp(-rate * tenor), WAD; rate and tenor already bounded by the caller.
    """
    if rate == 0:
        return WAD
    # |rate| <= 1e18 and tenor <= 1e20: |rate * tenor| <= 1e38, no overflow; the exponent
    # is in [-100, 100] WAD, inside wad_exp's domain (< 135).
    return convert(math._wad_exp(-unsafe_div(unsafe_mul(rate, convert(tenor, int256)), WAD_I)), uint256)


@internal
@pure
def _round_fine(fine: uint256, tenor: uint256, rate: int256) -> uint256:
    """
    @dev A fine-scale (1e27 per unit) undiscounted premium, discounted and rounded to the
         nearest wei in one step (one rounding in the whole price).
    """
    # Checked: fine < 2**160 and the factor < 2**64 for rate * T >= -2.9; a larger growth
    # factor on a large premium reverts instead of wrapping.
    return (fine * self._discount_factor(tenor, rate) + FINE // 2) // FINE


@internal
@pure
def _black76_undiscounted(fwd: uint256, strike: uint256, tenor: uint256, vol: uint256,
                          rate: int256, is_call: bool) -> (uint256, int256):
    """
    @dev Undiscounted premium at the fine scale (1e27 per unit: WAD and 9 more digits) and
         d1 (WAD), after checking every input bound.
    """
    assert fwd != 0 and fwd <= MAX_PRICE, "pricer: forward out of range"
    assert strike != 0 and strike <= MAX_PRICE, "pricer: strike out of range"
    assert tenor <= MAX_TENOR_WAD, "pricer: tenor out of range"
    assert vol <= MAX_VOL_WAD, "pricer: vol out of range"
    assert rate >= -MAX_ABS_RATE_WAD and rate <= MAX_ABS_RATE_WAD, "pricer: rate out of range"
    # fwd <= 2**128: fwd * WAD < 2**188, no overflow; strike != 0.
    moneyness: uint256 = unsafe_div(unsafe_mul(fwd, WAD), strike)
    assert moneyness >= MIN_MONEYNESS_WAD and moneyness <= MAX_MONEYNESS_WAD, "pricer: moneyness out of range"
    # ln(F / K), |x| <= ln(1e9) < 20.8 WAD.
    x: int256 = math._wad_ln(convert(moneyness, int256))

    # stdev = vol * sqrt(T): tenor * WAD <= 1e38 and isqrt(...) <= 1e19, vol <= 1e19, so
    # the product is <= 1e38 (no overflow); stdev <= 100 WAD.
    stdev: uint256 = unsafe_div(unsafe_mul(vol, isqrt(unsafe_mul(tenor, WAD))), WAD)
    stdev = max(stdev, MIN_STDEV_WAD)
    s: int256 = convert(stdev, int256)
    # |x| * WAD <= 2.1e37 and s >= 1e6: |x / s| <= 2.1e31 WAD, d1 and d2 stay far from
    # the int256 bounds (|d| < 2**106).
    d1: int256 = unsafe_add(unsafe_div(unsafe_mul(x, WAD_I), s), unsafe_div(s, 2))
    d2: int256 = unsafe_sub(d1, s)

    # A = F exp(-d1^2/2) = K exp(-d2^2/2) (scale 1e36): the weight of both tails. Taken at
    # the d nearer 0 so that it does not underflow when one of them is far out.
    weight: uint256 = 0
    if abs(d1) <= abs(d2):
        weight = fwd * self._density(d1)
    else:
        weight = strike * self._density(d2)

    price: uint256 = 0
    if is_call:
        price = self._spread(fwd, strike, d1, d2, weight)
    else:
        price = self._spread(strike, fwd, -d2, -d1, weight)
    return price, d1


@internal
@pure
def _density(d: int256) -> uint256:
    """
    @dev exp(-d^2/2), WAD (0 for |d| >= 10, where it is below 1 wei anyway).
    """
    y: uint256 = convert(abs(d), uint256)
    if y >= MAX_DENSITY_D_WAD:
        return 0
    # y < 1e19: y * y < 1e38, and y^2 / 2 / WAD < 50 WAD.
    return convert(math._wad_exp(-convert(unsafe_div(unsafe_mul(y, y), 2 * WAD), int256)), uint256)


@internal
@pure
def _spread(x1: uint256, x2: uint256, e1: int256, e2: int256, weight: uint256) -> uint256:
    """
    @dev x1 N(e1) - x2 N(e2) for e1 > e2 with x1 exp(-e1^2/2) = x2 exp(-e2^2/2) = weight /
         WAD. When both e lie in the lower tail the difference is weight * (G(-e1) -
         G(-e2)): computed as one product, so its relative error stays that of G.
    @return uint256 The value at the fine scale (1e27 per unit), floored at 0.
    """
    if e1 <= -convert(Y_CENTRAL_WAD, int256):
        g1: uint256 = self._tail_ratio(convert(-e1, uint256))
        g2: uint256 = self._tail_ratio(convert(-e2, uint256))
        if g1 <= g2:
            return 0
        # weight < 2**128 * 1e18 < 2**188 and g1 - g2 < 0.32 WAD < 2**59: < 2**247.
        return unsafe_div(unsafe_mul(weight, unsafe_sub(g1, g2)), FINE)
    a: uint256 = self._x_cdf(x1, e1, weight)
    b: uint256 = self._x_cdf(x2, e2, weight)
    if a <= b:
        return 0
    # a <= x1 <= 2**128: times 1e9 < 2**158.
    return unsafe_mul(unsafe_sub(a, b), FINE // WAD)


@internal
@pure
def _x_cdf(x: uint256, e: int256, weight: uint256) -> uint256:
    """
    @dev x * N(e), WAD, where weight = x * exp(-e^2/2) * WAD (scale 1e36); x <= 2**128.
    """
    y: uint256 = convert(abs(e), uint256)
    if y < Y_CENTRAL_WAD:
        # x <= 2**128, N < 2**96: the product is < 2**224.
        return unsafe_mul(x, self._central_cdf_q96(e)) >> 96
    # weight < 2**188, G < 1.26 WAD < 2**61: the product is < 2**249; the tail part is
    # x * N(-y) <= x, so the subtraction below cannot underflow beyond rounding (floored).
    tail: uint256 = unsafe_div(unsafe_mul(weight, self._tail_ratio(y)), WAD * WAD)
    if e < 0:
        return tail
    if tail >= x:
        return 0
    return unsafe_sub(x, tail)


@internal
@pure
def _central_cdf_q96(e: int256) -> uint256:
    """
    @dev N(e) for |e| < 0.67448975, 2**96 fixed point (Cody's central rational).
    """
    y: uint256 = convert(abs(e), uint256)
    # y < 0.675 WAD: y << 96 < 2**156; y_q < 0.675 * 2**96.
    y_q: uint256 = unsafe_div(y << 96, WAD)
    # x = y^2 < 0.455 * 2**96.
    x: uint256 = unsafe_mul(y_q, y_q) >> 96
    # Horner with x < 2**96 (< 0.455 in value) and positive coefficients < 2**112: every
    # partial sum stays < 2**112 and every product < 2**208 (checked by the bounds test).
    num: uint256 = unsafe_mul(A4, x) >> 96
    den: uint256 = x
    num = unsafe_mul(unsafe_add(num, A0), x) >> 96
    den = unsafe_mul(unsafe_add(den, B0), x) >> 96
    num = unsafe_mul(unsafe_add(num, A1), x) >> 96
    den = unsafe_mul(unsafe_add(den, B1), x) >> 96
    num = unsafe_mul(unsafe_add(num, A2), x) >> 96
    den = unsafe_mul(unsafe_add(den, B2), x) >> 96
    # num + A3 < 2**111 and y_q < 2**96: < 2**207; den + B3 >= B3 > 0. The ratio
    # y * A/B <= 0.25 (N - 1/2 on the central range), so temp < 2**95.
    temp: uint256 = unsafe_div(unsafe_mul(y_q, unsafe_add(num, A3)), unsafe_add(den, B3))
    if e < 0:
        return unsafe_sub(Q96 // 2, temp)
    return unsafe_add(Q96 // 2, temp)


@internal
@pure
def _tail_ratio(y: uint256) -> uint256:
    """
    @dev G(y) = N(-y) / exp(-y^2/2) for y >= 0.67448975, WAD (G <= 0.315 on this range).
    """
    # y < 2**106 (see `_black76_undiscounted`): y << 96 < 2**202.
    y_q: uint256 = unsafe_div(y << 96, WAD)
    g_q: uint256 = 0
    if y <= Y_ASYMPTOTIC_WAD:
        # y_q <= 5.66 * 2**96 < 2**99. Horner with positive coefficients < 2**112, so the
        # partial sums grow with y: at y = sqrt(32) they are < 2**119 and the products
        # < 2**218.
        num: uint256 = unsafe_mul(C8, y_q) >> 96
        den: uint256 = y_q
        num = unsafe_mul(unsafe_add(num, C0), y_q) >> 96
        den = unsafe_mul(unsafe_add(den, D0), y_q) >> 96
        num = unsafe_mul(unsafe_add(num, C1), y_q) >> 96
        den = unsafe_mul(unsafe_add(den, D1), y_q) >> 96
        num = unsafe_mul(unsafe_add(num, C2), y_q) >> 96
        den = unsafe_mul(unsafe_add(den, D2), y_q) >> 96
        num = unsafe_mul(unsafe_add(num, C3), y_q) >> 96
        den = unsafe_mul(unsafe_add(den, D3), y_q) >> 96
        num = unsafe_mul(unsafe_add(num, C4), y_q) >> 96
        den = unsafe_mul(unsafe_add(den, D4), y_q) >> 96
        num = unsafe_mul(unsafe_add(num, C5), y_q) >> 96
        den = unsafe_mul(unsafe_add(den, D5), y_q) >> 96
        num = unsafe_mul(unsafe_add(num, C6), y_q) >> 96
        den = unsafe_mul(unsafe_add(den, D6), y_q) >> 96
        # (num + C7) < 2**118: shifted < 2**214; den + D7 >= D7 > 0.
        g_q = unsafe_div(unsafe_add(num, C7) << 96, unsafe_add(den, D7))
    else:
        # y > 5.66: z = 1/y^2 <= 2**96 / 32 (+ rounding) < 2**92, from inv = 1/y < 2**96 / 5.6
        # (no y^2 overflow).
        inv: uint256 = unsafe_div(Q96 << 96, y_q)
        z: uint256 = unsafe_mul(inv, inv) >> 96
        # Horner in z < 2**92 with coefficients < 2**97: partial sums < 2**98, products
        # < 2**190.
        num: uint256 = unsafe_mul(P5, z) >> 96
        den: uint256 = z
        num = unsafe_mul(unsafe_add(num, P0), z) >> 96
        den = unsafe_mul(unsafe_add(den, Q0), z) >> 96
        num = unsafe_mul(unsafe_add(num, P1), z) >> 96
        den = unsafe_mul(unsafe_add(den, Q1), z) >> 96
        num = unsafe_mul(unsafe_add(num, P2), z) >> 96
        den = unsafe_mul(unsafe_add(den, Q2), z) >> 96
        num = unsafe_mul(unsafe_add(num, P3), z) >> 96
        den = unsafe_mul(unsafe_add(den, Q3), z) >> 96
        # z * (num + P4) < 2**190; den + Q4 > 0. temp = z P/Q < 0.0115 < 1/sqrt(2 pi).
        temp: uint256 = unsafe_div(unsafe_mul(z, unsafe_add(num, P4)), unsafe_add(den, Q4))
        # (1/sqrt(2 pi) - temp) < 2**95, times inv < 2**94: < 2**189.
        g_q = unsafe_mul(unsafe_sub(INV_SQRT_2PI_Q96, temp), inv) >> 96
    # g_q < 2**95: g_q * WAD < 2**155.
    return unsafe_mul(g_q, WAD) >> 96
