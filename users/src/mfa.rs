//! Second factors of local accounts: TOTP (RFC 6238: HMAC-SHA-1, 6 digits,
//! 30-second steps, issuer `gatehouse`, the username as account) and
//! one-time recovery codes.
//!
//! Why it is built this way:
//! - The TOTP secret is what an attacker with a copy of the database would
//!   want: it is stored sealed with XChaCha20-Poly1305 under a key the
//!   database does not hold (`mfa.key_file`, or `DATA_DIR/keys/mfa.key`
//!   generated on first start), bound to its account by the associated
//!   data, and it leaves the service once: in the enrolment's answer.
//! - A code is accepted within one step of clock skew either side, and
//!   never twice: the step it matched must be later than the last step
//!   accepted, and the row is updated on that condition in one statement,
//!   so two replicas (or two requests) racing with one code cannot both
//!   win.
//! - Recovery codes carry 80 random bits each and are stored as SHA-256
//!   hashes (at that entropy a fast hash is enough); using one marks it
//!   used in one conditional statement.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use chrono::Utc;
use rand::RngCore;
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, TransactionSession,
    TransactionTrait,
};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::entity::{recovery_code, totp_secret};
use crate::error::{Error, Result};

/// The issuer in every `otpauth://` URI.
pub const ISSUER: &str = "gatehouse";
/// Recovery codes per set.
pub const RECOVERY_CODES: usize = 10;
/// Bytes of a TOTP secret (160 bits, as RFC 4226 recommends).
const SECRET_BYTES: usize = 20;
/// Associated data prefix: a sealed secret opens only for its account.
const AAD: &str = "gatehouse/totp/v1/";

/// `mfa:` in the users service's settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MfaSettings {
    /// A file holding the sealing key (32 bytes, base64); default
    /// `DATA_DIR/keys/mfa.key`, generated on first start.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// The key itself (base64), for deployments that pass secrets by
    /// environment (`MFA_SECRET_KEY`); wins over the file.
    #[serde(default)]
    pub key: Option<SecretString>,
}

/// Seals and opens TOTP secrets.
pub struct SecretBox {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(..)")
    }
}

/// The key file of a development setup.
pub fn default_key_file(data_dir: &Path) -> PathBuf {
    data_dir.join("keys").join("mfa.key")
}

impl SecretBox {
    /// From a 32-byte key.
    pub fn new(key: &[u8]) -> anyhow::Result<Self> {
        let cipher = XChaCha20Poly1305::new_from_slice(key)
            .map_err(|_| anyhow::anyhow!("the MFA key must be 32 bytes (base64-encoded)"))?;
        Ok(Self { cipher })
    }

    /// The configured key: `mfa.key`, else `mfa.key_file`, else the
    /// development key file under the data directory, made on first start
    /// (mode 0600, never overwritten).
    pub fn load(settings: &MfaSettings, data_dir: &Path) -> anyhow::Result<Self> {
        use anyhow::Context;
        if let Some(key) = &settings.key {
            let bytes = B64
                .decode(key.expose_secret().trim())
                .context("mfa.key is not base64")?;
            return Self::new(&bytes);
        }
        let path = match &settings.key_file {
            Some(p) => p.clone(),
            None => {
                let p = default_key_file(data_dir);
                if !p.exists() {
                    if let Some(dir) = p.parent() {
                        std::fs::create_dir_all(dir)
                            .with_context(|| format!("creating {}", dir.display()))?;
                    }
                    let mut key = [0u8; 32];
                    rand::rng().fill_bytes(&mut key);
                    // Another replica on the same directory may have won:
                    // its key is the one to read.
                    match common::keys::write_private(&p, B64.encode(key).as_bytes()) {
                        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                            return Err(e)
                                .with_context(|| format!("writing the MFA key {}", p.display()));
                        }
                        _ => {}
                    }
                }
                p
            }
        };
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading the MFA key {}", path.display()))?;
        let bytes = B64
            .decode(text.trim())
            .with_context(|| format!("the MFA key {} is not base64", path.display()))?;
        Self::new(&bytes)
    }

    /// `v1:` + base64(nonce || ciphertext), bound to `user`.
    fn seal(&self, user: Uuid, secret: &[u8]) -> Result<String> {
        let mut nonce = [0u8; 24];
        rand::rng().fill_bytes(&mut nonce);
        let nonce = XNonce::from(nonce);
        let aad = format!("{AAD}{user}");
        let sealed = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: secret,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| Error::Sealing)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(format!("v1:{}", B64.encode(out)))
    }

    /// The secret `seal` sealed for `user` (an error for anything else: a
    /// row moved to another account, another key, a damaged value).
    fn open(&self, user: Uuid, stored: &str) -> Result<Vec<u8>> {
        let raw = stored
            .strip_prefix("v1:")
            .and_then(|b| B64.decode(b).ok())
            .filter(|r| r.len() > 24)
            .ok_or(Error::Sealing)?;
        let (nonce, sealed) = raw.split_at(24);
        let nonce = XNonce::try_from(nonce).map_err(|_| Error::Sealing)?;
        let aad = format!("{AAD}{user}");
        self.cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: sealed,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| Error::Sealing)
    }
}

/// The TOTP of a secret for `username` (SHA-1, 6 digits, 30 s, one step
/// of skew: `Builder::new()`'s defaults, which are RFC 6238's).
fn totp(secret: Vec<u8>, username: &str) -> Result<totp_rs::Totp> {
    totp_rs::Builder::new()
        .with_secret(secret)
        .with_issuer(Some(ISSUER))
        .with_account_name(username)
        .build()
        .map_err(|_| Error::Sealing)
}

/// The time step (of 30 s) `code` is valid for at `now`, within one step
/// either side (compared in constant time by totp-rs); `None` for a wrong
/// or malformed code. Spaces, as apps show codes, are ignored.
fn matched_step(totp: &totp_rs::Totp, code: &str, now: u64) -> Option<i64> {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    totp.check(&code, now).and_then(|s| i64::try_from(s).ok())
}

fn now_unix() -> u64 {
    u64::try_from(Utc::now().timestamp()).unwrap_or(0)
}

/// What an enrolment hands the user once: the URI an authenticator app
/// reads, its secret for typing in, and the URI as a QR code.
#[derive(Debug)]
pub struct Enrolment {
    pub otpauth_uri: String,
    pub secret: String,
    pub qr_svg: String,
}

/// An `otpauth://` URI as an SVG QR code (no XML declaration, so it can
/// be put inline).
fn qr_svg(uri: &str) -> Result<String> {
    use qrcode::render::svg;
    let code = qrcode::QrCode::with_error_correction_level(uri.as_bytes(), qrcode::EcLevel::M)
        .map_err(|_| Error::Sealing)?;
    let svg = code
        .render::<svg::Color<'_>>()
        .min_dimensions(200, 200)
        .quiet_zone(true)
        .dark_color(svg::Color("#000000"))
        .light_color(svg::Color("#ffffff"))
        .build();
    Ok(match svg.find("<svg") {
        Some(i) => svg[i..].to_owned(),
        None => svg,
    })
}

/// Where an account's TOTP stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    None,
    /// Enrolment started, waiting for its first code.
    Pending,
    Active,
}

pub async fn state<C: ConnectionTrait>(db: &C, user: Uuid) -> Result<State> {
    Ok(match totp_secret::Entity::find_by_id(user).one(db).await? {
        None => State::None,
        Some(r) if r.confirmed_at.is_none() => State::Pending,
        Some(_) => State::Active,
    })
}

/// The accounts among `ids` with an active TOTP.
pub async fn active_among<C: ConnectionTrait>(db: &C, ids: &[Uuid]) -> Result<HashSet<Uuid>> {
    if ids.is_empty() {
        return Ok(HashSet::new());
    }
    Ok(totp_secret::Entity::find()
        .filter(totp_secret::Column::UserId.is_in(ids.iter().copied()))
        .filter(totp_secret::Column::ConfirmedAt.is_not_null())
        .all(db)
        .await?
        .into_iter()
        .map(|r| r.user_id)
        .collect())
}

/// Recovery codes not used yet.
pub async fn recovery_codes_left<C: ConnectionTrait>(db: &C, user: Uuid) -> Result<u64> {
    use sea_orm::PaginatorTrait;
    Ok(recovery_code::Entity::find()
        .filter(recovery_code::Column::UserId.eq(user))
        .filter(recovery_code::Column::UsedAt.is_null())
        .count(db)
        .await?)
}

/// Start (or restart) an enrolment: a new secret, pending until
/// [`confirm`]. Refused while a TOTP is active.
pub async fn begin<C: TransactionTrait>(
    db: &C,
    sealer: &SecretBox,
    user: Uuid,
    username: &str,
) -> Result<Enrolment> {
    let mut secret = vec![0u8; SECRET_BYTES];
    rand::rng().fill_bytes(&mut secret);
    let totp = totp(secret.clone(), username)?;
    let sealed = sealer.seal(user, &secret)?;
    let txn = db.begin().await?;
    if let Some(existing) = totp_secret::Entity::find_by_id(user).one(&txn).await? {
        if existing.confirmed_at.is_some() {
            return Err(Error::MfaAlreadyEnabled);
        }
        totp_secret::Entity::delete_by_id(user).exec(&txn).await?;
    }
    totp_secret::Entity::insert(totp_secret::ActiveModel {
        user_id: Set(user),
        secret: Set(sealed),
        confirmed_at: Set(None),
        last_step: Set(None),
        created_at: Set(Utc::now()),
    })
    .exec_without_returning(&txn)
    .await?;
    txn.commit().await?;
    let otpauth_uri = totp.to_url().map_err(|_| Error::Sealing)?;
    Ok(Enrolment {
        qr_svg: qr_svg(&otpauth_uri)?,
        secret: totp.secret().to_base32(),
        otpauth_uri,
    })
}

/// Accept `code` for the account's secret (pending or active, as
/// `pending` says) at most once: the step it matched becomes the last one
/// accepted, on the condition that it is later than the last one.
async fn accept_code<C: ConnectionTrait>(
    db: &C,
    sealer: &SecretBox,
    user: Uuid,
    username: &str,
    code: &str,
    pending: bool,
) -> Result<bool> {
    let Some(row) = totp_secret::Entity::find_by_id(user).one(db).await? else {
        return Err(if pending {
            Error::MfaNotPending
        } else {
            Error::MfaNotEnabled
        });
    };
    match (pending, row.confirmed_at.is_some()) {
        (true, true) => return Err(Error::MfaAlreadyEnabled),
        (false, false) => return Err(Error::MfaNotEnabled),
        _ => {}
    }
    let totp = totp(sealer.open(user, &row.secret)?, username)?;
    let Some(step) = matched_step(&totp, code, now_unix()) else {
        return Ok(false);
    };
    let mut update = totp_secret::Entity::update_many()
        .col_expr(totp_secret::Column::LastStep, Expr::value(step))
        .filter(totp_secret::Column::UserId.eq(user))
        .filter(
            sea_orm::Condition::any()
                .add(totp_secret::Column::LastStep.is_null())
                .add(totp_secret::Column::LastStep.lt(step)),
        );
    update = if pending {
        update
            .col_expr(totp_secret::Column::ConfirmedAt, Expr::value(Utc::now()))
            .filter(totp_secret::Column::ConfirmedAt.is_null())
    } else {
        update.filter(totp_secret::Column::ConfirmedAt.is_not_null())
    };
    Ok(update.exec(db).await?.rows_affected == 1)
}

/// Check a code of the account's active TOTP (see [`accept_code`]).
pub async fn check_code<C: ConnectionTrait>(
    db: &C,
    sealer: &SecretBox,
    user: Uuid,
    username: &str,
    code: &str,
) -> Result<bool> {
    accept_code(db, sealer, user, username, code, false).await
}

/// Finish an enrolment with its first code: the TOTP becomes active and
/// the account gets a new set of recovery codes (answered once).
/// `Ok(None)`: the code was wrong.
pub async fn confirm<C: TransactionTrait>(
    db: &C,
    sealer: &SecretBox,
    user: Uuid,
    username: &str,
    code: &str,
) -> Result<Option<Vec<String>>> {
    let txn = db.begin().await?;
    if !accept_code(&txn, sealer, user, username, code, true).await? {
        return Ok(None);
    }
    let codes = store_recovery_codes(&txn, user).await?;
    txn.commit().await?;
    Ok(Some(codes))
}

/// A new set of recovery codes; the old set stops working.
pub async fn replace_recovery_codes<C: TransactionTrait>(
    db: &C,
    user: Uuid,
) -> Result<Vec<String>> {
    let txn = db.begin().await?;
    let codes = store_recovery_codes(&txn, user).await?;
    txn.commit().await?;
    Ok(codes)
}

async fn store_recovery_codes<C: ConnectionTrait>(db: &C, user: Uuid) -> Result<Vec<String>> {
    recovery_code::Entity::delete_many()
        .filter(recovery_code::Column::UserId.eq(user))
        .exec(db)
        .await?;
    let codes: Vec<String> = (0..RECOVERY_CODES).map(|_| new_recovery_code()).collect();
    let now = Utc::now();
    recovery_code::Entity::insert_many(codes.iter().map(|c| recovery_code::ActiveModel {
        id: Set(Uuid::new_v4()),
        user_id: Set(user),
        code_hash: Set(code_hash(c)),
        used_at: Set(None),
        created_at: Set(now),
    }))
    .on_conflict(
        OnConflict::column(recovery_code::Column::Id)
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    Ok(codes)
}

/// Use one of the account's recovery codes (of an active TOTP): `true`
/// when it was unused, and it is used now.
pub async fn use_recovery_code<C: ConnectionTrait>(db: &C, user: Uuid, code: &str) -> Result<bool> {
    if state(db, user).await? != State::Active {
        return Err(Error::MfaNotEnabled);
    }
    let Some(hash) = normalised_code(code).map(|c| code_hash(&c)) else {
        return Ok(false);
    };
    let done = recovery_code::Entity::update_many()
        .col_expr(recovery_code::Column::UsedAt, Expr::value(Utc::now()))
        .filter(recovery_code::Column::UserId.eq(user))
        .filter(recovery_code::Column::CodeHash.eq(hash))
        .filter(recovery_code::Column::UsedAt.is_null())
        .exec(db)
        .await?;
    Ok(done.rows_affected >= 1)
}

/// Remove the account's second factor (TOTP and recovery codes): whether
/// there was one.
pub async fn remove<C: TransactionTrait>(db: &C, user: Uuid) -> Result<bool> {
    let txn = db.begin().await?;
    recovery_code::Entity::delete_many()
        .filter(recovery_code::Column::UserId.eq(user))
        .exec(&txn)
        .await?;
    let done = totp_secret::Entity::delete_by_id(user).exec(&txn).await?;
    txn.commit().await?;
    Ok(done.rows_affected > 0)
}

/// Alphabet of recovery codes: lower-case letters and digits without the
/// ones read alike (0/o, 1/l/i).
const CODE_ALPHABET: &[u8; 32] = b"abcdefghjkmnpqrstuvwxyz23456789_";

/// `xxxx-xxxx-xxxx-xxxx`: 16 characters of 5 bits (80 bits).
fn new_recovery_code() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    let mut out = String::with_capacity(19);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 && i % 4 == 0 {
            out.push('-');
        }
        // 31 symbols: `_` never appears, so the alphabet stays unambiguous.
        out.push(char::from(CODE_ALPHABET[usize::from(*b % 31)]));
    }
    out
}

/// A code as typed (any case, with or without dashes and spaces), in the
/// form its hash is of; `None` for anything that cannot be a code.
fn normalised_code(code: &str) -> Option<String> {
    let c: String = code
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    (c.len() == 16 && c.bytes().all(|b| CODE_ALPHABET[..31].contains(&b))).then_some(c)
}

fn code_hash(code: &str) -> String {
    let n = normalised_code(code).unwrap_or_default();
    hex(&Sha256::digest(n.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn secrets_open_only_for_their_account_and_key() {
        let sealer = SecretBox::new(&[7u8; 32]).unwrap();
        let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
        let sealed = sealer.seal(alice, b"0123456789abcdefghij").unwrap();
        assert!(sealed.starts_with("v1:"));
        assert!(!sealed.contains("0123456789"));
        assert_eq!(
            sealer.open(alice, &sealed).unwrap(),
            b"0123456789abcdefghij"
        );
        assert!(sealer.open(bob, &sealed).is_err(), "bound to its account");
        let other = SecretBox::new(&[8u8; 32]).unwrap();
        assert!(other.open(alice, &sealed).is_err(), "and to its key");
        assert!(SecretBox::new(&[1u8; 16]).is_err());
    }

    #[test]
    fn codes_match_within_one_step_either_side() {
        // RFC 6238 appendix B's SHA-1 secret, six digits of its vectors.
        let t = totp(b"12345678901234567890".to_vec(), "alice").unwrap();
        assert_eq!(t.generate(59).to_string(), "287082");
        let at = 59u64; // step 1
        assert_eq!(matched_step(&t, "287082", at), Some(1));
        assert_eq!(
            matched_step(&t, "287 082", at + 30),
            Some(1),
            "one step late"
        );
        assert_eq!(matched_step(&t, "287082", 1), Some(1), "one step early");
        assert_eq!(matched_step(&t, "287082", at + 60), None, "two steps late");
        assert_eq!(matched_step(&t, "28708", at), None);
        assert_eq!(matched_step(&t, "28708a", at), None);
        let uri = t.to_url().unwrap();
        assert!(uri.starts_with("otpauth://totp/gatehouse:alice?"), "{uri}");
        assert!(uri.contains("issuer=gatehouse"), "{uri}");
    }

    #[test]
    fn recovery_codes_are_80_bits_and_read_as_typed() {
        let c = new_recovery_code();
        assert_eq!(c.len(), 19);
        assert_eq!(c.matches('-').count(), 3);
        assert_eq!(
            code_hash(&c),
            code_hash(&c.to_uppercase().replace('-', " "))
        );
        assert_ne!(code_hash(&c), code_hash(&new_recovery_code()));
        assert!(normalised_code("not a code").is_none());
        assert!(!c.contains('_'));
    }

    #[test]
    fn the_qr_code_is_an_inline_svg() {
        let svg = qr_svg("otpauth://totp/gatehouse:alice?secret=ABC&issuer=gatehouse").unwrap();
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.trim_end().ends_with("</svg>"));
    }
}
