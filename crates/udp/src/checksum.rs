//! The Internet checksum's arithmetic for the fast path (RFC 1071), over tun-rs's vectorised
//! summing (AVX2/SSE4.1 where the CPU has them).
//!
//! [`sum`] adds without folding, so sums over consecutive pieces of a packet add up, as long
//! as every piece but the last has an even length; [`fold`] reduces to 16 bits (the checksum
//! field is its complement).

/// The unfolded one's-complement sum of `data` (an odd last byte padded with zero), plus
/// `initial`.
#[inline]
pub fn sum(data: &[u8], initial: u64) -> u64 {
    tun_rs::checksum_no_fold(data, initial)
}

/// Folds an unfolded sum to 16 bits (end-around carry).
#[inline]
#[allow(clippy::cast_possible_truncation)] // the loop leaves s ≤ 0xffff
pub fn fold(mut s: u64) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::internet_checksum;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn sums_of_even_pieces_add_up_to_the_rfc_1071_checksum(
            data in proptest::collection::vec(any::<u8>(), 0..3000),
            cut in 0usize..1500,
        ) {
            let cut = (cut * 2).min(data.len() & !1);
            let s = sum(&data[cut..], sum(&data[..cut], 0));
            prop_assert_eq!(!fold(s), internet_checksum(&data));
        }
    }
}
