//! `scripts/install.sh` as a user or a packager runs it: into a scratch PREFIX, and staged
//! under DESTDIR; then examples/c/quickstart.c is built with nothing but the flags of the
//! installed `hashdir.pc` (shared, and `--static`) and run; and a CMake project builds the
//! C, C++ and Fortran examples against the installed CMake package and runs them.
//!
//! The script builds with cargo into the directory `tests/common_c` builds the C library in
//! (`target/<profile>/c-api/`), so after the C API tests it finds everything built.

use std::env;
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const VERSION: &str = env!("CARGO_PKG_VERSION");
const TARGET: &str = env!("HASHDIR_BUILD_TARGET");

mod common_c;

use common_c::{check, pkg_config, root};

/// Runs scripts/install.sh with `args` and `destdir`, building into the C API tests' target
/// directory (the profile dir of this test binary, then `c-api`).
fn install(args: &[&str], destdir: Option<&Path>) -> String {
    install_env(args, destdir, &[])
}

/// `install` with extra environment variables.
fn install_env(args: &[&str], destdir: Option<&Path>, env: &[(&str, &OsStr)]) -> String {
    let out = install_output(args, destdir, env);
    check(&format!("install.sh {args:?}"), &out);
    String::from_utf8(out.stdout).unwrap()
}

/// Runs scripts/install.sh as `install_env` does and returns what it did, failed or not.
fn install_output(args: &[&str], destdir: Option<&Path>, env: &[(&str, &OsStr)]) -> Output {
    let exe = env::current_exe().unwrap();
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<exe>");
    assert_eq!(
        profile_dir.file_name().unwrap(),
        "release",
        "install.sh builds the release profile; run this test with `cargo test --release`"
    );
    let mut cmd = Command::new("bash");
    cmd.arg(root().join("scripts/install.sh"))
        .args(args)
        .env("CARGO_TARGET_DIR", profile_dir.join("c-api"))
        .env_remove("PREFIX")
        .env_remove("DESTDIR");
    if profile_dir.parent().and_then(Path::file_name) == Some(TARGET.as_ref()) {
        cmd.env("CARGO_BUILD_TARGET", TARGET);
    }
    if let Some(d) = destdir {
        cmd.env("DESTDIR", d);
    }
    cmd.envs(env.iter().copied());
    cmd.output().expect("run bash")
}

/// Compiles examples/c/quickstart.c with `flags` and nothing else.
fn build_quickstart(flags: &[String], exe: &Path) {
    let cc = env::var_os("CC").unwrap_or_else(|| "cc".into());
    let out = Command::new(&cc)
        .arg(root().join("examples/c/quickstart.c"))
        .arg("-o")
        .arg(exe)
        .args(flags)
        .output()
        .expect("run the C compiler (Debian package build-essential)");
    check(&format!("cc quickstart.c {}", flags.join(" ")), &out);
}

fn run_quickstart(exe: &Path, lib_dir: Option<&Path>, scratch: &Path) {
    let mut cmd = Command::new(exe);
    cmd.arg(scratch.join("quickstart.h5"))
        .current_dir(scratch)
        .env_remove("LD_LIBRARY_PATH");
    if let Some(dir) = lib_dir {
        cmd.env("LD_LIBRARY_PATH", dir);
    }
    let out = cmd.output().expect("run quickstart");
    check(&format!("running {}", exe.display()), &out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("key 7 has 10 values, key 12345 has 0"),
        "{stdout}"
    );
}

/// The shared libraries a program needs (`NEEDED` entries of its dynamic section).
fn needed(exe: &Path) -> Vec<String> {
    let out = Command::new("objdump")
        .arg("-p")
        .arg(exe)
        .output()
        .expect("run objdump (Debian package binutils)");
    check("objdump -p", &out);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("NEEDED"))
        .map(|n| n.trim().to_owned())
        .collect()
}

fn link_target(path: &Path) -> PathBuf {
    fs::read_link(path).unwrap_or_else(|e| panic!("{} is not a symlink: {e}", path.display()))
}

/// Each (installed file under `top`, source file of the project) holds the same bytes.
fn same_as_sources(top: &Path, files: &[(&str, &str)]) {
    for (installed, source) in files {
        assert_eq!(
            fs::read(top.join(installed)).unwrap(),
            fs::read(root().join(source)).unwrap(),
            "{installed}"
        );
    }
}

/// Checks the tree under `top` (PREFIX, or DESTDIR/PREFIX) and that its .pc says `prefix`.
fn check_tree(top: &Path, prefix: &Path, cli: bool) {
    let lib = top.join("lib");
    let real = format!("libhashdir.so.{VERSION}");
    assert!(fs::symlink_metadata(lib.join(&real)).unwrap().is_file());
    assert_eq!(link_target(&lib.join("libhashdir.so.0")), Path::new(&real));
    assert_eq!(
        link_target(&lib.join("libhashdir.so")),
        Path::new("libhashdir.so.0")
    );
    assert!(lib.join("libhashdir.a").is_file());
    same_as_sources(
        top,
        &[
            ("include/hashdir.h", "include/hashdir.h"),
            ("include/hashdir.hpp", "include/hashdir.hpp"),
            ("share/hashdir/fortran/hashdir.f90", "fortran/hashdir.f90"),
        ],
    );
    let pc_libs_private = fs::read_to_string(root().join("pkgconfig/hashdir.pc.in"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Libs.private:").map(str::to_owned))
        .unwrap();
    let cmake_libs = pc_libs_private
        .split_whitespace()
        .map(|l| l.strip_prefix("-l").unwrap())
        .collect::<Vec<_>>()
        .join(";");
    for file in ["hashdirConfig.cmake", "hashdirConfigVersion.cmake"] {
        let text = fs::read_to_string(lib.join("cmake/hashdir").join(file)).unwrap();
        assert!(
            !text.contains('@'),
            "unrendered placeholder in {file}:\n{text}"
        );
        assert!(
            text.contains(&format!("\"{VERSION}\"")),
            "{file} lacks the version"
        );
    }
    let config = fs::read_to_string(lib.join("cmake/hashdir/hashdirConfig.cmake")).unwrap();
    assert!(config.contains(&format!("/lib/{real}\"")), "{config}");
    assert!(
        config.contains("IMPORTED_SONAME \"libhashdir.so.0\""),
        "{config}"
    );
    assert!(
        config.contains(&format!("INTERFACE_LINK_LIBRARIES \"{cmake_libs}\"")),
        "the static target's libraries are not hashdir.pc's Libs.private ({cmake_libs})"
    );
    let pc = fs::read_to_string(lib.join("pkgconfig/hashdir.pc")).unwrap();
    assert!(
        pc.lines()
            .any(|l| l == format!("prefix={}", prefix.display())),
        "{pc}"
    );
    assert!(pc.contains(&format!("Version: {VERSION}")), "{pc}");
    assert!(!pc.contains('@'), "unrendered placeholder in\n{pc}");
    assert_eq!(top.join("bin/hashdir").exists(), cli);
    check_mpi_tree(top, prefix);
}

/// libhashdir_mpi, which install.sh builds with the mpicc on PATH (Open MPI is installed
/// wherever the tests run: `scripts/dev.sh setup`).
fn check_mpi_tree(top: &Path, prefix: &Path) {
    let lib = top.join("lib");
    let real = format!("libhashdir_mpi.so.{VERSION}");
    assert!(
        lib.join(&real).is_file(),
        "no {real}: is mpicc on PATH? (Debian packages openmpi-bin libopenmpi-dev)"
    );
    assert_eq!(
        link_target(&lib.join("libhashdir_mpi.so.0")),
        Path::new(&real)
    );
    assert_eq!(
        link_target(&lib.join("libhashdir_mpi.so")),
        Path::new("libhashdir_mpi.so.0")
    );
    let deps = needed(&lib.join(&real));
    assert!(deps.iter().any(|n| n == "libhashdir.so.0"), "{deps:?}");
    same_as_sources(
        top,
        &[
            ("include/hashdir_mpi.h", "include/hashdir_mpi.h"),
            (
                "share/hashdir/fortran/hashdir_mpi.f90",
                "fortran/hashdir_mpi.f90",
            ),
        ],
    );
    let pc = fs::read_to_string(lib.join("pkgconfig/hashdir_mpi.pc")).unwrap();
    assert!(!pc.contains('@'), "unrendered placeholder in\n{pc}");
    assert!(
        pc.lines()
            .any(|l| l == format!("prefix={}", prefix.display())),
        "{pc}"
    );
    assert!(
        pc.contains(&format!("Requires: hashdir = {VERSION}")),
        "{pc}"
    );
    assert!(pc.lines().any(|l| l.starts_with("mpicc=/")), "{pc}");
}

/// Without an MPI C compiler the install says so and leaves libhashdir_mpi out.
#[test]
fn without_mpicc_the_mpi_library_is_left_out_saying_so() {
    let scratch = tempfile::tempdir().unwrap();
    let prefix = scratch.path().join("usr");
    let missing = scratch.path().join("no-such-mpicc");
    let out = install_output(
        &["--no-cli", prefix.to_str().unwrap()],
        None,
        &[("MPICC", missing.as_os_str())],
    );
    check("install.sh with MPICC missing", &out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "no MPI C compiler ({}; set MPICC): libhashdir_mpi is not built",
            missing.display()
        )),
        "{stderr}"
    );
    assert!(prefix.join("lib/libhashdir.so.0").exists());
    for gone in [
        "lib/libhashdir_mpi.so.0",
        "include/hashdir_mpi.h",
        "lib/pkgconfig/hashdir_mpi.pc",
        "share/hashdir/fortran/hashdir_mpi.f90",
    ] {
        assert!(!prefix.join(gone).exists(), "{gone}");
    }
}

#[test]
fn install_into_a_prefix_then_build_with_pkg_config() {
    let scratch = tempfile::tempdir().unwrap();
    let prefix = scratch.path().join("usr");
    let listing = install(&[prefix.to_str().unwrap()], None);
    assert!(
        listing.contains(&format!("installed hashdir {VERSION}")),
        "{listing}"
    );
    check_tree(&prefix, &prefix, true);

    let tool = Command::new(prefix.join("bin/hashdir"))
        .arg("--version")
        .output()
        .unwrap();
    check("hashdir --version", &tool);
    assert!(String::from_utf8_lossy(&tool.stdout).contains(VERSION));

    let pc_dir = prefix.join("lib/pkgconfig");
    assert_eq!(
        pkg_config(&pc_dir, None, &["--modversion", "hashdir"]),
        [VERSION.to_owned()]
    );
    let flags = pkg_config(&pc_dir, None, &["--cflags", "--libs", "hashdir"]);
    let exe = scratch.path().join("quickstart");
    build_quickstart(&flags, &exe);
    assert!(
        needed(&exe).iter().any(|n| n == "libhashdir.so.0"),
        "{:?}",
        needed(&exe)
    );
    run_quickstart(&exe, Some(&prefix.join("lib")), scratch.path());

    // Installing again over the same tree works (links replaced, files overwritten).
    install(&[prefix.to_str().unwrap()], None);
    check_tree(&prefix, &prefix, true);

    // --no-build installs that build without running cargo (CARGO_TARGET_DIR says where).
    let (stub_dir, path) = no_cargo(scratch.path());
    let prefix = scratch.path().join("no-build");
    install_env(
        &["--no-build", prefix.to_str().unwrap()],
        None,
        &[
            ("CARGO", stub_dir.join("cargo").as_os_str()),
            ("PATH", path.as_os_str()),
        ],
    );
    check_tree(&prefix, &prefix, true);
}

/// A directory holding a `cargo` that fails saying it was run, and a PATH with it first:
/// for runs of install.sh that must not use cargo.
fn no_cargo(scratch: &Path) -> (PathBuf, std::ffi::OsString) {
    use std::os::unix::fs::PermissionsExt;
    let dir = scratch.join("no-cargo");
    fs::create_dir_all(&dir).unwrap();
    let stub = dir.join("cargo");
    fs::write(
        &stub,
        "#!/bin/sh\necho \"cargo was run: $*\" >&2\nexit 97\n",
    )
    .unwrap();
    fs::set_permissions(&stub, fs::Permissions::from_mode(0o755)).unwrap();
    let mut dirs = vec![dir.clone()];
    dirs.extend(env::split_paths(&env::var_os("PATH").unwrap_or_default()));
    (dir, env::join_paths(dirs).unwrap())
}

/// --no-build with no build in the target directory fails saying what is missing and
/// where it looked, without running cargo.
#[test]
fn no_build_without_a_build_says_what_is_missing() {
    let scratch = tempfile::tempdir().unwrap();
    let (stub_dir, path) = no_cargo(scratch.path());
    let empty = scratch.path().join("empty-target");
    fs::create_dir_all(&empty).unwrap();
    let out = Command::new("bash")
        .arg(root().join("scripts/install.sh"))
        .arg("--no-build")
        .arg(scratch.path().join("usr"))
        .env("CARGO", stub_dir.join("cargo"))
        .env("PATH", path)
        .env("CARGO_TARGET_DIR", &empty)
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("PREFIX")
        .env_remove("DESTDIR")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("cargo was run"), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}/release/libhashdir.so is missing",
            empty.display()
        )),
        "{stderr}"
    );
    assert!(!scratch.path().join("usr").exists());
}

/// A staged install: files under DESTDIR, contents naming PREFIX; pkg-config reads the
/// staged .pc with PKG_CONFIG_SYSROOT_DIR, as cross and package builds do. The static
/// link uses a copy of the stage without the shared library, because a linker given
/// `-lhashdir` takes `libhashdir.so` whenever it sits beside `libhashdir.a`.
#[test]
fn staged_install_with_destdir_links_statically() {
    let scratch = tempfile::tempdir().unwrap();
    let stage = scratch.path().join("stage");
    let prefix = Path::new("/opt/hashdir-test");
    let listing = install(&["--no-cli", prefix.to_str().unwrap()], Some(&stage));
    assert!(
        listing.contains(&format!("{}", stage.display())),
        "{listing}"
    );
    assert!(!prefix.exists(), "DESTDIR install wrote outside DESTDIR");
    let top = stage.join(prefix.strip_prefix("/").unwrap());
    check_tree(&top, prefix, false);

    for so in fs::read_dir(top.join("lib")).unwrap() {
        let path = so.unwrap().path();
        if path.to_string_lossy().contains(".so") {
            fs::remove_file(path).unwrap();
        }
    }
    let pc_dir = top.join("lib/pkgconfig");
    let flags = pkg_config(
        &pc_dir,
        Some(&stage),
        &["--cflags", "--libs", "--static", "hashdir"],
    );
    assert!(
        flags.contains(&format!("-L{}", top.join("lib").display())),
        "{flags:?}"
    );
    let exe = scratch.path().join("quickstart-static");
    build_quickstart(&flags, &exe);
    assert!(
        !needed(&exe).iter().any(|n| n.starts_with("libhashdir")),
        "{:?}",
        needed(&exe)
    );
    run_quickstart(&exe, None, scratch.path());
}

#[test]
fn bad_arguments_are_refused() {
    let script = root().join("scripts/install.sh");
    for args in [&["relative/prefix"][..], &["--frobnicate"], &["/a", "/b"]] {
        let out = Command::new("bash")
            .arg(&script)
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("install.sh"));
    }
}

/// The CMake package: a project with C, C++ and Fortran programs (the examples) finds the
/// installed prefix with `find_package(hashdir CONFIG)`, builds against `hashdir::hashdir`,
/// `hashdir::hashdir_static` and `hashdir::fortran` with the cmake on PATH (CMake >= 3.26
/// from PyPI, as `scripts/dev.sh setup` installs it), and the programs run without
/// LD_LIBRARY_PATH (CMake puts the imported library's directory in their RUNPATH). The MPI
/// examples build against `hashdir::mpi` and `hashdir::mpi_fortran` and run under mpirun.
#[test]
fn cmake_package_builds_c_cpp_and_fortran_programs() {
    let scratch = tempfile::tempdir().unwrap();
    let prefix = scratch.path().join("prefix");
    install(&["--no-cli", prefix.to_str().unwrap()], None);

    let project = scratch.path().join("consumer");
    fs::create_dir_all(&project).unwrap();
    let examples = root().join("examples");
    fs::write(
        project.join("CMakeLists.txt"),
        format!(
            r#"cmake_minimum_required(VERSION 3.16)
project(consumer LANGUAGES C CXX Fortran)
find_package(MPI REQUIRED COMPONENTS C Fortran)

# The version file: a newer major version, or a newer minor one, is not this package.
foreach(wanted 1 0.99)
  find_package(hashdir ${{wanted}} CONFIG QUIET)
  if(hashdir_FOUND)
    message(FATAL_ERROR "find_package(hashdir ${{wanted}}) accepted ${{hashdir_VERSION}}")
  endif()
endforeach()
find_package(hashdir {major_minor} CONFIG REQUIRED)
message(STATUS "found hashdir ${{hashdir_VERSION}} in ${{hashdir_DIR}}")

add_executable(quickstart "{c}")
target_link_libraries(quickstart PRIVATE hashdir::hashdir)

add_executable(quickstart_static "{c}")
target_link_libraries(quickstart_static PRIVATE hashdir::hashdir_static)

add_executable(example_cpp "{cpp}")
target_compile_features(example_cpp PRIVATE cxx_std_20)
target_link_libraries(example_cpp PRIVATE hashdir::hashdir)

add_executable(example_fortran "{f90}")
target_link_libraries(example_fortran PRIVATE hashdir::fortran)

add_executable(load_mpi "{mpi_c}")
target_link_libraries(load_mpi PRIVATE hashdir::mpi)

add_executable(load_mpi_fortran "{mpi_f90}")
target_link_libraries(load_mpi_fortran PRIVATE hashdir::mpi_fortran MPI::MPI_Fortran)
"#,
            major_minor = VERSION.rsplit_once('.').unwrap().0,
            c = examples.join("c/quickstart.c").display(),
            cpp = examples.join("cpp/example.cpp").display(),
            f90 = examples.join("fortran/example.f90").display(),
            mpi_c = examples.join("mpi/load.c").display(),
            mpi_f90 = examples.join("mpi/load.f90").display(),
        ),
    )
    .unwrap();

    let build = scratch.path().join("build");
    let cmake = |args: &[&std::ffi::OsStr]| {
        let out = Command::new("cmake")
            .args(args)
            .env_remove("CMAKE_PREFIX_PATH")
            .env_remove("hashdir_DIR")
            .output()
            .expect("run cmake (>= 3.26: python3 -m pip install cmake; scripts/dev.sh setup)");
        check(&format!("cmake {args:?}"), &out);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let configure = cmake(&[
        "-S".as_ref(),
        project.as_os_str(),
        "-B".as_ref(),
        build.as_os_str(),
        format!("-DCMAKE_PREFIX_PATH={}", prefix.display()).as_ref(),
        "-DCMAKE_BUILD_TYPE=Release".as_ref(),
    ]);
    assert!(
        configure.contains(&format!(
            "found hashdir {VERSION} in {}",
            prefix.join("lib/cmake/hashdir").display()
        )),
        "{configure}"
    );
    cmake(&["--build".as_ref(), build.as_os_str(), "-j2".as_ref()]);

    let run = |name: &str| {
        let exe = build.join(name);
        let out = Command::new(&exe)
            .arg(scratch.path().join(format!("{name}.h5")))
            .current_dir(scratch.path())
            .env_remove("LD_LIBRARY_PATH")
            .output()
            .unwrap_or_else(|e| panic!("run {name}: {e}"));
        check(&format!("running {name}"), &out);
        (exe, String::from_utf8_lossy(&out.stdout).into_owned())
    };
    for name in ["quickstart", "quickstart_static"] {
        let (exe, out) = run(name);
        assert!(
            out.contains("key 7 has 10 values, key 12345 has 0"),
            "{name}: {out}"
        );
        let linked = needed(&exe).iter().any(|n| n == "libhashdir.so.0");
        assert_eq!(linked, name == "quickstart", "{name}: {:?}", needed(&exe));
    }
    for name in ["example_cpp", "example_fortran"] {
        let (exe, out) = run(name);
        assert!(out.contains("all checks passed"), "{name}: {out}");
        assert!(needed(&exe).iter().any(|n| n == "libhashdir.so.0"));
    }
    // The Fortran module was compiled in the consumer's tree, by its compiler.
    assert!(build.join("hashdir_fortran_modules/hashdir.mod").is_file());

    for (name, args) in [
        ("load_mpi", &["--pairs", "20000", "--batch", "5000"][..]),
        ("load_mpi_fortran", &["20000", "1", "5000"][..]),
    ] {
        let exe = build.join(name);
        let store = scratch.path().join(format!("{name}.store"));
        let out = Command::new("mpirun")
            .args(["--oversubscribe", "-np", "2"])
            .arg(&exe)
            .arg(&store)
            .args(args)
            .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
            .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
            .env("OMPI_MCA_btl_vader_single_copy_mechanism", "none")
            .env_remove("LD_LIBRARY_PATH")
            .output()
            .expect("run mpirun (Debian package openmpi-bin)");
        check(&format!("mpirun -np 2 {name}"), &out);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains("\"keys_checked\": 20000"),
            "{name}: {stdout}"
        );
        assert!(needed(&exe).iter().any(|n| n == "libhashdir_mpi.so.0"));
    }
}
