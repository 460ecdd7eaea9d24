//! `include/hashdir.h` is generated from `src/ffi` by cbindgen and committed, so C users
//! need no Rust tooling. This test regenerates it and fails if the committed copy is
//! stale; `HASHDIR_BLESS=1` rewrites the committed copy instead.

use std::fs;
use std::path::{Path, PathBuf};

const REGENERATE: &str = "HASHDIR_BLESS=1 cargo test --release --test header";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn committed_path() -> PathBuf {
    root().join("include/hashdir.h")
}

/// Runs cbindgen (the library) with the committed config into a temp file.
fn generate() -> String {
    let config = cbindgen::Config::from_file(root().join("cbindgen.toml")).expect("cbindgen.toml");
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        .with_src(root().join("src/ffi/mod.rs"))
        .generate()
        .expect("cbindgen could not generate the header from src/ffi");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hashdir.h");
    bindings.write_to_file(&path);
    fs::read_to_string(&path).unwrap()
}

fn first_difference(a: &str, b: &str) -> String {
    let line = a.lines().zip(b.lines()).position(|(x, y)| x != y);
    let n = line.unwrap_or(a.lines().count().min(b.lines().count()));
    let at = |s: &str| s.lines().nth(n).unwrap_or("<end of file>").to_owned();
    format!(
        "line {}:\n  committed: {}\n  generated: {}",
        n + 1,
        at(a),
        at(b)
    )
}

#[test]
fn committed_header_is_what_cbindgen_generates() {
    let generated = generate();
    if std::env::var_os("HASHDIR_BLESS").is_some() {
        fs::write(committed_path(), &generated).unwrap();
        return;
    }
    let committed = fs::read_to_string(committed_path()).unwrap_or_default();
    assert!(
        committed == generated,
        "include/hashdir.h is stale: src/ffi or cbindgen.toml changed without regenerating it.\n\
         Regenerate with: {REGENERATE}\nFirst difference at {}",
        first_difference(&committed, &generated)
    );
}

/// The names C programs are written against; renaming one breaks them all.
#[test]
fn header_has_the_c_contract_names() {
    let header = generate();
    let expected = [
        "#ifndef HASHDIR_H",
        "extern \"C\" {",
        "#define HASHDIR_CREATE 1u",
        "#define HASHDIR_SYNC_COMMIT 2u",
        "typedef struct hashdir_writer hashdir_writer;",
        "typedef struct hashdir_reader hashdir_reader;",
        "typedef struct hashdir_key {",
        "} hashdir_key;",
        "typedef struct hashdir_value {",
        "} hashdir_value;",
        "typedef struct hashdir_options {",
        "} hashdir_options;",
        "typedef struct hashdir_stats {",
        "} hashdir_stats;",
        "typedef enum hashdir_status {",
        "} hashdir_status;",
        "HASHDIR_OK = 0,",
        "HASHDIR_ERR_PANIC = 8,",
        "void hashdir_options_init(struct hashdir_options *opts);",
        "const char *hashdir_version(void);",
        "const char *hashdir_last_error(void);",
        "enum hashdir_status hashdir_writer_close(struct hashdir_writer *w);",
        "enum hashdir_status hashdir_reader_close(struct hashdir_reader *r);",
    ];
    for item in expected {
        assert!(header.contains(item), "the generated header lacks `{item}`");
    }
}
