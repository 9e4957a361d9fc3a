//! `/proc/*/mountinfo` fields, for the cgroup detection and the mount plan.

/// Undoes mountinfo's octal escapes (`\040` for a space, `\011`, `\012`, `\134`). A backslash
/// not followed by three octal digits that make a byte (`\4xx` and up do not) stays as it is.
pub(crate) fn unescape(field: &str) -> Vec<u8> {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if let Some(byte) = b.get(i + 1..i + 4).filter(|_| b[i] == b'\\').and_then(octal_byte) {
            out.push(byte);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// Three octal digits as one byte; `None` when they are not octal or exceed 255.
fn octal_byte(digits: &[u8]) -> Option<u8> {
    digits
        .iter()
        .try_fold(0u32, |v, &d| (b'0'..=b'7').contains(&d).then(|| v * 8 + u32::from(d - b'0')))
        .and_then(|v| u8::try_from(v).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn octal_escapes_and_plain_backslashes() {
        assert_eq!(unescape("/a\\040b\\011c\\134"), b"/a b\tc\\");
        assert_eq!(unescape("/a\\\\b"), b"/a\\\\b");
        assert_eq!(unescape("/x\\04"), b"/x\\04");
        assert_eq!(unescape("/x\\08a"), b"/x\\08a");
        assert_eq!(unescape("/x\\377"), b"/x\xff");
    }

    #[test]
    fn an_escape_past_a_byte_stays_literal() {
        // 0o477 = 319: multiplied in u8 this overflowed (a panic in debug builds).
        assert_eq!(unescape("/x\\477y"), b"/x\\477y");
        assert_eq!(unescape("\\777"), b"\\777");
    }
}
