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

/// `target/<profile>` (or `target/<triple>/<profile>`) of this test binary.
pub fn profile_dir() -> PathBuf {
    let exe = env::current_exe().unwrap();
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<exe>")
        .to_owned()
}

/// The cargo target directory the C library is built in (`target/<profile>/c-api`).
pub fn c_api_target_dir() -> PathBuf {
    profile_dir().join("c-api")
}

/// Runs `cargo build --lib` with the profile (and target, if explicit) this test was
/// built with, and reads the artifact paths from cargo's JSON messages.
fn build_library() -> Library {
    let profile_dir = profile_dir();
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
    .arg(c_api_target_dir());
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

/// `pkg-config ARGS` (package names among them) on the .pc files in `pc_dir` alone, split
/// into arguments; `sysroot` for a tree staged under DESTDIR.
pub fn pkg_config(pc_dir: &Path, sysroot: Option<&Path>, args: &[&str]) -> Vec<String> {
    let mut cmd = Command::new("pkg-config");
    cmd.args(args)
        .env("PKG_CONFIG_PATH", pc_dir)
        .env_remove("PKG_CONFIG_LIBDIR")
        .env_remove("PKG_CONFIG_SYSROOT_DIR");
    if let Some(s) = sysroot {
        cmd.env("PKG_CONFIG_SYSROOT_DIR", s);
    }
    let out = cmd
        .output()
        .expect("run pkg-config (Debian package pkg-config)");
    check(&format!("pkg-config {args:?}"), &out);
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// The Python package's wheel, built once per test binary the way a user builds it
/// (`python3 -m pip wheel .` in the work tree, see setup.py), into
/// `target/<profile>/c-api/wheel/`. setup.py's cargo build uses the C library's target
/// directory, so it finds the library built and builds nothing.
pub fn python_wheel() -> &'static Path {
    static WHEEL: OnceLock<PathBuf> = OnceLock::new();
    WHEEL.get_or_init(|| {
        library(); // built first, with these tests' cargo and flags
        let dir = c_api_target_dir().join("wheel");
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let out = pip_build(&["wheel", "--no-deps", "--wheel-dir"], &dir);
        check("python3 -m pip wheel .", &out);
        let wheels: Vec<PathBuf> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "whl"))
            .collect();
        assert_eq!(
            wheels.len(),
            1,
            "one wheel in {}: {wheels:?}",
            dir.display()
        );
        wheels.into_iter().next().unwrap()
    })
}

/// `python3 -m pip <args> <dir> <work tree>`, building the package from the work tree with
/// cargo's target directory set to the C library's (so nothing is built twice), quietly.
pub fn pip_build(args: &[&str], dir: &Path) -> Output {
    let mut cmd = Command::new("python3");
    if profile_dir().parent().and_then(Path::file_name) == Some(TARGET.as_ref()) {
        cmd.env("CARGO_BUILD_TARGET", TARGET); // as `library()` passes --target
    }
    cmd.args(["-m", "pip"])
        .args(args)
        .arg(dir)
        .arg(root())
        .args(["--quiet", "--disable-pip-version-check", "--no-input"])
        .env("CARGO_TARGET_DIR", c_api_target_dir())
        .env("PIP_ROOT_USER_ACTION", "ignore")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("run python3 -m pip (Debian packages python3, python3-pip)")
}

/// Installs the wheel into `site` (a directory to put on PYTHONPATH), without fetching
/// anything and without cargo.
pub fn install_wheel(site: &Path) {
    let out = Command::new("python3")
        .args(["-m", "pip", "install", "--no-deps", "--no-index", "--quiet"])
        .args(["--disable-pip-version-check", "--no-input", "--target"])
        .arg(site)
        .arg(python_wheel())
        .env("PIP_ROOT_USER_ACTION", "ignore")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("run python3 -m pip");
    check("pip install <wheel>", &out);
}

/// Installs the built library into `prefix` with `scripts/install.sh --no-build --no-cli`,
/// as a package would: library, headers (hashdir.h, hashdir.hpp), the Fortran module's
/// source, hashdir.pc and the CMake package. Returns `prefix/lib`.
pub fn install_prefix(prefix: &Path) -> PathBuf {
    library(); // what --no-build installs
    let mut cmd = Command::new("bash");
    cmd.arg(root().join("scripts/install.sh"))
        .args(["--no-build", "--no-cli"])
        .arg(prefix)
        .env("CARGO_TARGET_DIR", c_api_target_dir())
        .env_remove("CARGO_BUILD_TARGET_DIR")
        .env_remove("PREFIX")
        .env_remove("DESTDIR");
    if profile_dir().parent().and_then(Path::file_name) == Some(TARGET.as_ref()) {
        cmd.env("CARGO_BUILD_TARGET", TARGET);
    } else {
        cmd.env_remove("CARGO_BUILD_TARGET");
    }
    let out = cmd.output().expect("run bash");
    check("scripts/install.sh --no-build --no-cli", &out);
    prefix.join("lib")
}
