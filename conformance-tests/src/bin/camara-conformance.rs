//! `camara-conformance --env FILE FEATURE...`: runs CAMARA Gherkin files against the system
//! described by FILE. Exit code 0 only when every selected scenario passed; 2 when a file or
//! the environment cannot be used, or a selected scenario has a step no definition matches
//! (each listed as `file:line: undefined step: …`, and nothing is run).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use conformance_tests::env::Environment;
use conformance_tests::plan;
use conformance_tests::runner::{undefined_steps, Runner, TagFilter};
use conformance_tests::{load, report};

#[derive(Parser)]
#[command(
    name = "camara-conformance",
    version,
    about = "Run CAMARA Gherkin test definitions against an API"
)]
struct Cli {
    /// Environment file (TOML) describing the system under test.
    #[arg(long)]
    env: Option<PathBuf>,
    /// Run only scenarios with one of these tags (comma-separated; `@` optional).
    #[arg(long, value_delimiter = ',')]
    tags: Vec<String>,
    /// Leave out scenarios with one of these tags.
    #[arg(long, value_delimiter = ',')]
    skip_tags: Vec<String>,
    /// List the selected scenarios (and undefined steps) without running them.
    #[arg(long)]
    list: bool,
    /// Write a JUnit XML report here.
    #[arg(long)]
    junit: Option<PathBuf>,
    /// Write a JSON summary here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Feature files.
    #[arg(required = true)]
    features: Vec<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = TagFilter {
        include: cli.tags.clone(),
        exclude: cli.skip_tags.clone(),
    };
    let mut features = Vec::new();
    for path in &cli.features {
        match load(path) {
            Ok(f) => features.push(f),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let env = match &cli.env {
        Some(path) => match Environment::load(path) {
            Ok(e) => Some((e, path.display().to_string())),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        },
        None => None,
    };
    // Commonalities files are adapted as the environment says before anything is listed or run.
    for f in &mut features {
        if let Some((env, name)) = &env {
            if let Some(plan) = env.features.get(&plan::file_name(&f.file)) {
                if let Err(e) = plan.apply(f, name) {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            }
        }
    }
    let undefined: Vec<String> = features
        .iter()
        .flat_map(|f| undefined_steps(f, &filter))
        .collect();
    if cli.list {
        for f in &features {
            println!("{}", f.name);
            for s in f.scenarios.iter().filter(|s| filter.selects(s)) {
                let tags: Vec<String> = s.tags.iter().map(|t| format!("@{t}")).collect();
                println!("  {} {} ({}:{})", tags.join(" "), s.name, f.file, s.line);
            }
        }
        for u in &undefined {
            println!("{u}");
        }
        return if undefined.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(2)
        };
    }
    if !undefined.is_empty() {
        for u in &undefined {
            eprintln!("{u}");
        }
        eprintln!(
            "error: {} undefined step(s); nothing was run",
            undefined.len()
        );
        return ExitCode::from(2);
    }
    let Some((env, env_name)) = env else {
        eprintln!("error: --env FILE is required to run scenarios");
        return ExitCode::from(2);
    };
    let mut runner = match Runner::new(env) {
        Ok(r) => r.with_env_name(&env_name),
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let mut results = Vec::new();
    for f in &features {
        results.extend(runner.run_feature(f, &filter));
    }
    print!("{}", report::console(&results));
    for (path, text) in [
        (&cli.junit, report::junit(&results)),
        (&cli.json, report::json_summary(&results)),
    ] {
        if let Some(p) = path {
            if let Err(e) = std::fs::write(p, text) {
                eprintln!("error: writing {}: {e}", p.display());
                return ExitCode::from(2);
            }
        }
    }
    let t = report::totals(&results);
    if t.failed == 0 && t.passed > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
