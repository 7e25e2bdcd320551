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


#### STRUCTS ####

# One evaluation's shared terms at a forward, strike, vol and tenor: a call and a put of
# the same terms take their premiums from it (`_value`), the delta its N(d1) (`_delta`).
struct Eval:
    fwd: uint256
    strike: uint256
    d1: int256
    d2: int256
    # N(d) in 2**96 fixed point when |d| < 0.67448975 (central), else G(|d|) (WAD)
    p1: uint256
    p2: uint256
    central1: bool
    central2: bool
    # F exp(-d1^2/2) = K exp(-d2^2/2), scale 1e36
    weight: uint256
    # exp(-d1^2/2), WAD
    density1: uint256


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
    x: int256 = self._log_moneyness(fwd, strike)
    self._check_tenor_rate(tenor, rate)
    return self._value(self._evaluate(fwd, strike, x, self._sqrt_tenor(tenor), vol), is_call,
                       self._discount_factor(tenor, rate))


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
def _check_prices(fwd: uint256, strike: uint256):
    """
    @dev Reverts unless F and K are in (0, 2**128] and F / K in [1e-9, 1e9].
    """
    assert fwd != 0 and fwd <= MAX_PRICE, "pricer: forward out of range"
    assert strike != 0 and strike <= MAX_PRICE, "pricer: strike out of range"
    # fwd <= 2**128: fwd * WAD < 2**188, no overflow; strike != 0.
    moneyness: uint256 = unsafe_div(unsafe_mul(fwd, WAD), strike)
    assert moneyness >= MIN_MONEYNESS_WAD and moneyness <= MAX_MONEYNESS_WAD, "pricer: moneyness out of range"


@internal
@pure
def _log_moneyness(fwd: uint256, strike: uint256) -> int256:
    """
    @dev ln(F / K), WAD, after `_check_prices`: |ln(F / K)| <= ln(1e9) < 20.8 WAD. A forward
         moved by (1 + m) has ln(F / K) + ln(1 + m): a scenario adds its log move instead
         of taking a logarithm per option.
    """
    self._check_prices(fwd, strike)
    # fwd * WAD < 2**188 (checked above); the quotient is in [1e9, 1e27].
    return math._wad_ln(convert(unsafe_div(unsafe_mul(fwd, WAD), strike), int256))


@internal
@pure
def _check_tenor_rate(tenor: uint256, rate: int256):
    """
    @dev Reverts unless T <= 100 years and |rate| <= 1.
    """
    assert tenor <= MAX_TENOR_WAD, "pricer: tenor out of range"
    assert rate >= -MAX_ABS_RATE_WAD and rate <= MAX_ABS_RATE_WAD, "pricer: rate out of range"


@internal
@pure
def _sqrt_tenor(tenor: uint256) -> uint256:
    """
    @dev sqrt(T), WAD: <= 10 WAD for T <= 100 WAD (an option's, checked by the caller).
    """
    # Checked: other callers' tenors (a future's basis term) are not bounded.
    return isqrt(tenor * WAD)


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
def _evaluate(fwd: uint256, strike: uint256, x: int256, sqrt_t: uint256, vol: uint256) -> Eval:
    """
    @dev d1, d2, their normal CDFs and the tails' weight, from the option's terms: F and K
         checked by `_check_prices`, x = ln(F / K) with |x| < 21 WAD (a moved forward's x
         is off its own by under 1e-17), sqrt_t = sqrt(T) <= 10 WAD.
    """
    assert vol <= MAX_VOL_WAD, "pricer: vol out of range"
    # stdev = vol * sqrt(T): vol <= 1e19 and sqrt_t <= 1e19, so the product is <= 1e38 (no
    # overflow); stdev <= 100 WAD.
    stdev: uint256 = max(unsafe_div(unsafe_mul(vol, sqrt_t), WAD), MIN_STDEV_WAD)
    s: int256 = convert(stdev, int256)
    # |x| * WAD <= 2.1e37 and s >= 1e6: |x / s| <= 2.1e31 WAD, d1 and d2 stay far from
    # the int256 bounds (|d| < 2**106).
    d1: int256 = unsafe_add(unsafe_div(unsafe_mul(x, WAD_I), s), unsafe_div(s, 2))
    d2: int256 = unsafe_sub(d1, s)
    y1: uint256 = convert(abs(d1), uint256)
    y2: uint256 = convert(abs(d2), uint256)
    # The weight F exp(-d1^2/2) = K exp(-d2^2/2) is taken at the d nearer 0 so that it does
    # not underflow when the other is far out. exp(-y^2/2) is 0 in WAD for y >= 9.11: 10
    # keeps y^2 < 1e38 and y^2 / 2 / WAD < 50 WAD (inside wad_exp's domain).
    near: uint256 = min(y1, y2)
    density: uint256 = 0
    if near < MAX_DENSITY_D_WAD:
        density = convert(math._wad_exp(-convert(unsafe_div(unsafe_mul(near, near), 2 * WAD), int256)), uint256)
    # F, K <= 2**128 and the density <= 1 WAD < 2**60: weight < 2**188.
    weight: uint256 = 0
    density1: uint256 = density
    if y1 <= y2:
        weight = unsafe_mul(fwd, density)
    else:
        weight = unsafe_mul(strike, density)
        # exp(-d1^2/2) = weight / F at WAD (fwd != 0).
        density1 = unsafe_div(weight, fwd)
    # Each d's normal CDF is evaluated once: N(d) on the central range, else the tail ratio
    # G(|d|); the put takes N(-d) = 1 - N(d) from the same value.
    out: Eval = Eval(fwd=fwd, strike=strike, d1=d1, d2=d2, p1=0, p2=0, central1=y1 < Y_CENTRAL_WAD,
                     central2=y2 < Y_CENTRAL_WAD, weight=weight, density1=density1)
    if out.central1:
        out.p1 = self._central_cdf_q96(d1)
    else:
        out.p1 = self._tail_ratio(y1)
    if out.central2:
        out.p2 = self._central_cdf_q96(d2)
    else:
        out.p2 = self._tail_ratio(y2)
    return out


@internal
@pure
def _value(e: Eval, is_call: bool, factor: uint256) -> uint256:
    """
    @dev The premium, WAD: the call's F N(d1) - K N(d2) or the put's K N(-d2) - F N(-d1)
         at the fine scale (1e27 per unit: WAD and 9 more digits), floored at 0, times the
         discount factor (WAD) and rounded to the nearest wei in one step (one rounding in
         the whole price).
    """
    # x1 N(e1) - x2 N(e2) with e1 > e2 and x1 exp(-e1^2/2) = x2 exp(-e2^2/2) = weight / WAD:
    # the call's (F, K, d1, d2), the put's (K, F, -d2, -d1) with central parts flipped
    # (N(-d) = 1 - N(d): 2**95 +- t, t < 2**95, exact).
    x1: uint256 = e.fwd
    x2: uint256 = e.strike
    e1: int256 = e.d1
    e2: int256 = e.d2
    p1: uint256 = e.p1
    p2: uint256 = e.p2
    c1: bool = e.central1
    c2: bool = e.central2
    if not is_call:
        x1 = e.strike
        x2 = e.fwd
        e1 = -e.d2
        e2 = -e.d1
        p1 = e.p2
        p2 = e.p1
        c1 = e.central2
        c2 = e.central1
        if c1:
            p1 = unsafe_sub(Q96, p1)
        if c2:
            p2 = unsafe_sub(Q96, p2)
    fine: uint256 = 0
    if e1 <= -convert(Y_CENTRAL_WAD, int256):
        # Both in the lower tail (e2 < e1): weight * (G(-e1) - G(-e2)) as one product, so
        # its relative error stays that of G. weight < 2**188 and g1 - g2 < 0.32 WAD < 2**59:
        # < 2**247.
        if p1 > p2:
            fine = unsafe_div(unsafe_mul(e.weight, unsafe_sub(p1, p2)), FINE)
    else:
        # x N(e): x * N >> 96 on the central range (x <= 2**128, N < 2**96: < 2**224); else
        # from the tail x N(-|e|) = weight * G / 1e36 (weight < 2**188, G < 2**61: < 2**249),
        # which is <= x, so x minus it cannot underflow beyond rounding (floored).
        a: uint256 = 0
        if c1:
            a = unsafe_mul(x1, p1) >> 96
        else:
            a = unsafe_div(unsafe_mul(e.weight, p1), WAD * WAD)
            if e1 > 0:
                a = unsafe_sub(x1, min(a, x1))
        b: uint256 = 0
        if c2:
            b = unsafe_mul(x2, p2) >> 96
        else:
            b = unsafe_div(unsafe_mul(e.weight, p2), WAD * WAD)
            if e2 > 0:
                b = unsafe_sub(x2, min(b, x2))
        if a > b:
            # a <= x1 <= 2**128: times 1e9 < 2**158.
            fine = unsafe_mul(unsafe_sub(a, b), FINE // WAD)
    # Checked: fine < 2**160 and the factor < 2**64 for rate * T >= -2.9; a larger growth
    # factor on a large premium reverts instead of wrapping.
    return (fine * factor + FINE // 2) // FINE


@internal
@pure
def _delta(e: Eval, is_call: bool, factor: uint256) -> int256:
    """
    @dev Forward delta dV/dF, WAD, from an evaluation's N(d1) and the discount factor:
         exp(-rT) N(d1) for a call, -exp(-rT) N(-d1) for a put; in [-exp(-rT), exp(-rT)].
    """
    n: uint256 = 0
    if e.central1:
        # p1 < 2**96: WAD * p1 < 2**156.
        n = unsafe_mul(WAD, e.p1) >> 96
    else:
        # density1 <= WAD and G < 0.32 WAD: the product < 2**119; N(-|d1|) <= 1/2 WAD.
        n = unsafe_div(unsafe_mul(e.density1, e.p1), WAD)
        if e.d1 > 0:
            n = unsafe_sub(WAD, min(n, WAD))
    signed: int256 = convert(n, int256)
    if not is_call:
        signed -= WAD_I
    # |signed| <= WAD and factor < 2**204 (checked anyway).
    return signed * convert(factor, int256) // WAD_I


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
    # y < 2**106 (see `_evaluate`): y << 96 < 2**202.
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
