//! Our RFC 8785 canonicaliser, receipts, RFC 9162 proofs, C2SP checkpoints and Standard
//! Webhooks signatures, checked by implementations that are not ours (`independent/check.py`:
//! PyPI `rfc8785`, `tlog-scales`, `cryptography`, `standardwebhooks`). The venv comes from
//! `bash clients/setup.sh independent/requirements.txt venv-independent`; its python is given
//! in `PORTCULLIS_TEST_INDEPENDENT_PYTHON` (CI sets it and `PORTCULLIS_TEST_REQUIRE_INDEPENDENT`,
//! so a missing checker fails there instead of passing quietly).

use portcullis_core::action::{Action, HashedAction};
use portcullis_core::id::{ApprovalId, ConnectionId, ReceiptId, TenantId, WebhookMessageId};
use portcullis_core::keys::KeyRing;
use portcullis_core::merkle::{self, Hash};
use portcullis_core::note::{self, TreeHead};
use portcullis_core::receipt::{RECEIPT_FORMAT, ReceiptBody, SignedReceipt};
use portcullis_core::webhook::{self, SigningSecret, VerifyError};
use serde_json::{Map, Value, json};
use std::io::Write;
use std::process::{Command, Stdio};

/// The checker's python, or `None` (with a note) when this run has none.
fn python() -> Option<String> {
    match std::env::var("PORTCULLIS_TEST_INDEPENDENT_PYTHON") {
        Ok(py) if !py.is_empty() => Some(py),
        _ => {
            assert!(
                std::env::var_os("PORTCULLIS_TEST_REQUIRE_INDEPENDENT").is_none(),
                "PORTCULLIS_TEST_REQUIRE_INDEPENDENT is set but PORTCULLIS_TEST_INDEPENDENT_PYTHON is not"
            );
            eprintln!(
                "independent checks not run: set PORTCULLIS_TEST_INDEPENDENT_PYTHON (see clients/setup.sh)"
            );
            None
        }
    }
}

/// Run one `check.py` command on `input`; panics with the checker's reason when it disagrees.
fn check(py: &str, command: &str, input: &Value) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../independent/check.py");
    let mut child = Command::new(py)
        .arg(script)
        .arg(command)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the independent checker");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the independent checker disagrees ({command}): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("checker output")
}

/// A small deterministic generator (xorshift64*), so a failure reproduces.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn text(&mut self) -> String {
        const PICKS: &[char] = &[
            'a',
            'z',
            'A',
            ' ',
            '!',
            '"',
            '\\',
            '/',
            '\u{0}',
            '\u{1}',
            '\u{8}',
            '\u{c}',
            '\n',
            '\r',
            '\t',
            '\u{1f}',
            '\u{7f}',
            '\u{80}',
            'é',
            'ö',
            '€',
            '\u{2028}',
            '\u{d7ff}',
            '\u{e000}',
            '\u{fb33}',
            '\u{fffd}',
            '\u{ffff}',
            '😀',
            '\u{10000}',
            '\u{10ffff}',
        ];
        let len = self.below(8);
        (0..len)
            .map(|_| {
                if self.below(4) == 0 {
                    PICKS[self.below(PICKS.len() as u64) as usize]
                } else {
                    char::from_u32(self.below(0x11_0000) as u32).unwrap_or('x')
                }
            })
            .collect()
    }

    fn number(&mut self) -> Value {
        match self.below(8) {
            0 => json!(self.next() as i64 % 1000),
            1 => json!((self.next() >> 11) as i64 - (1 << 52)),
            2 => json!(1u64 << (53 + self.below(11))),
            3 => json!(-(1i64 << (53 + self.below(10)))),
            4 => json!(
                [
                    0.0,
                    -0.0,
                    1e21,
                    1e-7,
                    5e-324,
                    1.7976931348623157e308,
                    0.1,
                    1e23
                ][self.below(8) as usize]
            ),
            _ => {
                let f = f64::from_bits(self.next());
                if f.is_finite() { json!(f) } else { json!(1.5) }
            }
        }
    }

    fn value(&mut self, depth: u32) -> Value {
        match if depth > 4 {
            self.below(4)
        } else {
            self.below(7)
        } {
            0 => Value::Null,
            1 => Value::Bool(self.below(2) == 0),
            2 => self.number(),
            3 => Value::String(self.text()),
            4 => Value::Array((0..self.below(5)).map(|_| self.value(depth + 1)).collect()),
            _ => {
                let mut map = Map::new();
                for _ in 0..self.below(6) {
                    map.insert(self.text(), self.value(depth + 1));
                }
                Value::Object(map)
            }
        }
    }
}

#[test]
fn an_independent_rfc_8785_implementation_gives_the_same_bytes() {
    let Some(py) = python() else { return };
    let mut generator = Gen(0x9E37_79B9_7F4A_7C15);
    let values: Vec<Value> = (0..3000).map(|_| generator.value(0)).collect();
    let texts: Vec<String> = values.iter().map(Value::to_string).collect();
    let ours: Vec<String> = values
        .iter()
        .map(|v| hex::encode(portcullis_core::jcs::value_to_vec(v).expect("canonical")))
        .collect();
    let theirs = check(&py, "jcs", &json!({ "texts": texts }));
    let theirs: Vec<String> = serde_json::from_value(theirs["canonical"].clone()).unwrap();
    for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
        assert_eq!(a, b, "value {i} differs: {}", texts[i]);
    }
    assert_eq!(ours.len(), theirs.len());
}

#[test]
fn a_receipt_over_a_2_pow_60_integer_and_non_bmp_keys_verifies_independently() {
    let Some(py) = python() else { return };
    let keys = KeyRing::generate();
    let action = Action {
        tenant: TenantId::generate(),
        connection: ConnectionId::generate(),
        tool: "issue_refund".into(),
        tool_definition_hash: "f".repeat(64),
        arguments: json!({
            "amount": 1_152_921_504_606_846_976_u64,
            "\u{1F600}": "grinning",
            "\u{FB33}": "dalet",
            "€": [-0.0, 1e21, -(1i64 << 60)],
        }),
    };
    let hashed = HashedAction::new(action.clone()).unwrap();
    let receipt = SignedReceipt::sign(
        keys.signing_key(),
        ReceiptBody {
            format: RECEIPT_FORMAT,
            receipt_id: ReceiptId::generate(),
            approval_id: ApprovalId::generate(),
            tenant: action.tenant.clone(),
            action_hash: hashed.hash().to_owned(),
            approver: "alice".into(),
            approved_at: 1_000,
            expires_at: 2_000,
            nonce: SignedReceipt::new_nonce(),
            batch: None,
        },
    );
    let public_key = hex::encode(keys.verifying_key().as_bytes());
    check(
        &py,
        "receipt",
        &json!({ "receipt": receipt, "action": action, "public_key": public_key }),
    );
    // The checker is not a rubber stamp: one changed argument and it refuses.
    let mut other = action;
    other.arguments["amount"] = json!(1_152_921_504_606_846_976_u64 * 2);
    let refused = Command::new(&py)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../independent/check.py"
        ))
        .arg("receipt")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .and_then(|mut child| {
            child.stdin.take().unwrap().write_all(
                json!({ "receipt": receipt, "action": other, "public_key": public_key })
                    .to_string()
                    .as_bytes(),
            )?;
            child.wait()
        })
        .unwrap();
    assert!(
        !refused.success(),
        "a changed action passed the independent check"
    );
}

#[test]
fn inclusion_and_consistency_proofs_verify_independently() {
    let Some(py) = python() else { return };
    let leaves: Vec<Hash> = (0u32..48)
        .map(|i| merkle::leaf_hash(&i.to_be_bytes()))
        .collect();
    let (mut inclusion, mut consistency) = (Vec::new(), Vec::new());
    for n in 1..=leaves.len() {
        let tree = &leaves[..n];
        let root = hex::encode(merkle::root(tree));
        for i in (0..n).step_by(1 + n / 12) {
            let path = merkle::inclusion_proof(tree, i as u64).unwrap();
            inclusion.push(json!({
                "index": i, "size": n, "leaf": hex::encode(tree[i]), "root": root,
                "path": path.iter().map(hex::encode).collect::<Vec<_>>(),
            }));
        }
        for m in 1..=n {
            let path = merkle::consistency_proof(tree, m as u64).unwrap();
            consistency.push(json!({
                "old": m, "new": n, "old_root": hex::encode(merkle::root(&tree[..m])),
                "new_root": root, "path": path.iter().map(hex::encode).collect::<Vec<_>>(),
            }));
        }
    }
    let result = check(
        &py,
        "merkle",
        &json!({ "inclusion": inclusion, "consistency": consistency }),
    );
    assert_eq!(
        result["consistency"],
        json!(leaves.len() * (leaves.len() + 1) / 2)
    );
}

#[test]
fn checkpoints_verify_as_c2sp_signed_notes_independently() {
    let Some(py) = python() else { return };
    let keys = KeyRing::generate();
    let leaves: Vec<Hash> = (0u32..10)
        .map(|i| merkle::leaf_hash(&i.to_be_bytes()))
        .collect();
    let (mut notes, mut expect) = (Vec::new(), Vec::new());
    for n in [1usize, 7, 10] {
        let head = TreeHead {
            origin: format!("portcullis/audit/{}", TenantId::generate()),
            size: n as u64,
            root: merkle::root(&leaves[..n]),
        };
        notes.push(note::sign_checkpoint(
            keys.signing_key(),
            note::KEY_NAME,
            &head,
        ));
        expect.push(json!({ "origin": head.origin, "size": n, "root": hex::encode(head.root) }));
    }
    let vkey = note::vkey(note::KEY_NAME, &keys.verifying_key());
    check(
        &py,
        "checkpoint",
        &json!({ "notes": notes, "vkey": vkey, "expect": expect }),
    );
}

#[test]
fn webhook_signatures_agree_with_the_standard_webhooks_reference_library() {
    let Some(py) = python() else { return };
    // The reference library verifies against its own clock, so timestamps stay well inside
    // its 5-minute tolerance.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let mut generator = Gen(0xD1B5_4A32_D192_ED03);
    let secret = |generator: &mut Gen| {
        let len = 24 + generator.below(41) as usize;
        let bytes: Vec<u8> = (0..len).map(|_| generator.next() as u8).collect();
        SigningSecret::from_bytes(&bytes).unwrap()
    };
    struct Message {
        secrets: Vec<SigningSecret>,
        id: String,
        timestamp: i64,
        body: String,
    }
    let messages: Vec<Message> = (0..50)
        .map(|i| Message {
            secrets: match i % 3 {
                0 => vec![secret(&mut generator), SigningSecret::generate()],
                1 => vec![SigningSecret::generate()],
                _ => vec![secret(&mut generator)],
            },
            id: if i % 2 == 0 {
                WebhookMessageId::generate().to_string()
            } else {
                let len = 1 + generator.below(40);
                (0..len)
                    .map(|_| char::from(b' ' + generator.below(95) as u8))
                    .collect()
            },
            timestamp: now - 120 + generator.below(240) as i64,
            body: match i % 5 {
                0 => String::new(),
                1 | 2 => generator.value(0).to_string(),
                _ => generator.text(),
            },
        })
        .collect();
    let wire = |m: &Message, secrets: &[&SigningSecret], body: &str| {
        json!({
            "secrets": secrets.iter().map(|s| s.to_text().to_string()).collect::<Vec<_>>(),
            "id": m.id,
            "timestamp": m.timestamp.to_string(),
            "body": body,
            "signature": webhook::signature_header(
                &m.secrets.iter().collect::<Vec<_>>(), &m.id, m.timestamp, m.body.as_bytes()
            ),
        })
    };
    // (a) Ours signs, theirs verifies: every message under each of its secrets.
    let accept: Vec<Value> = messages
        .iter()
        .map(|m| wire(m, &m.secrets.iter().collect::<Vec<_>>(), &m.body))
        .collect();
    // ... and refuses a changed body, and a secret that did not sign.
    let stranger = SigningSecret::generate();
    let reject = vec![
        wire(&messages[3], &[&messages[3].secrets[0]], "{\"amount\": 2}"),
        wire(&messages[4], &[&stranger], &messages[4].body),
    ];
    // (b) Theirs signs, ours verifies.
    let sign: Vec<Value> = messages
        .iter()
        .flat_map(|m| {
            m.secrets.iter().map(|s| {
                json!({ "secret": s.to_text().to_string(), "id": m.id,
                        "timestamp": m.timestamp, "body": m.body })
            })
        })
        .collect();
    let result = check(
        &py,
        "webhooks",
        &json!({ "accept": accept, "reject": reject, "sign": sign }),
    );
    let secrets_signed: usize = messages.iter().map(|m| m.secrets.len()).sum();
    assert_eq!(result["accepted"], json!(secrets_signed));
    assert_eq!(result["refused"], json!(reject.len()));
    let theirs: Vec<String> = serde_json::from_value(result["signatures"].clone()).unwrap();
    assert_eq!(theirs.len(), secrets_signed);

    let mut theirs = theirs.into_iter();
    for m in &messages {
        let verify = |secrets: &[&SigningSecret], header: &str, body: &str| {
            webhook::verify(
                secrets,
                &m.id,
                &m.timestamp.to_string(),
                header,
                body.as_bytes(),
                now,
                webhook::DEFAULT_TOLERANCE_SECS,
            )
        };
        let signatures: Vec<String> = m.secrets.iter().map(|_| theirs.next().unwrap()).collect();
        for (secret, signature) in m.secrets.iter().zip(&signatures) {
            assert_eq!(verify(&[secret], signature, &m.body), Ok(()), "{}", m.id);
            assert_eq!(
                signature,
                &webhook::sign(secret, &m.id, m.timestamp, m.body.as_bytes())
            );
            assert_eq!(
                verify(&[secret], signature, &format!("{} ", m.body)),
                Err(VerifyError::NoMatch)
            );
            assert_eq!(
                verify(&[&stranger], signature, &m.body),
                Err(VerifyError::NoMatch)
            );
        }
        // Their signatures in one rotation header, behind an entry of another version: each
        // secret alone verifies it.
        let header = format!("v2,AAAA {}", signatures.join(" "));
        for secret in &m.secrets {
            assert_eq!(verify(&[secret], &header, &m.body), Ok(()), "{}", m.id);
        }
    }
}
