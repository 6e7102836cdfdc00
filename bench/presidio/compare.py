"""Presidio on the redactor's benchmark corpus, scored like the redactor, side by side.

Runs only Presidio's pattern and checksum recognizers (EmailRecognizer, PhoneRecognizer,
UsSsnRecognizer, CreditCardRecognizer, IbanRecognizer, IpRecognizer) by calling each one's
`analyze(text, entities, nlp_artifacts=None)` directly: AnalyzerEngine would want a spaCy
model, which is downloaded from outside the package registries. Their default settings are
used (PhoneRecognizer: regions US, GB, DE, FR, IL, IN, CA, BR; leniency 1), every result
counts whatever its score (AnalyzerEngine's default threshold is 0), and context words are
not applied (that is AnalyzerEngine's enhancer; it changes scores, not spans).

The corpus is given to Presidio in chunks of at most 4096 characters cut at line ends (no
labelled value spans a line end), as a gateway would hand it tool results: in one 3 MB call
PhoneRecognizer stops early, because python-phonenumbers' PhoneNumberMatcher gives up after
65,535 candidates (`max_tries`) and misses every number after that.

    python compare.py DIR    # DIR holds corpus.txt, labels.tsv and rust.json from
                             # `cargo bench -p portcullis-redact --bench throughput`

Scoring, per kind, is the same as the Rust benchmark's (benches/throughput/corpus.rs): a
prediction is a true positive when it overlaps a label of that kind not matched yet; spans
are compared in UTF-8 byte offsets.
"""

import bisect
import json
import os
import sys
import time

import tldextract

# EmailRecognizer validates domains with tldextract, which fetches the public suffix list
# from the network on first use. Use the snapshot shipped inside the package instead.
tldextract.extract = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)

from presidio_analyzer.predefined_recognizers import (  # noqa: E402
    CreditCardRecognizer,
    EmailRecognizer,
    IbanRecognizer,
    IpRecognizer,
    PhoneRecognizer,
    UsSsnRecognizer,
)

RECOGNIZERS = [
    ("email", EmailRecognizer, "EMAIL_ADDRESS"),
    ("phone", PhoneRecognizer, "PHONE_NUMBER"),
    ("us_ssn", UsSsnRecognizer, "US_SSN"),
    ("payment_card", CreditCardRecognizer, "CREDIT_CARD"),
    ("iban", IbanRecognizer, "IBAN_CODE"),
    ("ip_address", IpRecognizer, "IP_ADDRESS"),
]


def score(labels, predictions):
    """(tp, fp, fn) for one kind; labels and predictions are (start, end) byte spans."""
    labels = sorted(labels)
    ends = [end for _, end in labels]
    matched = [False] * len(labels)
    tp = fp = 0
    for start, end in sorted(predictions):
        hit = None
        i = bisect.bisect_right(ends, start)  # first label ending after `start`
        while i < len(labels) and labels[i][0] < end:
            if not matched[i]:
                hit = i
                break
            i += 1
        if hit is None:
            fp += 1
        else:
            matched[hit] = True
            tp += 1
    return tp, fp, matched.count(False)


def prf(tp, fp, fn):
    p = tp / (tp + fp) if tp + fp else 1.0
    r = tp / (tp + fn) if tp + fn else 1.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def main():
    folder = sys.argv[1]
    with open(os.path.join(folder, "corpus.txt"), encoding="utf-8") as f:
        text = f.read()
    data = text.encode("utf-8")
    labels = {}
    with open(os.path.join(folder, "labels.tsv"), encoding="utf-8") as f:
        for line in f:
            kind, start, end = line.rstrip("\n").split("\t")
            labels.setdefault(kind, []).append((int(start), int(end)))
    with open(os.path.join(folder, "rust.json"), encoding="utf-8") as f:
        rust = json.load(f)

    # Character offset -> byte offset.
    byte_at = [0] * (len(text) + 1)
    position = 0
    for i, ch in enumerate(text):
        byte_at[i] = position
        position += len(ch.encode("utf-8"))
    byte_at[len(text)] = position
    assert position == len(data)

    print(f"corpus: {len(data)} bytes, {sum(len(v) for v in labels.values())} labels; presidio-analyzer on one core")
    # Chunks of at most 4096 characters, cut after a newline: (character offset, text).
    chunks = []
    start = 0
    while start < len(text):
        end = min(start + 4096, len(text))
        if end < len(text):
            cut = text.rfind("\n", start, end)
            end = cut + 1 if cut > start else end
        chunks.append((start, text[start:end]))
        start = end

    total = 0.0
    rows = []
    for kind, recognizer_class, entity in RECOGNIZERS:
        recognizer = recognizer_class()
        predictions = []
        begin = time.perf_counter()
        for offset, chunk in chunks:
            for r in recognizer.analyze(chunk, [entity], None):
                if r.entity_type == entity:
                    predictions.append((offset + r.start, offset + r.end))
        elapsed = time.perf_counter() - begin
        total += elapsed
        predictions = [(byte_at[s], byte_at[e]) for s, e in predictions]
        exact = len(set(predictions) & set(labels.get(kind, [])))
        tp, fp, fn = score(labels.get(kind, []), predictions)
        rows.append((kind, elapsed, tp, fp, fn, exact))

    presidio_mb_s = len(data) / 1e6 / total
    ours_mb_s = rust["scan_mb_per_s"]
    print(f"\nthroughput: ours {ours_mb_s:.1f} MB/s, Presidio {presidio_mb_s:.3f} MB/s "
          f"({total:.2f} s for the six recognizers), ratio {ours_mb_s / presidio_mb_s:.0f}x")
    print("\nPresidio time per recognizer:")
    for kind, elapsed, *_ in rows:
        print(f"  {kind:<13} {elapsed:8.2f} s  {len(data) / 1e6 / elapsed:9.3f} MB/s")
    print("\nquality, ours vs Presidio (overlap with a label of the same kind):")
    print(f"  {'kind':<13} {'ours P':>7} {'ours R':>7} {'ours F1':>7}   {'Pres. P':>7} {'Pres. R':>7} {'Pres. F1':>8}  {'Pres. tp/fp/fn':>16} {'exact':>6}")
    for kind, _, tp, fp, fn, exact in rows:
        ours = rust["scores"][kind]
        op, orr, of = prf(ours["tp"], ours["fp"], ours["fn"])
        pp, pr, pf = prf(tp, fp, fn)
        print(f"  {kind:<13} {op:7.4f} {orr:7.4f} {of:7.4f}   {pp:7.4f} {pr:7.4f} {pf:8.4f}  {f'{tp}/{fp}/{fn}':>16} {exact:>6}")
    json.dump(
        {"mb_per_s": presidio_mb_s, "seconds": total,
         "rows": {k: {"seconds": e, "tp": tp, "fp": fp, "fn": fn, "exact": x} for k, e, tp, fp, fn, x in rows}},
        open(os.path.join(folder, "presidio.json"), "w"), indent=2)


if __name__ == "__main__":
    main()
