//! `sqlx::migrate!` embeds the migrations at compile time: rebuild when one is added or
//! changed, not only when a source file is (sqlx's documented fix).
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
