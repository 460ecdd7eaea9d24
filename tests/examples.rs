//! The language examples under `examples/` (C++, Fortran, Python), each built and run
//! against the freshly built `libhashdir.so` the way a user would: `scripts/install.sh`
//! installs the library, the headers (`hashdir.h`, the C++ wrapper `hashdir.hpp`), the
//! Fortran module's source and `hashdir.pc` into a scratch prefix, C++ and Fortran are
//! compiled from those installed files with the flags `pkg-config` gives, and Python
//! imports the package from its wheel (built as `tests/python.rs` builds it). (The C
//! example is run by `tests/c_api.rs`; the Python package's own tests, with h5py, by
//! `tests/python.rs`; CMake builds of the installed package by `tests/install.rs`.)
//!
//! Every example runs the same scenario and prints the same lines (`EXPECTED`; the Fortran
//! one also runs gc, copy and verify, and a sharded store); a failed check inside one makes
//! it exit non-zero with the reason on stderr, shown here.
//!
//! The compilers and Python packages are required, not optional: a missing one fails the
//! test with the package to install (`bash scripts/dev.sh setup` installs them all).

mod common_c;

use common_c::{check, install_prefix, install_wheel, root};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// What every example prints, in this order.
const EXPECTED: &[&str] = &[
    "inserted 107 pairs (106 distinct) and committed",
    "lookup: 1 found, 2 found, 3 found, 99 absent",
    "get: counts 3 0 2 100 (105 values, first buffer held 4)",
    "second writer refused: HASHDIR_ERR_LOCKED",
    "before refresh: key 2 still found",
    "after refresh: 1 found, 2 absent, 3 absent; key 1 values {10, 12}",
    "stats: keys 2 values 102",
    "missing file: HASHDIR_ERR_NOT_FOUND",
    "all checks passed",
];

/// A scratch prefix with the library installed by `scripts/install.sh`.
struct Prefix {
    dir: tempfile::TempDir,
    lib: PathBuf,
}

impl Prefix {
    /// `include/hashdir.h` and `hashdir.hpp`, `lib/libhashdir.so*`, the Fortran module's
    /// source, `lib/pkgconfig/hashdir.pc`: what the C++ and Fortran examples build with.
    fn new() -> Prefix {
        let dir = tempfile::tempdir().unwrap();
        let lib = install_prefix(dir.path());
        Prefix { dir, lib }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `pkg-config <args> hashdir`, split into arguments.
    fn pkg_config(&self, args: &[&str]) -> Vec<String> {
        let out = run_tool(
            Command::new("pkg-config")
                .args(args)
                .arg("hashdir")
                .env("PKG_CONFIG_PATH", self.lib.join("pkgconfig"))
                .env_remove("PKG_CONFIG_LIBDIR"),
            "pkg-config",
        );
        check(&format!("pkg-config {args:?} hashdir"), &out);
        let flags = String::from_utf8(out.stdout).unwrap();
        flags.split_whitespace().map(str::to_owned).collect()
    }
}

/// Runs a tool; a missing one fails the test naming its Debian package.
fn run_tool(cmd: &mut Command, package: &str) -> Output {
    let program = cmd.get_program().to_string_lossy().into_owned();
    match cmd.output() {
        Ok(out) => out,
        Err(e) if e.kind() == ErrorKind::NotFound => panic!(
            "`{program}` is not installed: this test needs it (Debian package `{package}`; \
             `bash scripts/dev.sh setup` installs everything the tests use)"
        ),
        Err(e) => panic!("could not run `{program}`: {e}"),
    }
}

/// Runs a built example on `<prefix>/example.h5` with the library on LD_LIBRARY_PATH and
/// returns its stdout.
fn run_example(exe: &Path, prefix: &Prefix) -> String {
    let file = prefix.path().join("example.h5");
    let out = Command::new(exe)
        .arg(&file)
        .current_dir(prefix.path())
        .env("LD_LIBRARY_PATH", &prefix.lib)
        .output()
        .expect("run the example");
    check(&format!("running {}", exe.display()), &out);
    assert!(file.exists(), "the example left no {}", file.display());
    String::from_utf8(out.stdout).unwrap()
}

/// Checks that `out` holds the `EXPECTED` lines, in order.
fn assert_scenario(language: &str, out: &str) {
    let lines: Vec<&str> = out.lines().map(str::trim_end).collect();
    let mut at = 0;
    for want in EXPECTED {
        match lines[at..].iter().position(|l| l == want) {
            Some(i) => at += i + 1,
            None => panic!("the {language} example did not print {want:?} (in order):\n{out}"),
        }
    }
    println!("{language} example:\n{out}");
}

#[test]
fn cpp_example_compiles_with_pkg_config_and_runs() {
    let prefix = Prefix::new();
    let exe = prefix.path().join("example_cpp");
    let out = run_tool(
        Command::new("g++")
            .args([
                "-std=c++20",
                "-Wall",
                "-Wextra",
                "-Wpedantic",
                "-Werror",
                "-O1",
            ])
            .arg(root().join("examples/cpp/example.cpp"))
            .arg("-o")
            .arg(&exe)
            .args(prefix.pkg_config(&["--cflags", "--libs"])),
        "g++",
    );
    check("compiling examples/cpp/example.cpp", &out);
    assert_scenario("C++", &run_example(&exe, &prefix));
}

#[test]
fn fortran_example_compiles_with_pkg_config_and_runs() {
    let prefix = Prefix::new();
    let exe = prefix.path().join("example_fortran");
    let out = run_tool(
        Command::new("gfortran")
            .args([
                "-std=f2008",
                "-Wall",
                "-Wextra",
                "-Werror",
                "-fcheck=all",
                "-O1",
            ])
            // The module file (hashdir.mod) goes to the scratch dir, not the work tree.
            .arg("-J")
            .arg(prefix.path())
            .args(prefix.pkg_config(&["--variable=fortran_source"]))
            .arg(root().join("examples/fortran/example.f90"))
            .arg("-o")
            .arg(&exe)
            .args(prefix.pkg_config(&["--libs"])),
        "gfortran",
    );
    check(
        "compiling the installed hashdir.f90 and examples/fortran/example.f90",
        &out,
    );
    let out = run_example(&exe, &prefix);
    assert_scenario("Fortran", &out);
    // The Fortran example also runs the maintenance calls (recovery, gc, copy, verify) and a
    // sharded store (hd_options(shards=), hd_shard_of, hd_writer%open_shard), each shard
    // file checked against hd_shard_of.
    for line in [
        "gc, copy and verify: the copy of the reader's view verifies clean",
        "sharded store: 3 shards, 100 keys, each in the shard hd_shard_of names",
    ] {
        assert!(
            out.lines().any(|l| l.trim_end() == line),
            "{line:?} missing:\n{out}"
        );
    }
}

#[test]
fn python_example_runs_with_the_installed_package() {
    let prefix = Prefix::new();
    // The package as a user installs it: the wheel (`pip wheel .`), carrying its library.
    let site = prefix.path().join("site");
    install_wheel(&site);
    let file = prefix.path().join("example.h5");
    let out = run_tool(
        Command::new("python3")
            .arg(root().join("examples/python/example.py"))
            .arg(&file)
            .current_dir(prefix.path())
            .env("PYTHONPATH", &site)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env_remove("HASHDIR_LIB")
            .env_remove("PYTHONOPTIMIZE") // the example checks with assert
            .env_remove("LD_LIBRARY_PATH"),
        "python3",
    );
    check("python3 examples/python/example.py", &out);
    assert!(file.exists());
    assert_scenario("Python", &String::from_utf8(out.stdout).unwrap());
}
