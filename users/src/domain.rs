//! Parsed, always-valid values of the users domain. Each `parse` returns the
//! field problem that the API reports with a 422.

use std::fmt;

use common::FieldError;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use validator::ValidateEmail;

/// 3-32 characters of `[a-z0-9_.-]`; input is put in its canonical form first
/// (`common::identity::canonical_username`: NFKC, trimmed, lower-cased), so
/// names are unique case-insensitively and the gateway's login counters use
/// the same key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        let s = common::identity::canonical_username(raw);
        let n = s.chars().count();
        if !(3..=32).contains(&n) {
            return Err(FieldError::new(
                field,
                "length",
                "must be 3 to 32 characters",
            ));
        }
        if !s.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-')
        }) {
            return Err(FieldError::new(
                field,
                "pattern",
                "may contain only a-z, 0-9, `_`, `.` and `-`",
            ));
        }
        Ok(Self(s))
    }

    /// A name a local account may have: a username not in the linked
    /// accounts' namespace ([`LINKED_PREFIX`]).
    pub fn parse_local(field: &str, raw: &str) -> Result<Self, FieldError> {
        let name = Self::parse(field, raw)?;
        if name.is_linked() {
            return Err(reserved(field));
        }
        Ok(name)
    }

    /// In the namespace of accounts linked to an identity provider.
    pub fn is_linked(&self) -> bool {
        self.0.starts_with(LINKED_PREFIX)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The prefix of every linked account's username (an account created for
/// a trusted identity provider's user), which no local account's may have:
/// the two kinds never compete for a name, so a provider's user cannot
/// take one an admin would give a local account.
pub const LINKED_PREFIX: &str = "fed.";

/// The problem of a name on the wrong side of [`LINKED_PREFIX`].
pub fn reserved(field: &str) -> FieldError {
    FieldError::new(
        field,
        "reserved",
        format!(
            "names starting with `{LINKED_PREFIX}` are those of accounts linked to an identity provider, and only theirs"
        ),
    )
}

/// A syntactically valid e-mail address of at most 254 characters, stored
/// lower-cased so uniqueness ignores case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        let s = raw.trim().to_lowercase();
        if s.is_empty() || s.len() > 254 || !s.validate_email() {
            return Err(FieldError::new(
                field,
                "email",
                "must be a valid e-mail address",
            ));
        }
        Ok(Self(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// 1-200 printable characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FullName(String);

impl FullName {
    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        let s = raw.trim();
        let n = s.chars().count();
        if !(1..=200).contains(&n) {
            return Err(FieldError::new(
                field,
                "length",
                "must be 1 to 200 characters",
            ));
        }
        if s.chars().any(char::is_control) {
            return Err(FieldError::new(
                field,
                "pattern",
                "must not contain control characters",
            ));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// A new password: 12 to 128 characters. Never printed.
pub struct Password(SecretString);

pub const PASSWORD_MIN: usize = 12;
pub const PASSWORD_MAX: usize = 128;

impl Password {
    pub fn parse(field: &str, raw: &SecretString) -> Result<Self, FieldError> {
        let n = raw.expose_secret().chars().count();
        if !(PASSWORD_MIN..=PASSWORD_MAX).contains(&n) {
            return Err(FieldError::new(
                field,
                "length",
                format!("must be {PASSWORD_MIN} to {PASSWORD_MAX} characters"),
            ));
        }
        Ok(Self(raw.clone()))
    }

    pub fn secret(&self) -> &SecretString {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

/// A role a user can hold.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    User,
}

impl Role {
    pub const ALL: [Role; 2] = [Role::Admin, Role::User];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::User => "user",
        }
    }

    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == raw)
            .ok_or_else(|| FieldError::new(field, "role", "must be `admin` or `user`"))
    }

    /// A non-empty, de-duplicated, sorted role list.
    pub fn parse_list(
        field: &str,
        raw: &[String],
        errors: &mut Vec<FieldError>,
    ) -> Option<Vec<Role>> {
        if raw.is_empty() {
            errors.push(FieldError::new(
                field,
                "length",
                "must name at least one role",
            ));
            return None;
        }
        let mut out = Vec::new();
        let mut ok = true;
        for (i, r) in raw.iter().enumerate() {
            match Role::parse(&format!("{field}[{i}]"), r) {
                Ok(role) => out.push(role),
                Err(e) => {
                    errors.push(e);
                    ok = false;
                }
            }
        }
        out.sort();
        out.dedup();
        ok.then_some(out)
    }
}

/// Collects field problems so a request reports all of them at once.
#[derive(Default)]
pub struct Fields(pub Vec<FieldError>);

impl Fields {
    /// Keep the value, or record the problem.
    pub fn take<T>(&mut self, r: Result<T, FieldError>) -> Option<T> {
        r.map_err(|e| self.0.push(e)).ok()
    }

    /// `Ok(())` when no problem was recorded.
    pub fn finish(mut self) -> Result<(), Vec<FieldError>> {
        if self.0.is_empty() {
            Ok(())
        } else {
            self.0.sort_by(|a, b| a.field.cmp(&b.field));
            Err(self.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        assert_eq!(
            Username::parse("u", "Alice_01").map(|u| u.0).ok(),
            Some("alice_01".into())
        );
        assert!(Username::parse("u", "ab").is_err());
        assert!(Username::parse("u", &"a".repeat(33)).is_err());
        assert!(Username::parse("u", &"a".repeat(32)).is_ok());
        assert!(Username::parse("u", "bad name").is_err());
        assert!(Username::parse("u", "ünï").is_err());
        assert_eq!(
            Username::parse("x", "a!").err().map(|e| e.field),
            Some("x".into())
        );
        // The linked accounts' namespace, in any case or form.
        for linked in ["fed.alice", "Fed.Alice", "ｆｅｄ.alice"] {
            assert!(Username::parse("u", linked).is_ok_and(|u| u.is_linked()));
            assert_eq!(
                Username::parse_local("u", linked).err().map(|e| e.code),
                Some("reserved".into())
            );
        }
        for local in ["alice", "fed", "fedora", "fed-x", "a.fed.b"] {
            assert!(Username::parse_local("u", local).is_ok(), "{local}");
        }
    }

    #[test]
    fn emails_and_names() {
        assert_eq!(
            Email::parse("e", " A@Example.COM ").map(|e| e.0).ok(),
            Some("a@example.com".into())
        );
        assert!(Email::parse("e", "nope").is_err());
        assert!(Email::parse("e", "a@").is_err());
        assert!(FullName::parse("f", "  ").is_err());
        assert!(FullName::parse("f", "a\u{7}b").is_err());
        assert!(FullName::parse("f", &"é".repeat(200)).is_ok());
    }

    #[test]
    fn passwords_count_characters() {
        let p = |s: &str| Password::parse("p", &SecretString::from(s.to_owned()));
        assert!(p("short").is_err());
        assert!(p(&"a".repeat(12)).is_ok());
        assert!(p(&"é".repeat(128)).is_ok());
        assert!(p(&"a".repeat(129)).is_err());
        assert_eq!(
            format!("{:?}", p("correct horse battery").ok()),
            "Some(Password(***))"
        );
    }

    #[test]
    fn roles() {
        let mut errs = Vec::new();
        let r = Role::parse_list(
            "roles",
            &["user".into(), "admin".into(), "user".into()],
            &mut errs,
        );
        assert_eq!(r, Some(vec![Role::Admin, Role::User]));
        assert!(Role::parse_list("roles", &["root".into()], &mut errs).is_none());
        assert!(Role::parse_list("roles", &[], &mut errs).is_none());
        assert_eq!(errs.len(), 2);
        assert_eq!(errs[0].field, "roles[0]");
    }
}
