//! Reads the tables of README.md that tests hold the code to, so that the documentation and the
//! behaviour cannot drift apart.

/// The data rows of the Markdown table between `<!-- NAME:start -->` and `<!-- NAME:end -->`,
/// each as its cells with surrounding spaces and backticks removed.
pub fn table(name: &str) -> Vec<Vec<String>> {
    let readme = include_str!("../../README.md");
    let start = readme
        .find(&format!("<!-- {name}:start -->"))
        .unwrap_or_else(|| panic!("README.md has no {name}:start marker"));
    let end = readme
        .find(&format!("<!-- {name}:end -->"))
        .unwrap_or_else(|| panic!("README.md has no {name}:end marker"));
    readme[start..end]
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
