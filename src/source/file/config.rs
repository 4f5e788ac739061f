//! `[source]` with `type = "file"`: the files, checked where the answer
//! cannot change before `run` (a directory is not a file; two files may not
//! share a name).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use spillway_settings::{paths, Problems};

/// `[source]` with `type = "file"`: NDJSON files, one record per line.
/// Each file is read once, in the order given; a restarted run continues
/// after the last checkpointed line. Relative paths are relative to the
/// working directory.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSettings {
    /// A path, or an array of paths. File names must differ: a file's name
    /// is its source id in object names and checkpoints.
    pub path: OneOrMany,
}

/// A string or an array of strings.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl FileSettings {
    /// The files, with every problem (at `key`, normally `source`) added.
    pub fn check(self, key: &str, problems: &mut Problems) -> Option<Vec<PathBuf>> {
        let paths = match self.path {
            OneOrMany::One(p) => vec![p],
            OneOrMany::Many(ps) => ps,
        };
        let key = format!("{key}.path");
        if paths.is_empty() {
            problems.add(&key, "must name at least one file");
            return None;
        }
        let mut names = HashSet::new();
        for path in &paths {
            if let Some(problem) = paths::input_file_problem(Path::new(path)) {
                problems.add(&key, format!("{path:?} {problem}"));
            }
            match Path::new(path).file_name().map(|n| n.to_string_lossy().into_owned()) {
                None => problems.add(&key, format!("{path:?} does not name a file")),
                Some(name) if !names.insert(name.clone()) => problems.add(
                    &key,
                    format!("two files are named {name:?}: a file's name is its source id, so names must differ"),
                ),
                Some(_) => {}
            }
        }
        Some(paths.into_iter().map(PathBuf::from).collect())
    }
}
