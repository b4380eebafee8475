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
    /// it to the collector's `[auth] token_file`, or let `--append` do it; the collector
    /// reloads the file by itself).
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
    /// Append the line to this token file (created with mode 0600 if missing) after checking
    /// that the file with it still parses (an id used twice is refused, the file untouched);
    /// standard output then holds the secret alone.
    #[arg(long, value_name = "FILE")]
    pub append: Option<std::path::PathBuf>,
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
    if let Some(path) = &args.append {
        append_line(path, &line)?;
        eprintln!("appended the token-file line for {:?} to {}", args.id, path.display());
    }
    if let Some(secret) = secret {
        eprintln!("secret (give it to the client; it is not stored anywhere):");
        println!("{secret}");
    }
    if args.append.is_none() {
        eprintln!("token-file line (append it to the file of `[auth] token_file`):");
        println!("{line}");
    }
    Ok(())
}

/// Appends `line` to the token file at `path`, creating it (mode 0600) when missing, only if
/// the file's text with the line still parses as the collector parses it.
fn append_line(path: &std::path::Path, line: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let existing = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let separator = if existing.is_empty() || existing.ends_with('\n') { "" } else { "\n" };
    let text = format!("{existing}{separator}{line}\n");
    collector::auth::tokens::Tokens::parse(&text)
        .map_err(|(n, problem)| anyhow::anyhow!("{} with the new line, line {n}: {problem}", path.display()))?;
    let mut options = std::fs::OpenOptions::new();
    options.append(true).create(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).with_context(|| format!("cannot open {}", path.display()))?;
    file.write_all(format!("{separator}{line}\n").as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot append to {}", path.display()))
}

fn hex_digest(token: &str) -> String {
    use std::fmt::Write;
    collector::auth::digest(token.as_bytes()).iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::append_line;

    #[test]
    fn append_creates_the_file_private_and_refuses_an_id_used_twice() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        let digest = format!("sha256:{}", "ab".repeat(32));
        append_line(&path, &format!("ci pay read {digest}")).unwrap();
        append_line(&path, &format!("grafana pay read {digest}")).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let err = append_line(&path, &format!("ci shop read {digest}")).unwrap_err().to_string();
        assert!(err.contains("line 3") && err.contains("used twice"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text, "a refused line leaves the file as it was");
    }

    #[test]
    fn append_after_a_last_line_without_newline_starts_a_new_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        let digest = format!("sha256:{}", "cd".repeat(32));
        std::fs::write(&path, format!("# tokens\nci pay read {digest}")).unwrap();
        append_line(&path, &format!("bot pay write {digest}")).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.ends_with(&format!("read {digest}\nbot pay write {digest}\n")), "{text}");
    }
}
