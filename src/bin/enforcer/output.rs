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
