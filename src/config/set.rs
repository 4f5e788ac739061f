//! Several pipelines in one process: `spillway run A.toml B.toml` or
//! `spillway run --config DIR` (every `*.toml` in it). Each file is one
//! pipeline, checked on its own; what ties them together is checked here:
//! their names are unique (a name is the checkpoint file's and the
//! `stream` label of every metric), and at most one sets
//! `[telemetry] listen` (the one listener serves every pipeline's metrics
//! and health, so which file holds it is the operator's choice, and two
//! would be a conflict rather than a preference). `[limits] memory_mb` is
//! the process's budget, shared by every pipeline: files may each set it
//! (a template repeated), but to the same value; without it the default
//! is summed over the pipelines (`crate::limits::config`).

use std::path::{Path, PathBuf};

use super::{load, Config};

/// One pipeline's configuration and the file it came from.
#[derive(Debug)]
pub struct Loaded {
    pub path: PathBuf,
    pub config: Config,
}

/// The configuration files `args` name: files as given, and the `*.toml`
/// files of each directory, in name order. An empty list, or a directory
/// without one, is a problem in one line.
pub fn config_files(args: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    if args.is_empty() {
        return Err("no configuration: give one or more files (spillway run A.toml B.toml) or --config DIR".into());
    }
    let mut files = Vec::new();
    for arg in args {
        if !arg.is_dir() {
            files.push(arg.clone());
            continue;
        }
        let entries =
            std::fs::read_dir(arg).map_err(|err| format!("{}: cannot read the directory: {err}", arg.display()))?;
        let mut found: Vec<PathBuf> = entries
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.is_file() && path.extension().is_some_and(|ext| ext == "toml"))
            .collect();
        if found.is_empty() {
            return Err(format!("{}: no *.toml file in this directory", arg.display()));
        }
        found.sort();
        files.append(&mut found);
    }
    Ok(files)
}

/// Loads every file; gives the configurations, or every problem as a line
/// starting with the file it is in.
pub fn load_all(files: &[PathBuf]) -> Result<Vec<Loaded>, Vec<String>> {
    let mut loaded = Vec::new();
    let mut problems = Vec::new();
    for path in files {
        match load(path) {
            Ok(config) => loaded.push(Loaded {
                path: path.clone(),
                config,
            }),
            Err(err) => problems.extend(err.problems.iter().map(|p| format!("{}: {p}", path.display()))),
        }
    }
    problems.extend(check_together(&loaded));
    match problems.is_empty() {
        true => Ok(loaded),
        false => Err(problems),
    }
}

/// What is wrong with these pipelines together, one line each.
pub fn check_together(loaded: &[Loaded]) -> Vec<String> {
    let mut problems = Vec::new();
    for (index, later) in loaded.iter().enumerate() {
        let earlier = &loaded[..index];
        if let Some(first) = earlier.iter().find(|e| e.config.name == later.config.name) {
            problems.push(format!(
                "{}: name: {:?} is also the name of the pipeline in {}: each pipeline in one process needs its own \
                 name (it names the checkpoint file and labels the metrics)",
                later.path.display(),
                later.config.name,
                first.path.display(),
            ));
        }
        if let Some(memory_mb) = later.config.limits.memory_mb {
            let disagreeing = earlier
                .iter()
                .find(|e| e.config.limits.memory_mb.is_some_and(|other| other != memory_mb));
            if let Some(first) = disagreeing {
                problems.push(format!(
                    "{}: limits.memory_mb: {memory_mb} differs from {} in {}: the budget is the process's, shared by \
                     every pipeline; set it to one value (or in one file)",
                    later.path.display(),
                    first.config.limits.memory_mb.unwrap_or_default(),
                    first.path.display(),
                ));
            }
        }
        let Some(listen) = later.config.telemetry.listen else {
            continue;
        };
        if let Some(first) = earlier.iter().find(|e| e.config.telemetry.listen.is_some()) {
            problems.push(format!(
                "{}: telemetry.listen: {:?} is set in {} too: only one configuration may set it (its listener \
                 serves the metrics and health of every pipeline)",
                later.path.display(),
                listen.to_string(),
                first.path.display(),
            ));
        }
    }
    problems
}

/// How a pipeline is named in lines about one of several: its name and
/// its file.
pub fn describe(path: &Path, config: &Config) -> String {
    format!("pipeline {:?} ({})", config.name, path.display())
}
