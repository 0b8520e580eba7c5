//! `--allow-path`: the roots a process may read and write under. A path is
//! checked after normalising it (symlinks resolved, `.` and `..` folded), so
//! neither `..` nor a symlink leads out of a root.

use std::path::{Component, Path, PathBuf};

/// No roots: every path is allowed.
#[derive(Clone, Debug, Default)]
pub struct AllowedPaths {
    roots: Vec<PathBuf>,
}

impl AllowedPaths {
    /// The roots, each resolved now (they must exist).
    pub fn new(roots: &[PathBuf]) -> Result<AllowedPaths, String> {
        let roots = roots
            .iter()
            .map(|r| {
                r.canonicalize()
                    .map_err(|e| format!("--allow-path {}: {e}", r.display()))
            })
            .collect::<Result<_, _>>()?;
        Ok(AllowedPaths { roots })
    }

    pub fn is_open(&self) -> bool {
        self.roots.is_empty()
    }

    /// `path` if it lies under a root (after normalising), else an error
    /// naming it and the roots. `what` says what the path is for.
    pub fn check(&self, path: &Path, what: &str) -> Result<(), String> {
        if self.roots.is_empty() || is_remote(path) {
            return Ok(());
        }
        let resolved = normalise(path);
        if self.roots.iter().any(|r| resolved.starts_with(r)) {
            return Ok(());
        }
        let roots: Vec<String> = self.roots.iter().map(|r| r.display().to_string()).collect();
        Err(format!(
            "{what} {} is outside the allowed paths ({}){}",
            path.display(),
            roots.join(", "),
            if resolved.as_path() != path {
                format!("; it resolves to {}", resolved.display())
            } else {
                String::new()
            }
        ))
    }
}

/// A `--table NAME=PATH` argument.
pub fn parse_table(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((n, p)) if !n.is_empty() && !p.is_empty() => Ok((n.to_string(), p.to_string())),
        _ => Err(format!("expected NAME=PATH, got {s:?}")),
    }
}

/// Object-store URLs (`s3://…`) are not file system paths.
fn is_remote(path: &Path) -> bool {
    path.to_str().is_some_and(|s| s.contains("://"))
}

/// The path with symlinks resolved as far as it exists, and the rest
/// (not yet created: an output) folded lexically.
fn normalise(path: &Path) -> PathBuf {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(path)
    };
    // The longest existing prefix, resolved; then the remaining components.
    let mut existing = absolute.clone();
    let mut rest = vec![];
    let base = loop {
        if let Ok(real) = existing.canonicalize() {
            break real;
        }
        match (existing.file_name(), existing.parent()) {
            (Some(name), Some(parent)) => {
                rest.push(name.to_os_string());
                existing = parent.to_path_buf();
            }
            _ => break PathBuf::from("/"),
        }
    };
    let mut out = base;
    for part in rest.iter().rev() {
        for c in Path::new(part).components() {
            match c {
                Component::ParentDir => {
                    out.pop();
                }
                Component::CurDir => {}
                other => out.push(other),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_under_a_root_pass_and_escapes_do_not() {
        let dir = tempfile_dir();
        let root = dir.join("data");
        std::fs::create_dir_all(root.join("t")).unwrap();
        std::fs::create_dir_all(dir.join("secret")).unwrap();
        std::os::unix::fs::symlink(dir.join("secret"), root.join("link")).unwrap();
        let allowed = AllowedPaths::new(std::slice::from_ref(&root)).unwrap();
        assert!(allowed.check(&root.join("t/x.parquet"), "input").is_ok());
        assert!(allowed.check(&root.join("new/out"), "output").is_ok());
        for escape in [
            root.join("../secret/x.parquet"),
            root.join("t/../../secret"),
            root.join("link/x.parquet"),
            root.join("new/../../secret/out"),
            PathBuf::from("/etc/passwd"),
        ] {
            let err = allowed.check(&escape, "input").unwrap_err();
            assert!(err.contains("outside the allowed paths"), "{err}");
            assert!(
                err.contains(&root.canonicalize().unwrap().display().to_string()),
                "{err}"
            );
        }
        assert!(AllowedPaths::default()
            .check(Path::new("/etc/passwd"), "input")
            .is_ok());
        assert!(AllowedPaths::new(&[dir.join("missing")]).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("keel-paths-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
