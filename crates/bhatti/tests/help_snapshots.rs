//! `bhatti <command> --help` for every client command, compared with the
//! files in `tests/snapshots/` (`BHATTI_UPDATE_SNAPSHOTS=1` rewrites them),
//! and a check that every command and every flag of every command has a
//! description. Commands are discovered from the help output itself, so a
//! new command without a snapshot fails here.

use std::path::PathBuf;
use std::process::Command;

/// Top-level commands that are not client commands (documented elsewhere;
/// their flags are still checked for descriptions).
const NOT_SNAPSHOTTED: &[&str] = &["serve", "user"];

fn help(path: &[String]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_bhatti"))
        .args(path)
        .arg("--help")
        .env_remove("BHATTI_DATA_DIR")
        .env_remove("BHATTI_URL")
        .env_remove("BHATTI_TOKEN")
        .output()
        .expect("run bhatti");
    assert!(out.status.success(), "bhatti {path:?} --help failed");
    assert!(out.stderr.is_empty(), "help writes only to stdout");
    String::from_utf8(out.stdout).expect("utf-8 help")
}

/// Subcommand names listed under "Commands:" (without `help`).
fn subcommands(help: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut in_cmds = false;
    for line in help.lines() {
        if line == "Commands:" {
            in_cmds = true;
            continue;
        }
        if in_cmds {
            if !line.starts_with("  ") {
                break;
            }
            if let Some(name) = line.split_whitespace().next()
                && name != "help"
            {
                names.push(name.to_owned());
            }
        }
    }
    names
}

/// Every command path, depth first: `[]`, `["create"]`, `["volume", "create"]`…
fn all_paths() -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut stack = vec![Vec::<String>::new()];
    while let Some(p) = stack.pop() {
        for sub in subcommands(&help(&p)).into_iter().rev() {
            let mut q = p.clone();
            q.push(sub);
            stack.push(q);
        }
        out.push(p);
    }
    out
}

/// Option and command lines that have no description text.
fn undocumented(help: &str) -> Vec<String> {
    let mut bad = Vec::new();
    let mut section = "";
    for line in help.lines() {
        if !line.starts_with(' ') && line.ends_with(':') {
            section = line;
            continue;
        }
        if !matches!(section, "Options:" | "Commands:" | "Arguments:") || line.trim().is_empty() {
            continue;
        }
        let t = line.trim_start();
        // Continuation lines of a long description are indented further.
        if line.len() - t.len() > 12
            && !t.starts_with('-')
            && !t.starts_with('<')
            && !t.starts_with('[')
        {
            continue;
        }
        // "  -e, --env <KEY=VALUE>  Description": two spaces before the text.
        let described = t
            .split_once("  ")
            .is_some_and(|(_, d)| !d.trim().is_empty());
        if !described {
            bad.push(line.to_owned());
        }
    }
    bad
}

fn snapshot_file(path: &[String]) -> PathBuf {
    let name = if path.is_empty() {
        "bhatti".to_owned()
    } else {
        format!("bhatti_{}", path.join("_"))
    };
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(format!("{name}.txt"))
}

#[test]
fn every_command_and_flag_is_documented() {
    let mut problems = Vec::new();
    for p in all_paths() {
        for line in undocumented(&help(&p)) {
            problems.push(format!("bhatti {}: {line}", p.join(" ")));
        }
    }
    assert!(
        problems.is_empty(),
        "undocumented:\n{}",
        problems.join("\n")
    );
}

#[test]
fn help_matches_snapshots() {
    let update = std::env::var_os("BHATTI_UPDATE_SNAPSHOTS").is_some();
    let mut stale = Vec::new();
    let paths: Vec<_> = all_paths()
        .into_iter()
        .filter(|p| {
            p.first()
                .is_none_or(|c| !NOT_SNAPSHOTTED.contains(&c.as_str()))
        })
        .collect();
    assert!(paths.len() > 30, "found only {} commands", paths.len());
    for p in paths {
        let text = help(&p);
        let file = snapshot_file(&p);
        if update {
            std::fs::write(&file, &text).expect("write snapshot");
            continue;
        }
        match std::fs::read_to_string(&file) {
            Ok(want) if want == text => {}
            Ok(_) => stale.push(format!("{} differs", file.display())),
            Err(_) => stale.push(format!("{} is missing", file.display())),
        }
    }
    assert!(
        stale.is_empty(),
        "help snapshots out of date (rerun with BHATTI_UPDATE_SNAPSHOTS=1 and review the diff):\n{}",
        stale.join("\n")
    );
}

#[test]
fn undocumented_detection_works() {
    let help = "Usage: x\n\nOptions:\n      --good <G>  Does a thing\n      --bad\n  -h, --help  Print help\n";
    assert_eq!(undocumented(help), vec!["      --bad".to_owned()]);
}
