//! Dossier's GraphQL gateway (async-graphql on axum)
