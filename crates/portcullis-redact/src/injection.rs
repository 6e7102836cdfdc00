//! The injection spotter: signs, in what a tool returned, that the text tries to instruct the
//! model reading it — known instruction-injection phrasings, characters a person cannot see
//! (Unicode tag characters, zero-width characters, bidirectional overrides) and markup that
//! hides text from a person but not from a model (HTML comments, elements styled invisible).
//! A signal marks the result untrusted; the text itself is passed on as data, never obeyed.
//!
//! Like a `Finding`, a `Signal` carries a kind and a byte span, never the text.
//!
//! The phrasings are matched by one case-insensitive Aho-Corasick automaton over text whose
//! runs of whitespace count as one space, so cost stays flat as phrasings are added.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use serde::Serialize;
use std::ops::Range;
use std::sync::LazyLock;

/// What kind of sign a signal is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SignalKind {
    /// A known instruction-injection phrasing ("ignore previous instructions", a chat
    /// template's role marker, …).
    InstructionPhrase,
    /// Unicode tag characters (U+E0000–U+E007F): invisible, yet read by models as ASCII.
    UnicodeTags,
    /// Zero-width characters inside text, or a byte-order mark after its start.
    InvisibleCharacters,
    /// Bidirectional embedding, override or isolate controls, which reorder what is shown.
    BidiControls,
    /// Markup that hides text from a reader: an HTML comment, or an element styled
    /// `display:none`, `visibility:hidden`, `font-size:0` or `opacity:0`.
    HiddenMarkup,
}

/// One sign of an injection attempt: its kind and where it is (a byte span on char
/// boundaries). Never the text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Signal {
    kind: SignalKind,
    start: usize,
    end: usize,
}

impl Signal {
    pub fn kind(&self) -> SignalKind {
        self.kind
    }

    pub fn span(&self) -> Range<usize> {
        self.start..self.end
    }
}

/// The phrasings, lower case, single-spaced.
const PHRASES: &[&str] = &[
    "ignore previous instructions",
    "ignore all previous instructions",
    "ignore the previous instructions",
    "ignore prior instructions",
    "ignore all prior instructions",
    "ignore the above",
    "ignore all the above",
    "ignore your instructions",
    "disregard previous instructions",
    "disregard all previous instructions",
    "disregard the above",
    "disregard your instructions",
    "forget previous instructions",
    "forget all previous instructions",
    "forget your instructions",
    "forget everything above",
    "override your instructions",
    "new instructions:",
    "updated instructions:",
    "system override",
    "you are now in developer mode",
    "developer mode enabled",
    "do not tell the user",
    "don't tell the user",
    "without telling the user",
    "do not mention this to the user",
    "reveal your system prompt",
    "print your system prompt",
    "repeat your system prompt",
    "<|im_start|>",
    "<|im_end|>",
    "<|system|>",
    "<|endoftext|>",
    "[inst]",
    "[/inst]",
    "<<sys>>",
    "### instruction:",
    "### system:",
    "</tool_result>",
    "</function_results>",
    "\nhuman:",
    "\nassistant:",
];

static PHRASER: LazyLock<AhoCorasick> = LazyLock::new(|| {
    AhoCorasickBuilder::new()
        .ascii_case_insensitive(true)
        .match_kind(MatchKind::LeftmostLongest)
        .build(PHRASES)
        .expect("the phrasings build one automaton")
});

/// Markers of markup that hides text, lower case, single-spaced; matched in the same
/// normalised text.
const HIDING: &[&str] = &[
    "<!--",
    "display:none",
    "display: none",
    "visibility:hidden",
    "visibility: hidden",
    "font-size:0",
    "font-size: 0",
    "opacity:0",
    "opacity: 0",
];

static HIDER: LazyLock<AhoCorasick> = LazyLock::new(|| {
    AhoCorasickBuilder::new()
        .ascii_case_insensitive(true)
        .match_kind(MatchKind::LeftmostLongest)
        .build(HIDING)
        .expect("the markup markers build one automaton")
});

/// The text with every run of whitespace (but a newline, which two phrasings need) as one
/// space, and for each byte of it the byte of the original it came from.
fn normalised(text: &str) -> (String, Vec<usize>) {
    let mut out = String::with_capacity(text.len());
    let mut origin = Vec::with_capacity(text.len());
    let mut in_space = false;
    for (at, c) in text.char_indices() {
        let space = c.is_whitespace() && c != '\n';
        if space && in_space {
            continue;
        }
        in_space = space;
        let c = if space { ' ' } else { c };
        let before = out.len();
        out.push(c);
        origin.extend(std::iter::repeat_n(at, out.len() - before));
    }
    origin.push(text.len());
    (out, origin)
}

/// The end in the original of a match ending at `end` in the normalised text.
fn original_end(text: &str, origin: &[usize], end: usize) -> usize {
    if end == 0 {
        return 0;
    }
    let last = origin[end - 1];
    last + text[last..].chars().next().map_or(0, char::len_utf8)
}

/// Every sign of an injection attempt in `text`, in order of position.
pub fn spot(text: &str) -> Vec<Signal> {
    let mut signals = Vec::new();
    let (flat, origin) = normalised(text);
    for (automaton, kind) in [
        (&*PHRASER, SignalKind::InstructionPhrase),
        (&*HIDER, SignalKind::HiddenMarkup),
    ] {
        for found in automaton.find_iter(&flat) {
            signals.push(Signal {
                kind,
                start: origin[found.start()],
                end: original_end(text, &origin, found.end()),
            });
        }
    }
    // Invisible characters, each run one signal. Joiners (U+200C, U+200D) belong in emoji
    // sequences and several scripts; they count only beside ASCII letters or digits, where
    // they can only split a word to hide it.
    let mut run: Option<(SignalKind, usize, usize)> = None;
    let mut previous: Option<char> = None;
    let mut chars = text.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        let next = chars.peek().map(|(_, n)| *n);
        let beside_ascii = previous.is_some_and(|p| p.is_ascii_alphanumeric())
            || next.is_some_and(|n| n.is_ascii_alphanumeric());
        previous = Some(c);
        let kind = match c {
            '\u{E0000}'..='\u{E007F}' => Some(SignalKind::UnicodeTags),
            '\u{200C}' | '\u{200D}' if beside_ascii => Some(SignalKind::InvisibleCharacters),
            '\u{200B}' | '\u{2060}'..='\u{2064}' | '\u{180E}' => {
                Some(SignalKind::InvisibleCharacters)
            }
            '\u{FEFF}' if at > 0 => Some(SignalKind::InvisibleCharacters),
            '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' => Some(SignalKind::BidiControls),
            _ => None,
        };
        let end = at + c.len_utf8();
        run = match (run, kind) {
            (Some((k, start, _)), Some(now)) if k == now => Some((k, start, end)),
            (previous, now) => {
                if let Some((k, start, end)) = previous {
                    signals.push(Signal {
                        kind: k,
                        start,
                        end,
                    });
                }
                now.map(|k| (k, at, end))
            }
        };
    }
    if let Some((kind, start, end)) = run {
        signals.push(Signal { kind, start, end });
    }
    signals.sort_by_key(|s| (s.start, s.end, s.kind));
    signals
}

/// Whether `text` shows any sign of an injection attempt.
pub fn is_suspect(text: &str) -> bool {
    !spot(text).is_empty()
}
