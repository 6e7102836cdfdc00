//! Personal data detectors: email addresses, phone numbers, US social security numbers,
//! payment cards, IBANs and IP addresses. Each finds candidates with a regular expression and
//! then validates them the way the format defines validity (check digits, assigned ranges,
//! country tables), so near misses such as a Luhn-invalid card or an SSN in area 666 are not
//! reported.

mod card;
mod email;
mod iban;
mod ip;
mod phone;
mod ssn;

use crate::kind::Finding;
use crate::redactor::Rules;

/// The enabled personal-data detectors.
pub(crate) struct PiiScanner {
    email: Option<email::Email>,
    phone: Option<phone::Phone>,
    ssn: Option<ssn::Ssn>,
    card: Option<card::Card>,
    iban: Option<iban::Iban>,
    ip: Option<ip::Ip>,
}

impl PiiScanner {
    pub(crate) fn new(rules: &Rules) -> PiiScanner {
        PiiScanner {
            email: rules.email.then(email::Email::new),
            phone: rules.phone.then(phone::Phone::new),
            ssn: rules.us_ssn.then(ssn::Ssn::new),
            card: rules.payment_card.then(card::Card::new),
            iban: rules.iban.then(iban::Iban::new),
            ip: rules.ip_address.then(ip::Ip::new),
        }
    }

    pub(crate) fn scan(&self, text: &str, out: &mut Vec<Finding>) {
        if let Some(email) = &self.email {
            email.scan(text, out);
        }
        if let Some(phone) = &self.phone {
            phone.scan(text, out);
        }
        if let Some(ssn) = &self.ssn {
            ssn.scan(text, out);
        }
        if let Some(card) = &self.card {
            card.scan(text, out);
        }
        if let Some(iban) = &self.iban {
            iban.scan(text, out);
        }
        if let Some(ip) = &self.ip {
            ip.scan(text, out);
        }
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    use crate::kind::{Finding, Kind};

    /// The texts of the findings of `kind`.
    pub(crate) fn found<'t>(text: &'t str, findings: &[Finding], kind: Kind) -> Vec<&'t str> {
        findings
            .iter()
            .filter(|f| f.kind() == kind)
            .map(|f| &text[f.span()])
            .collect()
    }
}
