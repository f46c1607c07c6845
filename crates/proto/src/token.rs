//! Random values, from one source: the kernel's CSPRNG through
//! `getrandom`. The agent token (PROTOCOL.md, Auth: 16 random bytes,
//! hex-encoded, one per sandbox), the token a scrubbed config drive is
//! left with, and the daemon's API keys and ids all come from here.

/// Why randomness could not be had.
#[derive(Debug, thiserror::Error)]
#[error("system random source failed: {0}")]
pub struct RandomError(getrandom::Error);

/// `N` random bytes.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], RandomError> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(RandomError)?;
    Ok(b)
}

/// `N` random bytes as `2 * N` lowercase hex digits.
pub fn random_hex<const N: usize>() -> Result<String, RandomError> {
    Ok(hex(&random_bytes::<N>()?))
}

/// A new agent token (16 random bytes, hex).
pub fn agent_token() -> Result<String, RandomError> {
    random_hex::<16>()
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_hex_of_the_right_length_and_differ() {
        let (a, b) = (agent_token().expect("token"), agent_token().expect("token"));
        assert_eq!(a.len(), 32);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_ne!(a, b);
        assert_eq!(random_hex::<32>().expect("hex").len(), 64);
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
    }
}
