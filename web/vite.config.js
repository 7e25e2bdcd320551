import { defineConfig } from "vite";

// The API serves the build from offchain/api/static (index.html at /, bundles under /assets).
export default defineConfig({
  base: "/",
  build: {
    outDir: "../offchain/api/static",
    emptyOutDir: true,
    chunkSizeWarningLimit: 1024,
  },
});
