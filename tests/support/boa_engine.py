"""A real MarginEngine (with its delegatecalled extension and governance) on titanoboa, for suites that need
one beside the oracle: the SignerBond tests push forfeited bonds into its insurance fund."""

from __future__ import annotations

from support.boa_contracts import deploy

WAD = 10**18
# (max_positions, taker_fee_bps, max_price_age, max_attestation_age, max_liquidation_price_age)
TRADING = (8, 10, 3_600, 86_400, 7_200)
# (discount_base_bps, slope_bps_per_hour, discount_max_bps, insurance_share_bps, buffer_bps, dust_mm_wad)
LIQUIDATION = (1_000, 500, 5_000, 2_000, 1_000, 100 * WAD)


def load_engine(token, oracle, registry):
    extension = deploy("MarginEngineExtension", token.address, oracle.address, registry.address)
    governance = deploy("MarginEngineGovernance", token.address, oracle.address, registry.address)
    return deploy("MarginEngine", token.address, oracle.address, registry.address, extension.address,
                  governance.address,
                  TRADING, LIQUIDATION)
