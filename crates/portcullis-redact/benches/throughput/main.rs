//! Throughput, quality and latency of the redactor on the synthetic labelled corpus, on one
//! core:
//!
//! ```sh
//! cargo bench -p portcullis-redact --bench throughput -- [--mb 3] [--out DIR]
//! ```
//!
//! Writes the corpus (`corpus.txt`, `labels.tsv`) and these results (`rust.json`) to `DIR`
//! (default `$REDACT_CORPUS_DIR` or `<tmp>/portcullis-redact-corpus`), where
//! `bench/presidio/compare.py` reads them to run Presidio on the same text and print the
//! side-by-side table.

mod corpus;

use std::time::{Duration, Instant};

use corpus::{Label, ScoreKind, generate, score};
use portcullis_redact::{Pseudonyms, Redactor, Rules};

struct Args {
    megabytes: usize,
    out: std::path::PathBuf,
}

fn args() -> Args {
    let mut megabytes = 3;
    let mut out = std::env::var_os("REDACT_CORPUS_DIR")
        .map(Into::into)
        .unwrap_or_else(|| std::env::temp_dir().join("portcullis-redact-corpus"));
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--mb" => {
                megabytes = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--mb takes a number")
            }
            "--out" => out = args.next().expect("--out takes a directory").into(),
            _ => {} // cargo passes `--bench`
        }
    }
    Args { megabytes, out }
}

/// The fastest of `runs` timings of `f` (the least disturbed by the shared machine).
fn best_of(runs: usize, mut f: impl FnMut()) -> Duration {
    (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .min()
        .unwrap_or_default()
}

fn mb_per_s(bytes: usize, time: Duration) -> f64 {
    bytes as f64 / 1e6 / time.as_secs_f64()
}

/// The longest prefix of `text` of at most `len` bytes that ends on a char boundary.
fn prefix(text: &str, len: usize) -> &str {
    let mut end = len.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn percentile(mut samples: Vec<Duration>, p: f64) -> Duration {
    samples.sort_unstable();
    samples[((samples.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let args = args();
    let corpus = generate(args.megabytes * 1_000_000, 20_261_130);
    std::fs::create_dir_all(&args.out).expect("create the output directory");
    std::fs::write(args.out.join("corpus.txt"), &corpus.text).expect("write corpus.txt");
    std::fs::write(args.out.join("labels.tsv"), corpus.labels_tsv()).expect("write labels.tsv");
    let text = corpus.text.as_str();
    let (dense, sparse) = text.split_at(corpus.sparse_start);
    println!(
        "corpus: {} bytes ({} dense, {} sparse), {} labels, written to {}",
        text.len(),
        dense.len(),
        sparse.len(),
        corpus.labels.len(),
        args.out.display()
    );

    let start = Instant::now();
    let redactor = Redactor::default();
    println!(
        "build: {:.1} ms (every regex and the keyword automaton)",
        start.elapsed().as_secs_f64() * 1e3
    );

    // Throughput, one core.
    let scan_all = best_of(5, || drop(std::hint::black_box(redactor.scan(text))));
    let scan_dense = best_of(5, || drop(std::hint::black_box(redactor.scan(dense))));
    let scan_sparse = best_of(5, || drop(std::hint::black_box(redactor.scan(sparse))));
    let mask_all = best_of(5, || drop(std::hint::black_box(redactor.mask(text))));
    let pseudonymise_all = best_of(5, || {
        let mut session = Pseudonyms::with_max_entries(1_000_000);
        drop(std::hint::black_box(
            redactor.pseudonymise(text, &mut session),
        ));
    });
    println!("\nthroughput (best of 5, one core):");
    println!(
        "  scan, whole corpus   {:>8.1} MB/s",
        mb_per_s(text.len(), scan_all)
    );
    println!(
        "  scan, dense half     {:>8.1} MB/s",
        mb_per_s(dense.len(), scan_dense)
    );
    println!(
        "  scan, sparse half    {:>8.1} MB/s",
        mb_per_s(sparse.len(), scan_sparse)
    );
    println!(
        "  mask, whole corpus   {:>8.1} MB/s",
        mb_per_s(text.len(), mask_all)
    );
    println!(
        "  pseudonymise, whole  {:>8.1} MB/s",
        mb_per_s(text.len(), pseudonymise_all)
    );

    // Where the time goes: each detector alone over the whole corpus.
    println!("\nwhere the time goes (each detector alone, whole corpus):");
    let none = Rules {
        email: false,
        phone: false,
        us_ssn: false,
        payment_card: false,
        iban: false,
        ip_address: false,
        secrets: false,
        decode: false,
        ..Rules::default()
    };
    let mut breakdown = serde_json::Map::new();
    for (name, rules) in [
        (
            "email",
            Rules {
                email: true,
                ..none.clone()
            },
        ),
        (
            "phone",
            Rules {
                phone: true,
                ..none.clone()
            },
        ),
        (
            "us_ssn",
            Rules {
                us_ssn: true,
                ..none.clone()
            },
        ),
        (
            "payment_card",
            Rules {
                payment_card: true,
                ..none.clone()
            },
        ),
        (
            "iban",
            Rules {
                iban: true,
                ..none.clone()
            },
        ),
        (
            "ip_address",
            Rules {
                ip_address: true,
                ..none.clone()
            },
        ),
        (
            "secrets (no decoding)",
            Rules {
                secrets: true,
                ..none.clone()
            },
        ),
        (
            "secrets + decoding",
            Rules {
                secrets: true,
                decode: true,
                ..none.clone()
            },
        ),
    ] {
        let alone = Redactor::new(&rules);
        let time = best_of(3, || drop(std::hint::black_box(alone.scan(text))));
        println!(
            "  {name:<22} {:>8.1} ms  {:>8.1} MB/s",
            time.as_secs_f64() * 1e3,
            mb_per_s(text.len(), time)
        );
        breakdown.insert(name.to_owned(), serde_json::json!(time.as_secs_f64() * 1e3));
    }

    // Quality against the labels.
    let findings = redactor.scan(text);
    let predictions: Vec<Label> = findings
        .iter()
        .map(|f| Label {
            kind: ScoreKind::of(f.kind()),
            start: f.start(),
            end: f.end(),
        })
        .collect();
    let exact = findings
        .iter()
        .filter(|f| {
            corpus
                .labels
                .iter()
                .any(|l| l.start == f.start() && l.end == f.end())
        })
        .count();
    let scores = score(&corpus.labels, &predictions);
    println!(
        "\nquality ({} findings, {} with the exact labelled span):",
        findings.len(),
        exact
    );
    println!(
        "  {:<13} {:>6} {:>5} {:>5} {:>9} {:>7} {:>7}",
        "kind", "tp", "fp", "fn", "precision", "recall", "f1"
    );
    for (kind, s) in &scores {
        println!(
            "  {:<13} {:>6} {:>5} {:>5} {:>9.4} {:>7.4} {:>7.4}",
            kind.name(),
            s.tp,
            s.fp,
            s.fn_,
            s.precision(),
            s.recall(),
            s.f1()
        );
    }

    // Added latency for one tool result.
    println!("\nadded latency of masking one tool result:");
    let mut latency = serde_json::Map::new();
    for (name, len, iterations) in [("4 KB", 4096, 2000), ("1 MB", 1_000_000, 20)] {
        let result = prefix(dense, len);
        let samples: Vec<Duration> = (0..iterations)
            .map(|_| {
                let start = Instant::now();
                drop(std::hint::black_box(redactor.mask(result)));
                start.elapsed()
            })
            .collect();
        let (p50, p99) = (percentile(samples.clone(), 0.5), percentile(samples, 0.99));
        println!(
            "  {name}: p50 {:.1} µs, p99 {:.1} µs",
            p50.as_secs_f64() * 1e6,
            p99.as_secs_f64() * 1e6
        );
        latency.insert(name.to_owned(), serde_json::json!({"p50_us": p50.as_secs_f64() * 1e6, "p99_us": p99.as_secs_f64() * 1e6}));
    }

    // Inputs built to hit the worst cases of each stage: the cost must stay linear.
    println!("\nadversarial inputs (1 MB each):");
    let mut adversarial = serde_json::Map::new();
    for (name, unit) in [
        ("percent escapes", "%41"),
        ("json escapes", "\\u0041"),
        ("jwt prefixes", "eyJ"),
        ("pem headers", "-----BEGIN PRIVATE KEY-----\n"),
        ("digit groups", "1 "),
        ("at signs", "a@"),
        ("colons", "1:"),
        ("plus digits", "+1 "),
        ("keywords", "token=ghp_sk_live_"),
        ("base64", "QUJD"),
    ] {
        let input = unit.repeat(1_000_000 / unit.len());
        let time = best_of(3, || drop(std::hint::black_box(redactor.scan(&input))));
        println!("  {name:<16} {:>8.1} MB/s", mb_per_s(input.len(), time));
        adversarial.insert(
            name.to_owned(),
            serde_json::json!(mb_per_s(input.len(), time)),
        );
    }

    let rows: serde_json::Map<String, serde_json::Value> = scores
        .iter()
        .map(|(kind, s)| {
            (
                kind.name().to_owned(),
                serde_json::json!({"tp": s.tp, "fp": s.fp, "fn": s.fn_}),
            )
        })
        .collect();
    let results = serde_json::json!({
        "bytes": text.len(),
        "scan_mb_per_s": mb_per_s(text.len(), scan_all),
        "scan_dense_mb_per_s": mb_per_s(dense.len(), scan_dense),
        "scan_sparse_mb_per_s": mb_per_s(sparse.len(), scan_sparse),
        "mask_mb_per_s": mb_per_s(text.len(), mask_all),
        "scores": rows,
        "latency": latency,
        "adversarial_mb_per_s": adversarial,
        "breakdown_ms": breakdown,
    });
    let json = serde_json::to_string_pretty(&results).expect("results serialise");
    std::fs::write(args.out.join("rust.json"), json).expect("write rust.json");
}
