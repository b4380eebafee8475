//! The gate's write tokens (`[gate] token_file`, `--gate-token-file`): bare tokens, one per
//! line, that `slo-gate check` presents as `Authorization: Bearer <token>` to record gate runs.
//! `Access::new` turns each into a token principal with `read` and `gate-write` on every
//! tenant — what `check` needs — beside the tenant-scoped tokens of `[auth] token_file`
//! ([`super::tokens`]).
//!
//! The tokens are kept only as SHA-256 digests; a presented token is hashed and compared with
//! every digest in constant time (`subtle`), without stopping at the first match, so neither
//! the time taken nor the answer tells how close a guess was; a missing and a wrong token get
//! the same answer. Tokens are never logged or printed (`Debug` shows how many there are).

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use subtle::ConstantTimeEq;

/// Shortest token accepted in a token file: shorter ones are guessable.
pub const MIN_TOKEN_LEN: usize = 16;

/// The write tokens the collector accepts; empty when none is configured, and then every
/// write is refused.
#[derive(Clone, Default)]
pub struct WriteTokens {
    digests: Vec<[u8; 32]>,
}

impl std::fmt::Debug for WriteTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WriteTokens({} configured)", self.digests.len())
    }
}

/// Why a token file could not be used (a start-up error, shown to the operator).
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    #[error("cannot read the token file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("token file {path}, line {line}: {problem}")]
    Invalid { path: PathBuf, line: usize, problem: TokenProblem },
    #[error("token file {path} holds no token (one per line; `#` starts a comment)")]
    Empty { path: PathBuf },
}

/// What is wrong with one line of a token file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenProblem {
    #[error("a token must be at least {MIN_TOKEN_LEN} characters long")]
    TooShort,
    #[error("a token may hold only printable ASCII characters without spaces")]
    BadCharacter,
}

/// Why a write was refused. The messages never contain any part of a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No token is configured, so nobody may write.
    #[error(
        "recording gate runs is disabled: this collector has no write token; start it with \
         --gate-token-file FILE (or `token_file` in the `[gate]` table of its config file), one token \
         per line, and give `slo-gate check` one of them in SLO_GATE_TOKEN or --token-file"
    )]
    NotConfigured,
    /// The request carried no token, a malformed one or a wrong one.
    #[error("a valid write token is required: send `Authorization: Bearer <token>`")]
    Unauthorized,
}

impl WriteTokens {
    /// The tokens of a token file's text: one per line, surrounding whitespace trimmed, blank
    /// lines and lines starting with `#` skipped. Returns the 1-based line of the first bad one.
    pub fn parse(text: &str) -> Result<WriteTokens, (usize, TokenProblem)> {
        let mut digests = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let token = line.trim();
            if token.is_empty() || token.starts_with('#') {
                continue;
            }
            if !token.bytes().all(|b| b.is_ascii_graphic()) {
                return Err((i + 1, TokenProblem::BadCharacter));
            }
            if token.len() < MIN_TOKEN_LEN {
                return Err((i + 1, TokenProblem::TooShort));
            }
            digests.push(digest(token));
        }
        Ok(WriteTokens { digests })
    }

    /// Reads a token file (see [`WriteTokens::parse`]); a file without any token is an error.
    pub fn from_file(path: &Path) -> Result<WriteTokens, TokenFileError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| TokenFileError::Read { path: path.to_path_buf(), source })?;
        let tokens = WriteTokens::parse(&text).map_err(|(line, problem)| TokenFileError::Invalid {
            path: path.to_path_buf(),
            line,
            problem,
        })?;
        if tokens.is_empty() {
            return Err(TokenFileError::Empty { path: path.to_path_buf() });
        }
        Ok(tokens)
    }

    /// A fresh random token (256 bits, hex) and the set holding only it: what an in-process
    /// collector and its one client share.
    pub fn generate() -> std::io::Result<(WriteTokens, String)> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(format!("no randomness for a token: {e}")))?;
        let token = hex::encode(bytes);
        Ok((WriteTokens { digests: vec![digest(&token)] }, token))
    }

    pub fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }

    /// The SHA-256 digests of the tokens.
    pub fn digests(&self) -> &[[u8; 32]] {
        &self.digests
    }

    /// Whether an `Authorization` header value grants writing.
    pub fn authorize(&self, authorization: Option<&[u8]>) -> Result<(), AuthError> {
        if self.digests.is_empty() {
            return Err(AuthError::NotConfigured);
        }
        let presented = authorization.and_then(bearer).ok_or(AuthError::Unauthorized)?;
        let presented = digest_bytes(presented);
        let matched = self.digests.iter().fold(subtle::Choice::from(0), |found, d| found | d.ct_eq(&presented));
        if bool::from(matched) { Ok(()) } else { Err(AuthError::Unauthorized) }
    }
}

/// The token of `Bearer <token>` (the scheme is case-insensitive).
pub(crate) fn bearer(value: &[u8]) -> Option<&[u8]> {
    let (scheme, token) = value.split_at_checked(7)?;
    scheme.eq_ignore_ascii_case(b"bearer ").then(|| token.trim_ascii()).filter(|t| !t.is_empty())
}

fn digest(token: &str) -> [u8; 32] {
    digest_bytes(token.as_bytes())
}

pub(crate) fn digest_bytes(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "0123456789abcdef-token";

    #[test]
    fn token_files_skip_comments_and_refuse_weak_tokens() {
        let tokens = WriteTokens::parse(&format!("# ci\n\n  {TOKEN}  \nanother-token-of-ci-9\n")).unwrap();
        assert_eq!(tokens.digests.len(), 2);
        assert_eq!(WriteTokens::parse("# a\nshort\n").unwrap_err(), (2, TokenProblem::TooShort));
        assert_eq!(WriteTokens::parse("a token with spaces in it\n").unwrap_err(), (1, TokenProblem::BadCharacter));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        std::fs::write(&path, "# nothing yet\n").unwrap();
        assert!(matches!(WriteTokens::from_file(&path), Err(TokenFileError::Empty { .. })));
    }

    // issue 11 #8: writes need a configured token; a missing, malformed and wrong token get the
    // same refusal, and no message or debug output carries the token.
    #[test]
    fn only_a_configured_token_authorizes() {
        assert_eq!(WriteTokens::default().authorize(Some(b"Bearer x")), Err(AuthError::NotConfigured));
        let tokens = WriteTokens::parse(TOKEN).unwrap();
        assert_eq!(tokens.authorize(Some(format!("Bearer {TOKEN}").as_bytes())), Ok(()));
        assert_eq!(tokens.authorize(Some(format!("bearer  {TOKEN} ").as_bytes())), Ok(()));
        for bad in [
            None,
            Some(TOKEN.as_bytes().to_vec()),
            Some(format!("Basic {TOKEN}").into_bytes()),
            Some(format!("Bearer {}", &TOKEN[..TOKEN.len() - 1]).into_bytes()),
            Some(format!("Bearer {TOKEN}x").into_bytes()),
            Some(b"Bearer ".to_vec()),
            Some(b"Bear".to_vec()),
        ] {
            assert_eq!(tokens.authorize(bad.as_deref()), Err(AuthError::Unauthorized), "{bad:?}");
        }
        assert!(!format!("{tokens:?}").contains(TOKEN));
        assert!(!AuthError::Unauthorized.to_string().contains(TOKEN));
    }

    #[test]
    fn generated_tokens_authorize_only_themselves() {
        let (tokens, token) = WriteTokens::generate().unwrap();
        let (_, other) = WriteTokens::generate().unwrap();
        assert_eq!(token.len(), 64);
        assert_ne!(token, other);
        assert_eq!(tokens.authorize(Some(format!("Bearer {token}").as_bytes())), Ok(()));
        assert_eq!(tokens.authorize(Some(format!("Bearer {other}").as_bytes())), Err(AuthError::Unauthorized));
    }
}
