//! Helpers shared by the tests that use the C library as C, C++, Fortran or Python
//! programs do (`tests/c_api.rs`, `tests/examples.rs`).
//!
//! `cargo test` builds the library only as an rlib, and building the cdylib into the
//! same target directory would make the two invalidate each other on every run, so the
//! library under test is built once per test binary with `cargo build --lib` (same
//! profile) into `target/<profile>/c-api/`. The first time that builds the bundled HDF5
//! again.
#![allow(dead_code)]

use std::env;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

const TARGET: &str = env!("HASHDIR_BUILD_TARGET");

pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The built library files.
pub struct Library {
    pub shared: PathBuf,
    pub archive: PathBuf,
}

pub fn library() -> &'static Library {
    static LIBRARY: OnceLock<Library> = OnceLock::new();
    LIBRARY.get_or_init(build_library)
}

/// Runs `cargo build --lib` with the profile (and target, if explicit) this test was
/// built with, and reads the artifact paths from cargo's JSON messages.
fn build_library() -> Library {
    let exe = env::current_exe().unwrap();
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<exe>");
    let profile = match profile_dir.file_name().unwrap().to_str().unwrap() {
        "debug" => "dev",
        other => other,
    };
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "--lib",
        "--message-format=json-render-diagnostics",
        "--profile",
        profile,
    ])
    .arg("--manifest-path")
    .arg(root().join("Cargo.toml"))
    .arg("--target-dir")
    .arg(profile_dir.join("c-api"));
    let explicit_target = profile_dir.parent().and_then(Path::file_name) == Some(TARGET.as_ref());
    if explicit_target {
        cmd.args(["--target", TARGET]);
    }
    let out = cmd.output().expect("run cargo");
    assert!(
        out.status.success(),
        "cargo build --lib failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let files = artifact_files(&String::from_utf8_lossy(&out.stdout));
    let find = |suffix: &str| {
        let found = files.iter().find(|f| f.to_string_lossy().ends_with(suffix));
        found
            .cloned()
            .unwrap_or_else(|| panic!("no {suffix} among cargo's artifacts {files:?}"))
    };
    Library {
        shared: find("libhashdir.so"),
        archive: find("libhashdir.a"),
    }
}

fn artifact_files(json_lines: &str) -> Vec<PathBuf> {
    let messages = json_lines
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok());
    let ours =
        messages.filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "hashdir");
    ours.flat_map(|m| {
        let names = m["filenames"].as_array().cloned().unwrap_or_default();
        names
            .into_iter()
            .filter_map(|f| f.as_str().map(PathBuf::from))
    })
    .collect()
}

/// A scratch directory holding the library the way it is installed: `lib/libhashdir.so`
/// -> `libhashdir.so.0` (the soname the loader looks for) -> the built file.
pub fn install_shared(scratch: &Path) -> PathBuf {
    let lib = scratch.join("lib");
    fs::create_dir_all(&lib).unwrap();
    symlink(&library().shared, lib.join("libhashdir.so.0")).unwrap();
    symlink("libhashdir.so.0", lib.join("libhashdir.so")).unwrap();
    lib
}

/// Panics with the command's status, stdout and stderr unless it succeeded.
pub fn check(what: &str, out: &Output) {
    let text = format!(
        "{what}: {}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
}
