//! The checked-in SDL matches the schema the code builds.

#[test]
fn sdl_is_checked_in() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../schema/dossier.graphql");
    let checked_in = std::fs::read_to_string(path).unwrap_or_default();
    let current = dossier_gateway::sdl();
    assert!(
        checked_in == current,
        "schema/dossier.graphql is out of date with the gateway's schema; \
         run `cargo run -- schema > schema/dossier.graphql` from the workspace root and commit it"
    );
}
