//! Expanding the command line's files and folders into a stream of image paths.

use std::path::{Path, PathBuf};

/// Extensions picked up when walking a folder (files named explicitly are always tried).
const IMAGE_EXTENSIONS: [&str; 8] = ["jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff"];

pub fn is_image_name(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

/// A path to classify, or one that could not be listed and why.
pub type Entry = Result<PathBuf, (PathBuf, String)>;

/// What the command line names: every path to classify, and the files a folder walk passed over.
#[derive(Debug, Default)]
pub struct Inputs {
    /// Named files as given, folders walked recursively in sorted order. Unreadable folders
    /// become errors in the list, not a stop.
    pub paths: Vec<Entry>,
    /// Files inside the folders whose extension is not an image's (e.g. `.svg`, `.txt`), so the
    /// summary can say what was not looked at.
    pub skipped: Vec<PathBuf>,
}

pub fn expand(inputs: &[PathBuf]) -> Inputs {
    let mut out = Inputs::default();
    for input in inputs {
        if input.is_dir() {
            walk(input, &mut out);
        } else {
            out.paths.push(Ok(input.clone()));
        }
    }
    out
}

fn walk(dir: &Path, out: &mut Inputs) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => return out.paths.push(Err((dir.to_path_buf(), format!("cannot read folder: {e}")))),
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        if path.is_dir() {
            walk(&path, out);
        } else if is_image_name(&path) {
            out.paths.push(Ok(path));
        } else {
            out.skipped.push(path);
        }
    }
}

/// One line naming the skipped files (the first few, then a count), or `None` when there are none.
pub fn skipped_summary(skipped: &[PathBuf]) -> Option<String> {
    const NAMED: usize = 5;
    if skipped.is_empty() {
        return None;
    }
    let mut names: Vec<String> = skipped.iter().take(NAMED).map(|p| p.display().to_string()).collect();
    if skipped.len() > NAMED {
        names.push(format!("and {} more", skipped.len() - NAMED));
    }
    let files = if skipped.len() == 1 { "file" } else { "files" };
    Some(format!(
        "skipped {} {files} in the folders whose extension is not an image's ({}): {}",
        skipped.len(),
        IMAGE_EXTENSIONS.join(", "),
        names.join(", ")
    ))
}
