//! Lowercase hex digests (MD5, SHA-256, HMAC-SHA-256) that plugins use to pseudonymise client
//! addresses before they leave the repository.
//!
//! Inputs are bytes (`AsRef<[u8]>`) because Lua strings are byte strings. HMAC-SHA-256 with a
//! secret key is the one to recommend for IP pseudonyms: a plain hash of an IPv4 address can be
//! reversed by hashing all 2^32 addresses. None of these functions can fail, so this module has
//! no error type. The hex digits are the digest crate's own lowercase formatting (`{:x}`).

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha2::Sha256;

/// MD5 of `data` as 32 lowercase hex digits.
pub fn md5_hex(data: impl AsRef<[u8]>) -> String {
    format!("{:x}", Md5::digest(data.as_ref()))
}

/// SHA-256 of `data` as 64 lowercase hex digits.
pub fn sha256_hex(data: impl AsRef<[u8]>) -> String {
    format!("{:x}", Sha256::digest(data.as_ref()))
}

/// HMAC-SHA-256 (RFC 2104) of `msg` under `key`, as 64 lowercase hex digits. Any key length
/// works, including empty.
pub fn hmac_sha256_hex(key: impl AsRef<[u8]>, msg: impl AsRef<[u8]>) -> String {
    // HMAC hashes long keys and pads short ones, so `new_from_slice` accepts every length; its
    // Result only exists because the trait also serves fixed-key MACs.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key.as_ref())
        .expect("hmac accepts keys of any length");
    mac.update(msg.as_ref());
    format!("{:x}", mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_vectors() {
        // RFC 1321 appendix A.5 and the usual pangram.
        assert_eq!(md5_hex(""), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(md5_hex("abc"), "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(
            md5_hex("The quick brown fox jumps over the lazy dog"),
            "9e107d9d372bb6826bd81d3542a419d6"
        );
    }

    #[test]
    fn sha256_vectors() {
        // FIPS 180-2 examples.
        assert_eq!(
            sha256_hex(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
        );
    }

    #[test]
    fn hmac_sha256_rfc4231() {
        let long_key = [0xaau8; 131];
        let cases: [(&[u8], &[u8], &str); 6] = [
            (
                &[0x0b; 20],
                b"Hi There",
                "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
            ),
            (
                b"Jefe",
                b"what do ya want for nothing?",
                "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
            ),
            (
                &[0xaa; 20],
                &[0xdd; 50],
                "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe",
            ),
            (
                &[
                    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22,
                    23, 24, 25,
                ],
                &[0xcd; 50],
                "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b",
            ),
            (
                &long_key,
                b"Test Using Larger Than Block-Size Key - Hash Key First",
                "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
            ),
            (
                &long_key,
                b"This is a test using a larger than block-size key and a larger than \
                  block-size data. The key needs to be hashed before being used by the HMAC \
                  algorithm.",
                "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
            ),
        ];
        for (key, msg, want) in cases {
            assert_eq!(hmac_sha256_hex(key, msg), want);
        }
        // Test case 5 is specified truncated to 128 bits.
        assert!(hmac_sha256_hex([0x0c; 20], "Test With Truncation")
            .starts_with("a3b6167473100ee06e0c796c2955552b"));
    }

    #[test]
    fn odd_inputs() {
        assert_eq!(hmac_sha256_hex("", "").len(), 64);
        assert_eq!(sha256_hex([0xffu8, 0x00]).len(), 64);
        assert_eq!(md5_hex("ünïcode").len(), 32);
        assert!(hmac_sha256_hex("k", "192.0.2.1")
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    }
}
