//! Parquet conversion benchmark: NDJSON in, Parquet (snappy) bytes out,
//! through the same path the pipeline uses: records are read line by line
//! as the file source reads them (blocks of 1 MiB, each record a slice of
//! its block) into a buffer of `--buffer-mb` MiB (default 64), each full
//! buffer goes through `Format::encode`, and the bytes are counted (not
//! written).
//!
//! ```sh
//! cargo bench -p spillway-transforms --bench parquet -- generate DIR   # DIR/products.ndjson, DIR/tweets.ndjson
//! cargo bench -p spillway-transforms --bench parquet -- run FILE [--buffer-mb 64] [--bare | --store-all-originals] [--schema FILE] [--out DIR]
//! ```
//!
//! `run` prints one JSON line: input bytes, seconds, MB/s (10^6 bytes),
//! peak RSS (VmHWM) in MiB, objects, rows and refused records. `--bare`
//! turns off the reserved columns (`_spillway_` position and original
//! bytes), to compare like with like against tools that write only the
//! records' columns. `--store-all-originals` stores every record in
//! `_spillway_data`, even those their row rebuilds
//! (`elide_rebuildable_original = false`). `--out DIR` also writes each
//! object as `DIR/<n>.parquet`, to look at. `benches/compare.sh` runs
//! everything.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use spillway_transforms::format::parquet::{ParquetFormat, Schema};
use spillway_transforms::{Format, Offset, Position, Record, SequenceNumber, SourceId};

/// Size of each generated input.
const TARGET_BYTES: u64 = 200 * 1000 * 1000;

fn main() {
    // As the `spillway` binary does.
    spillway_transforms::memory::keep_freed_memory();
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    match args.first().map(String::as_str) {
        Some("generate") => generate(Path::new(args.get(1).expect("generate DIR")), &shared_data()),
        Some("run") => run(&args[1..]),
        _ => {
            eprintln!("usage: parquet generate DIR | parquet run FILE [--buffer-mb N] [--bare | --store-all-originals] [--schema FILE] [--out DIR]");
            std::process::exit(2);
        }
    }
}

fn shared_data() -> PathBuf {
    std::env::var_os("SPILLWAY_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests"))
        .join("data")
}

/// Tiles the shared samples to about 200 MB each, every record with a
/// unique `id` (first key).
fn generate(dir: &Path, data: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    // Product listings: a header row, then rows as arrays.
    let text = std::fs::read_to_string(data.join("amazon_cellphones.ndjson")).expect("amazon_cellphones.ndjson");
    let mut lines = text.lines();
    let header: Vec<String> = serde_json::from_str(lines.next().unwrap()).unwrap();
    let products: Vec<String> = lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let row: Vec<serde_json::Value> = serde_json::from_str(l).unwrap();
            let object: serde_json::Map<String, serde_json::Value> = header.iter().cloned().zip(row).collect();
            serde_json::Value::Object(object).to_string()
        })
        .collect();
    tile(&dir.join("products.ndjson"), &products);
    // Tweets: the statuses, their own id replaced.
    let twitter: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data.join("twitter.json")).expect("twitter.json")).unwrap();
    let tweets: Vec<String> = twitter["statuses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let mut s = s.as_object().unwrap().clone();
            s.remove("id");
            serde_json::Value::Object(s).to_string()
        })
        .collect();
    tile(&dir.join("tweets.ndjson"), &tweets);
}

fn tile(path: &Path, records: &[String]) {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let (mut written, mut id) = (0u64, 0u64);
    while written < TARGET_BYTES {
        let body = &records[id as usize % records.len()];
        let line = format!("{{\"id\":{id},{}\n", &body[1..]);
        out.write_all(line.as_bytes()).unwrap();
        written += line.len() as u64;
        id += 1;
    }
    out.flush().unwrap();
    println!("{}: {id} records, {written} bytes", path.display());
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn run(args: &[String]) {
    let path = PathBuf::from(args.first().expect("run FILE"));
    let mut buffer_mb = 64usize;
    let mut bare = false;
    let mut store_all = false;
    let mut schema = None;
    let mut out: Option<PathBuf> = None;
    let mut rest = args[1..].iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--buffer-mb" => buffer_mb = rest.next().unwrap().parse().unwrap(),
            "--bare" => bare = true,
            "--store-all-originals" => store_all = true,
            "--out" => out = Some(PathBuf::from(rest.next().unwrap())),
            "--schema" => schema = Some(Schema::load(Path::new(rest.next().unwrap())).unwrap()),
            other => panic!("unknown argument {other}"),
        }
    }
    let parquet = Arc::new(ParquetFormat {
        schema,
        metadata_columns: !bare,
        keep_original: !bare,
        elide_rebuildable_original: !store_all,
        ..ParquetFormat::default()
    });
    let format = Format::Parquet(parquet.clone());
    let buffer_bytes = buffer_mb * 1024 * 1024;
    let source = SourceId::new(format!("file-{}", path.file_name().unwrap().to_string_lossy()));
    let start = Instant::now();
    let (mut input, mut output, mut objects, mut rows, mut refused) = (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut batch: Vec<Record> = Vec::new();
    let mut batch_bytes = 0;
    let mut lines = Lines::new(std::fs::File::open(&path).unwrap());
    // As the file source: one arrival time per chunk of records it reads.
    let mut arrival = chrono::Utc::now();
    let mut flush = |batch: &mut Vec<Record>| {
        let encoded = format.encode(batch);
        output += encoded.body.len() as u64;
        if let Some(dir) = &out {
            std::fs::create_dir_all(dir).unwrap();
            std::fs::write(dir.join(format!("{objects}.parquet")), &encoded.body).unwrap();
        }
        objects += 1;
        rows += encoded.records as u64;
        refused += encoded.rejected.len() as u64;
        batch.clear();
    };
    while let Some((data, read)) = lines.next() {
        let offset = input;
        input += read as u64;
        // The pipeline flushes before a record that would overflow.
        if batch_bytes + data.len() > buffer_bytes && !batch.is_empty() {
            flush(&mut batch);
            batch_bytes = 0;
        }
        batch_bytes += data.len();
        if batch.len().is_multiple_of(1024) {
            arrival = chrono::Utc::now();
        }
        batch.push(Record {
            data,
            position: Position {
                source: source.clone(),
                offset: Offset::new(SequenceNumber::from_u64(offset), 0),
            },
            partition_key: None,
            arrival,
        });
    }
    if !batch.is_empty() {
        flush(&mut batch);
    }
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "{{\"tool\":\"spillway{}\",\"input\":\"{}\",\"input_bytes\":{input},\"output_bytes\":{output},\"seconds\":{seconds:.3},\"mb_per_s\":{:.1},\"peak_rss_mib\":{:.0},\"buffer_mb\":{buffer_mb},\"objects\":{objects},\"rows\":{rows},\"refused\":{refused},\"single_pass_objects\":{}}}",
        if bare {
            "-bare"
        } else if store_all {
            "-store-all"
        } else {
            ""
        },
        path.display(),
        input as f64 / 1e6 / seconds,
        peak_rss_mib(),
        parquet.last_inferred.single_passes(),
    );
}

/// Lines read as `src/source/lines.rs` reads them: into blocks of 1 MiB,
/// each line a slice of its block, a line that crosses the end of a block
/// copied into the next. (The inputs are generated: no `\r`, no line too
/// long to keep.)
struct Lines {
    file: std::fs::File,
    block: BytesMut,
    /// `block[..filled]` is read and not yet returned.
    filled: usize,
    eof: bool,
}

impl Lines {
    fn new(file: std::fs::File) -> Self {
        Self {
            file,
            block: BytesMut::new(),
            filled: 0,
            eof: false,
        }
    }

    /// The next line without its `\n`, and how many bytes it took.
    fn next(&mut self) -> Option<(Bytes, usize)> {
        let mut scanned = 0;
        loop {
            if let Some(at) = memchr::memchr(b'\n', &self.block[scanned..self.filled]) {
                let at = scanned + at;
                self.filled -= at + 1;
                return Some((self.block.split_to(at + 1).freeze().slice(..at), at + 1));
            }
            scanned = self.filled;
            if self.eof {
                let length = std::mem::take(&mut self.filled);
                return (length > 0).then(|| (self.block.split_to(length).freeze(), length));
            }
            if self.filled == self.block.len() {
                let mut next = BytesMut::zeroed((1 << 20).max(2 * self.filled));
                next[..self.filled].copy_from_slice(&self.block[..self.filled]);
                self.block = next;
            }
            let read = self.file.read(&mut self.block[self.filled..]).unwrap();
            self.filled += read;
            self.eof = read == 0;
        }
    }
}
