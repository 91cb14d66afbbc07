//! The results: statistics of a sample, the table rows and JSON the sections write, and the
//! machine they ran on.

use serde_json::{Value, json};
use std::process::Command;

/// Median, p95, min and max of a sample.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stats {
    pub(crate) n: usize,
    pub(crate) median: f64,
    pub(crate) p95: f64,
    pub(crate) min: f64,
    pub(crate) max: f64,
}

pub(crate) fn stats(mut v: Vec<f64>) -> Stats {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return Stats {
            n,
            median: f64::NAN,
            p95: f64::NAN,
            min: f64::NAN,
            max: f64::NAN,
        };
    }
    let at = |q: f64| v[((q * (n - 1) as f64).round() as usize).min(n - 1)];
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Stats {
        n,
        median,
        p95: at(0.95),
        min: v[0],
        max: v[n - 1],
    }
}

impl Stats {
    pub(crate) fn show(&self, unit: &str, digits: usize) -> String {
        format!(
            "{:.d$} {unit} (min {:.d$}, max {:.d$}, n={})",
            self.median,
            self.min,
            self.max,
            self.n,
            d = digits
        )
    }

    pub(crate) fn json(&self) -> Value {
        json!({"n": self.n, "median": self.median, "p95": self.p95, "min": self.min, "max": self.max})
    }
}

/// One line of the results table.
pub(crate) struct Row {
    pub(crate) section: &'static str,
    pub(crate) metric: String,
    pub(crate) ours: String,
    pub(crate) peer: String,
    pub(crate) target: String,
    pub(crate) verdict: String,
}

#[derive(Default)]
pub(crate) struct Results {
    pub(crate) rows: Vec<Row>,
    pub(crate) json: serde_json::Map<String, Value>,
}

impl Results {
    pub(crate) fn row(
        &mut self,
        section: &'static str,
        metric: impl Into<String>,
        ours: impl Into<String>,
        peer: impl Into<String>,
        target: impl Into<String>,
        met: Option<bool>,
    ) {
        let row = Row {
            section,
            metric: metric.into(),
            ours: ours.into(),
            peer: peer.into(),
            target: target.into(),
            verdict: match met {
                Some(true) => "met".into(),
                Some(false) => "**missed**".into(),
                None => String::new(),
            },
        };
        println!(
            "  {:<22} {:<44} ours: {}  peer: {}  {} {}",
            row.section, row.metric, row.ours, row.peer, row.target, row.verdict
        );
        self.rows.push(row);
    }

    pub(crate) fn record(&mut self, section: &str, value: Value) {
        self.json.insert(section.to_owned(), value);
    }

    pub(crate) fn markdown(&self, machine: &Value) -> String {
        let mut out = String::new();
        out.push_str(&format!(
            "Machine: {} ({} cores, {}), {}; date {}; commit {}; command `make bench`.\n\n",
            machine["cpu"].as_str().unwrap_or("?"),
            machine["cores"],
            machine["memory"].as_str().unwrap_or("?"),
            machine["os"].as_str().unwrap_or("?"),
            machine["date"].as_str().unwrap_or("?"),
            machine["commit"].as_str().unwrap_or("?"),
        ));
        out.push_str("| Section | Metric | Enforcer | Cloud Custodian | Target | |\n");
        out.push_str("|---|---|---|---|---|---|\n");
        for r in &self.rows {
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} |\n",
                r.section, r.metric, r.ours, r.peer, r.target, r.verdict
            ));
        }
        out
    }
}

pub(crate) fn sh(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

pub(crate) fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| std::env::consts::ARCH.to_owned());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| l.split_whitespace().next()?.parse::<u64>().ok())
        .map(|kb| format!("{} GiB", kb / 1024 / 1024))
        .unwrap_or_default();
    json!({
        "cpu": cpu,
        "arch": std::env::consts::ARCH,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "memory": memory,
        "os": sh("uname", &["-sr"]),
        "rustc": sh("rustc", &["--version"]),
        "date": sh("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        "commit": sh("git", &["-C", env!("CARGO_MANIFEST_DIR"), "rev-parse", "--short", "HEAD"]),
    })
}
