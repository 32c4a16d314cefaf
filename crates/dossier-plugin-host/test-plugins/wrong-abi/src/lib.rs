//! A deliberately bad plugin: its vtable header says ABI 99.0. The host must refuse it from
//! the header alone, reading nothing past it.

#![allow(unsafe_code)] // Exporting an unmangled entry symbol is `unsafe` by the language's rules.

/// The frozen header every vtable starts with (`struct_size`, `abi_major`, `abi_minor`).
#[repr(C)]
pub struct Header {
    struct_size: usize,
    abi_major: u32,
    abi_minor: u32,
}

static HEADER: Header = Header {
    struct_size: std::mem::size_of::<Header>(),
    abi_major: 99,
    abi_minor: 0,
};

/// The entry point, with a vtable of a major this host does not speak.
#[unsafe(no_mangle)]
pub extern "C" fn dossier_plugin_entry(_host: *const std::ffi::c_void) -> *const Header {
    &HEADER
}
