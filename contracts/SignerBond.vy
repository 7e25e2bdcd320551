# pragma version 0.4.3
# pragma nonreentrancy on
"""
@title SignerBond
@custom:contract-name SignerBond
@license MIT
@notice The risk signers' stake, in the settlement token. A signer with at least
        `required_bond` staked counts toward the RiskOracle's threshold (`is_bonded`);
        below it, its signatures are ignored. Withdrawal is a request (the amount stops
        counting at once) and, after `withdrawal_delay` (longer than the challenge window),
        the payout; until then the requested amount stays slashable, so every root a signer
        counted for can still be challenged against its stake. Slashing takes a signer's
        whole stake and pending withdrawal, pays CHALLENGER_SHARE_BPS of it to the
        challenger and forfeits the rest: the signers of a false root know first and can
        challenge it themselves, so a whole-bond reward would hand the bond back to them.
        Only the FraudProofs contract (`slasher`, set once) can slash, after a proven
        challenge. The forfeited balance belongs to the insurance fund of the engine named
        at deployment: anyone moves it there (`push_forfeited`), so it backs the depositors
        a false root put at risk and never returns to a signer.
@dev Funds add up: token balance = sum over signers of (stake + pending) + forfeited, since
     every transfer in credits exactly what arrived and every transfer out debits what it
     pays; over the contract's life, bonded = total_bonded + forfeited + withdrawn + paid to
     challengers + pushed to the insurance fund (`to_insurance`).
"""

from ethereum.ercs import IERC20

# The MarginEngine whose insurance fund receives forfeited bonds.
interface IInsuranceFund:
    def fund_insurance(amount: uint256): nonpayable
    def TOKEN() -> IERC20: view

#### CONSTANTS ####

# Share of a slash paid to the challenger (basis points); the rest is forfeited, so a signer
# challenging its own false root still loses 80% of its bond.
CHALLENGER_SHARE_BPS: public(constant(uint256)) = 2_000

#### IMMUTABLES ####

token: public(immutable(IERC20))
# Stake a signer needs for its signatures to count (token units).
required_bond: public(immutable(uint256))
# Seconds a fraud proof may be submitted after a root is posted (FraudProofs reads it).
challenge_window: public(immutable(uint256))
# Seconds between a withdrawal request and its payout (> challenge_window).
withdrawal_delay: public(immutable(uint256))
# Who may set the slasher, once.
deployer: immutable(address)
# The engine whose insurance fund forfeited bonds go to (same settlement token).
insurance_fund: public(immutable(IInsuranceFund))

#### STORAGE ####

# The only caller of `slash` (the FraudProofs contract); empty until set.
slasher: public(address)
# signer -> counted stake
stake: public(HashMap[address, uint256])
# signer -> requested, not yet paid (still slashable) and when it may be paid
pending: public(HashMap[address, uint256])
unlock_at: public(HashMap[address, uint256])
# sum of stake + pending over all signers
total_bonded: public(uint256)
# slashed, not paid to a challenger, not yet pushed to the insurance fund
# (total_bonded + forfeited = the token balance)
forfeited: public(uint256)
# forfeited amounts pushed to the insurance fund so far
to_insurance: public(uint256)

#### EVENTS ####

event SlasherSet:
    slasher: indexed(address)

event Bonded:
    signer: indexed(address)
    funder: indexed(address)
    amount: uint256
    stake: uint256

event WithdrawalRequested:
    signer: indexed(address)
    amount: uint256
    pending: uint256
    unlock_at: uint256

event Withdrawn:
    signer: indexed(address)
    amount: uint256

event Slashed:
    signer: indexed(address)
    challenger: indexed(address)
    amount: uint256

event Forfeited:
    challenger: indexed(address)
    taken: uint256
    paid: uint256
    forfeited: uint256

event ForfeitedToInsurance:
    engine: indexed(address)
    sender: indexed(address)
    amount: uint256


@deploy
def __init__(token_: IERC20, required_bond_: uint256, challenge_window_: uint256, withdrawal_delay_: uint256,
             insurance_fund_: IInsuranceFund):
    """
    @param token_ The settlement token.
    @param required_bond_ Stake a signer needs to count (> 0).
    @param challenge_window_ Seconds after a root's posting during which it can be challenged (> 0).
    @param withdrawal_delay_ Seconds from a withdrawal request to its payout (> challenge_window_).
    @param insurance_fund_ The MarginEngine (same token) whose insurance fund receives forfeited bonds.
    """
    assert token_.address != empty(address), "bond: zero token"
    assert required_bond_ != 0, "bond: required bond must be > 0"
    assert challenge_window_ != 0, "bond: challenge window must be > 0"
    assert withdrawal_delay_ > challenge_window_, "bond: withdrawal delay must exceed the challenge window"
    assert staticcall insurance_fund_.TOKEN() == token_, "bond: insurance fund settles in another token"
    token = token_
    required_bond = required_bond_
    challenge_window = challenge_window_
    withdrawal_delay = withdrawal_delay_
    insurance_fund = insurance_fund_
    deployer = msg.sender


@external
def set_slasher(slasher_: address):
    """
    @notice Name the FraudProofs contract, once (by the deployer): from then on slashing is
            that contract's code and nobody's decision.
    """
    assert msg.sender == deployer, "bond: only the deployer sets the slasher"
    assert self.slasher == empty(address), "bond: slasher already set"
    assert slasher_ != empty(address), "bond: zero slasher"
    self.slasher = slasher_
    log SlasherSet(slasher=slasher_)


@external
def bond(signer: address, amount: uint256):
    """
    @notice Stake `amount` of the token (from msg.sender, credited with what arrives) for
            `signer`: an operator may fund its signing key; only the signer withdraws it.
    """
    assert signer != empty(address), "bond: zero signer"
    assert amount != 0, "bond: amount must be > 0"
    before: uint256 = staticcall token.balanceOf(self)
    assert extcall token.transferFrom(msg.sender, self, amount, default_return_value=True), "bond: transfer failed"
    received: uint256 = staticcall token.balanceOf(self) - before
    self.stake[signer] += received
    self.total_bonded += received
    log Bonded(signer=signer, funder=msg.sender, amount=received, stake=self.stake[signer])


@external
def request_withdrawal(amount: uint256):
    """
    @notice Move `amount` of msg.sender's stake to pending: it stops counting at once and
            can be withdrawn `withdrawal_delay` seconds from now (a new request restarts
            the clock for everything pending). Pending funds stay slashable.
    """
    assert amount != 0, "bond: amount must be > 0"
    staked: uint256 = self.stake[msg.sender]
    assert amount <= staked, "bond: amount above stake"
    self.stake[msg.sender] = staked - amount
    self.pending[msg.sender] += amount
    unlock: uint256 = block.timestamp + withdrawal_delay
    self.unlock_at[msg.sender] = unlock
    log WithdrawalRequested(signer=msg.sender, amount=amount, pending=self.pending[msg.sender], unlock_at=unlock)


@external
def withdraw():
    """
    @notice Pay msg.sender its pending amount once the delay has passed.
    """
    amount: uint256 = self.pending[msg.sender]
    assert amount != 0, "bond: nothing pending"
    assert block.timestamp >= self.unlock_at[msg.sender], "bond: withdrawal delay not over"
    self.pending[msg.sender] = 0
    self.total_bonded -= amount
    assert extcall token.transfer(msg.sender, amount, default_return_value=True), "bond: transfer failed"
    log Withdrawn(signer=msg.sender, amount=amount)


@external
def slash(signers: DynArray[address, 16], challenger: address) -> uint256:
    """
    @notice Take every listed signer's stake and pending withdrawal, pay CHALLENGER_SHARE_BPS
            of the sum to `challenger` and forfeit the rest (for the insurance fund:
            `push_forfeited`); a payout the token refuses is forfeited too. Only the slasher
            (FraudProofs, after a proven challenge).
    @dev The engine is not called here: a proven fraud must slash whatever the engine does
         with a deposit; the push is a separate call.
    @return The amount paid to the challenger.
    """
    assert msg.sender == self.slasher and msg.sender != empty(address), "bond: only the fraud proofs contract slashes"
    assert challenger != empty(address), "bond: zero challenger"
    taken: uint256 = 0
    for s: address in signers:
        amount: uint256 = self.stake[s] + self.pending[s]
        if amount == 0:
            continue
        self.stake[s] = 0
        self.pending[s] = 0
        taken += amount
        log Slashed(signer=s, challenger=challenger, amount=amount)
    paid: uint256 = taken * CHALLENGER_SHARE_BPS // 10_000
    if taken == 0:
        return 0
    self.total_bonded -= taken
    self.forfeited += taken - paid
    # The payout must not be able to undo the proof (the caller voids the epoch in the same
    # transaction): a token that refuses it (the challenger or this contract blocklisted by
    # the issuer, a re-entry hitting a lock) forfeits the challenger's share instead.
    if paid != 0 and not self._pay(challenger, paid):
        self.forfeited += paid
        paid = 0
    log Forfeited(challenger=challenger, taken=taken, paid=paid, forfeited=self.forfeited)
    return paid


@internal
def _pay(to: address, amount: uint256) -> bool:
    """
    @dev token.transfer without reverting: true if the call succeeded and returned nothing
         or true (tokens that return nothing are accepted, as everywhere here).
    """
    ok: bool = False
    response: Bytes[32] = b""
    ok, response = raw_call(token.address, abi_encode(to, amount, method_id=method_id("transfer(address,uint256)")),
                            max_outsize=32, revert_on_failure=False)
    if not ok:
        return False
    if len(response) == 0:
        return True
    return len(response) == 32 and extract32(response, 0, output_type=uint256) == 1


@external
def push_forfeited() -> uint256:
    """
    @notice Move the whole forfeited balance into the engine's insurance fund. Anyone may:
            nothing is left to decide, the amount and the engine are fixed.
    @return The amount moved (token units).
    """
    amount: uint256 = self.forfeited
    assert amount != 0, "bond: nothing forfeited"
    self.forfeited = 0
    self.to_insurance += amount
    before: uint256 = staticcall token.balanceOf(self)
    assert extcall token.approve(insurance_fund.address, amount, default_return_value=True), "bond: approve failed"
    extcall insurance_fund.fund_insurance(amount)
    # the engine pulls exactly `amount` (it credits what arrives), so the identity holds and
    # no allowance is left behind
    assert before - staticcall token.balanceOf(self) == amount, "bond: the engine pulled another amount"
    log ForfeitedToInsurance(engine=insurance_fund.address, sender=msg.sender, amount=amount)
    return amount


@view
@external
@reentrant
def is_bonded(signer: address) -> bool:
    """
    @return Whether `signer`'s counted stake is at least `required_bond`.
    """
    return self.stake[signer] >= required_bond
