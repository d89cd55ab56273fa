//! Client certificates on routes (`client_cert:`): which verified
//! certificates a route admits, by subject, with distinguished names
//! compared in one spelling, so that the subject a route names and the one
//! a certificate carries match however each is written.

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
    /// Normalised subjects ([`normalize_dn`]); empty: any verified certificate.
    subjects: Vec<String>,
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
                    .map(|s| normalize_dn(s))
                    .collect::<Result<_, _>>()
                    .map_err(|e| format!("client_cert.subjects: {e}"))?,
            })),
        }
    }

    /// The admitted subjects, normalised (empty: any).
    pub fn subjects(&self) -> &[String] {
        &self.subjects
    }

    /// Whether a verified certificate with this subject passes.
    pub fn admits(&self, subject: &str) -> bool {
        self.subjects.is_empty() || normalize_dn(subject).is_ok_and(|s| self.subjects.contains(&s))
    }
}

/// A distinguished name (RFC 4514) in one spelling: attribute types upper
/// case, no spaces around the separators, so `cn=a, O=b` equals `CN=a,O=b`.
/// An escaped comma (`\,`) stays part of its value.
pub fn normalize_dn(dn: &str) -> Result<String, String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut escaped = false;
    for ch in dn.chars() {
        if escaped {
            current.push(ch);
            escaped = false;
        } else if ch == '\\' {
            current.push(ch);
            escaped = true;
        } else if ch == ',' || ch == '+' {
            parts.push((std::mem::take(&mut current), ch));
        } else {
            current.push(ch);
        }
    }
    parts.push((current, ' '));
    let mut out = String::new();
    for (rdn, sep) in parts {
        let (kind, value) = rdn
            .split_once('=')
            .ok_or_else(|| format!("`{dn}` is not a distinguished name (TYPE=value,...)"))?;
        let (kind, value) = (kind.trim(), value.trim());
        if kind.is_empty() || value.is_empty() {
            return Err(format!("`{dn}` has an empty attribute"));
        }
        out.push_str(&kind.to_ascii_uppercase());
        out.push('=');
        out.push_str(value);
        if sep != ' ' {
            out.push(sep);
        }
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn client_certificate_subjects_compare_in_one_spelling() {
        assert_eq!(
            normalize_dn("cn=a, O=Acme\\, Inc").unwrap(),
            "CN=a,O=Acme\\, Inc"
        );
        assert_eq!(normalize_dn("CN=a+UID=7").unwrap(), "CN=a+UID=7");
        assert!(normalize_dn("not a dn").is_err());
        assert!(normalize_dn("CN=").is_err());
        let rule = |v: serde_json::Value| {
            ClientCertRule::from_config(&serde_json::from_value::<ClientCertConfig>(v).unwrap())
        };
        let a = rule(serde_json::json!({"subjects": ["CN=billing, O=Acme"]}))
            .unwrap()
            .unwrap();
        assert!(a.admits("CN=billing, O=Acme"));
        assert!(a.admits("cn=billing,o=Acme"));
        assert!(!a.admits("CN=billing, O=Acme, OU=x"));
        assert!(!a.admits("CN=mallory"));
        assert!(
            rule(serde_json::json!(true))
                .unwrap()
                .unwrap()
                .admits("CN=anyone")
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
