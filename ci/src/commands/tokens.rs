//! `slo-gate tokens new`: a fresh 256-bit token and the line of `[auth] token_file` that
//! grants it, so that the secret itself is never written in the file: the line holds its
//! SHA-256 (or, with `--argon2`, an argon2id hash for a password given on standard input).

use std::io::Read;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use collector::auth::Scope;
use collector::tenant::Tenant;

/// Subcommands of `slo-gate tokens`.
#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Make a token: prints the secret (give it to the client) and the token-file line (append
    /// it to the collector's `[auth] token_file`; the collector reloads the file by itself).
    New(NewArgs),
}

#[derive(Debug, Args)]
pub struct NewArgs {
    /// The token's id: the user name of basic auth, and who the audit log names.
    #[arg(long)]
    pub id: String,
    /// The tenants it may use, comma-separated, or `*` for all.
    #[arg(long)]
    pub tenants: String,
    /// What it may do, comma-separated: `read`, `write`, `gate-write`.
    #[arg(long)]
    pub scopes: String,
    /// Read a password from standard input and write an argon2id hash of it (for basic auth
    /// with a password a person chose) instead of making a random token.
    #[arg(long)]
    pub argon2: bool,
}

pub fn run(command: TokensCommand) -> anyhow::Result<()> {
    match command {
        TokensCommand::New(args) => new(args),
    }
}

fn new(args: NewArgs) -> anyhow::Result<()> {
    if args.tenants != "*" {
        for t in args.tenants.split(',') {
            Tenant::parse(t).with_context(|| format!("--tenants {:?}", args.tenants))?;
        }
    }
    for s in args.scopes.split(',') {
        if Scope::parse(s).is_none() {
            bail!("--scopes: unknown scope {s:?}; the scopes are read, write and gate-write");
        }
    }
    let (secret, digest) = if args.argon2 {
        let mut password = String::new();
        std::io::stdin().read_to_string(&mut password).context("cannot read the password from standard input")?;
        let password = password.trim_end_matches(['\n', '\r']);
        if password.is_empty() {
            bail!("--argon2 reads the password from standard input, which was empty");
        }
        (None, collector::auth::tokens::hash_argon2(password.as_bytes()).map_err(anyhow::Error::msg)?)
    } else {
        let (_, token) = collector::auth::WriteTokens::generate().context("cannot make a token")?;
        let digest = format!("sha256:{}", hex_digest(&token));
        (Some(token), digest)
    };
    let line = format!("{} {} {} {digest}", args.id, args.tenants, args.scopes);
    // The line must parse as the collector will parse it.
    collector::auth::tokens::Tokens::parse(&line).map_err(|(_, problem)| anyhow::anyhow!("{problem}"))?;
    if let Some(secret) = secret {
        eprintln!("secret (give it to the client; it is not stored anywhere):");
        println!("{secret}");
    }
    eprintln!("token-file line (append it to the file of `[auth] token_file`):");
    println!("{line}");
    Ok(())
}

fn hex_digest(token: &str) -> String {
    use std::fmt::Write;
    collector::auth::digest(token.as_bytes()).iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}
