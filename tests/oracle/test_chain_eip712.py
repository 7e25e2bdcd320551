"""offchain/chain/eip712.py: encoding agrees with RiskOracle, signing rules, validation."""

import pytest
from conftest import BTC, ETH, PARAMS_HASH, WAD
from eth_account import Account

from offchain.chain.eip712 import (
    SECP256K1_N,
    Domain,
    Eip712Error,
    EpochRoot,
    IndexPrices,
    MarketData,
    SettlementPrice,
    bytes32_to_symbol,
    digest,
    normalize_signature,
    recover,
    sign,
    sign_multi,
    symbol_to_bytes32,
)

ADDRESS = "0x" + "11" * 20


def _root(**overrides):
    fields = dict(
        engine="0x" + "ee" * 20,
        epoch=7,
        timestamp=1_700_000_000,
        deadline=1_700_000_060,
        params_hash=PARAMS_HASH,
        market_root=b"\x0a" * 32,
        market_count=4,
        accounts_root=b"\x0b" * 32,
        account_count=123,
    )
    fields.update(overrides)
    return EpochRoot(**fields)


def _market(n=3, **overrides):
    fields = dict(
        ids=list(range(1, n + 1)),
        marks_wad=[(-1) ** i * (i + 1) * WAD for i in range(n)],
        funding_indices_wad=[-i * WAD // 7 for i in range(n)],
        im_long_wad=[2 * WAD] * n,
        im_short_wad=[3 * WAD] * n,
        mm_long_wad=[WAD] * n,
        mm_short_wad=[WAD + 1] * n,
        params_hash=PARAMS_HASH,
        timestamp=1_700_000_000,
        deadline=1_700_000_060,
    )
    fields.update(overrides)
    return MarketData(**fields)


def test_typehashes__python_type_strings__equal_contract_constants(oracle):
    assert oracle.EPOCH_ROOT_TYPEHASH() == EpochRoot.typehash()
    assert oracle.MARKET_DATA_TYPEHASH() == MarketData.typehash()
    assert oracle.INDEX_PRICES_TYPEHASH() == IndexPrices.typehash()
    assert oracle.SETTLEMENT_PRICE_TYPEHASH() == SettlementPrice.typehash()


def test_domain_separator__python__equals_contract(oracle, domain):
    assert oracle.domain_separator() == domain.separator()
    fields, name, version, chain_id, contract, _salt, _ext = oracle.eip712Domain()
    assert (name, version, chain_id, contract) == ("netmargin RiskOracle", "1", domain.chain_id, oracle.address)
    assert fields == b"\x0f"


def test_digest__every_message_kind__equals_contract_view(oracle, domain):
    root = _root()
    assert oracle.epoch_root_digest(root.as_args()) == digest(root, domain)
    # MarketData and IndexPrices have no digest views (EIP-170 room): their digests are
    # checked by the oracle accepting Python-signed batches (test_oracle_market.py,
    # test_oracle_index_settlement.py)
    settlement = SettlementPrice(instrument_id=2, price_wad=61_000 * WAD, timestamp=5, deadline=6)
    assert oracle.settlement_price_digest(settlement.as_args()) == digest(settlement, domain)


def test_digest__any_field_changed__differs(domain):
    base = digest(_root(), domain)
    assert digest(_root(epoch=8), domain) != base
    assert digest(_root(), Domain(domain.chain_id + 1, domain.verifying_contract)) != base
    assert digest(_root(), Domain(domain.chain_id, ADDRESS)) != base


def test_sign_multi__unsorted_accounts__signatures_ascending_by_signer_and_low_s(domain, signers):
    root = _root()
    sigs = sign_multi(root, domain, list(reversed(signers)))
    recovered = [recover(root, domain, s) for s in sigs]
    assert recovered == [s.address for s in signers]
    assert all(int.from_bytes(s[32:64], "big") <= SECP256K1_N // 2 for s in sigs)
    assert all(s[64] in (27, 28) for s in sigs)


def test_sign_multi__duplicate_account__raises(domain, signers):
    with pytest.raises(Eip712Error, match="distinct signers"):
        sign_multi(_root(), domain, [signers[0], signers[0]])


def test_sign_multi__too_many_accounts__raises(domain):
    accounts = [Account.from_key(i.to_bytes(32, "big")) for i in range(1, 18)]
    with pytest.raises(Eip712Error, match="at most 16"):
        sign_multi(_root(), domain, accounts)


def test_normalize_signature__high_s__flipped_to_low_s_with_other_v(domain, signers):
    root = _root()
    sig = sign(root, domain, signers[0])
    r, s, v = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:64], "big"), sig[64]
    flipped = normalize_signature(r, SECP256K1_N - s, 55 - v)
    assert flipped == sig
    assert normalize_signature(r, s, v - 27) == sig  # v given as 0/1


def test_normalize_signature__bad_v__raises():
    with pytest.raises(Eip712Error, match="signature.v"):
        normalize_signature(1, 1, 30)


def test_recover__short_signature__raises(domain):
    with pytest.raises(Eip712Error, match="65 bytes"):
        recover(_root(), domain, b"\x01" * 64)


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"epoch": 1.0}, r"EpochRoot.epoch: expected an integer"),
        ({"epoch": True}, r"EpochRoot.epoch: expected an integer"),
        ({"account_count": -1}, r"EpochRoot.account_count: expected 0..2\*\*256-1, got -1"),
        ({"params_hash": b"\x01" * 31}, r"EpochRoot.params_hash: expected 32 bytes"),
        ({"engine": "0x1234"}, r"EpochRoot.engine: expected a 20-byte address"),
    ],
)
def test_epoch_root__bad_field__raises_naming_field(overrides, match):
    with pytest.raises(Eip712Error, match=match):
        _root(**overrides)


def test_epoch_root__hex_params_hash_and_lowercase_address__normalised():
    root = _root(params_hash="0x" + PARAMS_HASH.hex(), engine=ADDRESS.lower())
    assert root.params_hash == PARAMS_HASH
    assert root.engine == ADDRESS  # all-digit address: checksum form is itself


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"ids": []}, r"MarketData.ids: expected 1..256 ids, got 0"),
        ({"ids": list(range(1, 258))}, r"MarketData.ids: expected 1..256 ids, got 257"),
        ({"marks_wad": [1, 2]}, r"MarketData.marks_wad: expected 3 values \(one per id\), got 2"),
        ({"mm_short_wad": [1, 2, 3, 4]}, r"MarketData.mm_short_wad: expected 3 values"),
        ({"im_long_wad": [1, 2, 0.5]}, r"MarketData.im_long_wad\[2\]: expected an integer"),
        ({"ids": 5}, r"MarketData.ids: expected a list"),
        ({"marks_wad": [2**255, 1, 2]}, r"MarketData.marks_wad\[0\]: expected an int256"),
    ],
)
def test_market_data__bad_arrays__raises_naming_field(overrides, match):
    with pytest.raises(Eip712Error, match=match):
        _market(**overrides)


def test_index_prices__length_mismatch__raises():
    with pytest.raises(Eip712Error, match=r"IndexPrices.prices_wad: expected 2 values, got 1"):
        IndexPrices(underlyings=[BTC, ETH], prices_wad=[1], timestamp=1, deadline=2)


def test_symbol_to_bytes32__roundtrip_and_bad_symbol():
    assert symbol_to_bytes32("BTC") == b"BTC" + b"\0" * 29
    assert bytes32_to_symbol(symbol_to_bytes32("ETH")) == "ETH"
    with pytest.raises(Eip712Error, match="symbol"):
        symbol_to_bytes32("")
    with pytest.raises(Eip712Error, match="symbol"):
        symbol_to_bytes32("X" * 33)


def test_domain__bad_contract__raises():
    with pytest.raises(Eip712Error, match="domain.verifying_contract"):
        Domain(chain_id=1, verifying_contract="0xnope")
    with pytest.raises(Eip712Error, match="domain.chain_id"):
        Domain(chain_id=-1, verifying_contract=ADDRESS)


@pytest.mark.parametrize(
    "overrides, kinds, match",
    [
        ({"ids": [1, 1, 2]}, {1: 1, 2: 1}, r"MarketData\[1\] \(instrument 1\).ids: expected each id once"),
        ({}, {1: 1, 2: 1}, r"MarketData\[2\] \(instrument 3\).ids: expected a listed instrument"),
        ({"marks_wad": [2**95, 0, 0]}, {1: 1, 2: 1, 3: 1}, r"MarketData\[0\] \(instrument 1\).marks_wad"),
        ({}, {1: 1, 2: 0, 3: 1}, r"MarketData\[1\] \(instrument 2\).funding_indices_wad: expected 0 for a non-perpetual"),
        ({"im_long_wad": [2**128, 2, 2], "mm_long_wad": [0, 0, 0]}, {1: 1, 2: 1, 3: 1}, r"im_long_wad: expected < 2\*\*128"),
        ({"im_short_wad": [3, 0, 3], "mm_short_wad": [0, 1, 0]}, {1: 1, 2: 1, 3: 1}, r"MarketData\[1\] \(instrument 2\).im_short_wad: expected >= mm_short_wad"),
    ],
)
def test_check_market_rules__rule_broken__raises_naming_entry(overrides, kinds, match):
    from offchain.chain.eip712 import check_market_rules

    with pytest.raises(Eip712Error, match=match):
        check_market_rules(_market(**overrides), kinds)


def test_check_market_rules__valid_batch__passes():
    from offchain.chain.eip712 import check_market_rules

    check_market_rules(_market(funding_indices_wad=[0, 5, 0]), {1: 0, 2: 1, 3: 2})
