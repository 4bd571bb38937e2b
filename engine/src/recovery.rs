//! The printable recovery sheet: the master key in Crockford base32, in
//! short lines that each carry their own check characters, so a typo is
//! caught on the line where it was made.
//!
//! ```text
//! L1 ABCD-EFGH-JKMN  7Q
//! ...
//! L5 ....-....-....  ..
//! ```
//! 32 key bytes + 4 bytes of BLAKE3(key) = 36 bytes = 58 base32 characters,
//! padded to 60, in 5 lines of 12. A line's check is the first 10 bits of
//! BLAKE3("cairn recovery line" || line number || its 12 characters).

use zeroize::Zeroizing;

use crate::crypto::MasterKey;

/// Errors reading a recovery sheet.
#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    /// A line is missing or malformed.
    #[error("recovery sheet: {0}")]
    Malformed(String),
    /// A line's check characters do not match: a typo on that line.
    #[error("recovery sheet line L{0} has a typo (its check characters do not match)")]
    LineCheck(usize),
    /// The whole-key checksum fails.
    #[error("recovery sheet: the key's checksum does not match (lines swapped or mistyped)")]
    KeyCheck,
}

const LINES: usize = 5;
const PER_LINE: usize = 12;
const ALPHABET: base32::Alphabet = base32::Alphabet::Crockford;

fn line_check(n: usize, chars: &str) -> String {
    let mut h = blake3::Hasher::new();
    h.update(b"cairn recovery line");
    h.update(&[n as u8]);
    h.update(chars.as_bytes());
    let d = h.finalize();
    let b = d.as_bytes();
    let encoded = base32::encode(ALPHABET, &[b[0], b[1]]);
    encoded.chars().take(2).collect()
}

/// The sheet's lines for `key`; they are the key, and are wiped from
/// memory when dropped, as is every copy made on the way.
pub fn sheet_lines(key: &MasterKey) -> Vec<Zeroizing<String>> {
    let mut bytes = Zeroizing::new(Vec::with_capacity(36));
    bytes.extend_from_slice(key.expose());
    bytes.extend_from_slice(&blake3::hash(key.expose()).as_bytes()[..4]);
    let encoded = Zeroizing::new(base32::encode(ALPHABET, &bytes));
    let mut text = Zeroizing::new(String::with_capacity((LINES * PER_LINE).max(encoded.len())));
    text.push_str(&encoded);
    while text.len() < LINES * PER_LINE {
        text.push('0');
    }
    (0..LINES)
        .map(|i| {
            let chars = &text[i * PER_LINE..(i + 1) * PER_LINE];
            let mut line = Zeroizing::new(String::with_capacity(24));
            line.push_str(&format!("L{} ", i + 1));
            line.push_str(&chars[0..4]);
            line.push('-');
            line.push_str(&chars[4..8]);
            line.push('-');
            line.push_str(&chars[8..12]);
            line.push_str("  ");
            line.push_str(&line_check(i + 1, chars));
            line
        })
        .collect()
}

fn normalize(s: &str) -> Zeroizing<String> {
    Zeroizing::new(
        s.chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .map(|c| match c.to_ascii_uppercase() {
                'O' => '0',
                'I' | 'L' => '1',
                u => u,
            })
            .collect(),
    )
}

/// Reads the key back from the sheet's text (extra lines, spaces, dashes
/// and letter case are ignored).
pub fn parse_sheet(text: &str) -> Result<MasterKey, RecoveryError> {
    let mut found: Vec<Option<Zeroizing<String>>> = vec![None; LINES];
    for line in text.lines() {
        let t = line.trim();
        let mut toks = t.split_whitespace();
        let Some(label) = toks.next() else { continue };
        let Some(num) = label.strip_prefix(['L', 'l']).and_then(|n| n.parse::<usize>().ok()) else {
            continue;
        };
        if !(1..=LINES).contains(&num) {
            continue;
        }
        let rest: Vec<&str> = toks.collect();
        if rest.len() < 2 {
            return Err(RecoveryError::Malformed(format!("line L{num} is incomplete")));
        }
        let check = normalize(rest[rest.len() - 1]);
        let chars = normalize(&Zeroizing::new(rest[..rest.len() - 1].join("")));
        if chars.len() != PER_LINE {
            return Err(RecoveryError::Malformed(format!(
                "line L{num} has {} characters, expected {PER_LINE}",
                chars.len()
            )));
        }
        if line_check(num, &chars) != *check {
            return Err(RecoveryError::LineCheck(num));
        }
        found[num - 1] = Some(chars);
    }
    let mut all = Zeroizing::new(String::with_capacity(LINES * PER_LINE));
    for (i, l) in found.into_iter().enumerate() {
        all.push_str(&l.ok_or_else(|| RecoveryError::Malformed(format!("line L{} is missing", i + 1)))?);
    }
    let bytes = Zeroizing::new(
        base32::decode(ALPHABET, &all[..58]).ok_or_else(|| RecoveryError::Malformed("not base32".into()))?,
    );
    if bytes.len() < 36 {
        return Err(RecoveryError::Malformed("too short".into()));
    }
    if blake3::hash(&bytes[..32]).as_bytes()[..4] != bytes[32..36] {
        return Err(RecoveryError::KeyCheck);
    }
    MasterKey::from_slice(&bytes[..32]).ok_or_else(|| RecoveryError::Malformed("too short".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_typo_detection() {
        let k = MasterKey::from_bytes([0xA5; 32]);
        let lines: Vec<String> = sheet_lines(&k).iter().map(|l| l.to_string()).collect();
        assert_eq!(lines.len(), 5);
        let text = format!("Cairn recovery sheet\n\n{}\n", lines.join("\n"));
        assert_eq!(parse_sheet(&text).unwrap().expose(), k.expose());
        assert_eq!(parse_sheet(&text.to_lowercase()).unwrap().expose(), k.expose());
        // One changed character on line 3 is reported on line 3.
        let mut bad = lines.clone();
        let mut chars: Vec<char> = bad[2].chars().collect();
        chars[4] = if chars[4] == 'X' { 'Y' } else { 'X' };
        bad[2] = chars.into_iter().collect();
        assert!(matches!(parse_sheet(&bad.join("\n")), Err(RecoveryError::LineCheck(3))));
        assert!(matches!(
            parse_sheet(&lines[..4].join("\n")),
            Err(RecoveryError::Malformed(_))
        ));
    }
}
