//! Link settings for the C shared library on ELF targets:
//! - soname `libhashdir.so.0`, so programs record the ABI major version, not the file;
//! - only `hashdir_*` exported, so the bundled HDF5 and Rust's runtime cannot clash
//!   with another copy loaded into the same program.
//!
//! For the second, rustc already links every cdylib with its own version script
//! (`global:` its `#[no_mangle]` exports, `local: *`). A second version script cannot
//! narrow that (lld merges them) and GNU ld rejects two anonymous ones outright
//! ("anonymous version tag cannot be combined..."), so we add `--exclude-libs,ALL`
//! instead: symbols from static archives (HDF5, dependencies' `#[no_mangle]` items) stay
//! local whatever a version script says. `tests/c_api.rs` checks the result against the
//! header with `nm -D`.

use std::env;

const SONAME: &str = "libhashdir.so.0";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    // tests/c_api.rs compiles C with the `cc` crate, which needs to know what only a
    // build script is told.
    for var in ["TARGET", "HOST"] {
        let value = env::var(var).expect("cargo sets TARGET and HOST for build scripts");
        println!("cargo:rustc-env=HASHDIR_BUILD_{var}={value}");
    }
    let elf = env::var("CARGO_CFG_TARGET_OBJECT_FORMAT").is_ok_and(|f| f == "elf")
        || env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "linux");
    if elf {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,{SONAME}");
        println!("cargo:rustc-cdylib-link-arg=-Wl,--exclude-libs,ALL");
    }
}
