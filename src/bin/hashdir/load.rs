//! `hashdir load`: pairs from a file or stdin, committed in batches, with a progress bar.

use crate::hex;
use crate::{engine_error, Failure, Format};
use hashdir::{Key, Options, StoreWriter, Value};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::fs::File;
use std::io::{self, BufRead, BufReader, IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub struct Load {
    pub path: PathBuf,
    pub input: Option<PathBuf>,
    pub format: Format,
    pub batch: usize,
    pub sync: bool,
    pub checkpoint_mb: u64,
    pub create: bool,
    pub shards: u32,
}

/// Bytes of one binary record: key then value.
const RECORD: usize = 32;
/// Pairs between progress-bar updates.
const TICK: usize = 1 << 14;

pub fn run(a: &Load) -> Result<(), Failure> {
    let (input, name, size) = open_input(a.input.as_deref())?;
    let opts = Options {
        create: a.create,
        sync_commit: a.sync,
        checkpoint_bytes: a.checkpoint_mb.saturating_mul(1 << 20),
        shards: a.shards,
        ..Options::default()
    };
    let writer = StoreWriter::open(&a.path, &opts).map_err(|e| engine_error(&a.path, e))?;
    let mut job = Job {
        writer,
        path: &a.path,
        batch: a.batch,
        keys: Vec::with_capacity(a.batch.min(1 << 20)),
        values: Vec::with_capacity(a.batch.min(1 << 20)),
        committed: 0,
        bytes: 0,
        bar: progress_bar(size),
        started: Instant::now(),
    };
    let read = match a.format {
        Format::Hex => job.read_hex(input, &name),
        Format::Bin => job.read_bin(input, &name),
    };
    // Whatever stopped the input, the pairs read before it are committed and the file closed.
    let flushed = job.flush();
    let flushed = read.and(flushed);
    let pairs = job.committed;
    let bar = job.bar.clone();
    bar.set_message(format!(
        "{pairs} pairs committed; merging and closing (checkpoint)"
    ));
    let mut w = job.writer;
    let closed = w
        .checkpoint()
        .and_then(|()| w.close())
        .map_err(|e| engine_error(&a.path, e));
    bar.finish_and_clear();
    let secs = job.started.elapsed().as_secs_f64();
    if let Err(f) = flushed.and(closed) {
        return Err(f.context(format!("after {pairs} pairs were committed")));
    }
    println!(
        "loaded {pairs} pairs in {secs:.2} s ({} pairs/s)",
        rate(pairs, secs)
    );
    Ok(())
}

fn rate(pairs: u64, secs: f64) -> u64 {
    if secs > 0.0 {
        (pairs as f64 / secs) as u64
    } else {
        0
    }
}

type Input = (Box<dyn Read>, String, Option<u64>);

fn open_input(input: Option<&Path>) -> Result<Input, Failure> {
    match input {
        None => Ok((Box::new(io::stdin()), "stdin".into(), None)),
        Some(p) if p.as_os_str() == "-" => Ok((Box::new(io::stdin()), "stdin".into(), None)),
        Some(p) => {
            let f = File::open(p)
                .map_err(|e| Failure::run(format!("cannot open {}: {e}", p.display())))?;
            let size = f.metadata().ok().filter(|m| m.is_file()).map(|m| m.len());
            Ok((Box::new(f), p.display().to_string(), size))
        }
    }
}

/// A bar over the input's bytes when its size is known, a spinner otherwise; hidden unless
/// stderr is a terminal.
fn progress_bar(size: Option<u64>) -> ProgressBar {
    if !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let target = ProgressDrawTarget::stderr_with_hz(10);
    let bar = match size {
        Some(n) => ProgressBar::with_draw_target(Some(n), target).with_style(
            ProgressStyle::with_template(
                "{elapsed_precise} [{wide_bar}] {percent:>3}% {bytes}/{total_bytes} {msg}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        ),
        None => ProgressBar::with_draw_target(None, target).with_style(
            ProgressStyle::with_template("{spinner} {elapsed_precise} {bytes} read, {msg}")
                .expect("valid template"),
        ),
    };
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

struct Job<'a> {
    writer: StoreWriter,
    path: &'a Path,
    batch: usize,
    keys: Vec<Key>,
    values: Vec<Value>,
    committed: u64,
    bytes: u64,
    bar: ProgressBar,
    started: Instant,
}

impl Job<'_> {
    fn push(&mut self, key: Key, value: Value, bytes: usize) -> Result<(), Failure> {
        self.keys.push(key);
        self.values.push(value);
        self.bytes += bytes as u64;
        if self.keys.len() >= self.batch {
            self.flush()?;
        } else if self.keys.len().is_multiple_of(TICK) {
            self.tick(self.keys.len() as u64);
        }
        Ok(())
    }

    /// Inserts and commits the pending pairs as one batch.
    fn flush(&mut self) -> Result<(), Failure> {
        if self.keys.is_empty() {
            return Ok(());
        }
        let w = &mut self.writer;
        w.insert(&self.keys, &self.values)
            .and_then(|()| w.commit())
            .map_err(|e| engine_error(self.path, e))?;
        self.committed += self.keys.len() as u64;
        self.keys.clear();
        self.values.clear();
        self.tick(0);
        Ok(())
    }

    fn tick(&self, pending: u64) {
        if self.bar.is_hidden() {
            return;
        }
        let pairs = self.committed + pending;
        let secs = self.started.elapsed().as_secs_f64();
        self.bar.set_position(self.bytes);
        self.bar
            .set_message(format!("{pairs} pairs, {} pairs/s", rate(pairs, secs)));
    }

    /// One `KEYHEX VALUEHEX` pair a line; blank lines and lines starting with '#' are skipped.
    fn read_hex(&mut self, input: Box<dyn Read>, name: &str) -> Result<(), Failure> {
        let mut r = BufReader::with_capacity(1 << 20, input);
        let mut line = Vec::with_capacity(128);
        let mut number = 0u64;
        loop {
            line.clear();
            let n = r
                .read_until(b'\n', &mut line)
                .map_err(|e| Failure::run(format!("reading {name}: {e}")))?;
            if n == 0 {
                return Ok(());
            }
            number += 1;
            let text = line.trim_ascii();
            if text.is_empty() || text.starts_with(b"#") {
                self.bytes += n as u64;
                continue;
            }
            let (k, v) =
                parse_pair(text).map_err(|why| Failure::run(format!("{name}:{number}: {why}")))?;
            self.push(k, v, n)?;
        }
    }

    /// 32-byte records: key (16 bytes) then value (16 bytes).
    fn read_bin(&mut self, mut input: Box<dyn Read>, name: &str) -> Result<(), Failure> {
        let mut buf = vec![0u8; RECORD << 15];
        let mut have = 0usize;
        loop {
            let n = match input.read(&mut buf[have..]) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Failure::run(format!("reading {name}: {e}"))),
            };
            if n == 0 {
                if have != 0 {
                    let at = self.bytes;
                    return Err(Failure::run(format!(
                        "{name}: {have} bytes at offset {at} do not make a whole \
                         {RECORD}-byte record (key 16 bytes + value 16 bytes)"
                    )));
                }
                return Ok(());
            }
            have += n;
            let whole = have - have % RECORD;
            for rec in buf[..whole].chunks_exact(RECORD) {
                let key: Key = rec[..16].try_into().expect("16 bytes");
                let value: Value = rec[16..].try_into().expect("16 bytes");
                self.push(key, value, RECORD)?;
            }
            buf.copy_within(whole..have, 0);
            have -= whole;
        }
    }
}

fn parse_pair(text: &[u8]) -> Result<(Key, Value), String> {
    let mut fields = text
        .split(|c| c.is_ascii_whitespace())
        .filter(|f| !f.is_empty());
    let (Some(k), Some(v), None) = (fields.next(), fields.next(), fields.next()) else {
        return Err("expected `KEYHEX VALUEHEX` (two fields of 32 hex digits)".into());
    };
    let key = hex::parse(k).map_err(|e| format!("key: {e}"))?;
    let value = hex::parse(v).map_err(|e| format!("value: {e}"))?;
    Ok((key, value))
}

#[cfg(test)]
mod tests {
    use super::parse_pair;

    #[test]
    fn pairs_parse_with_any_spacing() {
        let k = "000102030405060708090a0b0c0d0e0f";
        let v = "ffeeddccbbaa99887766554433221100";
        let (key, value) = parse_pair(format!("{k}\t  {v}").as_bytes()).unwrap();
        assert_eq!(key[15], 15);
        assert_eq!(value[0], 0xff);
        assert!(parse_pair(k.as_bytes()).unwrap_err().contains("two fields"));
        assert!(parse_pair(format!("{k} {v} x").as_bytes()).is_err());
        assert!(parse_pair(format!("{k} 12").as_bytes())
            .unwrap_err()
            .starts_with("value:"));
    }
}
