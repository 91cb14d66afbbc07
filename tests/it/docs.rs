//! The documents say what the code does: every relative link in README.md and docs/ leads to a
//! file and a heading that exist, the README's configuration table names exactly the variables
//! the configuration reads, and its parameter table exactly the template's parameters.

use crate::support::documents;

use std::cell::RefCell;
use std::collections::BTreeSet;
use stream_encryption_enforcer::config::Config;

/// README.md and every Markdown file of docs/, as paths from the crate root.
fn documents_in_repo() -> Vec<String> {
    let mut paths = vec!["README.md".to_owned()];
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
    let mut docs: Vec<String> = std::fs::read_dir(&dir)
        .expect("docs/")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".md"))
        .map(|n| format!("docs/{n}"))
        .collect();
    docs.sort();
    paths.extend(docs);
    paths
}

/// GitHub's anchor for a heading: lower case, punctuation other than `-` and `_` dropped,
/// spaces turned into `-`.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The lines of a Markdown text outside fenced code blocks.
fn prose(text: &str) -> Vec<&str> {
    let mut fenced = false;
    text.lines()
        .filter(|l| {
            if l.starts_with("```") {
                fenced = !fenced;
                return false;
            }
            !fenced
        })
        .collect()
}

fn anchors(text: &str) -> BTreeSet<String> {
    prose(text)
        .into_iter()
        .filter(|l| l.starts_with('#'))
        .map(|l| anchor(l.trim_start_matches('#')))
        .collect()
}

/// Every `](target)` of a text whose target is not a URL.
fn relative_links(text: &str) -> Vec<String> {
    let mut links = Vec::new();
    for line in prose(text) {
        let mut rest = line;
        while let Some(at) = rest.find("](") {
            rest = &rest[at + 2..];
            let Some(end) = rest.find(')') else { break };
            let target = &rest[..end];
            if !target.contains("://") && !target.starts_with("mailto:") {
                links.push(target.to_owned());
            }
            rest = &rest[end..];
        }
    }
    links
}

#[test]
fn every_relative_link_leads_to_a_file_and_a_heading_that_exist() {
    let mut broken = Vec::new();
    let mut checked = 0;
    for path in documents_in_repo() {
        let text = documents::read(&path);
        let dir = std::path::Path::new(&path).parent().unwrap().to_owned();
        for link in relative_links(&text) {
            checked += 1;
            let (file, fragment) = link.split_once('#').unwrap_or((&link, ""));
            let target = if file.is_empty() {
                path.clone()
            } else {
                // Normalise `../README.md` from docs/ to a path from the crate root.
                let joined = dir.join(file);
                let mut parts: Vec<String> = Vec::new();
                for part in joined.components() {
                    match part {
                        std::path::Component::ParentDir => {
                            parts.pop();
                        }
                        std::path::Component::CurDir => {}
                        other => parts.push(other.as_os_str().to_string_lossy().into_owned()),
                    }
                }
                parts.join("/")
            };
            let full = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(&target);
            if !full.exists() {
                broken.push(format!("{path}: ({link}): no file {target}"));
                continue;
            }
            if !fragment.is_empty() {
                let text = std::fs::read_to_string(&full).unwrap_or_default();
                if !anchors(&text).contains(fragment) {
                    broken.push(format!(
                        "{path}: ({link}): {target} has no heading #{fragment}"
                    ));
                }
            }
        }
    }
    assert!(
        checked > 30,
        "only {checked} links found: is the scan right?"
    );
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

/// Every `docs/<file>.md#<anchor>` a reason in the code points an operator to.
fn doc_links_in_code() -> Vec<(String, String)> {
    fn walk(dir: &std::path::Path, found: &mut Vec<(String, String)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, found);
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let mut rest = text.as_str();
            while let Some(at) = rest.find("docs/") {
                rest = &rest[at..];
                let end = rest
                    .find(|c: char| !(c.is_alphanumeric() || "/.-_#".contains(c)))
                    .unwrap_or(rest.len());
                if let Some((file, fragment)) = rest[..end].split_once(".md#") {
                    found.push((format!("{file}.md"), fragment.to_owned()));
                }
                rest = &rest[end.max(1)..];
            }
        }
    }
    let mut found = Vec::new();
    walk(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut found,
    );
    found
}

#[test]
fn every_docs_link_a_reason_gives_leads_to_a_heading() {
    let links = doc_links_in_code();
    assert!(links.len() >= 4, "only {links:?}: is the scan right?");
    for (file, fragment) in links {
        assert!(
            anchors(&documents::read(&file)).contains(&fragment),
            "{file} has no heading #{fragment}"
        );
    }
}

#[test]
fn the_link_check_sees_a_broken_anchor_and_a_heading_in_code() {
    let text =
        "# Top\n\n```sh\n# not a heading\n```\n[a](#top) [b](#not-a-heading) [c](https://x/y)\n";
    assert_eq!(anchors(text), BTreeSet::from(["top".to_owned()]));
    assert_eq!(relative_links(text), vec!["#top", "#not-a-heading"]);
    assert_eq!(
        anchor("`enforcer replay`: drain the failed-events queue"),
        "enforcer-replay-drain-the-failed-events-queue"
    );
}

/// The first cell of each row of the README's table whose header starts with `header`.
fn readme_table_names(header: &str) -> BTreeSet<String> {
    table_names("README.md", header)
}

/// The names in backquotes in the first column of `document`'s table headed `header`.
fn table_names(document: &str, header: &str) -> BTreeSet<String> {
    let text = documents::read(document);
    let lines: Vec<&str> = text.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.starts_with(header))
        .unwrap_or_else(|| panic!("{document} has no table headed {header:?}"));
    lines[start + 2..]
        .iter()
        .take_while(|l| l.starts_with('|'))
        .flat_map(|l| {
            let first = l.trim_matches('|').split('|').next().unwrap_or("");
            // A cell may name several variables: `A`, `B` (or `C`).
            first
                .split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn the_readme_configuration_table_names_exactly_the_variables_the_configuration_reads() {
    let read = RefCell::new(BTreeSet::new());
    let lookup = |values: &'static [(&'static str, &'static str)]| {
        let read = &read;
        move |name: &str| {
            read.borrow_mut().insert(name.to_owned());
            values
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    };
    // Single-account, and central mode (which reads its variables only when it is on).
    Config::from_lookup(lookup(&[("MANDATED_KMS_KEY", "alias/org-streams")]))
        .expect("single-account configuration");
    Config::from_lookup(lookup(&[
        ("MANDATED_KMS_KEY", "alias/org-streams"),
        ("TARGET_ROLE_NAME", "StreamEncryptionEnforcerMember"),
        ("ORGANIZATION_ID", "o-a1b2c3d4e5"),
        ("ALLOWED_REGIONS", "us-east-1"),
    ]))
    .expect("central-mode configuration");
    let read = read.into_inner();
    let documented: BTreeSet<String> = readme_table_names("| Variable |")
        .into_iter()
        .filter(|n| !n.starts_with("AWS_"))
        .collect();
    let undocumented: Vec<_> = read.difference(&documented).collect();
    let unread: Vec<_> = documented.difference(&read).collect();
    assert!(
        undocumented.is_empty() && unread.is_empty(),
        "read but not in the README's table: {undocumented:?}; in the table but never read: {unread:?}"
    );
}

/// The names of a template's parameters.
fn template_parameters(template: &str) -> BTreeSet<String> {
    documents::read(template)
        .lines()
        .skip_while(|l| *l != "Parameters:")
        .skip(1)
        .take_while(|l| l.is_empty() || l.starts_with(' '))
        .filter(|l| l.len() > 2 && !l[2..].starts_with(' ') && l.trim_end().ends_with(':'))
        .map(|l| l.trim().trim_end_matches(':').to_owned())
        .collect()
}

#[test]
fn the_readme_parameter_table_names_exactly_the_template_parameters() {
    let parameters = template_parameters("template.yaml");
    assert!(parameters.len() > 20, "{parameters:?}");
    let documented = readme_table_names("| Parameter |");
    assert_eq!(documented, parameters);
}

#[test]
fn the_guardrails_parameter_table_names_exactly_the_guardrails_parameters() {
    let parameters = template_parameters("guardrails.yaml");
    assert!(parameters.len() > 10, "{parameters:?}");
    let documented = table_names("docs/guardrails.md", "| Parameter |");
    assert_eq!(documented, parameters);
}

#[test]
fn every_table_row_is_one_line() {
    // A cell broken over two lines ends the table there: GitHub shows the rest as text.
    let mut broken = Vec::new();
    for path in documents_in_repo() {
        let text = documents::read(&path);
        for (n, line) in prose(&text).into_iter().enumerate() {
            if line.starts_with('|') && !line.trim_end().ends_with('|') {
                broken.push(format!("{path}: row {n}: {line}"));
            }
        }
    }
    assert!(broken.is_empty(), "broken rows:\n{}", broken.join("\n"));
}
