"""State store (reorg rewind, resume), EIP-712 signatures, replay prices, keys."""

import json

import numpy as np
import pytest
from eth_account import Account
from eth_keys import keys as eth_keys

from offchain.chain.eip712 import EpochRoot, struct_hash
from offchain.errors import UserError
from offchain.keeper.config import KeySpec
from offchain.keeper.keys import load_key, write_keyfile
from offchain.keeper.metrics import KeeperMetrics
from offchain.keeper.prices import ReplaySource, parse_date
from offchain.keeper.signing import SECP256K1_N, Signers, oracle_domain, typed_digest
from offchain.keeper.store import StateStore, StoredEvent
from offchain.paths import DATA_DIR

DATA = DATA_DIR


def _ev(block, i=0):
    return StoredEvent(block, i, "0x" + "00" * 32, "engine", "Deposit", {"account": "0x" + "11" * 20})


def test_store_rewind__reorg__drops_blocks_and_events_above(tmp_path):
    s = StateStore(tmp_path / "k.sqlite")
    s.record([(10, "0xa", 1)], [_ev(9), _ev(10)])
    s.record([(12, "0xb", 2)], [_ev(11), _ev(12)])
    s.rewind(10)
    assert s.processed_block() == 10 and [e.block for e in s.events()] == [9, 10]


def test_store__reopened__resumes_at_last_block(tmp_path):
    s = StateStore(tmp_path / "k.sqlite")
    s.record([(42, "0xa", 1)], [_ev(42)])
    s.close()
    again = StateStore(tmp_path / "k.sqlite")
    assert again.processed_block() == 42 and len(again.events()) == 1


def test_signers_sign__two_keys__ascending_low_s_recoverable():
    accts = [Account.create() for _ in range(2)]
    signers = Signers(accts)
    root = EpochRoot(engine="0x" + "ee" * 20, epoch=3, timestamp=100, deadline=200, params_hash=b"\1" * 32,
                     market_root=b"\2" * 32, market_count=4, accounts_root=b"\3" * 32, account_count=7)
    digest = typed_digest(oracle_domain(31337, "0x" + "22" * 20), struct_hash(root))
    sigs = signers.sign([digest])[0]
    recovered = []
    for sig in sigs:
        r, s, v = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:64], "big"), sig[64]
        assert s <= SECP256K1_N // 2 and v in (27, 28)
        pub = eth_keys.Signature(vrs=(v - 27, r, s)).recover_public_key_from_msg_hash(digest)
        recovered.append(pub.to_checksum_address())
    assert recovered == sorted((a.address for a in accts), key=lambda x: int(x, 16))


def test_replay_source__crash_day__visits_the_low():
    src = ReplaySource(DATA, ["BTC"], {"BTC": 0.8})
    day = parse_date("2020-03-12", "d")
    path = [src.spot(day + h * 3600)[0] for h in range(25)]
    assert min(path) < 5_000 < path[0]  # the day's low was 4,860; it opened near 7,914


def test_replay_source__vol__at_least_configured_and_rises_after_crash():
    src = ReplaySource(DATA, ["BTC"], {"BTC": 0.5})
    before, after = src.vol(parse_date("2020-03-01", "d"))[0], src.vol(parse_date("2020-03-15", "d"))[0]
    assert before >= 0.5 and after > before


def test_replay_source__window_outside_data__error_names_range():
    src = ReplaySource(DATA, ["ETH"], {"ETH": 0.9})
    with pytest.raises(UserError, match="outside the data"):
        src.check_range(parse_date("2016-01-01", "d"), parse_date("2016-02-01", "d"))


def test_load_key__keyfile_with_env_passphrase__decrypts(tmp_path, monkeypatch):
    acct = Account.create()
    path = write_keyfile(acct, tmp_path / "k.json", "pw")
    monkeypatch.setenv("KEEPER_PW", "pw")
    assert load_key(KeySpec(f"keyfile:{path}", "KEEPER_PW"), "gas_key").address == acct.address


def test_load_key__ape_alias__reads_ape_keyfile(tmp_path, monkeypatch):
    acct = Account.create()
    write_keyfile(acct, tmp_path / "accounts" / "keeper1.json", "pw")
    monkeypatch.setenv("APE_DATA_FOLDER", str(tmp_path))
    monkeypatch.setenv("KEEPER_PW", "pw")
    assert load_key(KeySpec("ape:keeper1", "KEEPER_PW"), "signers[0]").address == acct.address


def test_load_key__wrong_passphrase__plain_error(tmp_path, monkeypatch):
    path = write_keyfile(Account.create(), tmp_path / "k.json", "pw")
    monkeypatch.setenv("KEEPER_PW", "nope")
    with pytest.raises(UserError, match="wrong passphrase"):
        load_key(KeySpec(f"keyfile:{path}", "KEEPER_PW"), "gas_key")


def test_keeper_metrics_health__behind_head__unhealthy():
    m = KeeperMetrics()
    m.head_block.set(100)
    m.processed_block.set(90)
    import time
    m.last_cycle.set(time.time())
    ok, status = m.health(max_lag_blocks=5, max_cycle_age_s=60)
    assert not ok and status["reason"] == "behind head"
    m.processed_block.set(99)
    assert m.health(5, 60)[0]


def test_keeper_book_apply_views__positions_and_cash__as_floats():
    from offchain.keeper.book import KeeperBook
    b = KeeperBook(2, capacity=1)
    wad = 10**18
    b.apply_views(["0xA", "0xB"], [
        (-5 * wad, 3, [(2, -2 * wad, 0)], 7 * wad, 6 * wad, 100, 0),
        (10**40, 1, [(1, wad // 2, 0)], wad, wad, 50, 0)])
    assert b.positions.tolist() == [[0.0, -2.0], [0.5, 0.0]]
    assert b.view("cash")[0] == -5.0 and b.view("cash")[1] == pytest.approx(1e22)
    assert b.view("state_nonce").tolist() == [3, 1] and np.allclose(b.view("mm"), [6, 1])
    assert b.view("basis_ts").tolist() == [100, 50]
    assert json.dumps(b.addresses)


def test_signing_backend__native_secp256k1__is_eth_keys_backend():
    """coincurve (pinned) backs eth-keys: ~140 us per signature or recovery instead of ~3 ms
    with the pure-Python fallback. A keeper cycle signs only a few digests; the API recovers
    the signer of every order it is sent, and the benchmarks sign and recover thousands."""
    from eth_keys import KeyAPI
    from eth_keys.backends import CoinCurveECCBackend

    assert isinstance(KeyAPI().backend, CoinCurveECCBackend)
