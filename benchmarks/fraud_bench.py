"""bench_gas.py's fraud-proof rows: the commitment, then one challenge of a 16-option book (a rogue leaf with half
its margin) against a root of 256 instruments and 1,024 accounts, and ScenarioVerifier's
`check_market` of the same book (one multiproof), on the Anvil chain bench_gas.py runs.

The book is bench_pricer.py's: BTC calls and puts at four strikes and two expiries, long and
short. The account leaf comes from the engine's own leaf code (offchain/chain/epoch_leaves.py)
over the market leaves' inputs, so everything but the halved margin is what an honest keeper
signs.
"""

from __future__ import annotations

from dataclasses import replace

from bench_pricer import sixteen_option_book

from offchain.chain.eip712 import sign_multi, symbol_to_bytes32
from offchain.chain.epoch_leaves import MarketInputs, epoch_account_leaves
from offchain.chain.fraud import EpochRecord, challenge_arguments, commitment, new_salt
from offchain.chain.leaves import MarketLeaf
from offchain.chain.roots import EpochTrees
from offchain.chain.verifier import verifier_config
from offchain.chain.wad import Rounding, to_wad
from offchain.chain.witness import encode_check_market
from offchain.risk import load_params
from offchain.risk.instruments import SECONDS_PER_YEAR

WAD = 10**18
N_MARKET, N_ACCOUNTS = 256, 1_024
TARGET = 600_000


def _wad(x: float) -> int:
    return to_wad(float(x), Rounding.NEAREST, field="bench")


def fraud_rows(bench, params_hash: bytes) -> list[tuple[str, int, int | None]]:
    p, admin, oracle, token = bench.project, bench.admin, bench.oracle, bench.token
    params = load_params("default-v2")
    generator, rows = verifier_config(params)
    verifier = p.ScenarioVerifier.deploy(oracle, params_hash, generator, rows, sender=admin)
    bond = p.SignerBond.deploy(token, 1_000 * 10**6, 3_600, 7_200, bench.engine, sender=admin)
    fraud = p.FraudProofs.deploy(oracle, bond, sender=admin)
    fraud.register_verifier(verifier, sender=admin)
    bond.set_slasher(fraud, sender=admin)
    oracle.set_fraud_contracts(bond, fraud, sender=admin)
    signers = bench.signers[: bench.threshold]
    token.mint(admin, 1_000 * 10**6 * len(signers), sender=admin)
    token.approve(bond, 1_000 * 10**6 * len(signers), sender=admin)
    for s in signers:
        bond.bond(s.address, 1_000 * 10**6, sender=admin)

    bench.chain.mine(timestamp=bench.chain.pending_timestamp + 1)
    ts = bench.chain.blocks.head.timestamp
    x, sizes = sixteen_option_book()
    btc = symbol_to_bytes32("BTC")
    book = [MarketLeaf(instrument_id=1 + i, kind=int(x.kind[i]), underlying=btc, strike_wad=_wad(x.strike[i]),
                       expiry=ts + round(float(x.tenor[i]) * SECONDS_PER_YEAR), contract_size_wad=WAD,
                       spot_wad=_wad(x.spot[i]), forward_wad=_wad(x.fwd[i]), vol_wad=_wad(x.vol[i]),
                       rate_wad=_wad(x.rate[i]), mark_wad=0, im_long_wad=0, im_short_wad=0, mm_long_wad=0,
                       mm_short_wad=0)
            for i in range(16)]
    market = book + [replace(book[i % 16], instrument_id=17 + i) for i in range(N_MARKET - 16)]
    inputs = MarketInputs.from_leaves(params, market, ts)
    outputs = inputs.leaf_outputs()
    market = [replace(m, **outputs[m.instrument_id]) for m in market]     # marks and rates filled
    engine = bench.engine.address
    victim = "0x" + "a1" * 20
    books = [{1 + i: _wad(sizes[i]) for i in range(16)}] + [{17 + k % 200: WAD} for k in range(N_ACCOUNTS - 1)]
    addresses = [victim] + [f"0x{0xB0000 + k:040x}" for k in range(N_ACCOUNTS - 1)]
    leaves = epoch_account_leaves(inputs, addresses, [1] * N_ACCOUNTS, books, [0] * N_ACCOUNTS)
    leaves[0] = replace(leaves[0], initial_margin_wad=leaves[0].initial_margin_wad // 2,
                        maintenance_margin_wad=leaves[0].maintenance_margin_wad // 2)
    epoch = oracle.epoch_root(engine)[0] + 1
    assert bench.registry.instrument_count() == N_MARKET, "the bench's registry lists one instrument per slot"
    trees = EpochTrees.build(engine, epoch, leaves, market, N_MARKET)
    msg = trees.root_message(timestamp=ts, deadline=ts + 600, params_hash=params_hash)
    tx = oracle.post_root(msg.as_args(), sign_multi(msg, bench.domain, signers), sender=admin)
    posted_at = bench.chain.provider.get_block(tx.block_number).timestamp
    record = EpochRecord(epoch, trees.accounts.root, trees.market.root, trees.market_count, params_hash, ts, posted_at,
                         tuple(s.address for s in signers))
    out = []
    ids = sorted(books[0])
    salt = new_salt()
    args = challenge_arguments(trees, record, victim, books[0], salt=salt)
    units = [btc]
    own = [leaves[0].worst_scenarios & 0xFFFF]
    joint = leaves[0].worst_scenarios >> 240
    # check_market reads the multiproof's hashes from its call data (witness.py): sent encoded
    proof, order = args[7]
    data = encode_check_market(engine, [books[0][i] for i in ids], args[6], proof, order, units, own, joint)
    view_gas = bench.chain.provider.web3.eth.estimate_gas({"from": admin.address, "to": verifier.address,
                                                           "data": data})
    out.append((f"check_market: 16 options, multiproof, {N_MARKET}-instrument root (estimate)", view_gas,
                TARGET))
    # commit-reveal: the commitment in its own (earlier) block, then the challenge reveals it
    tx = fraud.commit(commitment(bench.liq.address, engine, ts, victim, salt), sender=bench.liq)
    out.append(("commit: a challenge's commitment (first for the challenger)", tx.gas_used, None))
    tx = fraud.challenge(*args, sender=bench.liq)
    assert tx.decode_logs(fraud.FraudProven)[0].code == 1, "benchmark setup: the rogue leaf should be proven"
    out.append((f"challenge: 16-option leaf, {N_MARKET} instruments, {N_ACCOUNTS} accounts, 1 signer slashed",
                tx.gas_used, TARGET))
    # the forfeited 80% into the engine's insurance fund (anyone, any time after the slash)
    tx = bond.push_forfeited(sender=bench.liq)
    out.append(("push_forfeited: forfeited bonds to the insurance fund", tx.gas_used, None))
    return out
