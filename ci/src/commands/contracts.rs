//! `slo-gate contracts`: validate contract files, print their JSON Schema, import OpenSLO.
//!
//! Reading files and folders happens here; parsing and validation are `slo_contracts`'s, which
//! report every problem at once with its file, line and column.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use slo_contracts::{Contract, Diagnostic};

/// Subcommands of `slo-gate contracts`.
#[derive(Debug, Subcommand)]
pub enum ContractsCommand {
    /// Check contract files (or folders of *.yaml / *.yml files) and report every problem.
    Validate(ValidateArgs),
    /// Print the JSON Schema of contract files (for editors' completion and validation).
    Schema(SchemaArgs),
    /// Convert OpenSLO v1 `SLO` documents into a slo-gate contract.
    ImportOpenslo(ImportArgs),
}

/// Flags of `slo-gate contracts validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Contract files or folders.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
}

/// Flags of `slo-gate contracts schema`.
#[derive(Debug, Args)]
pub struct SchemaArgs {
    /// Write the schema to this file instead of standard output.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
}

/// Flags of `slo-gate contracts import-openslo`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// An OpenSLO v1 file (`kind: SLO` documents, and the `SLI` documents they refer to).
    pub file: PathBuf,
    /// Write the contract to this file instead of standard output.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
}

/// Runs `slo-gate contracts ...`.
pub fn run(command: ContractsCommand) -> anyhow::Result<()> {
    let stdout = &mut std::io::stdout().lock();
    let stderr = &mut std::io::stderr().lock();
    match command {
        ContractsCommand::Validate(args) => {
            let contracts = load(&args.paths, stderr)?;
            writeln!(stdout, "{} contract(s) valid: {}", contracts.len(), services(&contracts))?;
            Ok(())
        }
        ContractsCommand::Schema(args) => {
            let text = serde_json::to_string_pretty(&slo_contracts::json_schema())? + "\n";
            match &args.output {
                Some(path) => std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display())),
                None => Ok(stdout.write_all(text.as_bytes())?),
            }
        }
        ContractsCommand::ImportOpenslo(args) => {
            let text =
                std::fs::read_to_string(&args.file).with_context(|| format!("cannot read {}", args.file.display()))?;
            let (yaml, diagnostics) = slo_contracts::import_openslo(&args.file.display().to_string(), &text);
            report(&diagnostics, stderr)?;
            if diagnostics.iter().any(Diagnostic::is_error) {
                bail!("{} cannot be converted completely (see above)", args.file.display());
            }
            match &args.output {
                Some(path) => std::fs::write(path, yaml).with_context(|| format!("cannot write {}", path.display())),
                None => Ok(stdout.write_all(yaml.as_bytes())?),
            }
        }
    }
}

fn services(contracts: &[Contract]) -> String {
    let names: Vec<String> = contracts
        .iter()
        .map(|c| match &c.environment {
            Some(env) => format!("{} ({env})", c.service),
            None => c.service.clone(),
        })
        .collect();
    names.join(", ")
}

fn report(diagnostics: &[Diagnostic], out: &mut impl Write) -> std::io::Result<()> {
    for d in diagnostics {
        writeln!(out, "{d}")?;
    }
    Ok(())
}

/// Reads and validates the contracts at `paths` (files, or folders searched for *.yaml and
/// *.yml), writing every diagnostic to `diagnostics_out`; any error is an `Err` (exit code 2).
pub fn load(paths: &[PathBuf], diagnostics_out: &mut impl Write) -> anyhow::Result<Vec<Contract>> {
    let mut inputs = Vec::new();
    for path in paths {
        for file in contract_files(path)? {
            let text = std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
            inputs.push((file.display().to_string(), text));
        }
    }
    if inputs.is_empty() {
        bail!(
            "no contract files (*.yaml, *.yml) under {}",
            paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        );
    }
    let (contracts, diagnostics) = slo_contracts::parse_many(&inputs);
    report(&diagnostics, diagnostics_out)?;
    let errors = diagnostics.iter().filter(|d| d.is_error()).count();
    if errors > 0 {
        bail!("{errors} problem(s) in the contracts (see above)");
    }
    Ok(contracts)
}

/// `path` itself when it is a file, else the *.yaml / *.yml files under it, sorted.
fn contract_files(path: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let meta = std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut out = Vec::new();
    let mut pending = vec![path.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))? {
            let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
            let p = entry.path();
            if p.is_dir() {
                pending.push(p);
            } else if p.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "apiVersion: slo-gate/v1\nkind: Contract\nservice: api\nobjectives:\n  - name: p95\n    latency: { percentile: p95 }\n    fail: \"<= 300ms\"\n";

    #[test]
    fn folders_are_searched_and_every_problem_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("team")).unwrap();
        std::fs::write(dir.path().join("team/api.yaml"), VALID).unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not a contract").unwrap();
        let mut out = Vec::new();
        let contracts = load(&[dir.path().to_path_buf()], &mut out).expect("valid");
        assert_eq!(contracts.len(), 1);
        assert!(out.is_empty());

        std::fs::write(
            dir.path().join("bad.yml"),
            VALID.replace("service: api", "servce: web").replace("p95 }", "p101 }"),
        )
        .unwrap();
        let mut out = Vec::new();
        let err = load(&[dir.path().to_path_buf()], &mut out).expect_err("invalid");
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("bad.yml:3:1: error") && text.contains("p101"), "{text}");
        assert!(err.to_string().contains("problem(s)"), "{err}");
    }

    #[test]
    fn an_empty_folder_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = load(&[dir.path().to_path_buf()], &mut Vec::new()).expect_err("empty");
        assert!(err.to_string().contains("no contract files"), "{err}");
    }
}
