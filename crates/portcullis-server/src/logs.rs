//! What the gateway writes to its log passes through the redactor first: every formatted
//! line is scanned and credentials, JWTs, private keys and personal data (e-mail addresses,
//! phone numbers, SSNs, card numbers, IBANs) are masked before the line leaves the process.
//! IP addresses stay: they are what an operator needs to read a lockout or an attack.
//!
//! INVARIANT: the log writer is only reachable through [`Redacting`]; `init_tracing` installs
//! no other. The gateway's own code never logs a secret, arguments or results (see
//! `payload_guard`); this is the second wall, for what a library or an upstream's error text
//! could carry.

use portcullis_redact::{Redactor, Rules};
use std::io::Write;
use std::sync::LazyLock;
use tracing_subscriber::fmt::MakeWriter;

/// The log's redactor: every detector but IP addresses, with decoding. Built once.
static LOG_REDACTOR: LazyLock<Redactor> = LazyLock::new(|| {
    Redactor::new(&Rules {
        ip_address: false,
        ..Rules::default()
    })
});

/// Builds the redactor now (about 10 ms), so the first log line does not pay for it.
pub fn warm() {
    LazyLock::force(&LOG_REDACTOR);
}

/// Mask what a log line must not carry.
pub fn mask(line: &str) -> String {
    LOG_REDACTOR.mask(line).text.into_owned()
}

/// A `MakeWriter` whose writers hold one event's formatted text and write it, masked, when
/// the event is done (tracing makes one writer per event and drops it after the event).
pub struct Redacting<M> {
    inner: M,
}

impl<M> Redacting<M> {
    pub fn new(inner: M) -> Self {
        Self { inner }
    }
}

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for Redacting<M> {
    type Writer = MaskedEvent<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        MaskedEvent {
            inner: self.inner.make_writer(),
            text: Vec::with_capacity(256),
        }
    }
}

/// One event's text on its way out.
pub struct MaskedEvent<W: Write> {
    inner: W,
    text: Vec<u8>,
}

impl<W: Write> Write for MaskedEvent<W> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.text.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    // The text is written whole when the event is done; flushing part of it would let an
    // unmasked fragment out.
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<W: Write> Drop for MaskedEvent<W> {
    fn drop(&mut self) {
        if self.text.is_empty() {
            return;
        }
        let line = String::from_utf8_lossy(&self.text);
        let masked = LOG_REDACTOR.mask(&line);
        // A log line that cannot be written is lost, as with any writer.
        let _ = self.inner.write_all(masked.text.as_bytes());
        let _ = self.inner.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("sink").extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Sink {
        type Writer = Sink;
        fn make_writer(&'a self) -> Sink {
            self.clone()
        }
    }

    /// A real subscriber, text and JSON, logging what an upstream's error could carry.
    #[test]
    fn secrets_and_personal_data_never_reach_the_log_but_addresses_do() {
        let key = ["ghp_", "Zx9Qm2Lr7Tk4Wn8Yp3Hd6Fs1Jc5Vb0NaEuRi"].concat();
        let stripe = ["sk_live_", "4eC39HqLyjWDarjtT1zdp7dc"].concat();
        let card = "4111 1111 1111 1111";
        for json in [false, true] {
            let sink = Sink::default();
            let layer = tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(Redacting::new(sink.clone()));
            let subscriber: Box<dyn tracing::Subscriber + Send + Sync> = if json {
                use tracing_subscriber::layer::SubscriberExt as _;
                Box::new(tracing_subscriber::registry().with(layer.json()))
            } else {
                use tracing_subscriber::layer::SubscriberExt as _;
                Box::new(tracing_subscriber::registry().with(layer))
            };
            tracing::subscriber::with_default(subscriber, || {
                tracing::warn!(
                    peer = "203.0.113.9",
                    error = %format!("upstream said: bad credentials {key} for ada@example.com"),
                    "upstream refused"
                );
                tracing::error!("charge failed with {stripe} on card {card}");
            });
            let written = String::from_utf8(sink.0.lock().expect("sink").clone()).expect("utf-8");
            assert_eq!(written.lines().count(), 2, "{written}");
            for secret in [key.as_str(), stripe.as_str(), card, "ada@example.com"] {
                assert!(!written.contains(secret), "json={json}: {written}");
            }
            assert!(written.contains("[SECRET:github_pat]"), "{written}");
            assert!(written.contains("[EMAIL]"), "{written}");
            assert!(written.contains("203.0.113.9"), "addresses stay: {written}");
            assert!(written.contains("upstream refused"), "{written}");
        }
    }
}
