"""The devnet keeper against its accelerated clock: the chain moves `speed` seconds per wall
second, so on a loaded machine clock ticks land between the keeper signing its cycle's
messages and sending them."""

from __future__ import annotations


def test_keeper__clock_ticks_between_signing_and_sending__posts_still_land(net, settle, monkeypatch):
    ticks = 3  # a cycle three ticks late: 1,800 chain seconds at the replay's 600x
    step = int(net.options.speed * net.options.block_interval_s)
    send_batch = net.keeper.executor.send_batch
    refused = []

    def late(calls):
        if calls:  # the clock moved on while this cycle computed and signed
            last = int(net.anvil.w3.eth.get_block("latest")["timestamp"])
            net.anvil.mine(last + ticks * step)
        results = send_batch(calls)
        refused.extend(f"{r.label}: {r.error}" for r in results if not r.ok)
        return results

    monkeypatch.setattr(net.keeper.executor, "send_batch", late)
    # past the heartbeat age: marks and index prices are due this cycle whatever moved
    report = settle(net.keeper.cfg.price_max_age_s + 60)
    assert report.posted_prices and not refused, f"the cycle's posts were refused: {refused}"
