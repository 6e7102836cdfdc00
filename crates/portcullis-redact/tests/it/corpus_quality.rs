//! The redactor against a small labelled corpus (the benchmark's generator): every kind must
//! keep its precision and recall, so a detector change that loses values or starts flagging
//! hard negatives fails here, not only in the benchmark.

use portcullis_redact::Redactor;

use crate::corpus::{Label, ScoreKind, generate, score};

#[test]
fn every_kind_keeps_precision_and_recall_on_the_corpus() {
    let corpus = generate(300_000, 7);
    let predictions: Vec<Label> = Redactor::default()
        .scan(&corpus.text)
        .iter()
        .map(|f| Label {
            kind: ScoreKind::of(f.kind()),
            start: f.start(),
            end: f.end(),
        })
        .collect();
    let mut failures = Vec::new();
    for (kind, s) in score(&corpus.labels, &predictions) {
        assert!(
            s.tp + s.fn_ > 20,
            "{} has too few labels to measure",
            kind.name()
        );
        // Random 18-digit tracking numbers are Luhn-valid card numbers one time in ten.
        let floor = if kind == ScoreKind::PaymentCard {
            0.95
        } else {
            0.99
        };
        if s.precision() < floor || s.recall() < 0.99 {
            failures.push(format!(
                "{}: {s:?} p={:.4} r={:.4}",
                kind.name(),
                s.precision(),
                s.recall()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn scoring_counts_overlaps_once() {
    let labels = [
        Label {
            kind: ScoreKind::Email,
            start: 0,
            end: 10,
        },
        Label {
            kind: ScoreKind::Email,
            start: 20,
            end: 30,
        },
    ];
    let predictions = [
        Label {
            kind: ScoreKind::Email,
            start: 2,
            end: 8,
        },
        Label {
            kind: ScoreKind::Email,
            start: 3,
            end: 9,
        },
        Label {
            kind: ScoreKind::Phone,
            start: 20,
            end: 30,
        },
    ];
    let scores = score(&labels, &predictions);
    let email = scores
        .iter()
        .find(|(k, _)| *k == ScoreKind::Email)
        .map(|(_, s)| *s)
        .unwrap_or_default();
    assert_eq!((email.tp, email.fp, email.fn_), (1, 1, 1));
}
