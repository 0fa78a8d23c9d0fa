//! Tokens as a person reads them in a terminal: whitespace visible (`␣`, `↵`, `⇥`), control
//! characters and bytes that are not text escaped (`\x03`, `\xc3`), never `�`.
//!
//! Decoding one token of a byte-level BPE (GPT-2, Llama 3) or a SentencePiece byte-fallback
//! vocabulary can yield half a UTF-8 character, which `decode` turns into `�`. So a token's
//! *bytes* are recovered from its vocabulary entry (the GPT-2 byte-to-unicode alphabet, or
//! `<0xNN>`), and only the bytes that are not valid UTF-8 are shown as `\xNN`.

use adag_model::ModelTokenizer as Tokenizer;

/// The byte that GPT-2's byte-level alphabet writes as `c` (its `bytes_to_unicode` table:
/// printable Latin-1 bytes stand for themselves, the other 68 bytes for U+0100.. in order).
fn byte_of_char(c: char) -> Option<u8> {
    let printable = |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || b >= 174;
    let c = c as u32;
    if c < 256 {
        return printable(c).then_some(c as u8);
    }
    let k = c - 256;
    (0u32..256)
        .filter(|&b| !printable(b))
        .nth(k as usize)
        .map(|b| b as u8)
}

/// The bytes a vocabulary entry stands for, when it is a byte-level or byte-fallback token.
fn entry_bytes(entry: &str) -> Option<Vec<u8>> {
    if let Some(hex) = entry.strip_prefix("<0x").and_then(|r| r.strip_suffix('>')) {
        return u8::from_str_radix(hex, 16).ok().map(|b| vec![b]);
    }
    entry.chars().map(byte_of_char).collect()
}

/// The bytes of token `id` as the model emits them.
pub fn token_bytes(tok: &Tokenizer, id: u32) -> anyhow::Result<Vec<u8>> {
    let text = tok.decode(&[id], false)?;
    let odd = text.contains('\u{FFFD}') || text.chars().any(|c| c.is_control());
    if odd && !tok.special_ids().contains(&id) {
        if let Some(b) = tok.inner().id_to_token(id).as_deref().and_then(entry_bytes) {
            return Ok(b);
        }
    }
    Ok(text.into_bytes())
}

/// `text` with whitespace made visible and control characters escaped.
pub fn visible(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            ' ' => out.push('␣'),
            '\n' => out.push('↵'),
            '\t' => out.push('⇥'),
            c if c.is_control() && (c as u32) < 0x80 => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// Bytes as text: valid UTF-8 through [`visible`], every other byte as `\xNN`.
pub fn visible_bytes(mut bytes: &[u8]) -> String {
    let mut out = String::new();
    loop {
        match std::str::from_utf8(bytes) {
            Ok(s) => {
                out.push_str(&visible(s));
                return out;
            }
            Err(e) => {
                let (ok, rest) = bytes.split_at(e.valid_up_to());
                out.push_str(&visible(std::str::from_utf8(ok).unwrap_or_default()));
                let bad = e.error_len().unwrap_or(rest.len());
                for b in &rest[..bad] {
                    out.push_str(&format!("\\x{b:02x}"));
                }
                bytes = &rest[bad..];
            }
        }
    }
}

/// One token, readable.
pub fn show(tok: &Tokenizer, id: u32) -> anyhow::Result<String> {
    Ok(visible_bytes(&token_bytes(tok, id)?))
}

/// A token sequence, readable: bytes joined first, so that a character split over two tokens
/// shows as itself.
pub fn show_all(tok: &Tokenizer, ids: &[u32]) -> anyhow::Result<String> {
    let mut bytes = Vec::new();
    for &id in ids {
        bytes.extend(token_bytes(tok, id)?);
    }
    Ok(visible_bytes(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpt2_alphabet_round_trips_every_byte() {
        // The alphabet is a bijection between the 256 bytes and 256 chars.
        let chars: Vec<char> = (33u32..=126)
            .chain(161..=172)
            .chain(174..=255)
            .chain(256..324)
            .filter_map(char::from_u32)
            .collect();
        let mut seen: Vec<u8> = chars.iter().filter_map(|&c| byte_of_char(c)).collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..=255).collect::<Vec<u8>>());
        assert_eq!(byte_of_char('Ġ'), Some(b' '));
        assert_eq!(byte_of_char('Ċ'), Some(b'\n'));
        assert_eq!(byte_of_char('ĉ'), Some(b'\t'));
    }

    #[test]
    fn entries_give_their_bytes() {
        assert_eq!(entry_bytes("<0x03>"), Some(vec![3]));
        assert_eq!(entry_bytes("Ã"), Some(vec![0xc3]));
        assert_eq!(entry_bytes("ĠAustin").unwrap(), b" Austin");
    }

    #[test]
    fn whitespace_and_bytes_are_visible() {
        assert_eq!(visible(" Austin"), "␣Austin");
        assert_eq!(visible("a\n\tb\u{3}"), "a↵⇥b\\x03");
        assert_eq!(visible_bytes("é".as_bytes()), "é");
        assert_eq!(visible_bytes(&[b'i', b't', 0xc3]), "it\\xc3");
        assert_eq!(visible_bytes(&[0xc3, b'x', 0xa9]), "\\xc3x\\xa9");
    }
}
