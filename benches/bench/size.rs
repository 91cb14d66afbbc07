//! Size: the stripped `bootstrap` and its zip per architecture, and what each release-profile
//! setting buys (`profile`).

use crate::*;
use serde_json::{Value, json};
use std::path::Path;
use std::process::Command;
use std::time::Instant;

pub(crate) fn size(results: &mut Results) {
    println!("== size");
    let mb = |b: u64| b as f64 / 1_000_000.0;
    let binary = Path::new(bootstrap());
    let bytes = std::fs::metadata(binary).map(|m| m.len()).unwrap_or(0);
    let zipped = zip_size(binary);
    results.row(
        "size",
        format!(
            "x86_64 stripped `bootstrap` / zip ({})",
            std::env::consts::ARCH
        ),
        format!("{:.2} MB / {:.2} MB", mb(bytes), mb(zipped)),
        "",
        "",
        None,
    );
    // The arm64 build the template deploys by default: `scripts/build-lambda arm64` (rustup's
    // aarch64 target with zig, or Debian's rustc-web on an x86_64 machine without it).
    let mut arm_json = json!({"not_built": "scripts/build-lambda arm64 failed"});
    let status = Command::new(root().join("scripts/build-lambda"))
        .arg("arm64")
        .status();
    let built = root().join("target/sam/arm64/EnforcerFunction/bootstrap");
    if status.map(|s| s.success()).unwrap_or(false) && built.exists() {
        let bytes = std::fs::metadata(&built).map(|m| m.len()).unwrap_or(0);
        let zipped = zip_size(&built);
        results.row(
            "size",
            "arm64 stripped `bootstrap` / zip",
            format!("{:.2} MB / {:.2} MB", mb(bytes), mb(zipped)),
            "",
            "< 8 MB",
            Some(mb(bytes) < 8.0),
        );
        arm_json = json!({"bytes": bytes, "zip_bytes": zipped});
    } else {
        results.row(
            "size",
            "arm64 stripped `bootstrap`",
            "not measured: scripts/build-lambda arm64 failed",
            "",
            "< 8 MB",
            Some(false),
        );
    }
    results.record(
        "size",
        json!({"x86_64": {"bytes": bytes, "zip_bytes": zipped}, "arm64": arm_json}),
    );
}

/// `[profile.release]` of `dir`/Cargo.toml: each `key = value` line, the value as written.
pub(crate) fn release_profile(dir: &Path) -> Vec<(String, String)> {
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).expect("Cargo.toml");
    manifest
        .lines()
        .skip_while(|l| l.trim() != "[profile.release]")
        .skip(1)
        .take_while(|l| !l.trim_start().starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// What each release-profile choice buys: the package (of a copy of the source taken when the
/// section starts) built cold once as `Cargo.toml` has it
/// and once per setting with only that setting turned back to the alternative (cargo's
/// `CARGO_PROFILE_RELEASE_*` overrides), each in its own target directory, for every
/// architecture in `BENCH_PROFILE_ARCHS` (default arm64, the template's default). A cold build
/// takes minutes, so this section runs only when named: `scripts/bench profile`.
pub(crate) fn profile(results: &mut Results) {
    println!("== profile");
    // The alternative of each setting: cargo's own release default, and for `strip` keeping
    // the symbols.
    const ALTERNATIVES: [(&str, &str); 5] = [
        ("opt-level", "3"),
        ("lto", "false"),
        ("panic", "unwind"),
        ("codegen-units", "16"),
        ("strip", "false"),
    ];
    /// One cold build of the package.
    #[derive(Clone, Copy)]
    struct Build {
        bytes: u64,
        zip_bytes: u64,
        seconds: f64,
    }
    impl Build {
        fn json(&self) -> Value {
            json!({"bytes": self.bytes, "zip_bytes": self.zip_bytes, "build_seconds": self.seconds})
        }
    }
    // The builds take half an hour: they build a copy of the source as it is now, so that an
    // edit meanwhile cannot make the variants differ in more than their setting.
    let source = root().join("target/bench/profile/source");
    let _ = std::fs::remove_dir_all(&source);
    std::fs::create_dir_all(&source).expect("snapshot dir");
    let copied = Command::new("sh")
        .arg("-c")
        .arg(
            "tar -c --exclude=./target --exclude=./.tools --exclude=./.aws-sam --exclude=./.git \
             --exclude=./fuzz/target -f - . | tar -x -C \"$0\" && ln -s \"$1/.tools\" \"$0/.tools\"",
        )
        .arg(&source)
        .arg(root())
        .current_dir(root())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(copied, "could not copy the source to {}", source.display());
    // `scripts/build-lambda ARCH` of the copy in a fresh target directory, with one setting
    // overridden.
    let build = |arch: &str, scratch: &Path, setting: Option<(&str, &str)>| -> Option<Build> {
        let name = setting.map_or("chosen", |(k, _)| k);
        let target_dir = scratch.join(format!("target-{name}"));
        let out = scratch.join(format!("package-{name}"));
        let _ = std::fs::remove_dir_all(&target_dir);
        let mut command = Command::new(source.join("scripts/build-lambda"));
        command
            .arg(arch)
            .env("CARGO_TARGET_DIR", &target_dir)
            .env("BUILD_LAMBDA_OUT", &out);
        if let Some((key, alternative)) = setting {
            let var = format!(
                "CARGO_PROFILE_RELEASE_{}",
                key.replace('-', "_").to_uppercase()
            );
            command.env(var, alternative);
        }
        println!("  {arch} {name}: cold build");
        let started = Instant::now();
        let ok = command.status().map(|s| s.success()).unwrap_or(false);
        let seconds = started.elapsed().as_secs_f64();
        let binary = out.join("EnforcerFunction/bootstrap");
        let built = (ok && binary.exists()).then(|| Build {
            bytes: std::fs::metadata(&binary).map(|m| m.len()).unwrap_or(0),
            zip_bytes: zip_size(&binary),
            seconds,
        });
        // A release target directory is about a gigabyte: keep only the package.
        let _ = std::fs::remove_dir_all(&target_dir);
        built
    };
    let chosen = release_profile(&source);
    let archs = std::env::var("BENCH_PROFILE_ARCHS").unwrap_or_else(|_| "arm64".into());
    let mut record = serde_json::Map::new();
    for arch in archs.split(',').map(str::trim).filter(|a| !a.is_empty()) {
        let scratch = root().join("target/bench/profile").join(arch);
        let base = build(arch, &scratch, None);
        results.row(
            "profile",
            format!("{arch}: `[profile.release]` as in Cargo.toml"),
            base.map_or("build failed".to_owned(), |b| {
                format!(
                    "{} bytes, zip {} bytes, cold build {:.0} s",
                    b.bytes, b.zip_bytes, b.seconds
                )
            }),
            "",
            "",
            None,
        );
        let mut rows = Vec::new();
        for (key, alternative) in ALTERNATIVES {
            let now = chosen
                .iter()
                .find(|(k, _)| k == key)
                .map_or("(cargo's default)", |(_, v)| v.as_str());
            let other = build(arch, &scratch, Some((key, alternative)));
            let bought = match (base, other) {
                (Some(b), Some(o)) => format!(
                    "{} bytes with `{alternative}`: `{now}` saves {} bytes ({} zipped); cold build {:.0} s against {:.0} s",
                    o.bytes,
                    o.bytes as i64 - b.bytes as i64,
                    o.zip_bytes as i64 - b.zip_bytes as i64,
                    b.seconds,
                    o.seconds
                ),
                _ => "not measured: a build failed".to_owned(),
            };
            results.row(
                "profile",
                format!("{arch}: `{key} = {now}`"),
                bought,
                "",
                "",
                None,
            );
            rows.push(
                json!({"setting": key, "chosen": now, "alternative": alternative,
                             "with_alternative": other.map(|o| o.json())}),
            );
        }
        record.insert(
            arch.to_owned(),
            json!({"chosen": base.map(|b| b.json()), "alternatives": rows}),
        );
    }
    results.record("profile", Value::Object(record));
}
