//! Parsed, always-valid values of the orders domain. Each `parse` returns the
//! field problem that the API reports with a 422.

use common::FieldError;
use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// Where an order is in its life. Only a `pending` order changes: it becomes
/// `confirmed` (by an admin) or `cancelled` (by its owner or an admin), and
/// both are final.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, EnumIter, DeriveActiveEnum,
)]
#[serde(rename_all = "lowercase")]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
pub enum Status {
    #[sea_orm(string_value = "pending")]
    Pending,
    #[sea_orm(string_value = "confirmed")]
    Confirmed,
    #[sea_orm(string_value = "cancelled")]
    Cancelled,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Confirmed => "confirmed",
            Status::Cancelled => "cancelled",
        }
    }
}

pub use common::listing::Scope;

pub const ITEM_MAX: usize = 200;
pub const ADDRESS_MAX: usize = 500;
pub const QUANTITY_MIN: i64 = 1;
pub const QUANTITY_MAX: i64 = 1000;

/// What the item is: 1-200 characters once trimmed, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item(String);

impl Item {
    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        let s = trimmed_len(field, raw, ITEM_MAX)?;
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

/// Where it goes: 1-500 characters once trimmed. Line breaks and tabs are
/// allowed (addresses span lines); other control characters are not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address(String);

impl Address {
    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        let s = trimmed_len(field, raw, ADDRESS_MAX)?;
        if s.chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
        {
            return Err(FieldError::new(
                field,
                "pattern",
                "must not contain control characters other than line breaks and tabs",
            ));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// How many: an integer from 1 to 1000.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantity(i32);

impl Quantity {
    pub fn parse(field: &str, raw: i64) -> Result<Self, FieldError> {
        if !(QUANTITY_MIN..=QUANTITY_MAX).contains(&raw) {
            return Err(range(field));
        }
        i32::try_from(raw).map(Self).map_err(|_| range(field))
    }

    pub fn get(self) -> i32 {
        self.0
    }
}

fn range(field: &str) -> FieldError {
    FieldError::new(
        field,
        "range",
        format!("must be an integer from {QUANTITY_MIN} to {QUANTITY_MAX}"),
    )
}

/// The trimmed text when it has 1..=max characters.
fn trimmed_len<'a>(field: &str, raw: &'a str, max: usize) -> Result<&'a str, FieldError> {
    let s = raw.trim();
    if !(1..=max).contains(&s.chars().count()) {
        return Err(FieldError::new(
            field,
            "length",
            format!("must be 1 to {max} characters"),
        ));
    }
    Ok(s)
}

/// A validated new order; the owner comes from the caller, never the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOrder {
    pub item: Item,
    pub quantity: Quantity,
    pub address: Address,
}

/// The fields `POST /orders` accepts.
const FIELDS: [&str; 3] = ["item", "quantity", "address"];

impl NewOrder {
    /// Parse the JSON object of `POST /orders`. Works on the raw object rather
    /// than a typed struct so that a wrong JSON type, a missing field and an
    /// unknown field are reported together with the other field problems,
    /// one entry each, sorted by field.
    pub fn parse(body: &Map<String, Value>) -> Result<Self, Vec<FieldError>> {
        let mut errors: Vec<FieldError> = body
            .keys()
            .filter(|k| !FIELDS.contains(&k.as_str()))
            .map(|k| FieldError::new(k.as_str(), "unknown", "is not a field of this request"))
            .collect();
        let item = keep(
            &mut errors,
            string(body, "item").and_then(|s| Item::parse("item", s)),
        );
        let quantity = keep(
            &mut errors,
            integer(body, "quantity").and_then(|n| Quantity::parse("quantity", n)),
        );
        let address = keep(
            &mut errors,
            string(body, "address").and_then(|s| Address::parse("address", s)),
        );
        match (item, quantity, address) {
            (Some(item), Some(quantity), Some(address)) if errors.is_empty() => Ok(Self {
                item,
                quantity,
                address,
            }),
            _ => {
                errors.sort_by(|a, b| a.field.cmp(&b.field));
                Err(errors)
            }
        }
    }
}

/// The value, or the problem recorded in `errors`.
fn keep<T>(errors: &mut Vec<FieldError>, r: Result<T, FieldError>) -> Option<T> {
    r.map_err(|e| errors.push(e)).ok()
}

fn required<'a>(body: &'a Map<String, Value>, field: &str) -> Result<&'a Value, FieldError> {
    match body.get(field) {
        None | Some(Value::Null) => Err(FieldError::new(field, "required", "is required")),
        Some(v) => Ok(v),
    }
}

fn string<'a>(body: &'a Map<String, Value>, field: &str) -> Result<&'a str, FieldError> {
    required(body, field)?
        .as_str()
        .ok_or_else(|| FieldError::new(field, "type", "must be a string"))
}

/// An integral JSON number (`3`, not `3.5`, `3.0` or `"3"`).
fn integer(body: &Map<String, Value>, field: &str) -> Result<i64, FieldError> {
    match required(body, field)? {
        Value::Number(n) if n.is_i64() || n.is_u64() => n.as_i64().ok_or_else(|| range(field)),
        _ => Err(FieldError::new(field, "type", "must be an integer")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<NewOrder, Vec<(String, String)>> {
        let Value::Object(m) = v else {
            panic!("object expected")
        };
        NewOrder::parse(&m).map_err(|es| es.into_iter().map(|e| (e.field, e.code)).collect())
    }

    fn pair(f: &str, c: &str) -> (String, String) {
        (f.to_owned(), c.to_owned())
    }

    #[test]
    fn a_valid_order_is_trimmed() {
        let o = parse(json!({"item": "  widget ", "quantity": 3, "address": " 1 Main St\nTown "}));
        assert_eq!(
            o,
            Ok(NewOrder {
                item: Item("widget".into()),
                quantity: Quantity(3),
                address: Address("1 Main St\nTown".into()),
            })
        );
    }

    #[test]
    fn items_count_characters() {
        assert!(Item::parse("i", &"é".repeat(200)).is_ok());
        assert!(Item::parse("i", &"é".repeat(201)).is_err());
        assert!(Item::parse("i", "   ").is_err());
        assert!(Item::parse("i", "a\u{0}b").is_err());
        assert!(Item::parse("i", "a\nb").is_err());
        assert!(Address::parse("a", "a\r\nb\tc").is_ok());
        assert!(Address::parse("a", "a\u{1b}b").is_err());
        assert!(Address::parse("a", &"x".repeat(501)).is_err());
    }

    #[test]
    fn quantities() {
        for ok in [1, 1000] {
            assert!(Quantity::parse("q", ok).is_ok());
        }
        for bad in [0, -1, 1001, i64::MAX] {
            assert!(Quantity::parse("q", bad).is_err());
        }
        for (v, code) in [
            (json!("3"), "type"),
            (json!(3.5), "type"),
            (json!(3.0), "type"),
            (json!(true), "type"),
            (json!(u64::MAX), "range"),
            (json!(null), "required"),
        ] {
            let r = parse(json!({"item": "x", "quantity": v, "address": "y"}));
            assert_eq!(r, Err(vec![pair("quantity", code)]), "{v}");
        }
    }

    #[test]
    fn every_problem_is_listed_sorted() {
        let r = parse(json!({"quantity": 0, "address": 5, "user_id": "x", "status": "confirmed"}));
        assert_eq!(
            r,
            Err(vec![
                pair("address", "type"),
                pair("item", "required"),
                pair("quantity", "range"),
                pair("status", "unknown"),
                pair("user_id", "unknown"),
            ])
        );
    }
}
