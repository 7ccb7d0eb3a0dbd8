/** The operations of an example portal: what codegen turns into typed documents and persisted documents. */
import { graphql } from "./gql";

export const SignIn = graphql(`
  mutation SignIn($login: String!, $password: String!) {
    login(input: { login: $login, password: $password }) {
      token
      errors { field code message }
    }
  }
`);

export const CustomerBilling = graphql(`
  query CustomerBilling($id: ID!) {
    customer(id: $id) {
      id
      name
      wallet { id balance { amount currency } estimatedDaysUntilRefill }
      credits { id available used assigned health }
      spendingCap { id cap { amount } spentThisMonth { amount } status }
    }
  }
`);

/** The current wallet first, then every change: the same Node as in CustomerBilling, so caches update in place. */
export const WalletLive = graphql(`
  subscription WalletLive($id: ID!) {
    walletUpdated(customerId: $id) { id balance { amount currency } estimatedDaysUntilRefill }
  }
`);
