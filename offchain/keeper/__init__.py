"""The netmargin keeper: follows the chain, recomputes margins, posts epoch roots, liquidates, settles.

Split the way long-lived keepers are: `config` (what to run), `store` + `indexer` + `book`
(what happened on chain, reorg-safe), `prices` (what the market is), `strategy` (pure: what
to do), `signing` (EIP-712 digests and signatures), `roots` (epoch files and proofs),
`executor` (transactions, nonces, gas, retries), `metrics` (Prometheus + health), `bot` (the
loop tying them together).
"""
