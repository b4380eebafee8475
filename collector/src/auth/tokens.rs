//! The token file (`[auth] token_file`): clients without certificates — CI runners, Grafana's
//! datasources — each with an id, the tenants it may use, its scopes, and a digest of its
//! secret:
//!
//! ```text
//! # id        tenants    scopes            secret digest
//! ci-runner   pay,shop   read,gate-write   sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
//! grafana     *          read              $argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$...
//! ```
//!
//! A `sha256:` digest is for a high-entropy token (`slo-gate tokens new` makes 256-bit ones):
//! one hash of the secret is as strong as the secret, and cheap enough to try on every
//! request, so such a token may be sent as `Authorization: Bearer <secret>` without naming
//! its id. An argon2 PHC string is for a password a person chose: deliberately slow to check,
//! so it is only used with basic auth (`Authorization: Basic base64(id:secret)`), where the id
//! says which entry to check, and each success is remembered by the SHA-256 of what was sent
//! so that a datasource's next request does not pay for it again.
//!
//! Parsing reports the line of the first bad entry and what is wrong with it; the file is
//! reloaded when it changes, and a bad new version keeps the old tokens in force.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use subtle::ConstantTimeEq;

use super::{Grant, Scope, Scopes, Tenants};
use crate::tenant::Tenant;

/// Largest token file read.
pub const MAX_TOKEN_FILE_BYTES: u64 = 4 << 20;

/// How a token's secret is kept.
#[derive(Clone)]
pub enum Secret {
    /// SHA-256 of a high-entropy token.
    Sha256([u8; 32]),
    /// An argon2 PHC string (`$argon2id$...`) of a password.
    Argon2(String),
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Secret::Sha256(_) => "Secret(sha256)",
            Secret::Argon2(_) => "Secret(argon2)",
        })
    }
}

/// One line of the token file.
#[derive(Clone)]
pub struct TokenEntry {
    pub id: String,
    pub grant: Grant,
    pub secret: Secret,
}

impl std::fmt::Debug for TokenEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenEntry({}, {:?}, {})", self.id, self.grant.tenants, self.grant.scopes)
    }
}

/// The tokens in force.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    entries: Vec<TokenEntry>,
}

/// Why a token file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TokensError {
    #[error("cannot read the token file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("the token file {path} is {size} bytes; at most {MAX_TOKEN_FILE_BYTES} are read")]
    TooLarge { path: PathBuf, size: u64 },
    #[error("token file {path}, line {line}: {problem}")]
    Line { path: PathBuf, line: usize, problem: String },
}

/// What a secret matched: the entry's index.
pub type Match = usize;

impl Tokens {
    /// The entries of a token file's text; `Err((line, problem))` for the first bad line.
    pub fn parse(text: &str) -> Result<Tokens, (usize, String)> {
        let mut entries = Vec::new();
        let mut ids = HashSet::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let entry = parse_line(line).map_err(|p| (i + 1, p))?;
            if !ids.insert(entry.id.clone()) {
                return Err((
                    i + 1,
                    format!("token id {:?} is used twice; ids name tokens in the audit log", entry.id),
                ));
            }
            entries.push(entry);
        }
        Ok(Tokens { entries })
    }

    /// Reads and parses a token file.
    pub fn from_file(path: &Path) -> Result<Tokens, TokensError> {
        let read_err = |source| TokensError::Read { path: path.to_path_buf(), source };
        let size = std::fs::metadata(path).map_err(read_err)?.len();
        if size > MAX_TOKEN_FILE_BYTES {
            return Err(TokensError::TooLarge { path: path.to_path_buf(), size });
        }
        let text = std::fs::read_to_string(path).map_err(read_err)?;
        Tokens::parse(&text).map_err(|(line, problem)| TokensError::Line { path: path.to_path_buf(), line, problem })
    }

    /// Adds an entry made in code (the gate's write tokens).
    pub fn push(&mut self, entry: TokenEntry) {
        self.entries.push(entry);
    }

    pub fn entries(&self) -> &[TokenEntry] {
        &self.entries
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The `sha256:` entry whose secret a bearer token is. Every digest is compared, in
    /// constant time, whatever matched.
    pub fn bearer(&self, secret: &[u8]) -> Option<Match> {
        let presented = super::gate_tokens::digest_bytes(secret);
        let mut found = None;
        for (i, entry) in self.entries.iter().enumerate() {
            if let Secret::Sha256(d) = &entry.secret
                && bool::from(d.ct_eq(&presented))
            {
                found = Some(i);
            }
        }
        found
    }

    /// The entry of a basic-auth user, and whether its secret needs an argon2 check (slow:
    /// the caller runs it off the async workers) or matched already.
    pub fn basic(&self, id: &str, secret: &[u8]) -> BasicCheck {
        let Some((i, entry)) = self.entries.iter().enumerate().find(|(_, e)| e.id == id) else {
            return BasicCheck::NoMatch;
        };
        match &entry.secret {
            Secret::Sha256(d) => match bool::from(d.ct_eq(&super::gate_tokens::digest_bytes(secret))) {
                true => BasicCheck::Matched(i),
                false => BasicCheck::NoMatch,
            },
            Secret::Argon2(phc) => BasicCheck::Argon2 { entry: i, phc: phc.clone() },
        }
    }
}

/// The outcome of looking up a basic-auth user.
#[derive(Debug)]
pub enum BasicCheck {
    Matched(Match),
    NoMatch,
    /// Verify the secret against this PHC string ([`verify_argon2`]).
    Argon2 {
        entry: Match,
        phc: String,
    },
}

/// Whether `secret` is the password of an argon2 PHC string (tens of milliseconds).
pub fn verify_argon2(phc: &str, secret: &[u8]) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    PasswordHash::new(phc).is_ok_and(|hash| argon2::Argon2::default().verify_password(secret, &hash).is_ok())
}

/// An argon2id PHC string of `secret` with a random salt (`slo-gate tokens new --argon2`).
pub fn hash_argon2(secret: &[u8]) -> Result<String, String> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| format!("no randomness for a salt: {e}"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    argon2::Argon2::default().hash_password(secret, &salt).map(|h| h.to_string()).map_err(|e| e.to_string())
}

fn parse_line(line: &str) -> Result<TokenEntry, String> {
    let fields: Vec<&str> = line.split_ascii_whitespace().collect();
    let [id, tenants, scopes, secret] = fields[..] else {
        return Err(format!(
            "expected 4 fields `id tenants scopes digest` separated by spaces, found {}",
            fields.len()
        ));
    };
    if id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')) {
        return Err(format!("token id {id:?} must be 1 to 64 letters, digits, `-`, `_` or `.`"));
    }
    let tenants = match tenants {
        "*" => Tenants::All,
        list => Tenants::Only(
            list.split(',')
                .map(|t| Tenant::parse(t).map_err(|e| format!("tenants: {e}")))
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    let scopes: Scopes = scopes
        .split(',')
        .map(|s| {
            Scope::parse(s).ok_or_else(|| format!("unknown scope {s:?}; the scopes are read, write and gate-write"))
        })
        .collect::<Result<_, _>>()?;
    let secret = if let Some(hex_digest) = secret.strip_prefix("sha256:") {
        let bytes = hex::decode(hex_digest)
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or("a sha256: digest is 64 hexadecimal digits")?;
        Secret::Sha256(bytes)
    } else if secret.starts_with("$argon2") {
        argon2::password_hash::PasswordHash::new(secret)
            .map_err(|e| format!("the argon2 digest is not a PHC string: {e}"))?;
        Secret::Argon2(secret.to_string())
    } else {
        return Err("the digest is `sha256:<64 hex digits>` or an argon2 PHC string (`$argon2id$...`); \
             secrets are never written in the file in clear (make a line with `slo-gate tokens new`)"
            .to_string());
    };
    Ok(TokenEntry { id: id.to_string(), grant: Grant { tenants, scopes }, secret })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(secret: &str) -> String {
        format!("sha256:{}", hex::encode(super::super::gate_tokens::digest_bytes(secret.as_bytes())))
    }

    #[test]
    fn token_lines_carry_tenants_scopes_and_digests() {
        let text = format!(
            "# comment\n\nci-runner pay,shop read,gate-write {}\n  grafana\t*\tread\t{}\n",
            sha("s3cret-ci-token-0123456789"),
            hash_argon2(b"correct horse").unwrap()
        );
        let tokens = Tokens::parse(&text).unwrap();
        assert_eq!(tokens.len(), 2);
        let ci = &tokens.entries()[0];
        assert_eq!(
            ci.grant.tenants,
            Tenants::Only(vec![Tenant::parse("pay").unwrap(), Tenant::parse("shop").unwrap()])
        );
        assert_eq!(ci.grant.scopes.to_string(), "read,gate-write");
        assert_eq!(tokens.bearer(b"s3cret-ci-token-0123456789"), Some(0));
        assert_eq!(tokens.bearer(b"s3cret-ci-token-012345678"), None);
        assert!(matches!(tokens.basic("ci-runner", b"s3cret-ci-token-0123456789"), BasicCheck::Matched(0)));
        assert!(matches!(tokens.basic("ci-runner", b"wrong"), BasicCheck::NoMatch));
        assert!(matches!(tokens.basic("nobody", b"x"), BasicCheck::NoMatch));
        let BasicCheck::Argon2 { entry: 1, phc } = tokens.basic("grafana", b"correct horse") else { panic!() };
        assert!(verify_argon2(&phc, b"correct horse"));
        assert!(!verify_argon2(&phc, b"correct horsf"));
        // An argon2 entry is never matched by a bearer token: it would take a slow check per entry.
        assert_eq!(tokens.bearer(b"correct horse"), None);
        assert!(!format!("{tokens:?}").contains("sha256"), "{tokens:?}");
    }

    #[test]
    fn a_bad_line_is_reported_with_its_number_and_the_problem() {
        let good = sha("s3cret-ci-token-0123456789");
        for (text, line, problem) in [
            ("# x\nci pay read\n".to_string(), 2, "expected 4 fields"),
            (format!("ci pay read {good}\nci shop read {good}\n"), 2, "used twice"),
            (format!("c/i pay read {good}\n"), 1, "letters, digits"),
            (format!("ci pa/y read {good}\n"), 1, "tenants: tenant id \"pa/y\" contains '/'"),
            (format!("ci pay read,superuser {good}\n"), 1, "unknown scope \"superuser\""),
            ("ci pay read sha256:abcd\n".to_string(), 1, "64 hexadecimal digits"),
            ("ci pay read $argon2id$v=19$m=19456,t=2,p=1$!!!$***\n".to_string(), 1, "not a PHC string"),
            ("ci pay read s3cret-in-clear-0123456789\n".to_string(), 1, "never written in the file in clear"),
        ] {
            let (at, why) = Tokens::parse(&text).unwrap_err();
            assert_eq!(at, line, "{text}: {why}");
            assert!(why.contains(problem), "{text}: {why}");
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        std::fs::write(&path, format!("ok pay read {good}\nbad\n")).unwrap();
        let err = Tokens::from_file(&path).unwrap_err().to_string();
        assert!(err.contains("tokens, line 2: expected 4 fields"), "{err}");
    }
}
