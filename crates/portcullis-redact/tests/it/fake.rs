//! Fake credentials made at run time, so no real-looking secret sits in the source (push
//! protection and the canary scan would flag it). Deterministic: the same sequence each run.

use std::cell::Cell;

pub const ALNUM: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
pub const UPPER_ALNUM: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
pub const LOWER_ALNUM: &str = "abcdefghijklmnopqrstuvwxyz0123456789";
pub const HEX: &str = "0123456789abcdef";
pub const DIGITS: &str = "0123456789";
pub const BASE32: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
pub const BASE64: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
pub const BASE64URL: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
pub const BECH32: &str = "QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L";

thread_local! {
    static STATE: Cell<u64> = const { Cell::new(0x9E37_79B9_7F4A_7C15) };
}

fn next() -> u64 {
    STATE.with(|state| {
        // splitmix64
        let mut z = state.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
        state.set(z);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    })
}

/// `len` characters drawn from `alphabet`; starts and ends with a letter or digit when the
/// alphabet has punctuation, so the value has clean edges.
pub fn random(alphabet: &str, len: usize) -> String {
    let chars: Vec<char> = alphabet.chars().collect();
    let plain: Vec<char> = chars
        .iter()
        .copied()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    (0..len)
        .map(|i| {
            let pool = if i == 0 || i + 1 == len {
                &plain
            } else {
                &chars
            };
            pool[(next() % pool.len() as u64) as usize]
        })
        .collect()
}

pub fn uuid() -> String {
    [
        random(HEX, 8),
        random(HEX, 4),
        random(HEX, 4),
        random(HEX, 4),
        random(HEX, 12),
    ]
    .join("-")
}
