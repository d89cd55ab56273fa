//! Client certificates on routes (`client_cert:`): which verified
//! certificates a route admits, by subject.
//!
//! A subject is compared as what it is, a sequence of relative
//! distinguished names each holding attribute type and value pairs
//! ([`Dn`]), never as text: a certificate whose one CN is `billing,O=Acme`
//! is not `CN=billing,O=Acme`, however either is printed. Routes write
//! subjects in RFC 4514 form, most specific first (`CN=billing,O=Acme`, as
//! `openssl x509 -nameopt RFC2253` prints them), and that is also how the
//! gateway renders a certificate's subject for services and logs, with
//! RFC 4514 escaping, so the text is never ambiguous either.

use serde::Deserialize;

/// `client_cert:` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(untagged)]
pub enum ClientCertConfig {
    #[default]
    No,
    Any(bool),
    Subjects {
        subjects: Vec<String>,
    },
}

/// A route's client-certificate requirement, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertRule {
    /// The subjects admitted; empty: any verified certificate.
    subjects: Vec<Dn>,
}

impl ClientCertRule {
    pub(crate) fn from_config(c: &ClientCertConfig) -> Result<Option<Self>, String> {
        match c {
            ClientCertConfig::No | ClientCertConfig::Any(false) => Ok(None),
            ClientCertConfig::Any(true) => Ok(Some(Self {
                subjects: Vec::new(),
            })),
            ClientCertConfig::Subjects { subjects } if subjects.is_empty() => {
                Err("client_cert.subjects: an empty list would admit no one".into())
            }
            ClientCertConfig::Subjects { subjects } => Ok(Some(Self {
                subjects: subjects
                    .iter()
                    .map(|s| Dn::parse(s))
                    .collect::<Result<_, _>>()
                    .map_err(|e| format!("client_cert.subjects: {e}"))?,
            })),
        }
    }

    /// The admitted subjects in RFC 4514 form (empty: any).
    pub fn subjects(&self) -> Vec<String> {
        self.subjects.iter().map(Dn::to_string).collect()
    }

    /// Whether a verified certificate with this subject passes.
    pub fn admits(&self, subject: &Dn) -> bool {
        self.subjects.is_empty() || self.subjects.contains(subject)
    }
}

/// A distinguished name: its relative distinguished names, most specific
/// first (RFC 4514 order), each a set of (type, value) pairs. A type is its
/// short name in upper case (`CN`, `O`, `EMAILADDRESS`...) or its dotted
/// OID; values compare exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dn(Vec<Vec<(String, String)>>);

/// Attribute types by OID, with the short names RFC 4514 (and OpenSSL, for
/// the last few) prints.
const NAMES: &[(&str, &str)] = &[
    ("2.5.4.3", "CN"),
    ("2.5.4.4", "SN"),
    ("2.5.4.5", "SERIALNUMBER"),
    ("2.5.4.6", "C"),
    ("2.5.4.7", "L"),
    ("2.5.4.8", "ST"),
    ("2.5.4.9", "STREET"),
    ("2.5.4.10", "O"),
    ("2.5.4.11", "OU"),
    ("2.5.4.12", "TITLE"),
    ("2.5.4.42", "GIVENNAME"),
    ("0.9.2342.19200300.100.1.1", "UID"),
    ("0.9.2342.19200300.100.1.25", "DC"),
    ("1.2.840.113549.1.9.1", "EMAILADDRESS"),
];

/// A type as it is compared: the short name for a known OID or name.
fn canonical_type(t: &str) -> Result<String, String> {
    let t = t.trim();
    let t = t
        .strip_prefix("OID.")
        .or_else(|| t.strip_prefix("oid."))
        .unwrap_or(t);
    if let Some((_, name)) = NAMES.iter().find(|(oid, _)| *oid == t) {
        return Ok((*name).to_owned());
    }
    let upper = t.to_ascii_uppercase();
    let upper = if upper == "E" {
        "EMAILADDRESS".to_owned()
    } else {
        upper
    };
    // A short name, a dotted OID, or a name of its own (letters, digits,
    // hyphens: RFC 4512's descr).
    if !t.is_empty()
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    {
        Ok(upper)
    } else {
        Err(format!("`{t}` is not an attribute type"))
    }
}

impl Dn {
    /// From a certificate's RDNs as stored (ASN.1 order, most general
    /// first), each pair's type as a dotted OID.
    pub fn from_certificate(rdns: Vec<Vec<(String, String)>>) -> Self {
        let mut rdns: Vec<Vec<(String, String)>> = rdns
            .into_iter()
            .map(|rdn| {
                let mut avas: Vec<(String, String)> = rdn
                    .into_iter()
                    .map(|(t, v)| (canonical_type(&t).unwrap_or(t), v))
                    .collect();
                avas.sort();
                avas
            })
            .collect();
        rdns.reverse();
        Dn(rdns)
    }

    /// RFC 4514 text (`CN=billing,O=Acme`, `CN=a+UID=7`, `O=Acme\, Inc`;
    /// `\XX` hex escapes too); spaces around the separators and the case of
    /// types do not matter.
    pub fn parse(text: &str) -> Result<Dn, String> {
        let mut rdns: Vec<Vec<(String, String)>> = vec![Vec::new()];
        let mut chars = text.chars().peekable();
        let mut field = String::new();
        let mut kind: Option<String> = None;
        // Bytes of a value's `\XX` escapes, decoded as UTF-8 together.
        let mut pending: Vec<u8> = Vec::new();
        let bad = |why: &str| format!("`{text}` is not a distinguished name ({why})");
        let flush = |field: &mut String, pending: &mut Vec<u8>| -> Result<(), String> {
            if !pending.is_empty() {
                let s = String::from_utf8(std::mem::take(pending))
                    .map_err(|_| bad("an escape is not UTF-8"))?;
                field.push_str(&s);
            }
            Ok(())
        };
        // Where the value's escaped characters begin and end: unescaped
        // spaces outside them belong to the separators.
        let mut escaped: Option<(usize, usize)> = None;
        let mark = |escaped: &mut Option<(usize, usize)>, from: usize, to: usize| {
            *escaped = Some(escaped.map_or((from, to), |(a, _)| (a, to)));
        };
        loop {
            let c = chars.next();
            match c {
                Some('\\') if kind.is_some() => {
                    let Some(n) = chars.next() else {
                        return Err(bad("it ends in an escape"));
                    };
                    let from = field.len() + pending.len();
                    if n.is_ascii_hexdigit() {
                        let m = chars
                            .next()
                            .filter(char::is_ascii_hexdigit)
                            .ok_or_else(|| bad("a hex escape needs two digits"))?;
                        let byte = u8::from_str_radix(&format!("{n}{m}"), 16)
                            .map_err(|_| bad("a hex escape"))?;
                        pending.push(byte);
                    } else {
                        flush(&mut field, &mut pending)?;
                        field.push(n);
                    }
                    mark(&mut escaped, from, field.len() + pending.len());
                }
                Some('=') if kind.is_none() => {
                    kind = Some(canonical_type(&field)?);
                    field.clear();
                    escaped = None;
                }
                None | Some(',') | Some('+') | Some(';') => {
                    flush(&mut field, &mut pending)?;
                    let Some(t) = kind.take() else {
                        return Err(bad("TYPE=value expected"));
                    };
                    let value = match escaped.take() {
                        None => field.trim().to_owned(),
                        Some((a, b)) => {
                            let (a, b) = (a.min(field.len()), b.min(field.len()));
                            format!(
                                "{}{}{}",
                                field[..a].trim_start(),
                                &field[a..b],
                                field[b..].trim_end()
                            )
                        }
                    };
                    if value.is_empty() {
                        return Err(bad("an attribute has no value"));
                    }
                    if let Some(rdn) = rdns.last_mut() {
                        rdn.push((t, value));
                    }
                    field.clear();
                    match c {
                        None => break,
                        Some('+') => {}
                        _ => rdns.push(Vec::new()),
                    }
                }
                Some(ch) => {
                    flush(&mut field, &mut pending)?;
                    field.push(ch);
                }
            }
        }
        for rdn in &mut rdns {
            rdn.sort();
        }
        Ok(Dn(rdns))
    }
}

/// A value with RFC 4514 section 2.4's escapes: `,+"\<>;` anywhere, `#` and
/// a space first, a space last, and control characters as `\XX`.
fn escape(value: &str, out: &mut String) {
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        match c {
            ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=' => {
                out.push('\\');
                out.push(c);
            }
            '#' | ' ' if i == 0 => {
                out.push('\\');
                out.push(c);
            }
            ' ' if i == last => out.push_str("\\ "),
            c if c.is_control() => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("\\{b:02X}"));
                }
            }
            c => out.push(c),
        }
    }
}

impl std::fmt::Display for Dn {
    /// RFC 4514: most specific first, `,` between RDNs, `+` inside one.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut out = String::new();
        for (i, rdn) in self.0.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            for (j, (t, v)) in rdn.iter().enumerate() {
                if j > 0 {
                    out.push('+');
                }
                out.push_str(t);
                out.push('=');
                escape(v, &mut out);
            }
        }
        f.write_str(&out)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn cert(rdns: &[&[(&str, &str)]]) -> Dn {
        Dn::from_certificate(
            rdns.iter()
                .map(|r| {
                    r.iter()
                        .map(|(t, v)| ((*t).to_owned(), (*v).to_owned()))
                        .collect()
                })
                .collect(),
        )
    }

    #[test]
    fn subjects_compare_as_attribute_pairs() {
        // A usual certificate: O then CN in the certificate, CN first in
        // RFC 4514; however the route writes it.
        let usual = cert(&[&[("2.5.4.10", "Acme")], &[("2.5.4.3", "billing")]]);
        for written in [
            "CN=billing,O=Acme",
            "cn=billing, o=Acme",
            "2.5.4.3=billing,OID.2.5.4.10=Acme",
        ] {
            assert_eq!(Dn::parse(written).unwrap(), usual, "{written}");
        }
        assert_eq!(usual.to_string(), "CN=billing,O=Acme");
        // One CN holding a comma is another subject, and prints as one.
        let tricky = cert(&[&[("2.5.4.3", "billing,O=Acme")]]);
        assert_ne!(tricky, usual);
        assert_eq!(tricky.to_string(), "CN=billing\\,O\\=Acme");
        assert_eq!(Dn::parse(&tricky.to_string()).unwrap(), tricky);
        assert_eq!(Dn::parse("CN=billing\\2CO=Acme").unwrap(), tricky);
        // Multi-valued RDNs are sets.
        assert_eq!(
            Dn::parse("CN=a+UID=7").unwrap(),
            cert(&[&[("0.9.2342.19200300.100.1.1", "7"), ("2.5.4.3", "a")]])
        );
        assert_ne!(
            Dn::parse("CN=a+UID=7").unwrap(),
            Dn::parse("CN=a,UID=7").unwrap()
        );
        // Escapes at the edges, control characters.
        let edges = cert(&[&[("2.5.4.3", " #lead trail ")]]);
        assert_eq!(edges.to_string(), "CN=\\ #lead trail\\ ");
        assert_eq!(Dn::parse(&edges.to_string()).unwrap(), edges);
        assert_eq!(cert(&[&[("2.5.4.3", "a\0b")]]).to_string(), "CN=a\\00b");
        for bad in ["not a dn", "CN=", "=x", "CN=a,", "CN=a\\", "CN=\\4"] {
            assert!(Dn::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_rule_admits_by_subject() {
        let rule = |v: serde_json::Value| {
            ClientCertRule::from_config(&serde_json::from_value::<ClientCertConfig>(v).unwrap())
        };
        let a = rule(serde_json::json!({"subjects": ["CN=billing, O=Acme"]}))
            .unwrap()
            .unwrap();
        assert!(a.admits(&Dn::parse("cn=billing,o=Acme").unwrap()));
        assert!(!a.admits(&Dn::parse("CN=billing,O=Acme,OU=x").unwrap()));
        assert!(!a.admits(&Dn::parse("CN=billing\\,O=Acme").unwrap()));
        assert_eq!(a.subjects(), ["CN=billing,O=Acme"]);
        assert!(
            rule(serde_json::json!(true))
                .unwrap()
                .unwrap()
                .admits(&Dn::parse("CN=anyone").unwrap())
        );
        assert!(
            ClientCertRule::from_config(&ClientCertConfig::default())
                .unwrap()
                .is_none()
        );
        assert!(
            rule(serde_json::json!({"subjects": []}))
                .unwrap_err()
                .contains("client_cert")
        );
    }
}
