//! The `spillway` command: parse arguments, run, map errors to exit codes.

mod allocator;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use spillway::telemetry::{self, LogFormat};

/// A self-hosted, Firehose-style delivery pipeline and stream archiver.
#[derive(Parser)]
#[command(name = "spillway", version, propagate_version = true)]
struct Cli {
    /// Log line format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormatArg::Text)]
    log_format: LogFormatArg,
    /// Log level or filter directive (`info`, `debug`, `spillway=debug`).
    #[arg(long, global = true, env = "SPILLWAY_LOG", default_value = "info")]
    log_level: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormatArg {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum DdlArg {
    Athena,
}

#[derive(Subcommand)]
enum Command {
    /// Run delivery streams until their input ends or SIGTERM/SIGINT: one
    /// per configuration file, each with its own checkpoint, in one
    /// process.
    Run {
        /// Configuration files (TOML), one pipeline each, or directories
        /// (every `*.toml` in them).
        files: Vec<PathBuf>,
        /// A configuration file, or a directory of them (every `*.toml`).
        #[arg(long, short)]
        config: Vec<PathBuf>,
        /// Read what the source holds now (Kinesis: every shard up to its
        /// tip as of start), flush, checkpoint and exit: for cron-style
        /// archiving and backfills.
        #[arg(long)]
        once: bool,
    },
    /// Check configurations without touching the network; print every
    /// problem with the key that causes it. Several are checked as `run`
    /// would take them together.
    Validate {
        /// Configuration files (TOML), or directories of them.
        files: Vec<PathBuf>,
        /// A configuration file, or a directory of them (every `*.toml`).
        #[arg(long, short)]
        config: Vec<PathBuf>,
    },
    /// Print the table schema the pipeline writes its Parquet files under
    /// (the schema file's, the Glue table's, or the inferred one from the
    /// checkpoint) as JSON, or the DDL of a table that reads the archive.
    Schema {
        /// The configuration file (TOML).
        #[arg(long, short)]
        config: PathBuf,
        /// Print this DDL instead of JSON: `athena` (CREATE EXTERNAL
        /// TABLE with partition projection).
        #[arg(long, value_enum)]
        ddl: Option<DdlArg>,
        /// With --ddl: the table's name (default: the pipeline's name,
        /// lowercase, `.` and `-` made `_`).
        #[arg(long)]
        table: Option<String>,
        /// With --ddl: the first date of partition projection ranges,
        /// YYYY-MM-DD (default: today, UTC). Athena finds no partition
        /// before it.
        #[arg(long)]
        since: Option<chrono::NaiveDate>,
    },
    /// Send an archive back into a Kinesis stream or an HTTP endpoint (an
    /// `archive` source and that destination, run once; interrupted, it
    /// resumes from `--state`), or print its records as NDJSON (`--to -`,
    /// `--to file:PATH`), or count what it would send (`--dry-run`).
    Replay {
        /// The archive: s3://bucket/prefix/ or a local directory. With
        /// AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL set (an S3-compatible
        /// store), path-style URLs are used.
        #[arg(long)]
        from: String,
        /// The archive's prefix template, when it has a time part (e.g.
        /// `events/!{timestamp:yyyy/MM/dd/HH}/`). Default: the prefix in
        /// --from.
        #[arg(long)]
        prefix: Option<String>,
        /// Only records that arrived at or after this RFC 3339 time.
        #[arg(long)]
        start: Option<String>,
        /// Only records that arrived before this RFC 3339 time.
        #[arg(long)]
        end: Option<String>,
        /// kinesis:STREAM, http:URL, file:PATH (a new file) or - (stdout):
        /// each record's bytes and a newline, in archive order.
        #[arg(long, required_unless_present = "dry_run")]
        to: Option<String>,
        /// Print the objects, records, bytes and arrival-time range the
        /// replay would send; send nothing, write no state.
        #[arg(long)]
        dry_run: bool,
        /// The checkpoint file (`NAME.checkpoint.json`): kept, and resumed
        /// from when the replay is run again. Without it, a replay starts
        /// afresh and keeps no state.
        #[arg(long)]
        state: Option<PathBuf>,
        /// Where records the destination does not take are written (error
        /// output).
        #[arg(long, default_value = "replay-errors")]
        errors: PathBuf,
    },
    /// Print the original records of archived Parquet files, byte for byte
    /// (from `_spillway_data`, or rebuilt from their row), in file order:
    /// one JSON object per line with the record (`data`, a string) and its
    /// source position.
    Originals {
        /// Parquet files written by spillway.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Print only each record's bytes, each followed by a newline.
        #[arg(long)]
        data_only: bool,
    },
    /// Print the pipeline's lease table (`[coordination]`): per shard its
    /// owner, checkpoint, state (held, expired: its owner's last write is
    /// a lease duration old by this machine's clock, a hint; free; ended)
    /// and last renewal.
    Leases {
        /// The configuration file (TOML), with `[coordination]`.
        #[arg(long, short)]
        config: PathBuf,
        /// One JSON object per shard and line, for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Internal: a jq worker, started by `run` and `replay` (reads its
    /// programs and records on standard input).
    #[command(hide = true)]
    JqWorker,
}

/// mimalloc in the jq workers, glibc's malloc elsewhere ([`allocator`]).
#[global_allocator]
static ALLOCATOR: allocator::Allocator = allocator::Allocator;

fn main() -> ExitCode {
    // Before any thread starts: each buffer's memory is reused by the next
    // rather than faulted in again.
    spillway_transforms::memory::keep_freed_memory();
    let cli = Cli::parse();
    // jq processors run in workers started from this binary: a record that
    // crashes or stalls a program fails alone.
    if let Ok(binary) = std::env::current_exe() {
        spillway::processor::jq::worker::use_worker_binary(binary);
    }
    // A usage error like any other, for every command: not a silent
    // `info` (a worker's comes from the run that started it).
    if !matches!(cli.command, Command::JqWorker) {
        if let Err(err) = telemetry::filter(&cli.log_level) {
            telemetry::eprint_line(&format!("error: {err}"));
            return ExitCode::from(2);
        }
    }
    match cli.command {
        Command::JqWorker => std::process::exit(spillway::processor::jq::serve::serve()),
        Command::Validate { files, config } => match config_files(config, files) {
            Ok(files) => validate(&files),
            Err(code) => code,
        },
        Command::Originals { files, data_only } => originals(&files, data_only),
        Command::Leases { config, json } => {
            telemetry::init(LogFormat::Text, "warn");
            leases(&config, json)
        }
        Command::Schema {
            config,
            ddl,
            table,
            since,
        } => {
            telemetry::init(LogFormat::Text, "warn");
            schema(&config, ddl.is_some(), table.as_deref(), since)
        }
        Command::Replay {
            from,
            prefix,
            start,
            end,
            to,
            dry_run,
            state,
            errors,
        } => {
            init_logs(cli.log_format, &cli.log_level);
            let args = spillway::replay::ReplayArgs {
                from,
                prefix,
                start,
                end,
                to: to.unwrap_or_else(|| "-".to_owned()),
                state,
                errors,
                path_style: ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]
                    .iter()
                    .any(|name| std::env::var(name).is_ok_and(|v| !v.is_empty())),
            };
            let code = replay(&args, dry_run);
            std::process::exit(code);
        }
        Command::Run { files, config, once } => {
            let files = match config_files(config, files) {
                Ok(files) => files,
                Err(code) => return code,
            };
            init_logs(cli.log_format, &cli.log_level);
            let code = match &files[..] {
                [one] => run(one, once),
                _ => run_many(&files, once),
            };
            // Source threads may be blocked in a read (a pipe, a FIFO); the
            // work is done and checkpointed, so do not wait for them.
            std::process::exit(code);
        }
    }
}

/// The configuration files of `--config` and the positional arguments,
/// directories expanded; or the exit code of a line saying why there are
/// none.
fn config_files(config: Vec<PathBuf>, files: Vec<PathBuf>) -> Result<Vec<PathBuf>, ExitCode> {
    let args: Vec<PathBuf> = config.into_iter().chain(files).collect();
    spillway::config::set::config_files(&args).map_err(|line| {
        telemetry::eprint_line(&format!("error: {line}"));
        ExitCode::from(2)
    })
}

fn validate(files: &[PathBuf]) -> ExitCode {
    if let [one] = files {
        return validate_one(one);
    }
    let mut code = ExitCode::SUCCESS;
    for file in files {
        if validate_one(file) != ExitCode::SUCCESS {
            code = ExitCode::from(2);
        }
    }
    // What is wrong only together (names, the listener), once each file
    // is valid on its own.
    if let Ok(loaded) = files
        .iter()
        .map(|path| {
            spillway::config::load(path).map(|config| spillway::config::set::Loaded {
                path: path.clone(),
                config,
            })
        })
        .collect::<Result<Vec<_>, _>>()
    {
        for problem in spillway::config::set::check_together(&loaded) {
            telemetry::eprint_line(&problem);
            code = ExitCode::from(2);
        }
    }
    code
}

fn validate_one(path: &std::path::Path) -> ExitCode {
    match spillway::config::load(path) {
        Ok(config) => {
            // Not an error: in CI the input may not exist yet. `run`
            // refuses it in one line if it still does not.
            for note in spillway::config::notes(&config) {
                telemetry::eprint_line(&format!("{}: note: {note}", path.display()));
            }
            telemetry::print_line(&format!("{}: ok", path.display()));
            ExitCode::SUCCESS
        }
        Err(err) => {
            for problem in &err.problems {
                telemetry::eprint_line(&format!("{}: {problem}", path.display()));
            }
            ExitCode::from(2)
        }
    }
}

/// The configuration of a command that reads and exits (`schema`,
/// `leases`), its secrets registered, and a runtime for its calls; exit 2
/// with the problems printed when the configuration is invalid.
fn one_shot(path: &std::path::Path) -> Result<(spillway::config::Config, tokio::runtime::Runtime), ExitCode> {
    let config = spillway::config::load(path).map_err(|err| {
        telemetry::eprint_line(&format!("error: {err}"));
        ExitCode::from(2)
    })?;
    config.register_secrets();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("building the tokio runtime");
    Ok((config, runtime))
}

/// `spillway schema`: exit 0 with the schema (or DDL) printed; 2 for an
/// invalid configuration; 1 when there is no schema to print (none yet, a
/// Glue table that cannot be read) or when the DDL names what Athena
/// cannot take (the DDL is printed all the same, the problems on stderr,
/// after notes of what it could not express).
fn schema(path: &std::path::Path, ddl: bool, table: Option<&str>, since: Option<chrono::NaiveDate>) -> ExitCode {
    let (config, runtime) = match one_shot(path) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let current = match runtime.block_on(spillway::schema::current(&config)) {
        Ok(current) => current,
        Err(err) => {
            telemetry::eprint_line(&format!("error: {}", error_chain(&err)));
            return ExitCode::from(1);
        }
    };
    if !ddl {
        let json = serde_json::to_string_pretty(&spillway::schema::to_json(&current)).expect("JSON serializes");
        json.lines().for_each(telemetry::print_line);
        return ExitCode::SUCCESS;
    }
    let spillway_transforms::Format::Parquet(parquet) = &config.format else {
        unreachable!("only parquet has a schema")
    };
    let since = since
        .map(|d| d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc())
        .unwrap_or_else(|| {
            chrono::Utc::now()
                .date_naive()
                .and_hms_opt(0, 0, 0)
                .expect("midnight exists")
                .and_utc()
        });
    let ddl = spillway::schema::athena::create_table(&config, parquet, &current.columns, table, since);
    ddl.text.lines().for_each(telemetry::print_line);
    for note in &ddl.notes {
        telemetry::eprint_line(&format!("{}: note: {note}", path.display()));
    }
    for problem in &ddl.problems {
        telemetry::eprint_line(&format!("{}: {problem}", path.display()));
    }
    match ddl.problems.is_empty() {
        true => ExitCode::SUCCESS,
        false => ExitCode::from(1),
    }
}

/// `spillway leases`: exit 0 with the table printed, 2 for an invalid
/// configuration or one without `[coordination]`, 1 when the table is
/// missing or cannot be read.
fn leases(path: &std::path::Path, json: bool) -> ExitCode {
    use spillway::coordination::listing::{self, ListingError};
    let (config, runtime) = match one_shot(path) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    match runtime.block_on(listing::for_config(&config)) {
        Ok((namespace, rows)) => {
            listing::print(&namespace, &rows, json);
            ExitCode::SUCCESS
        }
        Err(err @ ListingError::NotCoordinated) => {
            telemetry::eprint_line(&format!("error: {}: {err}", path.display()));
            ExitCode::from(2)
        }
        Err(err) => {
            telemetry::eprint_line(&format!("error: {err}"));
            ExitCode::from(1)
        }
    }
}

fn originals(files: &[PathBuf], data_only: bool) -> ExitCode {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for file in files {
        match spillway::originals::print(file, data_only, &mut out) {
            Ok(()) => {}
            Err(err) if err.is_broken_pipe() => return ExitCode::SUCCESS,
            Err(err) => {
                telemetry::eprint_line(&format!("{}: {err}", file.display()));
                return ExitCode::from(2);
            }
        }
    }
    match std::io::Write::flush(&mut out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(err) => {
            telemetry::eprint_line(&format!("error: writing the records: {err}"));
            ExitCode::from(1)
        }
    }
}

fn init_logs(log_format: LogFormatArg, log_level: &str) {
    let format = match log_format {
        LogFormatArg::Text => LogFormat::Text,
        LogFormatArg::Json => LogFormat::Json,
    };
    telemetry::init(format, log_level);
}

/// Runs the replay's configuration once; without `--state`, in a
/// checkpoint directory of its own, removed after a run that succeeded.
/// Printing targets and dry runs read the archive without a pipeline.
fn replay(args: &spillway::replay::ReplayArgs, dry_run: bool) -> i32 {
    use spillway::replay::{config_text, StatePlace, Target};
    let target = match Target::of(&args.to) {
        Ok(target) => target,
        Err(err) => {
            telemetry::eprint_line(&format!("error: {err}"));
            return 2;
        }
    };
    if dry_run || target != Target::Deliver {
        if let (false, Some(state)) = (dry_run, &args.state) {
            let err = spillway::replay::ReplayError::StateOfPrint(state.display().to_string());
            telemetry::eprint_line(&format!("error: {err}"));
            return 2;
        }
        return replay_print(args, target, dry_run);
    }
    let (state, scratch) = match &args.state {
        Some(file) => match StatePlace::of(file) {
            Ok(state) => (state, None),
            Err(err) => {
                telemetry::eprint_line(&format!("error: {err}"));
                return 2;
            }
        },
        None => {
            let dir = std::env::temp_dir().join(format!("spillway-replay-{}", std::process::id()));
            let state = StatePlace {
                dir: dir.clone(),
                name: "replay".to_owned(),
            };
            (state, Some(dir))
        }
    };
    let text = match config_text(args, &state) {
        Ok(text) => text,
        Err(err) => {
            telemetry::eprint_line(&format!("error: {err}"));
            return 2;
        }
    };
    let config = match spillway::config::parse(&text, "of spillway replay", &|name| std::env::var(name).ok()) {
        Ok(config) => config,
        Err(err) => {
            telemetry::eprint_line(&format!("error: {err}"));
            return 2;
        }
    };
    let code = run_config(config, true);
    if let (0, Some(dir)) = (code, scratch) {
        let _ = std::fs::remove_dir_all(dir);
    }
    code
}

/// `--to -`, `--to file:PATH`, `--dry-run`: 0 when every object was read
/// (a dry run prints its counts on stdout), 1 when the archive or the
/// output failed, 2 for a bad command line.
fn replay_print(args: &spillway::replay::ReplayArgs, target: spillway::replay::Target, dry_run: bool) -> i32 {
    use spillway::replay::{config_text, print, StatePlace, Target};
    let state = StatePlace {
        dir: std::env::temp_dir(),
        name: "replay".to_owned(),
    };
    let text = match config_text(args, &state) {
        Ok(text) => text,
        Err(err) => {
            telemetry::eprint_line(&format!("error: {err}"));
            return 2;
        }
    };
    let archive = match spillway::config::parse(&text, "of spillway replay", &|name| std::env::var(name).ok()) {
        Ok(config) => {
            config.register_secrets();
            match config.source {
                spillway::config::SourceConfig::Archive(archive) => *archive,
                _ => unreachable!("a replay reads an archive"),
            }
        }
        Err(err) => {
            telemetry::eprint_line(&format!("error: {err}"));
            return 2;
        }
    };
    let output = match (dry_run, target) {
        (true, _) => print::Output::Count,
        (false, Target::File(path)) => print::Output::File(path),
        (false, _) => print::Output::Stdout,
    };
    match print::run(archive, output, &args.errors) {
        Ok(tally) => {
            if dry_run {
                tally.report().iter().for_each(|line| telemetry::print_line(line));
            }
            0
        }
        Err(err) => {
            telemetry::eprint_line(&format!("error: {}", error_chain(&err)));
            1
        }
    }
}

fn run(path: &std::path::Path, once: bool) -> i32 {
    let config = match spillway::config::load(path) {
        Ok(config) => config,
        Err(err) => {
            telemetry::eprint_line(&format!("error: {err}"));
            return 2;
        }
    };
    run_config(config, once)
}

/// Runs one pipeline per file in this process: exit 2 if any
/// configuration is refused (nothing runs), 1 if any pipeline failed (each
/// said at once, naming it, while the others run on), 0 otherwise.
fn run_many(files: &[PathBuf], once: bool) -> i32 {
    let pipelines = match spillway::config::set::load_all(files) {
        Ok(pipelines) => pipelines,
        Err(problems) => {
            for problem in problems {
                telemetry::eprint_line(&format!("error: {problem}"));
            }
            return 2;
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("building the tokio runtime");
    let result = runtime.block_on(async {
        let options = spillway::pipeline::many::ManyOptions {
            shutdown: Box::pin(shutdown_signal()),
            interval_override: test_interval_override(),
            once,
        };
        spillway::pipeline::many::run_many(pipelines, options, |ended| {
            if let Err(err) = &ended.result {
                telemetry::eprint_line(&format!("error: {}: {}", ended.pipeline, error_chain(err)));
            }
        })
        .await
    });
    match result {
        Ok(ended) if ended.iter().all(|e| e.result.is_ok()) => 0,
        Ok(_) => 1,
        Err(err) => {
            telemetry::eprint_line(&format!("error: {}", error_chain(&err)));
            run_error_code(&err)
        }
    }
}

fn run_config(config: spillway::config::Config, once: bool) -> i32 {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("building the tokio runtime");
    let result = runtime.block_on(async {
        let options = spillway::RunOptions {
            shutdown: Box::pin(shutdown_signal()),
            interval_override: test_interval_override(),
            once,
        };
        spillway::run(config, options).await
    });
    match result {
        Ok(_) => 0,
        Err(err) => {
            telemetry::eprint_line(&format!("error: {}", error_chain(&err)));
            run_error_code(&err)
        }
    }
}

/// 2 for a command line `run` refuses before anything starts, 1 for a run
/// that failed.
fn run_error_code(err: &spillway::RunError) -> i32 {
    match err {
        spillway::RunError::OnceWithCoordination { .. } => 2,
        _ => 1,
    }
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    let mut interrupt = signal(SignalKind::interrupt()).expect("installing the SIGINT handler");
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
}

/// `SPILLWAY_TEST_INTERVAL_MS`: a test hook that shortens the buffer
/// interval below its 60-second minimum, so interval flushes can be tested
/// end to end without waiting.
fn test_interval_override() -> Option<Duration> {
    let value = std::env::var("SPILLWAY_TEST_INTERVAL_MS").ok()?;
    value.parse().ok().map(Duration::from_millis)
}

/// An error and its causes on one line.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut line = err.to_string();
    let mut cause = err.source();
    while let Some(inner) = cause {
        let text = inner.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        cause = inner.source();
    }
    line
}
