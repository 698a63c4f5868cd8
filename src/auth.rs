//! Bearer tokens with roles. The tokens file keeps only SHA-256 hashes of
//! the tokens, one a line: `sha256:<64 hex digits> <role> [name]`, with `#`
//! comments. `clusternet token new` makes a token, appends its hash, and
//! prints the token once; whoever holds the file cannot recover a token.
//!
//! This module knows nothing of gRPC: the service layer asks it who a
//! presented token is and maps the answer to a status.

use std::{fmt, path::Path, str::FromStr};

use rand::RngCore;
use sha2::{Digest, Sha256};

/// What a token may do. Each role may do everything the ones before it may.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Reads, analyses and watches.
    Reader,
    /// Also ApplyChanges and ImportChanges.
    Writer,
    /// Also cascade deletes and SetAlertRules.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Writer => "writer",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(text: &str) -> Result<Role, String> {
        match text {
            "reader" => Ok(Role::Reader),
            "writer" => Ok(Role::Writer),
            "admin" => Ok(Role::Admin),
            other => Err(format!("'{other}' is not a role: reader, writer or admin")),
        }
    }
}

/// One stored token: the hash of its text and its role.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    hash: [u8; 32],
    role: Role,
    name: String,
}

/// The tokens a server accepts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tokens {
    entries: Vec<Entry>,
}

fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Equal in time that does not depend on where two hashes first differ.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Tokens {
    /// Reads a tokens file; a bad line is reported by its number.
    pub fn load(path: &Path) -> Result<Tokens, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Tokens::parse(&text).map_err(|e| format!("{}:{e}", path.display()))
    }

    /// Parses a tokens file's text; errors start with the line number.
    pub fn parse(text: &str) -> Result<Tokens, String> {
        let mut entries = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at = |message: String| format!("{}: {message}", n + 1);
            let mut words = line.split_whitespace();
            let digest = words
                .next()
                .and_then(|w| w.strip_prefix("sha256:"))
                .ok_or_else(|| at("expected 'sha256:<hex> <role> [name]'".into()))?;
            let bytes = decode_hex(digest).ok_or_else(|| at("the hash is not 64 hex digits".into()))?;
            let role: Role = words
                .next()
                .ok_or_else(|| at("the role is missing".into()))?
                .parse()
                .map_err(at)?;
            let name = words.collect::<Vec<_>>().join(" ");
            entries.push(Entry {
                hash: bytes,
                role,
                name,
            });
        }
        Ok(Tokens { entries })
    }

    /// The role of a presented token, if it is one of these. Every entry is
    /// compared, each in constant time, so the time taken says nothing of
    /// which or how much matched.
    pub fn role_of(&self, token: &str) -> Option<Role> {
        self.who(token).map(|(role, _)| role)
    }

    /// The role and the name of a token (its hash's first 8 hex digits
    /// when it was given no name): the client it stands for.
    pub fn who(&self, token: &str) -> Option<(Role, String)> {
        let presented = hash(token);
        let mut found = None;
        for entry in &self.entries {
            if same(&entry.hash, &presented) {
                let name = if entry.name.is_empty() {
                    entry.hash[..4].iter().map(|b| format!("{b:02x}")).collect()
                } else {
                    entry.name.clone()
                };
                found = Some((entry.role, name));
            }
        }
        found
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

/// A new random token (256 bits, base64url) and the line to store for it.
pub fn new_token(role: Role, name: &str) -> (String, String) {
    use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
    let mut secret = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    let token = format!("cn_{}", URL_SAFE_NO_PAD.encode(secret));
    let hex: String = hash(&token).iter().map(|b| format!("{b:02x}")).collect();
    let name = name.split_whitespace().collect::<Vec<_>>().join("-");
    let line = format!("sha256:{hex} {role} {name}").trim_end().to_string();
    (token, line)
}

fn decode_hex(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_token_is_found_by_its_stored_line_and_nothing_else_is() {
        let (token, line) = new_token(Role::Writer, "import job");
        assert!(line.ends_with(" writer import-job"), "{line}");
        assert!(!line.contains(&token), "only the hash is stored");
        let tokens = Tokens::parse(&format!("# clusternet tokens\n{line}\n")).unwrap();
        assert_eq!(tokens.role_of(&token), Some(Role::Writer));
        assert_eq!(tokens.role_of(&format!("{token}x")), None);
        assert_eq!(tokens.role_of(""), None);
    }

    #[test]
    fn the_sha256_of_a_known_text_matches_its_published_value() {
        // FIPS 180-2 test vector: SHA-256("abc").
        let line = "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad admin";
        assert_eq!(Tokens::parse(line).unwrap().role_of("abc"), Some(Role::Admin));
    }

    #[test]
    fn bad_lines_are_named_by_number() {
        assert!(Tokens::parse("\nsha256:zz reader").unwrap_err().starts_with("2: "));
        let no_role = format!("sha256:{}", "0".repeat(64));
        assert!(Tokens::parse(&no_role).unwrap_err().contains("role is missing"));
        let bad_role = format!("sha256:{} root", "0".repeat(64));
        assert!(Tokens::parse(&bad_role).unwrap_err().contains("'root' is not a role"));
    }

    #[test]
    fn roles_are_ordered_by_what_they_may_do() {
        assert!(Role::Reader < Role::Writer && Role::Writer < Role::Admin);
    }
}
