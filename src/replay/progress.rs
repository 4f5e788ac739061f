//! How far a replay is, on stderr: a progress bar on a terminal
//! (indicatif: objects read of those to read, with records, bytes, rate
//! and ETA), plain log lines otherwise (a pipe, a CI log, `--log-format
//! json`), every few seconds. Never on stdout, which `--to -` owns.

use std::io::IsTerminal;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::tally::Tally;
use crate::source::archive::ReadProgress;

/// Plain progress lines, at most this often.
const LINE_EVERY: Duration = Duration::from_secs(5);

pub struct Progress {
    bar: Option<ProgressBar>,
    started: Instant,
    last_line: Instant,
    verb: &'static str,
}

impl Progress {
    /// `counting`: a dry run (its lines say "counted", not "sent").
    pub fn new(counting: bool) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(4));
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} objects  {msg}  ETA {eta}",
                )
                .expect("the template is valid"),
            );
            bar
        });
        let now = Instant::now();
        Self {
            bar,
            started: now,
            last_line: now,
            verb: if counting { "counted" } else { "sent" },
        }
    }

    fn rate(&self, records: u64) -> u64 {
        let seconds = self.started.elapsed().as_secs_f64();
        if seconds > 0.0 {
            (records as f64 / seconds) as u64
        } else {
            0
        }
    }

    pub fn update(&mut self, tally: &Tally, read: &ReadProgress) {
        let total = read.objects_total.load(Ordering::Relaxed);
        let done = read.objects_read.load(Ordering::Relaxed);
        if let Some(bar) = &self.bar {
            if bar.length() != Some(total) {
                bar.set_length(total);
            }
            bar.set_position(done);
            bar.set_message(format!(
                "{} records, {}, {} records/s",
                tally.records,
                HumanBytes(tally.bytes),
                self.rate(tally.records)
            ));
            return;
        }
        if self.last_line.elapsed() >= LINE_EVERY {
            self.last_line = Instant::now();
            tracing::info!(
                records = tally.records,
                bytes = tally.bytes,
                records_per_second = self.rate(tally.records),
                objects_read = done,
                objects_total = total,
                "replay progress"
            );
        }
    }

    pub fn finish(&mut self, tally: &Tally, read: &ReadProgress) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        tracing::info!(
            records = tally.records,
            bytes = tally.bytes,
            records_per_second = self.rate(tally.records),
            objects_read = read.objects_read.load(Ordering::Relaxed),
            refused = tally.refused,
            seconds = self.started.elapsed().as_secs_f64(),
            "replay {}",
            self.verb
        );
    }
}
