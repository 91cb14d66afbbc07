//! What the commands print (one line of JSON, or a table), their progress on a terminal, and
//! their exit codes, decided here once.

use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::process::ExitCode;

/// An outcome failed, or a message stays in the queue.
pub const EXIT_FAILED: u8 = 1;
/// The command could not run: its input, the configuration, or the credentials.
pub const EXIT_UNUSABLE: u8 = 2;
/// A resource is not compliant, or could not be listed.
pub const EXIT_NOT_COMPLIANT: u8 = 3;

/// How a command prints its result.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A table for people.
    Table,
    /// One line of JSON for machines.
    Json,
}

/// How `audit` prints its result: as the other commands, or as CSV for a spreadsheet.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuditFormat {
    /// A table for people.
    Table,
    /// One line of JSON for machines.
    Json,
    /// RFC 4180 CSV: a header, then one row per resource.
    Csv,
}

/// One CSV record as RFC 4180 writes it: fields separated by commas, a field holding a comma, a
/// double quote, CR or LF enclosed in double quotes with its double quotes doubled, and CRLF at
/// the end (<https://www.rfc-editor.org/rfc/rfc4180#section-2>).
pub fn csv_record<S: AsRef<str>>(fields: &[S]) -> String {
    let mut line = fields
        .iter()
        .map(|field| {
            let field = field.as_ref();
            if field.contains([',', '"', '\r', '\n']) {
                format!("\"{}\"", field.replace('"', "\"\""))
            } else {
                field.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(",");
    line.push_str("\r\n");
    line
}

/// Says why the command cannot run, and exits [`EXIT_UNUSABLE`].
pub fn unusable(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("enforcer: {message}");
    ExitCode::from(EXIT_UNUSABLE)
}

/// Prints `value` as one line of JSON.
pub fn print_json<T: serde::Serialize + ?Sized>(value: &T) {
    match serde_json::to_string(value) {
        Ok(line) => println!("{line}"),
        Err(e) => println!(r#"{{"error":"{e}"}}"#),
    }
}

/// A table with the commands' style and `header`.
pub fn table<const N: usize>(header: [&str; N]) -> Table {
    let mut table = Table::new();
    table.load_style(UTF8_BORDERS_ONLY);
    table.set_header(header);
    table
}

/// Whether progress can be drawn: standard error is a terminal.
pub fn on_terminal() -> bool {
    std::io::stderr().is_terminal()
}

/// A progress bar (of `length` items, or a spinner) on standard error, hidden off a terminal.
pub fn progress(length: Option<u64>, template: &str) -> ProgressBar {
    if !on_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(length, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// `outcome: n, ...` of a summary's counts.
pub fn counts_line<K: std::fmt::Display>(counts: &std::collections::BTreeMap<K, usize>) -> String {
    counts
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_records_quote_as_rfc_4180_says() {
        assert_eq!(csv_record(&["a", "b"]), "a,b\r\n");
        assert_eq!(
            csv_record(&["was on \"alias/x\", now", "line\nbreak", ""]),
            "\"was on \"\"alias/x\"\", now\",\"line\nbreak\",\r\n"
        );
    }
}
