//! Reading manifests: files and folders of YAML or JSON, multi-document streams.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;
use thiserror::Error;

/// A file or folder that could not be read.
#[derive(Debug, Error)]
#[error("{path}: {source}")]
pub struct LoadError {
    path: String,
    #[source]
    source: std::io::Error,
}

/// One document of a manifest file.
#[derive(Debug)]
pub struct Document {
    /// The file, as the user named it (joined with the folder when given a folder).
    pub file: String,
    /// Position in the file, from 1.
    pub index: usize,
    /// The document, or why it is not valid YAML.
    pub content: Result<Value, String>,
}

fn is_manifest(path: &Path) -> bool {
    matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml" | "json"))
}

/// Files to read for the given paths: files as given, folders' manifest files (sorted; into
/// subfolders only when `recursive`).
pub fn manifest_files(paths: &[PathBuf], recursive: bool) -> Result<Vec<PathBuf>, LoadError> {
    let mut files = Vec::new();
    for path in paths {
        collect(path, recursive, true, &mut files)?;
    }
    Ok(files)
}

fn collect(path: &Path, recursive: bool, top: bool, files: &mut Vec<PathBuf>) -> Result<(), LoadError> {
    let io = |source| LoadError { path: path.display().to_string(), source };
    let meta = std::fs::metadata(path).map_err(io)?;
    if meta.is_file() {
        // A file named explicitly is read whatever its extension.
        if top || is_manifest(path) {
            files.push(path.to_path_buf());
        }
        return Ok(());
    }
    if !top && !recursive {
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(io)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| !p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.')))
        .collect();
    entries.sort();
    for entry in entries {
        collect(&entry, recursive, false, files)?;
    }
    Ok(())
}

/// Splits a file into its documents; empty documents are dropped but keep their index.
pub fn read_documents(path: &Path) -> Result<Vec<Document>, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError { path: path.display().to_string(), source })?;
    let file = path.display().to_string();
    let mut documents = Vec::new();
    for (i, de) in serde_yaml::Deserializer::from_str(&text).enumerate() {
        let content = match Value::deserialize(de) {
            Ok(Value::Null) => continue,
            Ok(v) => Ok(v),
            Err(e) => Err(format!("not valid YAML: {e}")),
        };
        let failed = content.is_err();
        documents.push(Document { file: file.clone(), index: i + 1, content });
        // After a syntax error the stream cannot be resynchronised.
        if failed {
            break;
        }
    }
    Ok(documents)
}
