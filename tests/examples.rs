//! The language examples under `examples/` (C++, Fortran, Python), each built and run
//! against the freshly built `libhashdir.so` the way a user would: the library, header and
//! `hashdir.pc` installed into a scratch prefix, C++ and Fortran compiled with the flags
//! `pkg-config` gives, and Python imports the package from its wheel (built as
//! `tests/python.rs` builds it). (The C example is run by `tests/c_api.rs`; the Python
//! package's own tests, with h5py, by `tests/python.rs`.)
//!
//! Every example runs the same scenario and prints the same lines (`EXPECTED`); a failed
//! check inside one makes it exit non-zero with the reason on stderr, shown here.
//!
//! The compilers and Python packages are required, not optional: a missing one fails the
//! test with the package to install (`bash scripts/dev.sh setup` installs them all).

mod common_c;

use common_c::{check, install_shared, install_wheel, root};
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const VERSION: &str = env!("CARGO_PKG_VERSION");

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

/// A scratch prefix with the library installed as a package would install it.
struct Prefix {
    dir: tempfile::TempDir,
    lib: PathBuf,
}

impl Prefix {
    /// `include/hashdir.h`, `lib/libhashdir.so{,.0}`, `lib/pkgconfig/hashdir.pc`.
    fn new() -> Prefix {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        let lib = install_shared(p);
        fs::create_dir_all(p.join("include")).unwrap();
        fs::create_dir_all(lib.join("pkgconfig")).unwrap();
        fs::copy(
            root().join("include/hashdir.h"),
            p.join("include/hashdir.h"),
        )
        .unwrap();
        let template = fs::read_to_string(root().join("pkgconfig/hashdir.pc.in")).unwrap();
        let pc = template
            .replace("@PREFIX@", p.to_str().unwrap())
            .replace("@VERSION@", VERSION);
        fs::write(lib.join("pkgconfig/hashdir.pc"), pc).unwrap();
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
            .arg("-I")
            .arg(root().join("examples/cpp"))
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
            .arg(root().join("examples/fortran/hashdir.f90"))
            .arg(root().join("examples/fortran/example.f90"))
            .arg("-o")
            .arg(&exe)
            .args(prefix.pkg_config(&["--libs"])),
        "gfortran",
    );
    check("compiling examples/fortran/*.f90", &out);
    assert_scenario("Fortran", &run_example(&exe, &prefix));
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
