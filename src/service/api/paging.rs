//! AIP-158 paging: `page_size` and an opaque `page_token`.
//!
//! A token is base64url of: a format byte, a fingerprint of the request's
//! filters, and the key of the last row returned. The next page resumes after
//! that key, so rows written between pages never shift a page boundary, and a
//! token sent with other filters is refused rather than silently misread.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};

use crate::error::{Error, Result};

pub const DEFAULT_PAGE_SIZE: usize = 100;
pub const MAX_PAGE_SIZE: usize = 1000;
const TOKEN_FORMAT: u8 = 1;

/// A validated page request: how many rows, and the key to resume after.
pub struct PageRequest {
    pub size: usize,
    pub after: Option<Vec<u8>>,
}

/// FNV-1a: stable across builds, unlike std's hasher, so a token outlives a
/// server upgrade.
fn fingerprint(filters: &str) -> u64 {
    filters.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

pub fn page_request(page_size: i32, page_token: &str, filters: &str) -> Result<PageRequest> {
    let size = match page_size {
        0 => DEFAULT_PAGE_SIZE,
        n if n < 0 => return Err(Error::invalid("page_size", format!("{n} is negative"))),
        n if n as usize > MAX_PAGE_SIZE => {
            return Err(Error::invalid(
                "page_size",
                format!("{n} is over the maximum of {MAX_PAGE_SIZE}"),
            ));
        }
        n => n as usize,
    };
    if page_token.is_empty() {
        return Ok(PageRequest { size, after: None });
    }
    let malformed = || Error::invalid("page_token", "is not a token this server issued");
    let bytes = URL_SAFE_NO_PAD.decode(page_token).map_err(|_| malformed())?;
    if bytes.len() < 9 || bytes[0] != TOKEN_FORMAT {
        return Err(malformed());
    }
    let issued_for = u64::from_be_bytes(bytes[1..9].try_into().map_err(|_| malformed())?);
    if issued_for != fingerprint(filters) {
        return Err(Error::invalid(
            "page_token",
            "was issued for a request with other filters",
        ));
    }
    Ok(PageRequest {
        size,
        after: Some(bytes[9..].to_vec()),
    })
}

pub fn next_page_token(filters: &str, last_key: &[u8]) -> String {
    let mut bytes = Vec::with_capacity(9 + last_key.len());
    bytes.push(TOKEN_FORMAT);
    bytes.extend_from_slice(&fingerprint(filters).to_be_bytes());
    bytes.extend_from_slice(last_key);
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_resumes_after_its_key_for_the_same_filters_only() {
        let token = next_page_token("cluster=a", b"actor-7");
        let request = page_request(10, &token, "cluster=a").unwrap();
        assert_eq!(request.after.as_deref(), Some(&b"actor-7"[..]));
        assert!(page_request(10, &token, "cluster=b").is_err());
    }

    #[test]
    fn page_sizes_outside_the_range_are_refused() {
        assert_eq!(page_request(0, "", "").unwrap().size, DEFAULT_PAGE_SIZE);
        assert!(page_request(-1, "", "").is_err());
        assert!(page_request(1001, "", "").is_err());
        assert!(page_request(10, "not a token!", "").is_err());
    }
}
