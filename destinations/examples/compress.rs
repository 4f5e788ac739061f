//! A micro-benchmark of the object codecs (not a test): compresses an NDJSON
//! file line by line, as the JSON-lines format writes records (the line,
//! then its newline), into a sink that only counts, and prints one JSON
//! line with the throughput and the output size. `benches/compress.sh`
//! runs it beside `gzip -6` and `zstd -3 -T2` on the same file.
//!
//! ```sh
//! cargo run -p spillway-destinations --example compress -- gzip FILE
//! cargo run -p spillway-destinations --example compress -- gzip FILE --single
//! ```
//! `--single` measures the single-threaded encoders used before issue #17
//! (one gzip member through flate2's `GzEncoder`, zstd without workers,
//! both fed unbuffered), for comparison.

use std::io::Write;
use std::time::Instant;

use spillway_destinations::Compression;

/// Counts what it is given and drops it.
struct Count(u64);

impl Write for Count {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [codec, file, rest @ ..] = args.as_slice() else {
        eprintln!("usage: compress gzip|zstd|snappy|zip|none FILE [--single]");
        std::process::exit(2);
    };
    let single = rest.iter().any(|a| a == "--single");
    let input = std::fs::read(file)?;
    let lines: Vec<&[u8]> = input.split_inclusive(|b| *b == b'\n').collect();
    let mut out = Count(0);
    let started = Instant::now();
    let cpu_started = cpu_seconds();
    {
        let mut encoder: Box<dyn Write + '_> = match (codec.as_str(), single) {
            ("gzip", true) => Box::new(flate2::write::GzEncoder::new(&mut out, flate2::Compression::default())),
            ("zstd", true) => Box::new(zstd::stream::write::Encoder::new(&mut out, 3)?.auto_finish()),
            (name, _) => {
                let codec = Compression::from_name(name).expect("a codec name");
                let mut encoder = codec.encoder(&mut out, "bench.jsonl", input.len())?;
                for line in &lines {
                    write_line(&mut encoder, line)?;
                }
                encoder.finish()?;
                Box::new(std::io::sink())
            }
        };
        if single {
            for line in &lines {
                write_line(&mut encoder, line)?;
            }
        }
        // Dropped here: both single-threaded encoders finish on drop.
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_started;
    println!(
        "{{\"tool\":\"spillway-{codec}{}\",\"input_bytes\":{},\"output_bytes\":{},\"seconds\":{seconds:.3},\"cpu_seconds\":{cpu:.2},\"mb_per_s\":{:.1}}}",
        if single { "-single" } else { "" },
        input.len(),
        out.0,
        input.len() as f64 / 1e6 / seconds,
    );
    Ok(())
}

/// CPU time of this process, all threads (Linux: `/proc/self/stat`, in
/// clock ticks of 10 ms).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // After the command name in parentheses: state is field 3, utime 14, stime 15.
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks = |i: usize| fields.get(i - 3).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(14) + ticks(15)) / 100.0
}

/// The line and its newline as two writes, as the JSON-lines format does.
fn write_line(out: &mut dyn Write, line: &[u8]) -> std::io::Result<()> {
    match line.strip_suffix(b"\n") {
        Some(record) => {
            out.write_all(record)?;
            out.write_all(b"\n")
        }
        None => out.write_all(line),
    }
}
