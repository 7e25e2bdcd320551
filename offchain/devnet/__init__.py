"""Local devnet: Anvil, deployment with documented defaults, the demo and its report."""
