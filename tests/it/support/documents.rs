//! Reads the documents (README.md and docs/) that tests hold the code to, so that the
//! documentation and the behaviour cannot drift apart. Paths are relative to the crate root.

use std::path::Path;

/// The text of a document, e.g. `docs/errors.md`.
pub fn read(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

/// The text between `<!-- NAME:start -->` and `<!-- NAME:end -->` in a document.
pub fn block(path: &str, name: &str) -> String {
    let text = read(path);
    let start = text
        .find(&format!("<!-- {name}:start -->"))
        .unwrap_or_else(|| panic!("{path} has no {name}:start marker"));
    let end = text
        .find(&format!("<!-- {name}:end -->"))
        .unwrap_or_else(|| panic!("{path} has no {name}:end marker"));
    text[start..end].to_owned()
}

/// The data rows of the Markdown table in the block NAME of a document, each as its cells with
/// surrounding spaces and backticks removed.
pub fn table(path: &str, name: &str) -> Vec<Vec<String>> {
    block(path, name)
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|line| {
            line.trim_matches('|')
                .split('|')
                .map(|c| c.trim().trim_matches('`').to_owned())
                .collect()
        })
        .collect()
}
