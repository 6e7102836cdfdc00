//! Audit checkpoints as C2SP signed notes (`signed-note` and `tlog-checkpoint`): the text
//! `<origin>\n<tree size>\n<base64 root hash>\n`, a blank line, and one line per signature,
//! `— <key name> <base64(key id ‖ Ed25519 signature)>`. The key id is the first four bytes of
//! `SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key)`, so a verifier holding several keys (after a
//! rotation) picks the right one, and a note signed by an unknown key is told apart from a
//! forged one. The origin names the log: one per tenant, `<prefix>/<tenant id>`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::merkle::Hash;

/// The key name audit checkpoints are signed under.
pub const KEY_NAME: &str = "portcullis-audit";

/// The Ed25519 signature type byte of C2SP signed notes.
const ED25519: u8 = 0x01;

/// What a checkpoint states: the log `origin` had `size` entries with Merkle root `root`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeHead {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

/// A public key a note may be signed with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteVerifier {
    pub name: String,
    pub key: VerifyingKey,
}

/// Why a note was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    #[error("the note is malformed: {0}")]
    Malformed(String),
    #[error("the note is not signed by any known key")]
    UnknownKey,
    #[error("the note's signature does not verify")]
    BadSignature,
}

/// The 4-byte key id of `name` and `key`.
pub fn key_id(name: &str, key: &VerifyingKey) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([ED25519]);
    h.update(key.as_bytes());
    let digest = h.finalize();
    [digest[0], digest[1], digest[2], digest[3]]
}

/// The verifier key in the C2SP text form `name+<hex key id>+<base64(0x01 ‖ key)>`.
pub fn vkey(name: &str, key: &VerifyingKey) -> String {
    let mut raw = Vec::with_capacity(33);
    raw.push(ED25519);
    raw.extend_from_slice(key.as_bytes());
    format!(
        "{name}+{}+{}",
        hex::encode(key_id(name, key)),
        B64.encode(raw)
    )
}

/// Read a verifier key: the C2SP form, or a bare hex Ed25519 key (named [`KEY_NAME`]).
pub fn parse_vkey(text: &str) -> Result<NoteVerifier, NoteError> {
    let text = text.trim();
    let bad = |why: &str| NoteError::Malformed(format!("verifier key: {why}"));
    let Some((name, rest)) = text.split_once('+') else {
        let key = crate::keys::parse_verifying_key(text)
            .ok_or_else(|| bad("neither `name+id+key` nor a hex Ed25519 key"))?;
        return Ok(NoteVerifier {
            name: KEY_NAME.into(),
            key,
        });
    };
    let (id, key) = rest.split_once('+').ok_or_else(|| bad("no key id"))?;
    let raw = B64.decode(key).map_err(|_| bad("key is not base64"))?;
    if raw.len() != 33 || raw[0] != ED25519 {
        return Err(bad("not an Ed25519 key"));
    }
    let key = VerifyingKey::try_from(&raw[1..]).map_err(|_| bad("not an Ed25519 key"))?;
    if hex::encode(key_id(name, &key)) != id {
        return Err(bad("the key id does not match the name and key"));
    }
    Ok(NoteVerifier {
        name: name.into(),
        key,
    })
}

/// The checkpoint text (the part that is signed).
fn body(head: &TreeHead) -> String {
    format!(
        "{}\n{}\n{}\n",
        head.origin,
        head.size,
        B64.encode(head.root)
    )
}

/// Sign a checkpoint as a note under `name`.
pub fn sign_checkpoint(key: &SigningKey, name: &str, head: &TreeHead) -> String {
    let text = body(head);
    let signature = key.sign(text.as_bytes());
    let mut blob = key_id(name, &key.verifying_key()).to_vec();
    blob.extend_from_slice(&signature.to_bytes());
    format!("{text}\n\u{2014} {name} {}\n", B64.encode(blob))
}

/// Parse a checkpoint note without checking signatures.
pub fn parse_checkpoint(note: &str) -> Result<TreeHead, NoteError> {
    let (text, _) = split(note)?;
    let mut lines = text.strip_suffix('\n').unwrap_or(text).split('\n');
    let bad = |why: &str| NoteError::Malformed(why.to_owned());
    let origin = lines
        .next()
        .filter(|o| !o.is_empty())
        .ok_or_else(|| bad("no origin line"))?;
    let size = lines
        .next()
        .and_then(|s| {
            // Decimal without leading zeros, as the format requires.
            let digits = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
            (digits && (s == "0" || !s.starts_with('0'))).then(|| s.parse::<u64>().ok())?
        })
        .ok_or_else(|| bad("the size line is not a decimal number"))?;
    let root = lines
        .next()
        .and_then(|r| B64.decode(r).ok())
        .and_then(|r| Hash::try_from(r.as_slice()).ok())
        .ok_or_else(|| bad("the root line is not a base64 SHA-256 hash"))?;
    Ok(TreeHead {
        origin: origin.to_owned(),
        size,
        root,
    })
}

/// The signed text and the signature lines of a note.
fn split(note: &str) -> Result<(&str, &str), NoteError> {
    let bad = |why: &str| NoteError::Malformed(why.to_owned());
    if !note.ends_with('\n') {
        return Err(bad("the note does not end with a newline"));
    }
    let at = note
        .rfind("\n\n")
        .ok_or_else(|| bad("no blank line before the signatures"))?;
    Ok((&note[..=at], &note[at + 2..]))
}

/// Verify a checkpoint note with any of `keys` and return what it states.
pub fn verify_checkpoint(note: &str, keys: &[NoteVerifier]) -> Result<TreeHead, NoteError> {
    let head = parse_checkpoint(note)?;
    let (text, signatures) = split(note)?;
    let mut known = false;
    for line in signatures
        .strip_suffix('\n')
        .unwrap_or(signatures)
        .split('\n')
    {
        let rest = line.strip_prefix("\u{2014} ").ok_or_else(|| {
            NoteError::Malformed("a signature line does not start with `— `".into())
        })?;
        let (name, blob) = rest
            .split_once(' ')
            .ok_or_else(|| NoteError::Malformed("a signature line has no signature".into()))?;
        let blob = B64
            .decode(blob)
            .map_err(|_| NoteError::Malformed("a signature is not base64".into()))?;
        if blob.len() != 4 + 64 {
            continue;
        }
        for key in keys.iter().filter(|k| k.name == name) {
            if key_id(name, &key.key)[..] != blob[..4] {
                continue;
            }
            known = true;
            let signature =
                Signature::from_slice(&blob[4..]).map_err(|_| NoteError::BadSignature)?;
            if key.key.verify(text.as_bytes(), &signature).is_ok() {
                return Ok(head);
            }
        }
    }
    Err(if known {
        NoteError::BadSignature
    } else {
        NoteError::UnknownKey
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The C2SP signed-note specification's example: key, message and signature.
    #[test]
    fn the_c2sp_example_verifies() {
        let verifier =
            parse_vkey("example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k")
                .unwrap();
        let note = "This is an example message.\n\n\u{2014} example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n";
        let (text, _) = split(note).unwrap();
        let blob = B64.decode("Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=").unwrap();
        assert_eq!(blob[..4], key_id("example.com/foo", &verifier.key));
        verifier
            .key
            .verify(text.as_bytes(), &Signature::from_slice(&blob[4..]).unwrap())
            .unwrap();
        assert_eq!(
            vkey("example.com/foo", &verifier.key),
            "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
        );
    }

    #[test]
    fn checkpoints_round_trip_and_tampering_is_refused() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let other = SigningKey::from_bytes(&[8; 32]);
        let head = TreeHead {
            origin: "portcullis/audit/ten_x".into(),
            size: 42,
            root: [9; 32],
        };
        let note = sign_checkpoint(&key, KEY_NAME, &head);
        let mine = NoteVerifier {
            name: KEY_NAME.into(),
            key: key.verifying_key(),
        };
        let theirs = NoteVerifier {
            name: KEY_NAME.into(),
            key: other.verifying_key(),
        };
        assert_eq!(
            verify_checkpoint(&note, std::slice::from_ref(&mine)),
            Ok(head.clone())
        );
        // After a rotation the verifier holds both keys and picks by key id.
        assert_eq!(
            verify_checkpoint(&note, &[theirs.clone(), mine.clone()]),
            Ok(head)
        );
        assert_eq!(
            verify_checkpoint(&note, &[theirs]),
            Err(NoteError::UnknownKey)
        );
        let bigger = note.replacen("\n42\n", "\n43\n", 1);
        assert_eq!(
            verify_checkpoint(&bigger, std::slice::from_ref(&mine)),
            Err(NoteError::BadSignature)
        );
        let moved = note.replacen("ten_x", "ten_y", 1);
        assert_eq!(
            verify_checkpoint(&moved, std::slice::from_ref(&mine)),
            Err(NoteError::BadSignature)
        );
        let plus = note.replacen("\n42\n", "\n+42\n", 1);
        for malformed in [
            "",
            "x\n",
            "o\n042\nAAAA\n\n— a b\n",
            &note[..note.len() - 1],
            &plus,
        ] {
            assert!(
                matches!(
                    verify_checkpoint(malformed, std::slice::from_ref(&mine)),
                    Err(NoteError::Malformed(_))
                ),
                "{malformed:?}"
            );
        }
        assert_eq!(
            parse_vkey(&vkey(KEY_NAME, &key.verifying_key())).unwrap(),
            mine
        );
        assert_eq!(
            parse_vkey(&hex::encode(key.verifying_key().as_bytes())).unwrap(),
            mine
        );
    }
}
