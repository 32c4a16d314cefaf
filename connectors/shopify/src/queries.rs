//! Every GraphQL document the connector sends. Each is validated in the tests against
//! Shopify's Admin schema of [`DEFAULT_API_VERSION`](crate::DEFAULT_API_VERSION) (`fixtures/`).

/// The customer fields read, in paged and bulk queries alike.
///
/// `email` is deprecated in 2025-01 in favour of `defaultEmailAddress`, which exists only from
/// 2025-04; deprecated fields keep working.
macro_rules! customer_fields {
    () => {
        "id
      email
      phone
      firstName
      lastName
      defaultAddress { countryCodeV2 }
      tags
      numberOfOrders
      amountSpent { amount currencyCode }
      createdAt
      updatedAt"
    };
}

/// The order fields read, in paged and bulk queries alike.
macro_rules! order_fields {
    () => {
        "id
      email
      customer { id }
      totalPriceSet { shopMoney { amount currencyCode } }
      createdAt
      updatedAt
      displayFinancialStatus
      displayFulfillmentStatus
      subtotalLineItemsQuantity"
    };
}

/// Customers updated at or after a time (`$query`), oldest update first, one page.
pub const CUSTOMERS: &str = concat!(
    "query DossierCustomers($first: Int!, $after: String, $query: String) {
  customers(first: $first, after: $after, query: $query, sortKey: UPDATED_AT) {
    nodes {
      ",
    customer_fields!(),
    "
    }
    pageInfo { hasNextPage endCursor }
  }
}"
);

/// Orders updated at or after a time (`$query`), oldest update first, one page.
pub const ORDERS: &str = concat!(
    "query DossierOrders($first: Int!, $after: String, $query: String) {
  orders(first: $first, after: $after, query: $query, sortKey: UPDATED_AT) {
    nodes {
      ",
    order_fields!(),
    "
    }
    pageInfo { hasNextPage endCursor }
  }
}"
);

/// How many customers there are (decides whether a first read uses a bulk operation).
pub const CUSTOMERS_COUNT: &str = "query DossierCustomersCount {
  customersCount { count precision }
}";

/// How many orders there are, counted up to `$limit`.
pub const ORDERS_COUNT: &str = "query DossierOrdersCount($limit: Int) {
  ordersCount(limit: $limit) { count precision }
}";

/// The bulk query reading every customer (run by [`BULK_RUN`]; no paging in bulk queries).
pub const BULK_CUSTOMERS: &str = concat!(
    "{
  customers {
    edges {
      node {
      ",
    customer_fields!(),
    "
      }
    }
  }
}"
);

/// The bulk query reading every order.
pub const BULK_ORDERS: &str = concat!(
    "{
  orders {
    edges {
      node {
      ",
    order_fields!(),
    "
      }
    }
  }
}"
);

/// Starts a bulk query operation.
pub const BULK_RUN: &str = "mutation DossierBulkRun($query: String!) {
  bulkOperationRunQuery(query: $query) {
    bulkOperation { id status createdAt }
    userErrors { field message }
  }
}";

/// The state of a bulk operation.
pub const BULK_STATUS: &str = "query DossierBulkStatus($id: ID!) {
  node(id: $id) {
    ... on BulkOperation { id status errorCode objectCount createdAt url partialDataUrl }
  }
}";

/// Every document, by the root field it selects, for the schema tests.
pub const ALL: &[(&str, &str)] = &[
    ("customers", CUSTOMERS),
    ("orders", ORDERS),
    ("customersCount", CUSTOMERS_COUNT),
    ("ordersCount", ORDERS_COUNT),
    ("customers", BULK_CUSTOMERS),
    ("orders", BULK_ORDERS),
    ("bulkOperationRunQuery", BULK_RUN),
    ("node", BULK_STATUS),
];
