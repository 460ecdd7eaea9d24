//! The C surface as C programs see it: the programs in `c_tests/` are compiled against
//! `include/hashdir.h`, linked against `libhashdir.so` (or `libhashdir.a` through the
//! pkg-config file) and run, each in its own scratch directory. Their checks print
//! "ok N - ..." / "not ok N - ..." lines, shown here when one fails.
//!
//! The library under test is built as `tests/common_c` describes.

mod common_c;

use common_c::{check, install_shared, library, root};
use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = env!("HASHDIR_BUILD_TARGET");
const HOST: &str = env!("HASHDIR_BUILD_HOST");
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The C or C++ compiler cc would use for this target, warnings as errors.
fn compiler(cpp: bool, scratch: &Path) -> Command {
    let tool = cc::Build::new()
        .cpp(cpp)
        .target(TARGET)
        .host(HOST)
        .opt_level(1)
        .debug(false)
        .out_dir(scratch)
        .cargo_metadata(false)
        .cargo_warnings(false)
        .emit_rerun_if_env_changed(false)
        .warnings(true)
        .extra_warnings(true)
        .get_compiler();
    let mut cmd = tool.to_command();
    // Strict C11 hides POSIX (stat, pthreads) unless asked for; C++ compilers expose it.
    let standard: &[&str] = if cpp {
        &["-std=c++17"]
    } else {
        &["-std=c11", "-D_POSIX_C_SOURCE=200809L"]
    };
    cmd.args(standard)
        .args(["-Werror", "-pthread"])
        .arg(format!("-DEXPECTED_VERSION=\"{VERSION}\""))
        .arg("-I")
        .arg(root().join("include"))
        .arg("-I")
        .arg(root().join("c_tests"));
    cmd
}

/// Compiles `source` (a path under c_tests/, or an absolute one) with `link` args into the
/// scratch dir.
fn compile(source: &str, scratch: &Path, link: &[&OsStr]) -> PathBuf {
    let exe = scratch.join(Path::new(source).file_stem().unwrap());
    let out = compiler(source.ends_with(".cpp"), scratch)
        .arg(root().join("c_tests").join(source))
        .arg("-o")
        .arg(&exe)
        .args(link)
        .output()
        .expect("run the C compiler");
    check(&format!("compiling {source}"), &out);
    exe
}

/// Runs a compiled test in `scratch`, passing it the directory, and checks it passed
/// every one of its checks.
fn run(exe: &Path, scratch: &Path, lib_dir: Option<&Path>) {
    run_under(&[], exe, scratch, lib_dir)
}

/// [`run`] under a wrapper command (e.g. valgrind), which must exit 0 too.
fn run_under(wrapper: &[&str], exe: &Path, scratch: &Path, lib_dir: Option<&Path>) {
    let mut cmd = match wrapper.split_first() {
        Some((tool, args)) => {
            let mut c = Command::new(tool);
            c.args(args).arg(exe);
            c
        }
        None => Command::new(exe),
    };
    cmd.arg(scratch)
        .current_dir(scratch)
        .env_remove("LD_LIBRARY_PATH");
    if let Some(dir) = lib_dir {
        cmd.env("LD_LIBRARY_PATH", dir);
    }
    let out = cmd.output().expect("run the test program");
    check(&format!("running {}", exe.display()), &out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("ok 1 - ") && !stdout.contains("not ok"),
        "{stdout}"
    );
    println!("{stdout}");
}

/// Builds `source` against the shared library in a fresh scratch dir; returns the program,
/// the library dir and the scratch dir.
fn build_against_shared_library(source: &str) -> (PathBuf, PathBuf, tempfile::TempDir) {
    build_with_flags(source, &[])
}

/// [`build_against_shared_library`] with extra compiler and linker flags.
fn build_with_flags(source: &str, flags: &[&str]) -> (PathBuf, PathBuf, tempfile::TempDir) {
    let scratch = tempfile::tempdir().unwrap();
    let lib = install_shared(scratch.path());
    let mut link: Vec<&OsStr> = vec!["-L".as_ref(), lib.as_os_str(), "-lhashdir".as_ref()];
    link.extend(flags.iter().map(OsStr::new));
    let exe = compile(source, scratch.path(), &link);
    (exe, lib, scratch)
}

/// Builds `source` against the shared library and runs it in a fresh scratch dir.
fn run_against_shared_library(source: &str) {
    let (exe, lib, scratch) = build_against_shared_library(source);
    run(&exe, scratch.path(), Some(&lib));
}

/// Runs an example program in its scratch dir and returns its stdout.
fn run_example(source: &str) -> String {
    let (exe, lib, scratch) = build_against_shared_library(source);
    let out = Command::new(&exe)
        .arg(scratch.path().join("example.h5"))
        .current_dir(scratch.path())
        .env("LD_LIBRARY_PATH", &lib)
        .output()
        .expect("run the example");
    check(&format!("running {source}"), &out);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn c_quickstart_example_runs() {
    let src = root().join("examples/c/quickstart.c");
    let out = run_example(src.to_str().unwrap());
    assert!(
        out.contains("key 7 has 10 values, key 12345 has 0"),
        "{out}"
    );
}

#[test]
fn c_two_process_example_runs() {
    let src = root().join("examples/c/follow.c");
    let out = run_example(src.to_str().unwrap());
    assert!(out.contains("writer: committed 50 batches"), "{out}");
    assert!(
        out.contains("reader: followed the writer to batch 50"),
        "{out}"
    );
}

#[test]
fn readme_quickstart_compiles_and_runs() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let start = readme.find("```c\n").expect("README has a C block") + 5;
    let len = readme[start..].find("```").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("readme_quickstart.c");
    std::fs::write(&src, &readme[start..start + len]).unwrap();
    let out = run_example(src.to_str().unwrap());
    assert!(out.contains("key 1 has 2 values"), "{out}");
}

#[test]
fn c_bad_input_is_rejected_before_the_engine() {
    run_against_shared_library("test_bad_input.c");
}

/// The C tests (abuse, open errors, the whole API with threads) under valgrind: no invalid
/// read or write, no use of uninitialised memory, no definite leak.
#[test]
fn c_tests_are_valgrind_clean() {
    let valgrind = [
        "valgrind",
        "-q",
        "--error-exitcode=99",
        "--leak-check=full",
        "--errors-for-leak-kinds=definite",
    ];
    for source in ["test_bad_input.c", "test_open_errors.c", "test_api.c"] {
        let (exe, lib, scratch) = build_against_shared_library(source);
        run_under(&valgrind, &exe, scratch.path(), Some(&lib));
    }
}

/// The same programs built with AddressSanitizer (leak checking on) and UBSan, any report
/// fatal: the library's own allocations go through malloc, which ASan intercepts, so a
/// use-after-free, overflow or leak across the C boundary shows up here.
#[test]
fn c_tests_are_asan_clean() {
    let sanitize = [
        "-fsanitize=address,undefined",
        "-fno-sanitize-recover=all",
        "-fno-omit-frame-pointer",
        "-g",
    ];
    for source in ["test_bad_input.c", "test_open_errors.c", "test_api.c"] {
        let (exe, lib, scratch) = build_with_flags(source, &sanitize);
        let image = fs::read(&exe).unwrap();
        assert!(
            image.windows(9).any(|w| w == b"libasan.s"),
            "{source} is not linked against libasan"
        );
        run(&exe, scratch.path(), Some(&lib));
    }
}

#[test]
fn c_open_errors_leave_files_alone() {
    run_against_shared_library("test_open_errors.c");
}

#[test]
fn c_api_round_trip() {
    run_against_shared_library("test_api.c");
}

#[test]
fn c_sharded_store() {
    run_against_shared_library("test_sharded.c");
}

#[test]
fn c_copy_while_a_writer_commits() {
    run_against_shared_library("test_copy.c");
}

#[test]
fn cpp_uses_the_header_with_c_linkage() {
    run_against_shared_library("test_cpp.cpp");
}

fn pkg_config(pc_dir: &Path, args: &[&str]) -> String {
    let out = Command::new("pkg-config")
        .args(args)
        .arg("hashdir")
        .env("PKG_CONFIG_PATH", pc_dir)
        .env_remove("PKG_CONFIG_LIBDIR")
        .output()
        .expect("run pkg-config (Debian package pkg-config)");
    check(&format!("pkg-config {args:?}"), &out);
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Installs header, static library and rendered hashdir.pc into a scratch prefix, then
/// builds a C test with nothing but `pkg-config --cflags --static --libs hashdir`: the
/// template's Libs.private must be all libhashdir.a needs.
#[test]
fn static_library_links_with_the_pkg_config_flags() {
    let prefix = tempfile::tempdir().unwrap();
    let p = prefix.path();
    for dir in ["include", "lib/pkgconfig"] {
        fs::create_dir_all(p.join(dir)).unwrap();
    }
    fs::copy(
        root().join("include/hashdir.h"),
        p.join("include/hashdir.h"),
    )
    .unwrap();
    fs::copy(&library().archive, p.join("lib/libhashdir.a")).unwrap();
    let template = fs::read_to_string(root().join("pkgconfig/hashdir.pc.in")).unwrap();
    let pc = template
        .replace("@PREFIX@", p.to_str().unwrap())
        .replace("@VERSION@", VERSION);
    fs::write(p.join("lib/pkgconfig/hashdir.pc"), pc).unwrap();

    let pc_dir = p.join("lib/pkgconfig");
    assert_eq!(pkg_config(&pc_dir, &["--modversion"]), VERSION);
    let flags = pkg_config(&pc_dir, &["--cflags", "--static", "--libs"]);
    assert!(flags.contains("-lhashdir"), "{flags}");
    let flags: Vec<&OsStr> = flags.split_whitespace().map(|f| f.as_ref()).collect();

    let scratch = tempfile::tempdir().unwrap();
    let exe = compile("test_bad_input.c", scratch.path(), &flags);
    run(&exe, scratch.path(), None);
}

fn tool_output(program: &str, args: &[&str], file: &Path) -> String {
    let out = Command::new(program).args(args).arg(file).output();
    let out = out.unwrap_or_else(|e| panic!("run {program} (Debian package binutils): {e}"));
    check(program, &out);
    String::from_utf8(out.stdout).unwrap()
}

/// Function names declared in the header (declaration lines, not comments).
fn header_functions() -> BTreeSet<String> {
    let header = fs::read_to_string(root().join("include/hashdir.h")).unwrap();
    let declarations = header
        .lines()
        .filter(|l| !l.trim_start().starts_with(['*', '/', '#']));
    let names = declarations.filter_map(|l| {
        let before_paren = &l[..l.find('(')?];
        let name = before_paren.rsplit([' ', '*']).next()?;
        name.starts_with("hashdir_").then(|| name.to_owned())
    });
    names.collect()
}

#[test]
fn shared_library_exports_exactly_the_header_functions() {
    let nm = tool_output(
        "nm",
        &["-D", "--defined-only", "--format=posix"],
        &library().shared,
    );
    // `--format=posix` lines are "name type value size"; absolute `A` symbols name
    // version nodes, not code.
    let exported: BTreeSet<String> = nm
        .lines()
        .filter_map(|l| {
            let mut fields = l.split_whitespace();
            let (name, kind) = (fields.next()?, fields.next()?);
            (kind != "A").then(|| name.to_owned())
        })
        .collect();
    let declared = header_functions();
    assert!(
        declared.len() >= 18,
        "parsed too few functions from the header: {declared:?}"
    );
    assert_eq!(
        exported, declared,
        "exported symbols (left) differ from the header's functions (right)"
    );
}

#[test]
fn shared_library_has_the_soname() {
    let dynamic = tool_output("objdump", &["-p"], &library().shared);
    let soname = dynamic
        .lines()
        .find(|l| l.trim_start().starts_with("SONAME"));
    assert_eq!(
        soname.map(|l| l.split_whitespace().nth(1)),
        Some(Some("libhashdir.so.0"))
    );
}
