// The injected EIP-1193 wallet through viem: reads and writes go through window.ethereum.
import { createPublicClient, createWalletClient, custom, defineChain, BaseError, ContractFunctionRevertedError } from "viem";

export class Wallet {
  constructor(deployment) {
    this.d = deployment;
    this.chain = defineChain({
      id: deployment.chain_id, name: "netmargin devnet",
      nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 },
      rpcUrls: { default: { http: [deployment.rpc_url] } },
    });
  }

  async connect() {
    if (!window.ethereum) throw new Error("no injected wallet (window.ethereum): install one or use the CLI");
    const transport = custom(window.ethereum);
    this.wallet = createWalletClient({ chain: this.chain, transport });
    this.public = createPublicClient({ chain: this.chain, transport });
    const [address] = await this.wallet.requestAddresses();
    const chainId = await this.wallet.getChainId();
    if (chainId !== this.d.chain_id) throw new Error(`wallet is on chain ${chainId}, the devnet is ${this.d.chain_id}: switch network`);
    this.address = address;
    return address;
  }

  contract(name) {
    const c = this.d.contracts[name];
    return { address: c.address, abi: c.abi };
  }

  // simulate first (a refusal comes back with the contract's reason), then send and wait
  async write(name, functionName, args) {
    const { request } = await this.public.simulateContract({ ...this.contract(name), functionName, args, account: this.address });
    const hash = await this.wallet.writeContract(request);
    const receipt = await this.public.waitForTransactionReceipt({ hash });
    if (receipt.status !== "success") throw new Error(`${functionName}: transaction reverted (${hash})`);
    return receipt;
  }

  async read(name, functionName, args) {
    return this.public.readContract({ ...this.contract(name), functionName, args });
  }

  async signOrder(order) {
    const t = this.d.order_eip712;
    return this.wallet.signTypedData({ account: this.address, domain: t.domain, types: t.types, primaryType: t.primaryType, message: order });
  }
}

// the revert reason ("engine: below initial margin") or the wallet's message
export function reason(err) {
  if (err instanceof BaseError) {
    const revert = err.walk((e) => e instanceof ContractFunctionRevertedError);
    if (revert && revert.reason) return revert.reason;
    return err.shortMessage || err.message;
  }
  return err && err.message ? err.message : String(err);
}
