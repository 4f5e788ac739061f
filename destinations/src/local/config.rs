//! `[destination]` with `type = "local"`: the directory objects go under.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use spillway_settings::{paths, Problems};

/// `[destination]` (or `[destination.backup]`) with `type = "local"`:
/// objects are files below `path`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalSettings {
    /// The directory objects are written under. Relative to the working
    /// directory.
    pub path: Option<String>,
}

impl LocalSettings {
    /// The directory, checked where the answer cannot change before `run`.
    pub fn check(self, key: &str, problems: &mut Problems) -> Option<PathBuf> {
        match self.path {
            Some(path) if !path.is_empty() => {
                if let Some(problem) = paths::directory_problem(Path::new(&path)) {
                    problems.add(&format!("{key}.path"), format!("{path:?} {problem}"));
                }
                Some(PathBuf::from(path))
            }
            _ => {
                problems.add(
                    &format!("{key}.path"),
                    format!("is required with {key}.type = \"local\""),
                );
                None
            }
        }
    }
}
