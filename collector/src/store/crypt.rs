//! Envelope encryption of parts at rest (`[storage.encryption] key_file`).
//!
//! Each part is encrypted with AES-256-GCM under a data key of its own, drawn fresh from the
//! operating system's random source; the data key is itself encrypted ("wrapped") with
//! AES-256-GCM under the current key of the key file, and only the wrapped form is stored, in
//! the part's header:
//!
//! ```text
//! part   := magic "SLOGENC" version:u8=1 id_len:u8 key_id
//!           wrap_nonce:12 wrapped_key:32+16 data_nonce:12 ciphertext tag:16
//! ```
//!
//! Why envelope encryption rather than one key for everything: rotating the key file's key
//! never rewrites a part (a part names the key that wrapped its data key, so parts of older
//! keys are read with those keys as long as the file keeps them), and the nonce of each data
//! key is used exactly once, so random nonces never meet. The data's authentication covers
//! the header and the part's name (its path under the data directory), so a header edited to
//! name another key, or an encrypted part moved to another tenant's directory, fails to open
//! rather than decrypting into someone else's rows.
//!
//! The key file holds one key a line, `key-id base64-of-32-bytes`, `#` comments; the last key
//! is the one new parts are written with. Plaintext Parquet parts (written before encryption
//! was turned on) start with `PAR1` and are read as they are.

use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

/// The first bytes of an encrypted part (a Parquet file starts with `PAR1`).
pub const MAGIC: &[u8; 7] = b"SLOGENC";
const VERSION: u8 = 1;
const KEY_LEN: usize = 32;
const TAG_LEN: usize = 16;
/// Longest key id, in bytes.
pub const MAX_KEY_ID: usize = 64;
/// Largest key file read: a key line is under 110 bytes.
const MAX_KEY_FILE_BYTES: u64 = 1 << 20;

/// Why a key file cannot be used; names the file and, for a bad line, the line (from 1).
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("key file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("key file {path} line {line}: {why}")]
    Line { path: PathBuf, line: usize, why: String },
    #[error("key file {path}: {why}")]
    File { path: PathBuf, why: String },
}

/// Why an encrypted part cannot be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// The part names a key the key file does not hold. Not damage: the part reads again once
    /// the key is back in the file.
    #[error("it is encrypted with key {0:?}, which the key file does not hold")]
    UnknownKey(String),
    /// The key of that id does not authenticate the part's wrapped data key: the key file's
    /// key of that id is not the one the part was written with (or the header was changed; a
    /// caller that has verified the file's SHA-256 knows it was not).
    #[error("key {0:?} of the key file does not open its data key: it is not the key the part was written with")]
    WrongKey(String),
    /// The header does not parse, or the authentication of the wrapped key or of the data
    /// fails: the bytes are not what was written (or not written for this part's name).
    #[error("{0}")]
    Damaged(String),
}

/// The keys of a key file: every one can open parts, the last one seals new ones.
pub struct KeyRing {
    /// Where the keys came from, for messages.
    path: PathBuf,
    /// `(id, key)` in file order; never empty.
    keys: Vec<(String, LessSafeKey)>,
}

// Never prints key material: only the file and the ids.
impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing").field("path", &self.path).field("ids", &self.ids()).finish()
    }
}

impl PartialEq for KeyRing {
    fn eq(&self, other: &KeyRing) -> bool {
        self.path == other.path && self.ids() == other.ids()
    }
}

fn random(bytes: &mut [u8]) -> Result<(), String> {
    SystemRandom::new().fill(bytes).map_err(|_| "the operating system's random source failed".to_string())
}

fn aes_key(bytes: &[u8]) -> Option<LessSafeKey> {
    UnboundKey::new(&AES_256_GCM, bytes).ok().map(LessSafeKey::new)
}

impl KeyRing {
    /// Reads a key file (see the module documentation).
    pub fn load(path: &Path) -> Result<KeyRing, KeyFileError> {
        let read = |source| KeyFileError::Read { path: path.to_path_buf(), source };
        let size = std::fs::metadata(path).map_err(read)?.len();
        if size > MAX_KEY_FILE_BYTES {
            let why = format!("{size} bytes; a key file is at most {MAX_KEY_FILE_BYTES}");
            return Err(KeyFileError::File { path: path.to_path_buf(), why });
        }
        let text = std::fs::read_to_string(path).map_err(read)?;
        let keys = KeyRing::parse(path, &text)?;
        // Keys readable by others are keys anyone on the machine can decrypt with.
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                key_file = %path.display(),
                mode = format!("{:o}", meta.permissions().mode() & 0o777),
                "the key file can be read by other users; chmod 600 it"
            );
        }
        Ok(keys)
    }

    /// Parses the text of a key file; `path` names it in errors.
    pub fn parse(path: &Path, text: &str) -> Result<KeyRing, KeyFileError> {
        let mut keys: Vec<(String, LessSafeKey)> = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let bad = |why: String| KeyFileError::Line { path: path.to_path_buf(), line: n + 1, why };
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let mut fields = line.split_whitespace();
            let (Some(id), Some(key), None) = (fields.next(), fields.next(), fields.next()) else {
                return Err(bad("expected `key-id base64-of-32-bytes`".into()));
            };
            if id.len() > MAX_KEY_ID || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) {
                return Err(bad(format!("key id {id:?} must be 1 to {MAX_KEY_ID} letters, digits, `.`, `_` or `-`")));
            }
            if keys.iter().any(|(seen, _)| seen == id) {
                return Err(bad(format!("key id {id:?} appears twice")));
            }
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(key)
                .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(key))
                .map_err(|e| bad(format!("key {id:?} is not base64: {e}")))?;
            if bytes.len() != KEY_LEN {
                return Err(bad(format!("key {id:?} is {} bytes; AES-256 keys are {KEY_LEN}", bytes.len())));
            }
            let key = aes_key(&bytes).ok_or_else(|| bad(format!("key {id:?} is not an AES-256 key")))?;
            keys.push((id.to_string(), key));
        }
        if keys.is_empty() {
            return Err(KeyFileError::File { path: path.to_path_buf(), why: "holds no key".into() });
        }
        Ok(KeyRing { path: path.to_path_buf(), keys })
    }

    /// The key ids, in file order; the last one seals new parts.
    pub fn ids(&self) -> Vec<&str> {
        self.keys.iter().map(|(id, _)| id.as_str()).collect()
    }

    /// The key file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn current(&self) -> &(String, LessSafeKey) {
        self.keys.last().expect("a key ring holds at least one key")
    }

    /// Encrypts the bytes of the part named `name` under a fresh data key wrapped by the
    /// current key. Fails only when the random source does.
    pub fn seal(&self, name: &str, plaintext: &[u8]) -> Result<Vec<u8>, String> {
        let (id, master) = self.current();
        let mut data_key = [0u8; KEY_LEN];
        let (mut wrap_nonce, mut data_nonce) = ([0u8; NONCE_LEN], [0u8; NONCE_LEN]);
        random(&mut data_key)?;
        random(&mut wrap_nonce)?;
        random(&mut data_nonce)?;

        let mut out = Vec::with_capacity(header_len(id.len()) + plaintext.len() + TAG_LEN);
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.push(id.len() as u8);
        out.extend_from_slice(id.as_bytes());
        out.extend_from_slice(&wrap_nonce);
        let wrapped_at = out.len();
        out.extend_from_slice(&data_key);
        let sealed_err = |_| "AES-256-GCM refused to seal".to_string();
        let prefix = out[..wrapped_at].to_vec();
        let tag = master
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(wrap_nonce),
                Aad::from(&prefix),
                &mut out[wrapped_at..],
            )
            .map_err(sealed_err)?;
        out.extend_from_slice(tag.as_ref());
        out.extend_from_slice(&data_nonce);
        let header_end = out.len();
        let aad = data_aad(&out[..header_end], name);
        out.extend_from_slice(plaintext);
        let data = aes_key(&data_key).ok_or("a random data key was refused")?;
        let tag = data
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(data_nonce),
                Aad::from(&aad),
                &mut out[header_end..],
            )
            .map_err(sealed_err)?;
        out.extend_from_slice(tag.as_ref());
        Ok(out)
    }

    /// Decrypts an encrypted part's bytes (in place: the plaintext is what is left of `bytes`).
    pub fn open(&self, name: &str, bytes: Vec<u8>) -> Result<Vec<u8>, OpenError> {
        open_with(Some(self), name, bytes)
    }
}

/// Header bytes before the ciphertext, for a key id of `id_len` bytes.
fn header_len(id_len: usize) -> usize {
    MAGIC.len() + 2 + id_len + NONCE_LEN + KEY_LEN + TAG_LEN + NONCE_LEN
}

/// What the data's tag authenticates besides the data: the whole header and the part's name.
fn data_aad(header: &[u8], name: &str) -> Vec<u8> {
    let mut aad = header.to_vec();
    aad.extend_from_slice(name.as_bytes());
    aad
}

/// Whether the bytes of a part are encrypted (start with [`MAGIC`]).
pub fn is_sealed(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC)
}

/// The key id an encrypted part names, if its header parses that far; `None` for bytes that
/// are not an encrypted part (a plaintext Parquet file's first bytes may spell a short id).
pub fn key_id(bytes: &[u8]) -> Option<&str> {
    if !is_sealed(bytes) {
        return None;
    }
    let id_len = *bytes.get(MAGIC.len() + 1)? as usize;
    let start = MAGIC.len() + 2;
    std::str::from_utf8(bytes.get(start..start + id_len)?).ok()
}

/// Decrypts an encrypted part with the keys of `keys` (`None`: no key file configured, so
/// every key is unknown).
pub fn open_with(keys: Option<&KeyRing>, name: &str, mut bytes: Vec<u8>) -> Result<Vec<u8>, OpenError> {
    let damaged = |why: &str| OpenError::Damaged(why.to_string());
    if !is_sealed(&bytes) {
        return Err(damaged("not an encrypted part"));
    }
    let version = bytes.get(MAGIC.len()).copied();
    if version != Some(VERSION) {
        return Err(OpenError::Damaged(format!("encryption header version {version:?} is not {VERSION}")));
    }
    let id = key_id(&bytes).ok_or_else(|| damaged("encryption header is cut short"))?.to_string();
    let header_end = header_len(id.len());
    if bytes.len() < header_end + TAG_LEN {
        return Err(damaged("encryption header is cut short"));
    }
    let Some((_, master)) = keys.and_then(|k| k.keys.iter().find(|(known, _)| *known == id)) else {
        return Err(OpenError::UnknownKey(id));
    };
    let id_end = MAGIC.len() + 2 + id.len();
    let wrap_nonce: [u8; NONCE_LEN] = bytes[id_end..id_end + NONCE_LEN].try_into().expect("nonce length");
    let wrapped = id_end + NONCE_LEN;
    let mut data_key = bytes[wrapped..wrapped + KEY_LEN + TAG_LEN].to_vec();
    let data_key = master
        .open_in_place(Nonce::assume_unique_for_key(wrap_nonce), Aad::from(&bytes[..wrapped]), &mut data_key)
        .map_err(|_| OpenError::WrongKey(id.clone()))?;
    let data = aes_key(data_key).ok_or_else(|| damaged("the data key is not an AES-256 key"))?;
    let nonce_at = wrapped + KEY_LEN + TAG_LEN;
    let data_nonce: [u8; NONCE_LEN] = bytes[nonce_at..header_end].try_into().expect("nonce length");
    let aad = data_aad(&bytes[..header_end], name);
    let plain_len = data
        .open_in_place(Nonce::assume_unique_for_key(data_nonce), Aad::from(&aad), &mut bytes[header_end..])
        .map_err(|_| damaged("the encrypted data does not authenticate (AES-GCM tag mismatch): it was changed"))?
        .len();
    bytes.copy_within(header_end..header_end + plain_len, 0);
    bytes.truncate(plain_len);
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_line(id: &str, byte: u8) -> String {
        format!("{id} {}\n", base64::engine::general_purpose::STANDARD.encode([byte; 32]))
    }

    fn ring(text: &str) -> KeyRing {
        KeyRing::parse(Path::new("keys"), text).unwrap()
    }

    const NAME: &str = "parts/a/profiles/2026-12-04T03/00000000000000000007.parquet";

    #[test]
    fn a_part_round_trips_and_its_ciphertext_hides_the_plaintext() {
        let keys = ring(&format!("# ours\n{}", key_line("k1", 1)));
        let plain = b"PAR1 main.work runtime.mallocgc PAR1".repeat(10);
        let sealed = keys.seal(NAME, &plain).unwrap();
        assert!(is_sealed(&sealed));
        assert_eq!(key_id(&sealed), Some("k1"));
        assert!(!sealed.windows(12).any(|w| w == b"main.work ru"), "plaintext visible");
        assert_eq!(sealed.len(), plain.len() + header_len(2) + TAG_LEN);
        assert_eq!(keys.open(NAME, sealed.clone()).unwrap(), plain);
        // Two seals of the same bytes share nothing but the header's fixed fields.
        assert_ne!(keys.seal(NAME, &plain).unwrap()[20..], sealed[20..]);
    }

    /// A plaintext part names no key, even when its first bytes after `PAR1` happen to read
    /// as a length and a short UTF-8 id (as a plain-encoded first page's header does).
    #[test]
    fn a_plaintext_part_names_no_key() {
        assert_eq!(key_id(b"PAR1\x15\x00\x15\x02\x02k1 rows"), None);
        assert_eq!(key_id(b"PAR"), None);
    }

    #[test]
    fn parts_of_older_keys_open_after_a_rotation_and_new_parts_use_the_last_key() {
        let old = ring(&key_line("2026-01", 1));
        let before = old.seal(NAME, b"old rows").unwrap();
        let rotated = ring(&format!("{}{}", key_line("2026-01", 1), key_line("2026-02", 2)));
        assert_eq!(rotated.open(NAME, before).unwrap(), b"old rows");
        let after = rotated.seal(NAME, b"new rows").unwrap();
        assert_eq!(key_id(&after), Some("2026-02"));
        assert_eq!(old.open(NAME, after.clone()), Err(OpenError::UnknownKey("2026-02".into())));
        assert_eq!(open_with(None, NAME, after), Err(OpenError::UnknownKey("2026-02".into())));
    }

    #[test]
    fn a_key_of_the_same_id_but_other_bytes_or_a_changed_byte_fails_authentication() {
        let keys = ring(&key_line("k", 1));
        let sealed = keys.seal(NAME, b"rows of tenant a").unwrap();
        let other = ring(&key_line("k", 9));
        let err = other.open(NAME, sealed.clone()).unwrap_err();
        assert_eq!(err, OpenError::WrongKey("k".into()));
        // Every byte after the magic is covered: header fields, wrapped key, nonces, data, tag.
        for at in MAGIC.len() + 2..sealed.len() {
            let mut bad = sealed.clone();
            bad[at] ^= 0x20;
            match keys.open(NAME, bad) {
                Err(OpenError::Damaged(_) | OpenError::UnknownKey(_) | OpenError::WrongKey(_)) => {}
                Ok(_) => panic!("a flipped byte at {at} went unnoticed"),
            }
        }
        // Moved to another name (another tenant's directory): refused.
        let err = keys.open("parts/b/profiles/2026-12-04T03/00000000000000000007.parquet", sealed).unwrap_err();
        assert!(err.to_string().contains("tag mismatch"), "{err}");
        let err = keys.open(NAME, MAGIC.to_vec()).unwrap_err();
        assert!(matches!(err, OpenError::Damaged(_)), "{err}");
    }

    #[test]
    fn bad_key_files_name_the_file_and_line() {
        let check = |text: &str, expect: &str| {
            let err = KeyRing::parse(Path::new("/etc/slo-gate/keys"), text).unwrap_err().to_string();
            assert!(err.contains(expect), "{err:?} lacks {expect:?}");
            assert!(err.starts_with("key file /etc/slo-gate/keys"), "{err}");
        };
        check("", "holds no key");
        check("# only a comment\n\n", "holds no key");
        check(&format!("{}k2\n", key_line("k1", 1)), "line 2: expected `key-id base64-of-32-bytes`");
        check("k1 AAAA extra\n", "line 1: expected");
        check("k1 !!!!\n", "line 1: key \"k1\" is not base64");
        check("k1 AAAA\n", "line 1: key \"k1\" is 3 bytes; AES-256 keys are 32");
        check(&format!("{}{}", key_line("k1", 1), key_line("k1", 2)), "line 2: key id \"k1\" appears twice");
        check(&key_line("a/b", 1), "line 1: key id \"a/b\" must be");
        check(&key_line(&"x".repeat(65), 1), "must be 1 to 64");
        let keys = ring(&format!("{}  # rotated in\n{}", key_line("a", 1).trim_end(), key_line("b", 2)));
        assert_eq!(keys.ids(), ["a", "b"]);
        assert!(!format!("{keys:?}").contains("AQEB"), "key material in Debug");
        let err = KeyRing::load(Path::new("/nonexistent/keys")).unwrap_err().to_string();
        assert!(err.starts_with("key file /nonexistent/keys:"), "{err}");
    }
}
