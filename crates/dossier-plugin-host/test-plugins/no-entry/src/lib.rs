//! A deliberately bad plugin: a dynamic library that exports a function, but not
//! `dossier_plugin_entry`.

#![allow(unsafe_code)] // Exporting an unmangled symbol is `unsafe` by the language's rules.

/// Not the entry point.
#[unsafe(no_mangle)]
pub extern "C" fn dossier_plugin_main() -> u32 {
    42
}
