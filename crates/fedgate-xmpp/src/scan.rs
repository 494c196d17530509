//! Finding the next byte of interest in a run of text sixteen bytes at a time: a cheap test
//! that may over-report (plain comparisons, which the compiler turns into vector compares)
//! rules a block out, and only a block it cannot rule out is looked at byte by byte with the
//! exact table. Used by the parser's text decoder and the serializer's escaping.

/// The index of the first byte of `b` at or after `i` that `exact` marks, or `b.len()`.
/// `may` must hold for every byte `exact` marks (it may hold for others too) and must be
/// branch-free (`|` and `&` on comparisons, no table lookups), so that a block of 16 bytes is
/// ruled out in a few instructions.
#[inline(always)]
pub(crate) fn find(b: &[u8], mut i: usize, may: impl Fn(u8) -> bool, exact: &[bool; 256]) -> usize {
    while let Some(block) = b.get(i..i + 16) {
        let mut hit = false;
        for &c in block {
            hit |= may(c);
        }
        if hit {
            if let Some(k) = block.iter().position(|c| exact[*c as usize]) {
                return i + k;
            }
        }
        i += 16;
    }
    while i < b.len() && !exact[b[i] as usize] {
        i += 1;
    }
    i
}
