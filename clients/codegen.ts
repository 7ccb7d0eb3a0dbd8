/**
 * graphql-codegen for a Partnerdesk client (React portal, mobile app, dashboard): typed documents for the
 * operations in src/, and `persisted-documents.json`, the allowlist a PERSISTED_ONLY deployment runs
 * (PERSISTED_DOCUMENTS). Run `npm ci && npm run codegen` in this folder.
 *
 * Scalars travel as strings (money and credits are exact decimals: never parse them into a JS number for
 * arithmetic); JSON is whatever the field documents, so `unknown` until checked.
 */
import type { CodegenConfig } from "@graphql-codegen/cli";

const config: CodegenConfig = {
  schema: process.env.PARTNERDESK_SCHEMA ?? "../schema.graphql",
  documents: ["src/**/*.ts", "!src/gql/**/*"],
  generates: {
    "src/gql/": {
      preset: "client",
      presetConfig: {
        // sha256 of each document: the hash Apollo's persisted queries and the server's allowlist use
        persistedDocuments: { hashAlgorithm: "sha256" },
        fragmentMasking: false,
      },
      config: {
        strictScalars: true,
        scalars: {
          Decimal: "string",
          DateTime: "string",
          Date: "string",
          JSON: "unknown",
          Upload: "File",
        },
        enumsAsTypes: true,
        useTypeImports: true,
      },
    },
  },
};

export default config;
