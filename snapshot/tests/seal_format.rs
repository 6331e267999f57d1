//! Sealed files against fixed byte vectors (a test fails when a byte of the format
//! changes), the key derivation recomputed independently, and properties: round trips of
//! any payload and chunk size, and any changed byte refused, never a panic.

use hmac::{Hmac, Mac};
use proptest::prelude::*;
use sha2::Sha256;
use snapshot::{
    open_bytes, open_reader, seal_bytes, SealAlgorithm, SealFileId, SealKey, SealOptions,
    SealedFileRef, SnapshotError, SEAL_TAG_LEN,
};

fn golden_key() -> SealKey {
    SealKey::from_bytes(core::array::from_fn(|i| i as u8))
}

const GOLDEN_PAYLOAD: &[u8] =
    b"sealed snapshot golden vector, two chunks of 64 bytes: the second one is short.";

/// `seal_bytes(golden_key(), 64-byte chunks, label "state", companion "memory" [0x11; 32]
/// of 4096 bytes, GOLDEN_PAYLOAD)`, written once by this build.
const GOLDEN_HMAC_SHA256: &[&str] = &[
    "89564d5345414c0a01000100400000004f00000000000000b05f1524230566c4c7bde71fecdd7f64",
    "2d07b91c8c767a6b3a1afc737f62c2ddfb79b02e368003ecf0cf221a58fdbc1a3900000005737461",
    "746501000000066d656d6f7279111111111111111111111111111111111111111111111111111111",
    "111111111100100000000000005721111991a318e765e6cd7301f8845596fa43e26557d8dd465d79",
    "1f251ae2767365616c656420736e617073686f7420676f6c64656e20766563746f722c2074776f20",
    "6368756e6b73206f662036342062797465733a20746865207365636f6ebcb8423a029a2c7b65c6e0",
    "d19c43f82d64206f6e652069732073686f72742e948f0fc8a41db92b4dbec1db88786047",
];
const GOLDEN_CHACHA20_POLY1305: &[&str] = &[
    "89564d5345414c0a01000200400000004f00000000000000b05f1524230566c4c7bde71fecdd7f64",
    "5ce977f2568f210a9179aafee981578dc555d9b4cd036f23ae545e138be3ba923900000005737461",
    "746501000000066d656d6f7279111111111111111111111111111111111111111111111111111111",
    "11111111110010000000000000ba94f34751e3d302f3500c6c9267a58ae8e3ab0d849e4cc4a87721",
    "45893198878a29ebfb52c74e9a30493b7e78b61629d4a38347e0544c96b8381732270f3cdebb893f",
    "efaa77476536e25a39abb3e21bdd1e0a34aeb1786cee5bf9db1dc553d662edac4a245784b253e301",
    "22f9977dd2ecd53e809e7559a537bccf24f91ca09b26050b17d7dcfca0cd9fc7a714ebfe",
];
const GOLDEN_AES_256_GCM: &[&str] = &[
    "89564d5345414c0a01000300400000004f00000000000000b05f1524230566c4c7bde71fecdd7f64",
    "4fd8187201d6abe1211739688651a5c3e49e8d3aa19f7185af8cd60e82cbca3d3900000005737461",
    "746501000000066d656d6f7279111111111111111111111111111111111111111111111111111111",
    "11111111110010000000000000191ca35a666386148a493e76a4433c783646a899754d43a09aa4ee",
    "c1a8f1bfcfa1d69f5bdfa73ae4c7234b60d2a389b4f718a18954adb9f6bef45df663abeac8a0fe21",
    "94956d75ac82a07dd0a764696fbe5d8a4c65e819dd9df4dbd82ecd0a6bcbda294b6865c2e72d7ae0",
    "80c9d880d9651b07bec63c0b8eb060e6b12f30b8386c989d77c28916500efa1644d7fb79",
];

fn unhex(lines: &[&str]) -> Vec<u8> {
    let text: String = lines.concat();
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap();
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

#[test]
fn test_seal_golden_files_open_with_every_algorithm() {
    for (algorithm, lines) in [
        (SealAlgorithm::HmacSha256, GOLDEN_HMAC_SHA256),
        (SealAlgorithm::ChaCha20Poly1305, GOLDEN_CHACHA20_POLY1305),
        (SealAlgorithm::Aes256Gcm, GOLDEN_AES_256_GCM),
    ] {
        let sealed = unhex(lines);
        let (header, payload) = open_bytes(&golden_key(), &sealed, None).unwrap();
        assert_eq!(payload, GOLDEN_PAYLOAD, "{algorithm}");
        assert_eq!(header.algorithm, algorithm);
        assert_eq!(header.chunk_size, 64);
        assert_eq!(header.label, "state");
        assert_eq!(
            header.companions,
            vec![SealedFileRef {
                label: "memory".into(),
                file_id: SealFileId([0x11; 32]),
                payload_len: 4096,
            }]
        );
        assert_eq!(header.header_len, 76 + 57 + 32);
        assert_eq!(header.file_len(), sealed.len() as u64);
    }
}

/// The layout and derivations FORMAT.md gives, recomputed with the RustCrypto crates directly.
#[test]
fn test_seal_golden_hmac_file_matches_the_documented_layout() {
    let sealed = unhex(GOLDEN_HMAC_SHA256);
    let key: [u8; 32] = core::array::from_fn(|i| i as u8);
    assert_eq!(&sealed[0..8], b"\x89VMSEAL\n");
    assert_eq!(&sealed[8..10], &1u16.to_le_bytes(), "format version");
    assert_eq!(sealed[10], 1, "algorithm: hmac-sha256");
    assert_eq!(sealed[11], 0, "flags");
    assert_eq!(&sealed[12..16], &64u32.to_le_bytes(), "chunk size");
    let payload_len = GOLDEN_PAYLOAD.len() as u64;
    assert_eq!(&sealed[16..24], &payload_len.to_le_bytes());
    let key_id = hmac(&key, &[b"vmstate seal v1 key id"]);
    assert_eq!(&sealed[24..40], &key_id[..16]);
    assert_eq!(golden_key().id().0, key_id[..16]);
    // The check value docs/FORMAT.md gives.
    assert_eq!(
        golden_key().id().to_string(),
        "b05f1524230566c4c7bde71fecdd7f64"
    );
    let file_id = &sealed[40..72];
    let variable_len = u32::from_le_bytes(sealed[72..76].try_into().unwrap()) as usize;
    let mut variable = vec![5u8];
    variable.extend_from_slice(b"state");
    variable.extend_from_slice(&1u32.to_le_bytes());
    variable.push(6);
    variable.extend_from_slice(b"memory");
    variable.extend_from_slice(&[0x11; 32]);
    variable.extend_from_slice(&4096u64.to_le_bytes());
    assert_eq!(&sealed[76..76 + variable_len], &variable[..]);
    let header_end = 76 + variable_len;
    let header_key = hmac(&key, &[b"vmstate seal v1 header key", file_id]);
    let header_tag = hmac(&header_key, &[&sealed[..header_end]]);
    assert_eq!(&sealed[header_end..header_end + 32], &header_tag);

    let chunk_key = hmac(&key, &[b"vmstate seal v1 chunk key", file_id]);
    let mut at = header_end + 32;
    for (index, body) in GOLDEN_PAYLOAD.chunks(64).enumerate() {
        let last = index == 1;
        let mut nonce = [0u8; 12];
        nonce[..8].copy_from_slice(&(index as u64).to_le_bytes());
        nonce[8] = u8::from(last);
        assert_eq!(&sealed[at..at + body.len()], body, "in the clear");
        at += body.len();
        let tag = hmac(&chunk_key, &[&header_tag, &nonce, body]);
        assert_eq!(
            &sealed[at..at + SEAL_TAG_LEN],
            &tag[..SEAL_TAG_LEN],
            "chunk {index}"
        );
        at += SEAL_TAG_LEN;
    }
    assert_eq!(at, sealed.len());
}

fn algorithm(index: usize) -> SealAlgorithm {
    SealAlgorithm::ALL[index % SealAlgorithm::ALL.len()]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn test_seal_properties_round_trip(
        payload in proptest::collection::vec(any::<u8>(), 0..2000),
        chunk in 64u32..300,
        which in 0usize..3,
    ) {
        let key = golden_key();
        let options = SealOptions::new(algorithm(which)).with_chunk_size(chunk);
        let (sealed, file) = seal_bytes(&key, &options, &payload).unwrap();
        let (header, opened) = open_bytes(&key, &sealed, Some(&file)).unwrap();
        prop_assert_eq!(opened, payload);
        prop_assert_eq!(header.file_len(), sealed.len() as u64);
    }

    #[test]
    fn test_seal_properties_any_changed_byte_is_refused(
        payload in proptest::collection::vec(any::<u8>(), 0..600),
        which in 0usize..3,
        position in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let key = golden_key();
        let options = SealOptions::new(algorithm(which)).with_chunk_size(64);
        let (mut sealed, _) = seal_bytes(&key, &options, &payload).unwrap();
        let at = position.index(sealed.len());
        sealed[at] ^= flip;
        prop_assert!(open_bytes(&key, &sealed, None).is_err());
    }

    #[test]
    fn test_seal_properties_arbitrary_bytes_after_the_magic_never_panic(
        tail in proptest::collection::vec(any::<u8>(), 0..400),
    ) {
        let mut bytes = b"\x89VMSEAL\n".to_vec();
        bytes.extend_from_slice(&tail);
        let error = open_bytes(&golden_key(), &bytes, None).unwrap_err();
        let named = matches!(
            error,
            SnapshotError::Truncated { .. }
                | SnapshotError::SealUnsupported { .. }
                | SnapshotError::WrongKey { .. }
        );
        prop_assert!(named, "{}", error);
        prop_assert!(open_reader(&golden_key(), &bytes[..], None).is_err());
    }
}
