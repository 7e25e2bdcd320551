# pragma version 0.4.3
"""
@title market_leaf
@custom:contract-name market_leaf
@license MIT
@notice The packed market leaf of an epoch market root (docs/oracle.md, "Market leaf";
        offchain/chain/leaves.py `MarketLeaf` builds and reads it): one instrument's model
        inputs and per-unit figures in seven ABI words, each field at a fixed bit range of a
        fixed word, so a leaf has one encoding and its hash one preimage. Packed because
        the leaves travel in every liquidation witness: fifteen mostly-zero words a leaf
        were most of its call data.
@dev Every field is unsigned in its bit range, the signed ones biased (rate + 2**63,
     mark + 2**127), so no bit pattern of a range is out of range once decoded; what a
     decoder must check is the head word's version tag, its reserved (zero) bits and the
     kind (0..3). The signer side (the Python class) refuses a value that does not fit its
     range, so such a leaf is never signed, and on chain it cannot be written at all.
"""

# The head's top byte: this layout's version tag ("m"); a leaf of another layout (or another
# use of seven words) carries another tag and is refused. One byte, not more: the head travels
# in every leaf of a witness, and a call-data byte costs 16 gas non-zero, 4 zero.
TAG: constant(uint256) = 109  # 0x6d
# head >> 136 of a well-formed head: bits 136-247 zero, then the tag
HEAD_HIGH: constant(uint256) = TAG << 112
MASK_64: constant(uint256) = 2**64 - 1
MASK_128: constant(uint256) = 2**128 - 1
RATE_BIAS: constant(int256) = 2**63
KIND_MAX: constant(uint256) = 3


struct MarketLeaf:
    # instrument_id (bits 0-63) | expiry (64-127, 0 for perpetuals) | kind (128-135:
    # 0 future, 1 perpetual, 2 call, 3 put) | zero (136-247) | TAG (248-255)
    head: uint256
    # the registry's underlying symbol
    underlying: bytes32
    # strike_wad (0-127, 0 for futures and perpetuals) | contract_size_wad (128-255)
    strike_size: uint256
    # spot_wad (0-127) | forward_wad (128-255)
    spot_forward: uint256
    # vol_wad (0-63) | rate_wad + 2**63 (64-127) | mark_wad + 2**127 (128-255)
    vol_rate_mark: uint256
    # im_long_wad (0-127) | im_short_wad (128-255)
    im: uint256
    # mm_long_wad (0-127) | mm_short_wad (128-255)
    mm: uint256


@internal
@pure
def _well_formed(head: uint256) -> bool:
    """
    @dev The head is of this layout: the tag, zero reserved bits and a known kind.
    """
    return head >> 136 == HEAD_HIGH and (head >> 128) & 255 <= KIND_MAX


@internal
@pure
def _rate(vol_rate_mark: uint256) -> int256:
    """
    @dev The signed rate (WAD) from its biased 64-bit field.
    """
    return convert((vol_rate_mark >> 64) & MASK_64, int256) - RATE_BIAS
