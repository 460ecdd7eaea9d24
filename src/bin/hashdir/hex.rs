//! Keys and values as 32 hex digits: byte 0 is the first two digits. Parsing accepts either
//! case; output is lowercase.

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Parses exactly 32 hex digits into 16 bytes.
pub fn parse(text: &[u8]) -> Result<[u8; 16], String> {
    if text.len() != 32 {
        return Err(format!(
            "expected 32 hex digits, got {} characters",
            text.len()
        ));
    }
    let mut out = [0u8; 16];
    for (i, pair) in text.chunks_exact(2).enumerate() {
        let hi = digit(pair[0]).ok_or_else(|| bad_digit(pair[0]))?;
        let lo = digit(pair[1]).ok_or_else(|| bad_digit(pair[1]))?;
        out[i] = hi << 4 | lo;
    }
    Ok(out)
}

/// The clap value parser for KEYHEX / VALUEHEX arguments.
pub fn arg(text: &str) -> Result<[u8; 16], String> {
    parse(text.as_bytes())
}

fn digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn bad_digit(c: u8) -> String {
    if c.is_ascii_graphic() {
        format!("'{}' is not a hex digit", c as char)
    } else {
        format!("byte 0x{c:02x} is not a hex digit")
    }
}

/// Appends the 32 lowercase hex digits of `bytes` to `out`.
pub fn push(out: &mut Vec<u8>, bytes: &[u8; 16]) {
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize]);
        out.push(DIGITS[(b & 15) as usize]);
    }
}

pub fn string(bytes: &[u8; 16]) -> String {
    let mut out = Vec::with_capacity(32);
    push(&mut out, bytes);
    String::from_utf8(out).expect("hex digits are ASCII")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let bytes: [u8; 16] = std::array::from_fn(|i| (i * 17) as u8);
        assert_eq!(parse(string(&bytes).as_bytes()), Ok(bytes));
        assert_eq!(
            parse(b"00112233445566778899AABBCCDDEEFF").unwrap()[15],
            0xff
        );
    }

    #[test]
    fn rejects_bad_text() {
        assert!(parse(b"0011").unwrap_err().contains("32 hex digits"));
        assert!(parse(b"0011223344556677889900aabbccddgg")
            .unwrap_err()
            .contains("'g'"));
    }
}
