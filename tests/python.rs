//! The Python package (`python/hashdir`, built by setup.py): its wheel is built the way a
//! user builds it (`python3 -m pip wheel .`), installed into a scratch directory without
//! cargo or network, and the pytest suite in `python/tests` runs against that install;
//! `python3 -m pip install .` from the work tree is checked too.
//!
//! The wheel's cargo build reuses the C library these tests build (`tests/common_c`), so
//! no second HDF5 build happens. Python, NumPy, h5py and pytest are required, not optional
//! (`bash scripts/dev.sh setup` installs them).

mod common_c;

use common_c::{check, install_wheel, pip_build, python_wheel, root};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// setup.py's scratch directory (under the target directory) is shared: one build at a time.
static BUILDS: Mutex<()> = Mutex::new(());

/// `python3 <args>` with the package installed in `site` as the only hashdir it can find:
/// no HASHDIR_LIB, no LD_LIBRARY_PATH, no cargo on PATH.
fn python(site: &Path, cwd: &Path, args: &[&str]) -> Output {
    let path = std::env::var_os("PATH").unwrap_or_default();
    // python3 as found on the full PATH (it may share a directory with cargo).
    let python3 = std::env::split_paths(&path)
        .map(|d| d.join("python3"))
        .find(|p| p.is_file())
        .expect("python3 is not on PATH (Debian package python3)");
    let without_cargo: Vec<PathBuf> = std::env::split_paths(&path)
        .filter(|d| !d.join("cargo").exists() && !d.join("rustc").exists())
        .collect();
    Command::new(python3)
        .args(args)
        .current_dir(cwd)
        .env("PYTHONPATH", site)
        .env("PATH", std::env::join_paths(without_cargo).unwrap())
        .env("PYTHONDONTWRITEBYTECODE", "1") // no __pycache__ in the work tree
        .env("TMPDIR", cwd)
        .env_remove("HASHDIR_LIB")
        .env_remove("LD_LIBRARY_PATH")
        .env_remove("PYTHONOPTIMIZE")
        .env_remove("CARGO")
        .output()
        .expect("run python3 (Debian package python3)")
}

/// A scratch directory with the wheel installed in `site/`.
fn installed() -> (tempfile::TempDir, PathBuf) {
    let scratch = tempfile::tempdir().unwrap();
    let site = scratch.path().join("site");
    {
        let _one = BUILDS.lock().unwrap_or_else(|e| e.into_inner());
        install_wheel(&site);
    }
    (scratch, site)
}

#[test]
fn wheel_is_for_any_python_3_and_carries_the_library() {
    let wheel = {
        let _one = BUILDS.lock().unwrap_or_else(|e| e.into_inner());
        python_wheel().to_owned()
    };
    let name = wheel.file_name().unwrap().to_string_lossy().into_owned();
    let arch = std::env::consts::ARCH;
    assert_eq!(name, format!("hashdir-{VERSION}-py3-none-linux_{arch}.whl"));
    let scratch = tempfile::tempdir().unwrap();
    let listing = python(
        scratch.path(),
        scratch.path(),
        &["-m", "zipfile", "-l", wheel.to_str().unwrap()],
    );
    check("python3 -m zipfile -l", &listing);
    let listing = String::from_utf8_lossy(&listing.stdout);
    for file in [
        "hashdir/__init__.py",
        "hashdir/_capi.py",
        "hashdir/py.typed",
        "hashdir/libhashdir.so",
        "hashdir/include/hashdir.h",
    ] {
        assert!(
            listing.contains(file),
            "{file} missing from the wheel:\n{listing}"
        );
    }

    // Installed without cargo on PATH, it loads its own library and works.
    let (scratch, site) = installed();
    let so = site.join("hashdir/libhashdir.so");
    assert!(so.is_file());
    let script = format!(
        "import hashdir, os\n\
         assert hashdir.__version__ == hashdir.version() == {VERSION:?}, hashdir.version()\n\
         assert os.path.samefile(hashdir.library_path(), {so:?}), hashdir.library_path()\n\
         with hashdir.Writer('w.h5') as w:\n    w.insert(hashdir.key(1), hashdir.key(2))\n\
         with hashdir.Reader('w.h5') as r:\n    assert r.get(hashdir.key(1)) == [hashdir.key(2)]\n\
         print('ok')\n"
    );
    let out = python(&site, scratch.path(), &["-c", &script]);
    check("the installed wheel", &out);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
}

#[test]
fn pip_install_from_the_work_tree() {
    let scratch = tempfile::tempdir().unwrap();
    let site = scratch.path().join("site");
    {
        let _one = BUILDS.lock().unwrap_or_else(|e| e.into_inner());
        let out = pip_build(&["install", "--no-deps", "--target"], &site);
        check("python3 -m pip install .", &out);
    }
    let out = python(
        &site,
        scratch.path(),
        &[
            "-c",
            "import hashdir; print(hashdir.version(), hashdir.library_path())",
        ],
    );
    check("import hashdir", &out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with(&format!("{VERSION} {}", site.display())),
        "{stdout}"
    );
    // The build leaves nothing in the work tree (setuptools' files go under target/).
    for stray in [
        "build",
        "python/hashdir.egg-info",
        "python/hashdir/libhashdir.so",
    ] {
        assert!(
            !root().join(stray).exists(),
            "the build left {stray} in the work tree"
        );
    }
}

#[test]
fn pytest_suite_passes_against_the_installed_wheel() {
    let (scratch, site) = installed();
    let modules = python(&site, scratch.path(), &["-c", "import numpy, h5py, pytest"]);
    assert!(
        modules.status.success(),
        "python3 lacks numpy, h5py or pytest, which the package's tests need: \
         `python3 -m pip install numpy h5py pytest` (`bash scripts/dev.sh setup` does it)\n{}",
        String::from_utf8_lossy(&modules.stderr)
    );
    let tests = root().join("python/tests");
    let out = python(
        &site,
        scratch.path(),
        &[
            "-m",
            "pytest",
            tests.to_str().unwrap(),
            "-v",
            "-p",
            "no:cacheprovider", // no .pytest_cache in the work tree
            "--durations=5",
        ],
    );
    let report = String::from_utf8_lossy(&out.stdout);
    println!("{report}");
    check("pytest python/tests", &out);
    // The suite ran from the installed package, and its h5py checks were among the tests.
    for test in [
        "test_h5py.py::test_example_file_opens_with_h5py PASSED",
        "test_h5py.py::test_h5py_reads_while_a_writer_is_open PASSED",
        "test_concurrency.py::test_calls_release_the_gil PASSED",
        "test_concurrency.py::test_a_reader_process_follows_a_writer_process PASSED",
        "test_api.py::test_the_package_carries_its_library_and_header PASSED",
        "test_shards.py::test_round_trip_through_a_sharded_store PASSED",
        "test_shards.py::test_shard_of_follows_the_rule PASSED",
    ] {
        assert!(report.contains(test), "{test} missing from the report");
    }
    let summary = report.lines().last().unwrap_or_default();
    assert!(
        summary.contains(" passed") && !summary.contains("failed") && !summary.contains("error"),
        "{summary}"
    );
    assert!(!fs::exists(tests.join("__pycache__")).unwrap_or(false));
}
