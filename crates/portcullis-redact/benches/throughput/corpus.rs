//! A synthetic, labelled corpus for measuring the redactor (and Presidio, on the same text):
//! generated deterministically from a seed, so every run and every tool sees the same bytes.
//!
//! Two halves: dense (JSON tool results, log lines and config snippets full of personal data
//! and credentials) and sparse (prose with an occasional value). Every inserted value is
//! labelled with its kind and exact byte span. Hard negatives sit among them unlabelled:
//! Luhn-invalid card numbers, SSNs in area 666, IBANs with wrong check digits, unassigned
//! country codes, `256.1.1.1`, version strings, timestamps, hashes, UUIDs, placeholders.
//! Every fake credential is assembled at run time; nothing real-looking is in the source.

use std::fmt::Write as _;

use base64::Engine as _;
use portcullis_redact::Kind;

/// What a score row is about: the six personal-data kinds and "secret" (all credentials).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ScoreKind {
    Email,
    Phone,
    UsSsn,
    PaymentCard,
    Iban,
    IpAddress,
    Secret,
}

impl ScoreKind {
    pub const ALL: [ScoreKind; 7] = [
        ScoreKind::Email,
        ScoreKind::Phone,
        ScoreKind::UsSsn,
        ScoreKind::PaymentCard,
        ScoreKind::Iban,
        ScoreKind::IpAddress,
        ScoreKind::Secret,
    ];

    pub fn of(kind: Kind) -> ScoreKind {
        match kind {
            Kind::Email => ScoreKind::Email,
            Kind::Phone => ScoreKind::Phone,
            Kind::UsSsn => ScoreKind::UsSsn,
            Kind::PaymentCard => ScoreKind::PaymentCard,
            Kind::Iban => ScoreKind::Iban,
            Kind::IpAddress => ScoreKind::IpAddress,
            _ => ScoreKind::Secret,
        }
    }

    /// The name in `labels.tsv` and in the Presidio script.
    pub fn name(self) -> &'static str {
        match self {
            ScoreKind::Email => "email",
            ScoreKind::Phone => "phone",
            ScoreKind::UsSsn => "us_ssn",
            ScoreKind::PaymentCard => "payment_card",
            ScoreKind::Iban => "iban",
            ScoreKind::IpAddress => "ip_address",
            ScoreKind::Secret => "secret",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Label {
    pub kind: ScoreKind,
    pub start: usize,
    pub end: usize,
}

pub struct Corpus {
    pub text: String,
    pub labels: Vec<Label>,
    /// Where the sparse half starts.
    pub sparse_start: usize,
}

impl Corpus {
    /// `labels.tsv`: `kind<TAB>start<TAB>end` per line, byte offsets.
    pub fn labels_tsv(&self) -> String {
        let mut out = String::new();
        for label in &self.labels {
            let _ = writeln!(out, "{}\t{}\t{}", label.kind.name(), label.start, label.end);
        }
        out
    }
}

/// True positives, false positives and false negatives of one kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Score {
    pub tp: usize,
    pub fp: usize,
    pub fn_: usize,
}

impl Score {
    pub fn precision(&self) -> f64 {
        ratio(self.tp, self.tp + self.fp)
    }
    pub fn recall(&self) -> f64 {
        ratio(self.tp, self.tp + self.fn_)
    }
    pub fn f1(&self) -> f64 {
        let (p, r) = (self.precision(), self.recall());
        if p + r == 0.0 {
            0.0
        } else {
            2.0 * p * r / (p + r)
        }
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 1.0 } else { a as f64 / b as f64 }
}

/// Scores predictions against labels, per kind: a prediction is a true positive when it
/// overlaps a not yet matched label of the same kind (one prediction per label). The Presidio
/// script (`bench/presidio/compare.py`) scores the same way.
pub fn score(labels: &[Label], predictions: &[Label]) -> Vec<(ScoreKind, Score)> {
    ScoreKind::ALL
        .iter()
        .map(|&kind| {
            let mut wanted: Vec<(usize, usize)> = labels
                .iter()
                .filter(|l| l.kind == kind)
                .map(|l| (l.start, l.end))
                .collect();
            wanted.sort_unstable();
            let mut got: Vec<(usize, usize)> = predictions
                .iter()
                .filter(|l| l.kind == kind)
                .map(|l| (l.start, l.end))
                .collect();
            got.sort_unstable();
            let mut matched = vec![false; wanted.len()];
            let mut score = Score::default();
            for (start, end) in got {
                // Labels are disjoint and sorted, so the candidates are near the partition point.
                let from = wanted.partition_point(|&(_, e)| e <= start);
                let hit = (from..wanted.len())
                    .take_while(|&i| wanted[i].0 < end)
                    .find(|&i| !matched[i]);
                match hit {
                    Some(i) => {
                        matched[i] = true;
                        score.tp += 1;
                    }
                    None => score.fp += 1,
                }
            }
            score.fn_ = matched.iter().filter(|m| !**m).count();
            (kind, score)
        })
        .collect()
}

/// A small deterministic generator (splitmix64).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    pub fn range(&mut self, low: usize, high: usize) -> usize {
        low + self.below(high - low + 1)
    }
    pub fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    pub fn word(&mut self, words: &[&'static str]) -> &'static str {
        words[self.below(words.len())]
    }
    pub fn string(&mut self, alphabet: &str, len: usize) -> String {
        let chars: Vec<char> = alphabet.chars().collect();
        (0..len).map(|_| chars[self.below(chars.len())]).collect()
    }
    pub fn digits(&mut self, len: usize) -> String {
        self.string("0123456789", len)
    }
}

const ALNUM: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const HEX: &str = "0123456789abcdef";
const BASE64: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URLSAFE: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

const FIRST: &[&str] = &[
    "ada", "grace", "alan", "edsger", "barbara", "ken", "margaret", "linus", "zoë", "jürgen",
    "siobhán", "mei", "ravi", "olu",
];
const LAST: &[&str] = &[
    "lovelace", "hopper", "turing", "dijkstra", "liskov", "thompson", "hamilton", "torvalds",
    "okafor", "tanaka", "novak", "garcia",
];
const DOMAINS: &[&str] = &[
    "example.com",
    "mail.example.org",
    "corp.example.net",
    "example.io",
    "post.example.de",
    "example.co.uk",
    "client.example.fr",
];
const WORDS: &[&str] = &[
    "the",
    "agent",
    "called",
    "tool",
    "result",
    "returned",
    "order",
    "invoice",
    "customer",
    "ticket",
    "status",
    "shipped",
    "pending",
    "refund",
    "policy",
    "approval",
    "quarterly",
    "report",
    "meeting",
    "notes",
    "café",
    "naïve",
    "Zürich",
    "東京",
    "データ",
    "résumé",
    "señor",
    "😀",
    "→",
    "deployment",
    "version",
    "build",
    "latency",
    "cache",
    "region",
    "total",
    "items",
    "delivered",
    "address",
    "updated",
    "contact",
    "account",
    "balance",
    "review",
    "summary",
];

/// Builds the text and its labels together.
struct Builder {
    text: String,
    labels: Vec<Label>,
}

impl Builder {
    fn push(&mut self, s: &str) {
        self.text.push_str(s);
    }
    fn value(&mut self, kind: ScoreKind, value: &str) {
        let start = self.text.len();
        self.text.push_str(value);
        self.labels.push(Label {
            kind,
            start,
            end: self.text.len(),
        });
    }
}

pub fn email(rng: &mut Rng) -> String {
    // ASCII local parts: names with accents are written without them in addresses.
    let ascii = |s: &str| s.replace('ë', "e").replace('ü', "u").replace('á', "a");
    let first = ascii(rng.word(FIRST));
    let last = ascii(rng.word(LAST));
    let local = match rng.below(4) {
        0 => format!("{first}.{last}"),
        1 => format!("{first}{}", rng.range(1, 99)),
        2 => format!("{first}_{last}+{}", rng.pick(&["news", "billing", "ops"])),
        _ => format!("{}{last}", &first[..1]),
    };
    format!("{local}@{}", rng.pick(DOMAINS))
}

/// Phone numbers in ranges libphonenumber accepts as valid, in common notations.
pub fn phone(rng: &mut Rng) -> String {
    match rng.below(10) {
        0 => format!("+44 20 7{} {}", rng.digits(3), rng.digits(4)),
        1 => format!(
            "+44 7{}{} {}",
            rng.word(&["4", "5", "7", "8", "9"]),
            rng.digits(2),
            rng.digits(6)
        ),
        2 => format!("+49 30 {}{}", rng.range(2, 9), rng.digits(7)),
        3 => format!(
            "+33 6 {} {} {} {}",
            rng.range(10, 38),
            rng.digits(2),
            rng.digits(2),
            rng.digits(2)
        ),
        4 => format!(
            "+61 4{}{} {} {}",
            rng.range(0, 3),
            rng.digits(1),
            rng.digits(3),
            rng.digits(3)
        ),
        5 => format!("+91 9{} {}", rng.digits(4), rng.digits(5)),
        6 => format!("+34 6{} {} {}", rng.digits(2), rng.digits(3), rng.digits(3)),
        _ => {
            let npa = rng
                .pick(&["212", "415", "312", "617", "206", "303", "512", "646"])
                .to_string();
            let nxx = format!("{}{}", rng.range(2, 9), rng.digits(2));
            let nxx = if nxx.ends_with("11") {
                "555".to_owned()
            } else {
                nxx
            };
            let line = rng.digits(4);
            match rng.below(4) {
                0 => format!("({npa}) {nxx}-{line}"),
                1 => format!("{npa}-{nxx}-{line}"),
                2 => format!("+1 {npa} {nxx} {line}"),
                _ => format!("{npa}.{nxx}.{line}"),
            }
        }
    }
}

pub fn ssn(rng: &mut Rng) -> (String, bool) {
    let area = loop {
        let a = rng.range(1, 899);
        if a != 666 {
            break a;
        }
    };
    let (group, serial) = (rng.range(1, 99), rng.range(1, 9999));
    match rng.below(10) {
        0 => (format!("{area:03} {group:02} {serial:04}"), false),
        1 => (format!("{area:03}{group:02}{serial:04}"), true),
        _ => (format!("{area:03}-{group:02}-{serial:04}"), false),
    }
}

pub fn luhn_complete(partial: &str) -> String {
    let digits: Vec<u32> = partial.chars().filter_map(|c| c.to_digit(10)).collect();
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 0 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    format!("{partial}{}", (10 - sum % 10) % 10)
}

pub fn card(rng: &mut Rng) -> String {
    let (prefix, len) = *rng.pick(&[
        ("4", 16),
        ("4", 16),
        ("51", 16),
        ("55", 16),
        ("2221", 16),
        ("34", 15),
        ("37", 15),
        ("6011", 16),
        ("3528", 16),
    ]);
    let partial = format!("{prefix}{}", rng.digits(len - prefix.len() - 1));
    let number = luhn_complete(&partial);
    let separator = *rng.pick(&[" ", "-", ""]);
    if len == 15 {
        [&number[..4], &number[4..10], &number[10..]].join(separator)
    } else {
        number
            .as_bytes()
            .chunks(4)
            .map(|c| std::str::from_utf8(c).unwrap_or_default())
            .collect::<Vec<_>>()
            .join(separator)
    }
}

fn iban_check(country: &str, bban: &str) -> String {
    let rearranged = format!("{bban}{country}00");
    let remainder = rearranged.bytes().fold(0u32, |acc, b| {
        if b.is_ascii_digit() {
            (acc * 10 + u32::from(b - b'0')) % 97
        } else {
            (acc * 100 + u32::from(b - b'A' + 10)) % 97
        }
    });
    format!("{country}{:02}{bban}", 98 - remainder)
}

pub fn iban(rng: &mut Rng) -> String {
    const UPPER: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let (country, bban) = match rng.below(6) {
        0 => ("DE", rng.digits(18)),
        1 => ("GB", format!("{}{}", rng.string(UPPER, 4), rng.digits(14))),
        2 => (
            "FR",
            format!(
                "{}{}{}",
                rng.digits(10),
                rng.string("0123456789ABCDEFGHJK", 11),
                rng.digits(2)
            ),
        ),
        3 => ("NL", format!("{}{}", rng.string(UPPER, 4), rng.digits(10))),
        4 => ("ES", rng.digits(20)),
        _ => (
            "IT",
            format!(
                "{}{}{}",
                rng.string(UPPER, 1),
                rng.digits(10),
                rng.digits(12)
            ),
        ),
    };
    let compact = iban_check(country, &bban);
    if rng.chance(60) {
        compact
            .as_bytes()
            .chunks(4)
            .map(|c| std::str::from_utf8(c).unwrap_or_default())
            .collect::<Vec<_>>()
            .join(" ")
    } else {
        compact
    }
}

pub fn ip(rng: &mut Rng) -> String {
    if rng.chance(80) {
        format!(
            "{}.{}.{}.{}",
            rng.range(1, 223),
            rng.range(0, 255),
            rng.range(0, 255),
            rng.range(1, 254)
        )
    } else {
        let groups: Vec<String> = (0..4)
            .map(|_| format!("{:x}", rng.range(1, 0xffff)))
            .collect();
        format!(
            "2001:db8:{}::{}",
            groups[..2].join(":"),
            groups[2..].join(":")
        )
    }
}

/// A fake credential of a common shape, and the text before it.
pub fn secret(rng: &mut Rng) -> (String, String) {
    let b64url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    match rng.below(16) {
        0 => (
            "GITHUB_TOKEN=".into(),
            ["ghp_", &rng.string(ALNUM, 36)].concat(),
        ),
        1 => (
            "token: ".into(),
            [
                "github_pat_",
                &rng.string(ALNUM, 22),
                "_",
                &rng.string(ALNUM, 59),
            ]
            .concat(),
        ),
        2 => (
            "stripe key ".into(),
            ["sk_live_", &rng.string(ALNUM, 24)].concat(),
        ),
        3 => (
            "aws_access_key_id = ".into(),
            ["AKIA", &rng.string("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16)].concat(),
        ),
        4 => ("aws_secret_access_key = ".into(), rng.string(BASE64, 40)),
        5 => (
            "SLACK_BOT_TOKEN=".into(),
            [
                "xoxb-",
                &rng.digits(12),
                "-",
                &rng.digits(13),
                "-",
                &rng.string(ALNUM, 24),
            ]
            .concat(),
        ),
        6 => (
            "OPENAI_API_KEY=".into(),
            ["sk-proj-", &rng.string(URLSAFE, 120)].concat(),
        ),
        7 => (
            "ANTHROPIC_API_KEY=".into(),
            ["sk-ant-api03-", &rng.string(URLSAFE, 93), "AA"].concat(),
        ),
        8 => (
            "maps key ".into(),
            ["AIza", &rng.string(URLSAFE, 35)].concat(),
        ),
        9 => (
            "GITLAB_TOKEN=".into(),
            ["glpat-", &rng.string(ALNUM, 20)].concat(),
        ),
        10 => (
            "//registry.npmjs.org/:_authToken=".into(),
            ["npm_", &rng.string(ALNUM, 36)].concat(),
        ),
        11 => ("HF_TOKEN=".into(), ["hf_", &rng.string(ALNUM, 34)].concat()),
        12 => (
            "SENDGRID_API_KEY=".into(),
            [
                "SG.",
                &rng.string(URLSAFE, 22),
                ".",
                &rng.string(URLSAFE, 43),
            ]
            .concat(),
        ),
        13 => {
            let header = b64url.encode(r#"{"alg":"HS256","typ":"JWT"}"#);
            let payload = b64url.encode(format!(
                r#"{{"sub":"user-{}","exp":{}}}"#,
                rng.digits(6),
                rng.digits(10)
            ));
            (
                "Authorization: Bearer ".into(),
                format!("{header}.{payload}.{}", rng.string(URLSAFE, 43)),
            )
        }
        14 => {
            let body: Vec<String> = (0..rng.range(3, 8))
                .map(|_| rng.string(BASE64, 64))
                .collect();
            (
                "key.pem:\n".into(),
                [
                    "-----BEGIN ",
                    "PRIVATE KEY-----\n",
                    &body.join("\n"),
                    "\n-----END PRIVATE KEY-----",
                ]
                .concat(),
            )
        }
        _ => ("Authorization: Bearer ".into(), rng.string(ALNUM, 40)),
    }
}

/// Text that looks like a value but is not one (unlabelled).
pub fn hard_negative(rng: &mut Rng) -> String {
    match rng.below(16) {
        0 => {
            // A card-shaped number with a wrong check digit.
            let valid = luhn_complete(&format!("4{}", rng.digits(14)));
            let last = valid
                .chars()
                .last()
                .and_then(|c| c.to_digit(10))
                .unwrap_or(0);
            format!("order {}{}", &valid[..15], (last + 1) % 10)
        }
        1 => format!(
            "ref {}-{:02}-{:04}",
            rng.pick(&["000", "666", "900", "987"]),
            rng.range(1, 99),
            rng.range(1, 9999)
        ),
        2 => format!("case {:03}-00-{:04}", rng.range(1, 665), rng.range(1, 9999)),
        3 => {
            let good = iban_check("DE", &rng.digits(18));
            let check: u32 = good[2..4].parse().unwrap_or(0);
            format!("acct DE{:02}{}", (check + 1) % 97 + 2, &good[4..])
        }
        4 => format!(
            "{}.{}.{}.{}",
            rng.range(256, 999),
            rng.range(0, 255),
            rng.range(0, 255),
            rng.range(0, 255)
        ),
        5 => format!(
            "v{}.{}.{}.{}",
            rng.range(1, 9),
            rng.range(0, 20),
            rng.range(0, 99),
            rng.range(0, 999)
        ),
        6 => format!(
            "build 1.{}.{}.{}.{}",
            rng.range(0, 9),
            rng.range(0, 9),
            rng.range(0, 9),
            rng.range(0, 9)
        ),
        7 => format!("+999 {} {}", rng.digits(3), rng.digits(4)),
        8 => format!(
            "2026-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            rng.range(1, 12),
            rng.range(1, 28),
            rng.range(0, 23),
            rng.range(0, 59),
            rng.range(0, 59)
        ),
        9 => format!("sha256:{}", rng.string(HEX, 64)),
        10 => format!(
            "{}-{}-{}-{}-{}",
            rng.string(HEX, 8),
            rng.string(HEX, 4),
            rng.string(HEX, 4),
            rng.string(HEX, 4),
            rng.string(HEX, 12)
        ),
        11 => "api_key=YOUR_API_KEY_HERE".into(),
        12 => "password: ********".into(),
        13 => format!("id {}", rng.digits(10)),
        14 => format!("tracking {}", rng.digits(18)),
        _ => format!(
            "at {:02}:{:02}:{:02}",
            rng.range(0, 23),
            rng.range(0, 59),
            rng.range(0, 59)
        ),
    }
}

fn words(rng: &mut Rng, b: &mut Builder, n: usize) {
    for i in 0..n {
        if i > 0 {
            b.push(" ");
        }
        b.push(rng.word(WORDS));
    }
}

/// One labelled personal-data value of a random kind.
fn pii_value(rng: &mut Rng, b: &mut Builder) {
    match rng.below(6) {
        0 => {
            b.push("email ");
            b.value(ScoreKind::Email, &email(rng));
        }
        1 => {
            b.push("phone ");
            b.value(ScoreKind::Phone, &phone(rng));
        }
        2 => {
            let (value, bare) = ssn(rng);
            b.push(if bare { "SSN: " } else { "ssn " });
            b.value(ScoreKind::UsSsn, &value);
        }
        3 => {
            b.push("card ");
            b.value(ScoreKind::PaymentCard, &card(rng));
        }
        4 => {
            b.push("IBAN ");
            b.value(ScoreKind::Iban, &iban(rng));
        }
        _ => {
            b.push("from ");
            b.value(ScoreKind::IpAddress, &ip(rng));
        }
    }
}

fn json_record(rng: &mut Rng, b: &mut Builder) {
    let _ = write!(
        b.text,
        "{{\"id\": {}, \"name\": \"{} {}\"",
        rng.digits(6),
        rng.pick(FIRST),
        rng.pick(LAST)
    );
    if rng.chance(70) {
        b.push(", \"email\": \"");
        b.value(ScoreKind::Email, &email(rng));
        b.push("\"");
    }
    if rng.chance(50) {
        b.push(", \"phone\": \"");
        b.value(ScoreKind::Phone, &phone(rng));
        b.push("\"");
    }
    if rng.chance(20) {
        b.push(", \"ssn\": \"");
        let (value, _) = ssn(rng);
        // In a field named ssn even the bare form is an SSN.
        b.value(ScoreKind::UsSsn, &value);
        b.push("\"");
    }
    if rng.chance(25) {
        b.push(", \"card\": \"");
        b.value(ScoreKind::PaymentCard, &card(rng));
        b.push("\"");
    }
    if rng.chance(20) {
        b.push(", \"iban\": \"");
        b.value(ScoreKind::Iban, &iban(rng));
        b.push("\"");
    }
    if rng.chance(40) {
        b.push(", \"last_ip\": \"");
        b.value(ScoreKind::IpAddress, &ip(rng));
        b.push("\"");
    }
    if rng.chance(30) {
        let _ = write!(b.text, ", \"note\": \"{}\"", hard_negative(rng));
    }
    let _ = writeln!(
        b.text,
        ", \"total\": {}.{:02}}}",
        rng.range(1, 9999),
        rng.range(0, 99)
    );
}

fn log_line(rng: &mut Rng, b: &mut Builder) {
    let _ = write!(
        b.text,
        "2026-11-{:02}T{:02}:{:02}:{:02}Z INFO request from ",
        rng.range(1, 28),
        rng.range(0, 23),
        rng.range(0, 59),
        rng.range(0, 59)
    );
    b.value(ScoreKind::IpAddress, &ip(rng));
    b.push(" user=");
    b.value(ScoreKind::Email, &email(rng));
    let _ = writeln!(
        b.text,
        " took {}ms trace={}",
        rng.range(1, 900),
        rng.string(HEX, 16)
    );
}

fn config_snippet(rng: &mut Rng, b: &mut Builder) {
    let (context, secret) = secret(rng);
    b.push(&context);
    b.value(ScoreKind::Secret, &secret);
    b.push("\n");
    if rng.chance(30) {
        let _ = writeln!(b.text, "{}", hard_negative(rng));
    }
}

/// Generates about `bytes` bytes: half dense, half sparse.
pub fn generate(bytes: usize, seed: u64) -> Corpus {
    let mut rng = Rng::new(seed);
    let mut b = Builder {
        text: String::with_capacity(bytes + 4096),
        labels: Vec::new(),
    };
    while b.text.len() < bytes / 2 {
        match rng.below(10) {
            0..=4 => json_record(&mut rng, &mut b),
            5..=7 => log_line(&mut rng, &mut b),
            _ => config_snippet(&mut rng, &mut b),
        }
    }
    let sparse_start = b.text.len();
    while b.text.len() < bytes {
        let n = rng.range(20, 60);
        words(&mut rng, &mut b, n);
        if rng.chance(25) {
            b.push(" ");
            pii_value(&mut rng, &mut b);
            b.push(" ");
            words(&mut rng, &mut b, 5);
        }
        if rng.chance(8) {
            b.push(" ");
            let negative = hard_negative(&mut rng);
            b.push(&negative);
        }
        if rng.chance(3) {
            b.push("\n");
            config_snippet(&mut rng, &mut b);
        }
        b.push(".\n");
    }
    Corpus {
        text: b.text,
        labels: b.labels,
        sparse_start,
    }
}
