//! The configuration's paths as they are on this machine, checked only
//! where the answer cannot change by the time `run` starts: an existing
//! file where a directory belongs, or a directory where a file belongs. A
//! path that does not exist yet is fine (`validate` runs in CI, before the
//! data or the directories exist).

use std::path::Path;

/// Why `path` cannot be the directory `run` writes under (it is created
/// when missing): it, or the closest part of it that exists, is not a
/// directory.
pub fn directory_problem(path: &Path) -> Option<String> {
    let existing = path
        .ancestors()
        .filter(|p| !p.as_os_str().is_empty())
        .find(|p| std::fs::metadata(p).is_ok())?;
    if existing.is_dir() {
        return None;
    }
    if existing == path {
        Some("exists and is not a directory: expected a directory (created if missing)".to_owned())
    } else {
        Some(format!(
            "cannot be created: {:?} is not a directory",
            existing.display().to_string()
        ))
    }
}

/// Why `path` cannot be an input file: it is a directory.
pub fn input_file_problem(path: &Path) -> Option<String> {
    path.is_dir()
        .then(|| "is a directory: expected an NDJSON file (or a FIFO)".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_where_directories_belong_and_the_reverse() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a-file");
        std::fs::write(&file, b"").unwrap();
        assert_eq!(directory_problem(dir.path()), None);
        assert_eq!(directory_problem(&dir.path().join("new/deeper")), None);
        assert_eq!(directory_problem(Path::new("relative/new")), None);
        assert_eq!(
            directory_problem(&file).as_deref(),
            Some("exists and is not a directory: expected a directory (created if missing)")
        );
        assert_eq!(
            directory_problem(&file.join("below")),
            Some(format!(
                "cannot be created: {:?} is not a directory",
                file.display().to_string()
            ))
        );
        assert_eq!(input_file_problem(&file), None);
        assert_eq!(input_file_problem(&dir.path().join("missing")), None);
        assert!(input_file_problem(dir.path()).is_some());
    }
}
