"""Chain bindings shared by tests, keeper and CLI: EIP-712 messages of RiskOracle
(`eip712`), WAD fixed-point conversion (`wad`) and signing-key loading (`signers`)."""
