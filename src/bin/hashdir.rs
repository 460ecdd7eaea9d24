//! `hashdir`: the command-line tool for hashdir files (built with the `cli` feature).
//!
//! Exit status: 0 on success, 1 when a command fails (or `verify` finds problems), 2 for a
//! usage error. Every error is one line on stderr, `hashdir: <message>`.

#[path = "hashdir/bench.rs"]
mod bench;
#[path = "hashdir/hex.rs"]
mod hex;
#[path = "hashdir/load.rs"]
mod load;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use hashdir::{CopyProgress, Error, Key, Options, StoreReader, StoreWriter, Value};
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "hashdir",
    version,
    about = "Create, load, query and check hashdir files (128-bit keys to sets of 128-bit values in one HDF5 file)",
    after_help = "Keys and values are written as 32 hex digits (byte 0 first).\n\
                  Exit status: 0 success, 1 failure (or problems found by verify), 2 usage error."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a new, empty hashdir file, or with --shards a sharded store (fails if PATH exists)
    Create {
        /// The file (or, with --shards, the directory) to create
        path: PathBuf,
        /// Bytes of its data area, fixed for the file's life (suffixes KiB: K, MiB: M, GiB: G,
        /// TiB: T); the file is that long but takes disk only as data is written. A sharded
        /// store's shards have this each
        #[arg(long, value_name = "BYTES", default_value = "4T", value_parser = bytes)]
        capacity: u64,
        /// Make PATH a directory of N files, each key in the one `hashdir_shard_of` gives;
        /// every command takes the directory as it takes a file
        #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=4096))]
        shards: u32,
    },
    /// Insert pairs from a file or stdin, committed in batches
    #[command(
        after_help = "Formats: hex is one `KEYHEX VALUEHEX` pair a line (blank lines and \
        lines starting with '#' are skipped); bin is 32-byte records, key (16 bytes) then \
        value (16 bytes). A progress bar is drawn on stderr when it is a terminal; the last line \
        printed says how many pairs were loaded and how fast. When the input is bad, the pairs \
        before the bad record are committed and the error says how many."
    )]
    Load(LoadArgs),
    /// Print the values of keys (`KEYHEX VALUEHEX` lines in ascending order, or `KEYHEX absent`)
    Get {
        /// The hashdir file
        path: PathBuf,
        /// Keys to look up
        #[arg(required = true, value_name = "KEYHEX", value_parser = hex::arg)]
        keys: Vec<Key>,
    },
    /// Delete keys with all their values, or one value of each key with --value; commits
    Delete {
        /// The hashdir file
        path: PathBuf,
        /// Keys to delete
        #[arg(required = true, value_name = "KEYHEX", value_parser = hex::arg)]
        keys: Vec<Key>,
        /// Delete only this value from each key's set
        #[arg(long, value_name = "VALUEHEX", value_parser = hex::arg)]
        value: Option<Value>,
    },
    /// Print the file's statistics (keys, values, buckets of the base table, as of the last merge; delta tables waiting)
    Stats {
        /// The hashdir file
        path: PathBuf,
    },
    /// Check every checksum and structural rule; exit status 1 when there are problems
    Verify {
        /// The hashdir file
        path: PathBuf,
        /// List every problem (by default the first 50)
        #[arg(long)]
        all: bool,
    },
    /// Checkpoint, then return every segment and page the root neither uses nor lists as free
    /// to the free lists (and its blocks to the file system)
    Gc {
        /// The hashdir file
        path: PathBuf,
    },
    /// Write every pair to stdout
    Dump {
        /// The hashdir file
        path: PathBuf,
        /// hex: `KEYHEX VALUEHEX` lines; bin: 32-byte records (what `load` reads)
        #[arg(long, value_enum, default_value_t = Format::Hex)]
        format: Format,
    },
    /// Copy the state of SRC into a new file DST, compacted, while a writer may go on
    /// committing to SRC
    #[command(
        after_help = "The copy holds exactly the state a reader of SRC saw when the copy \
        began; it is built beside DST and appears there only once complete and durable. DST \
        must not exist. A progress bar is drawn on stderr when it is a terminal (--progress \
        prints progress lines when it is not)."
    )]
    Copy {
        /// The hashdir file to copy
        src: PathBuf,
        /// The new file
        dst: PathBuf,
        /// Show progress even when stderr is not a terminal
        #[arg(long)]
        progress: bool,
    },
    /// A quick insert and lookup benchmark in a scratch file
    #[command(
        after_help = "The full benchmark (writer and reader processes, reader threads, \
        concurrent commits, JSON output) is `cargo bench --bench hashdir` in the source tree; \
        for the same --keys, --values-per-key, --rounds and --zipf both load the same pairs.\n\
        Counts accept the suffixes k, M, G (e.g. --keys 2M)."
    )]
    Bench(BenchArgs),
}

#[derive(Args)]
struct LoadArgs {
    /// The hashdir file
    path: PathBuf,
    /// Where the pairs come from; `-` or nothing for stdin
    input: Option<PathBuf>,
    /// Input format
    #[arg(long, value_enum, default_value_t = Format::Hex)]
    format: Format,
    /// Pairs per commit (each commit is one atomic batch); suffixes k, M, G
    #[arg(long, value_name = "N", default_value = "100k", value_parser = positive)]
    batch: u64,
    /// fsync every commit
    #[arg(long)]
    sync: bool,
    /// Checkpoint after this many MiB of log (0 = the library's default)
    #[arg(long, value_name = "M", default_value_t = 0)]
    checkpoint_mb: u64,
    /// Create PATH if it does not exist
    #[arg(long)]
    create: bool,
    /// With --create: make PATH a sharded store of N files
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=4096))]
    shards: u32,
}

#[derive(Args)]
struct BenchArgs {
    /// Directory for the scratch file
    #[arg(long, value_name = "DIR", default_value_os_t = std::env::temp_dir())]
    dir: PathBuf,
    /// Keys to insert
    #[arg(long, value_name = "N", default_value = "1M", value_parser = count)]
    keys: u64,
    /// Values a key (on average with --zipf): N × K pairs
    #[arg(long, value_name = "K", default_value = "1", value_parser = positive)]
    values_per_key: u64,
    /// K rounds, each giving every key one new value (by default each key's values come together)
    #[arg(long, conflicts_with = "zipf")]
    rounds: bool,
    /// Each pair's key drawn from a Zipf law of exponent S over the N keys
    #[arg(long, value_name = "S", value_parser = exponent)]
    zipf: Option<f64>,
    /// Pairs per commit
    #[arg(long, value_name = "B", default_value = "100k", value_parser = positive)]
    batch: u64,
    /// Single-key lookups to time
    #[arg(long, value_name = "L", default_value = "100k", value_parser = count)]
    lookups: u64,
    /// Keep the scratch file (its path is printed)
    #[arg(long)]
    keep: bool,
    /// Load a sharded store of N files instead of one file
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=4096))]
    shards: u32,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Hex,
    Bin,
}

/// A count with an optional k/M/G suffix.
fn count(text: &str) -> Result<u64, String> {
    let (digits, mul) = match text.as_bytes().last() {
        Some(b'k' | b'K') => (&text[..text.len() - 1], 1_000),
        Some(b'M') => (&text[..text.len() - 1], 1_000_000),
        Some(b'G') => (&text[..text.len() - 1], 1_000_000_000),
        _ => (text, 1),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| "expected a number, optionally with suffix k, M or G".to_string())?;
    n.checked_mul(mul).ok_or_else(|| "too large".to_string())
}

/// A size in bytes, with an optional binary suffix K, M, G or T.
fn bytes(text: &str) -> Result<u64, String> {
    let (digits, shift) = match text.as_bytes().last() {
        Some(b'K') => (&text[..text.len() - 1], 10),
        Some(b'M') => (&text[..text.len() - 1], 20),
        Some(b'G') => (&text[..text.len() - 1], 30),
        Some(b'T') => (&text[..text.len() - 1], 40),
        _ => (text, 0),
    };
    let n: u64 = digits.parse().map_err(|_| {
        "expected a number of bytes, optionally with suffix K, M, G or T".to_string()
    })?;
    n.checked_shl(shift)
        .filter(|v| v >> shift == n)
        .ok_or_else(|| "too large".to_string())
}

fn positive(text: &str) -> Result<u64, String> {
    match count(text)? {
        0 => Err("must be at least 1".into()),
        n => Ok(n),
    }
}

fn exponent(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(e) if e > 0.0 && e < 10.0 => Ok(e),
        _ => Err("must be a number in (0, 10)".into()),
    }
}

/// Why a command failed: the line to print and the exit status.
pub struct Failure {
    message: String,
    code: u8,
}

impl Failure {
    pub fn run(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            code: 1,
        }
    }

    pub fn context(self, more: impl AsRef<str>) -> Failure {
        Failure {
            message: format!("{} ({})", self.message, more.as_ref()),
            ..self
        }
    }
}

/// An engine error as one line that names the file.
pub fn engine_error(path: &Path, e: Error) -> Failure {
    let p = path.display();
    Failure::run(match e {
        Error::NotFound { .. } => format!("{p} does not exist (`hashdir create {p}` makes one)"),
        // These name the file already.
        Error::Io { .. } | Error::NotHashdir { .. } | Error::Locked { .. } => e.to_string(),
        _ => format!("{p}: {e}"),
    })
}

fn existing() -> Options {
    Options {
        create: false,
        ..Options::default()
    }
}

fn open_reader(path: &Path) -> Result<StoreReader, Failure> {
    StoreReader::open(path, &existing()).map_err(|e| engine_error(path, e))
}

fn open_writer(path: &Path) -> Result<StoreWriter, Failure> {
    StoreWriter::open(path, &existing()).map_err(|e| engine_error(path, e))
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    match run(cli.command) {
        Ok(code) => code,
        Err(f) => {
            eprintln!("hashdir: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

/// Help and version go to stdout with status 0; a usage error is one line and status 2.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            return ExitCode::from(2);
        }
        _ => {}
    }
    // clap's text: "error: <message>\n\n[tip]\n\nUsage: hashdir <sub> ...\n\nFor more ...".
    let text = e.render().to_string();
    let text = text.strip_prefix("error: ").unwrap_or(&text);
    let message = text.split("\n\n").next().unwrap_or(text);
    let message = message.split_whitespace().collect::<Vec<_>>().join(" ");
    // The subcommand whose help to point at: the first argument, if it names one.
    let sub = std::env::args().nth(1).filter(|a| {
        Cli::command()
            .get_subcommands()
            .any(|c| c.get_name() == a && a != "help")
    });
    let command = match sub {
        Some(sub) => format!("hashdir {sub} --help"),
        None => "hashdir --help".into(),
    };
    eprintln!("hashdir: {message} (see `{command}`)");
    ExitCode::from(2)
}

fn run(command: Command) -> Result<ExitCode, Failure> {
    match command {
        Command::Create {
            path,
            capacity,
            shards,
        } => create(&path, capacity, shards)?,
        Command::Load(a) => load::run(&load::Load {
            path: a.path,
            input: a.input,
            format: a.format,
            batch: usize::try_from(a.batch).unwrap_or(usize::MAX),
            sync: a.sync,
            checkpoint_mb: a.checkpoint_mb,
            create: a.create,
            shards: a.shards,
        })?,
        Command::Get { path, keys } => get(&path, &keys)?,
        Command::Delete { path, keys, value } => delete(&path, &keys, value)?,
        Command::Stats { path } => stats(&path)?,
        Command::Verify { path, all } => return verify(&path, all),
        Command::Gc { path } => gc(&path)?,
        Command::Dump { path, format } => dump(&path, format)?,
        Command::Copy { src, dst, progress } => copy(&src, &dst, progress)?,
        Command::Bench(a) => bench::run(&bench::Bench {
            dir: a.dir,
            keys: a.keys,
            values_per_key: a.values_per_key,
            shape: match (a.rounds, a.zipf) {
                (true, _) => hashdir::workload::Shape::Rounds,
                (false, Some(e)) => hashdir::workload::Shape::Zipf(e),
                (false, None) => hashdir::workload::Shape::KeyMajor,
            },
            batch: a.batch,
            lookups: a.lookups,
            keep: a.keep,
            shards: a.shards,
        })?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Refuses a path something is at: commands that make a file never replace one.
fn absent(path: &Path) -> Result<(), Failure> {
    match path.symlink_metadata() {
        Ok(_) => Err(Failure::run(format!("{} already exists", path.display()))),
        Err(_) => Ok(()),
    }
}

fn create(path: &Path, capacity: u64, shards: u32) -> Result<(), Failure> {
    absent(path)?;
    let opts = Options {
        capacity,
        shards,
        ..Options::default()
    };
    let w = StoreWriter::open(path, &opts).map_err(|e| engine_error(path, e))?;
    w.close().map_err(|e| engine_error(path, e))?;
    match shards {
        1 => println!("created {}", path.display()),
        n => println!("created {} ({n} shards)", path.display()),
    }
    Ok(())
}

/// Every key's values; `counts[i]` of them for key i, in order.
fn values_of(
    r: &StoreReader,
    path: &Path,
    keys: &[Key],
) -> Result<(Vec<u64>, Vec<Value>), Failure> {
    let mut counts = vec![0u64; keys.len()];
    let mut values = vec![[0u8; 16]; keys.len() * 8];
    loop {
        match r.get(keys, &mut values, &mut counts) {
            Ok(total) => {
                values.truncate(total);
                return Ok((counts, values));
            }
            Err(Error::BufferTooSmall { needed, .. }) => values.resize(needed, [0u8; 16]),
            Err(e) => return Err(engine_error(path, e)),
        }
    }
}

fn get(path: &Path, keys: &[Key]) -> Result<(), Failure> {
    let r = open_reader(path)?;
    let (counts, mut values) = values_of(&r, path, keys)?;
    let mut out = Vec::new();
    let mut rest = &mut values[..];
    for (key, &n) in keys.iter().zip(&counts) {
        let (mine, after) = std::mem::take(&mut rest).split_at_mut(n as usize);
        rest = after;
        mine.sort_unstable();
        if mine.is_empty() {
            hex::push(&mut out, key);
            out.extend_from_slice(b" absent\n");
        }
        for v in mine {
            hex::push(&mut out, key);
            out.push(b' ');
            hex::push(&mut out, v);
            out.push(b'\n');
        }
    }
    write_stdout(&out)
}

fn write_stdout(bytes: &[u8]) -> Result<(), Failure> {
    let mut stdout = io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Failure::run(format!("writing to stdout: {e}"))),
    }
}

fn delete(path: &Path, keys: &[Key], value: Option<Value>) -> Result<(), Failure> {
    let mut w = open_writer(path)?;
    // The writer holds the file's lock, so what the reader sees now is what gets deleted.
    let (counts, values) = values_of(&open_reader(path)?, path, keys)?;
    let result = match value {
        None => w.delete_keys(keys),
        Some(v) => w.delete_pairs(keys, &vec![v; keys.len()]),
    };
    result
        .and_then(|()| w.close())
        .map_err(|e| engine_error(path, e))?;
    let present = counts.iter().filter(|&&n| n > 0).count() as u64;
    let absent = keys.len() as u64 - present;
    match value {
        None => {
            let gone: u64 = counts.iter().sum();
            println!(
                "deleted {} ({}); {} absent",
                plural(present, "key"),
                plural(gone, "value"),
                plural(absent, "key")
            );
        }
        Some(v) => {
            let had = values.iter().filter(|&&x| x == v).count() as u64;
            println!(
                "deleted value {} from {}; {} did not have it",
                hex::string(&v),
                plural(had, "key"),
                plural(keys.len() as u64 - had, "key")
            );
        }
    }
    Ok(())
}

fn plural(n: u64, what: &str) -> String {
    match n {
        1 => format!("1 {what}"),
        n => format!("{n} {what}s"),
    }
}

fn stats(path: &Path) -> Result<(), Failure> {
    let s = open_reader(path)?
        .stats()
        .map_err(|e| engine_error(path, e))?;
    println!("epoch: {}", s.epoch);
    println!("global_depth: {}", s.global_depth);
    println!("keys: {}", s.keys);
    println!("values: {}", s.values);
    println!("buckets: {}", s.buckets);
    println!("extents: {}", s.extents);
    println!("file_bytes: {}", s.file_bytes);
    println!("disk_bytes: {}", s.disk_bytes);
    println!("wal_bytes: {}", s.wal_bytes);
    println!("delta_tables: {}", s.delta_tables);
    println!("delta_bytes: {}", s.delta_bytes);
    println!("merging: {}", u8::from(s.merging));
    Ok(())
}

/// Problems `verify` lists without --all.
const SHOWN_PROBLEMS: usize = 50;

fn verify(path: &Path, all: bool) -> Result<ExitCode, Failure> {
    let report = hashdir::verify_store(path).map_err(|e| engine_error(path, e))?;
    println!("epoch: {}", report.epoch);
    println!("keys: {}", report.keys);
    println!("values: {}", report.values);
    println!("buckets: {}", report.buckets);
    println!("pages: {}", report.pages);
    println!("extents: {}", report.extents);
    let shown = if all { usize::MAX } else { SHOWN_PROBLEMS };
    for p in report.problems.iter().take(shown) {
        println!("problem: {p}");
    }
    if report.problems.len() > shown {
        let more = report.problems.len() - shown;
        println!("... and {more} more (--all lists them)");
    }
    if report.is_ok() {
        println!("OK");
        return Ok(ExitCode::SUCCESS);
    }
    let n = report.problems.len();
    println!("problems: {n}");
    Err(Failure::run(format!(
        "{}: {} found, the first: {}",
        path.display(),
        plural(n as u64, "problem"),
        report.problems[0]
    )))
}

fn gc(path: &Path) -> Result<(), Failure> {
    let mut w = open_writer(path)?;
    let report = w.gc().map_err(|e| engine_error(path, e))?;
    w.close().map_err(|e| engine_error(path, e))?;
    println!("pages reclaimed: {}", report.pages_reclaimed);
    println!(
        "segment bytes reclaimed: {}",
        report.segments_reclaimed << 20
    );
    Ok(())
}

fn dump(path: &Path, format: Format) -> Result<(), Failure> {
    let r = open_reader(path)?;
    let mut stdout = io::BufWriter::with_capacity(1 << 20, io::stdout().lock());
    let mut line = Vec::with_capacity(66);
    let mut failed: Option<io::Error> = None;
    let scanned = r.scan(|key, values| {
        for v in values {
            line.clear();
            match format {
                Format::Hex => {
                    hex::push(&mut line, key);
                    line.push(b' ');
                    hex::push(&mut line, v);
                    line.push(b'\n');
                }
                Format::Bin => {
                    line.extend_from_slice(key);
                    line.extend_from_slice(v);
                }
            }
            if let Err(e) = stdout.write_all(&line) {
                failed = Some(e);
                return false;
            }
        }
        true
    });
    let written = match failed {
        Some(e) => Err(e),
        None => stdout.flush(),
    };
    match written {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(()),
        Err(e) => return Err(Failure::run(format!("writing to stdout: {e}"))),
        Ok(()) => {}
    }
    scanned.map_err(|e| engine_error(path, e))
}

/// Progress of `copy` on stderr: a bar on a terminal, else (with --progress) a line each
/// second, else nothing.
enum Shown {
    Bar(indicatif::ProgressBar),
    Lines(std::time::Instant),
    Hidden,
}

impl Shown {
    fn new(forced: bool) -> Shown {
        use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
        if io::stderr().is_terminal() {
            let target = ProgressDrawTarget::stderr_with_hz(10);
            let style =
                ProgressStyle::with_template("{elapsed_precise} [{wide_bar}] {percent:>3}% {msg}")
                    .expect("valid template")
                    .progress_chars("=> ");
            return Shown::Bar(ProgressBar::with_draw_target(Some(1000), target).with_style(style));
        }
        match forced {
            true => Shown::Lines(std::time::Instant::now()),
            false => Shown::Hidden,
        }
    }

    fn show(&mut self, p: &CopyProgress) {
        let what = format!("{}, {}", plural(p.keys, "key"), plural(p.values, "value"));
        match self {
            Shown::Bar(bar) => {
                bar.set_position((p.fraction * 1000.0) as u64);
                bar.set_message(what);
            }
            Shown::Lines(last) if last.elapsed().as_secs() >= 1 || p.fraction >= 1.0 => {
                eprintln!("copied {:.0}% ({what})", p.fraction * 100.0);
                *last = std::time::Instant::now();
            }
            Shown::Lines(_) | Shown::Hidden => {}
        }
    }
}

fn copy(src: &Path, dst: &Path, progress: bool) -> Result<(), Failure> {
    absent(dst)?;
    let r = open_reader(src)?;
    let started = std::time::Instant::now();
    let mut shown = Shown::new(progress);
    let copied = r.copy_to(dst, |p| shown.show(p));
    if let Shown::Bar(bar) = &shown {
        bar.finish_and_clear();
    }
    let done = copied.map_err(|e| engine_error(src, e))?;
    println!(
        "copied {} ({}) of epoch {} to {} in {:.1} s",
        plural(done.keys, "key"),
        plural(done.values, "value"),
        done.epoch,
        dst.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
