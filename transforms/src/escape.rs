//! Where a JSON string's next escape is: the scan that writing canonical
//! JSON (Parquet's rebuilt records), reading flat records and the quick
//! pass of the strict rule all use.

/// The index of the first byte of `bytes` that a JSON string escapes (a
/// control character, `"` or `\\`): sixteen bytes at a time with SSE2 (on
/// every x86-64), then eight at a time as [`find_escape_words`] does.
pub fn find_escape(bytes: &[u8]) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{
            __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_max_epu8, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
        };
        let mut blocks = bytes.chunks_exact(16);
        let mut at = 0;
        // SAFETY: SSE2 is part of x86-64; each load reads the 16 bytes of
        // one chunk (unaligned loads).
        unsafe {
            let quote = _mm_set1_epi8(b'"' as i8);
            let backslash = _mm_set1_epi8(b'\\' as i8);
            let control = _mm_set1_epi8(0x1f);
            for block in &mut blocks {
                let v = _mm_loadu_si128(block.as_ptr() as *const __m128i);
                // max(v, 0x1f) == 0x1f exactly for the bytes <= 0x1f.
                let hits = _mm_or_si128(
                    _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, backslash)),
                    _mm_cmpeq_epi8(_mm_max_epu8(v, control), control),
                );
                let mask = _mm_movemask_epi8(hits);
                if mask != 0 {
                    return Some(at + mask.trailing_zeros() as usize);
                }
                at += 16;
            }
        }
        find_escape_words(blocks.remainder()).map(|found| at + found)
    }
    #[cfg(not(target_arch = "x86_64"))]
    find_escape_words(bytes)
}

/// [`find_escape`] eight bytes at a time, with the usual "has a byte less
/// than n" word trick: exact for n <= 128, and its lowest hit is the first
/// such byte (a borrow only runs upwards).
fn find_escape_words(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let less_than = |word: u64, n: u8| word.wrapping_sub(ONES * n as u64) & !word & HIGH;
    let mut words = bytes.chunks_exact(8);
    for (index, chunk) in (&mut words).enumerate() {
        let word = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        let hits = less_than(word, 0x20)
            | less_than(word ^ (ONES * b'"' as u64), 1)
            | less_than(word ^ (ONES * b'\\' as u64), 1);
        if hits != 0 {
            return Some(index * 8 + hits.trailing_zeros() as usize / 8);
        }
    }
    let tail = bytes.len() - words.remainder().len();
    words
        .remainder()
        .iter()
        .position(|&b| b < 0x20 || b == b'"' || b == b'\\')
        .map(|at| tail + at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_escape_scan_finds_the_first_byte_json_escapes_wherever_it_is() {
        // 43 bytes: two blocks of 16, a word of 8, three bytes alone.
        const LENGTH: usize = 43;
        for byte in 0u8..=255 {
            let escaped = byte < 0x20 || byte == b'"' || byte == b'\\';
            for at in 0..LENGTH {
                let mut bytes = vec![b'a'; LENGTH];
                bytes[at] = byte;
                assert_eq!(find_escape(&bytes), escaped.then_some(at), "byte {byte:#x} at {at}");
                assert_eq!(
                    find_escape_words(&bytes),
                    escaped.then_some(at),
                    "byte {byte:#x} at {at}"
                );
                // A second one after it (in the same block or word or not).
                bytes[LENGTH - 1] = b'"';
                let first = if escaped { at } else { LENGTH - 1 };
                assert_eq!(find_escape(&bytes), Some(first), "byte {byte:#x} at {at}, then a quote");
                assert_eq!(
                    find_escape_words(&bytes),
                    Some(first),
                    "byte {byte:#x} at {at}, then a quote"
                );
            }
        }
        assert_eq!(find_escape("é ☃ 😀 \u{7f}\u{2028}".as_bytes()), None);
    }
}
