//! Integers as JSON Schema counts them: `100.0` is the integer 100 (a number's mathematical
//! value decides), but serde refuses it for an `i64`. Generated clients and fuzzers do send
//! integral floats; a query string sends text.

use serde::{Deserialize, Deserializer, de::Error as _};

#[derive(Deserialize)]
#[serde(untagged)]
enum Integral {
    Int(i64),
    Float(f64),
    Text(String),
}

/// An optional `i64` from an integer, an integral float or (query strings) its text.
pub fn option_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let not_integer = || D::Error::custom("not an integer");
    match Option::<Integral>::deserialize(d)? {
        None => Ok(None),
        Some(Integral::Int(i)) => Ok(Some(i)),
        // ±2^63 are not i64s; within that, an integral float converts exactly.
        Some(Integral::Float(f)) if f.fract() == 0.0 && f.abs() < 9.223_372_036_854_775e18 =>
        {
            #[allow(clippy::cast_possible_truncation)]
            Ok(Some(f as i64))
        }
        Some(Integral::Float(_)) => Err(not_integer()),
        Some(Integral::Text(t)) => t.trim().parse().map(Some).map_err(|_| not_integer()),
    }
}

/// A required `i64`, read as [`option_i64`] reads one (`null` is not an integer).
pub fn i64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    option_i64(d)?.ok_or_else(|| D::Error::custom("not an integer"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[derive(Deserialize, Debug, PartialEq)]
    struct Q {
        #[serde(default, deserialize_with = "option_i64")]
        limit: Option<i64>,
    }

    #[test]
    fn integral_floats_and_text_are_integers_fractions_are_not() {
        let json = |s: &str| serde_json::from_str::<Q>(s);
        assert_eq!(json(r#"{"limit": 5}"#).unwrap().limit, Some(5));
        assert_eq!(
            json(r#"{"limit": -30291181.0}"#).unwrap().limit,
            Some(-30291181)
        );
        assert_eq!(json(r#"{"limit": null}"#).unwrap().limit, None);
        assert_eq!(json("{}").unwrap().limit, None);
        assert!(json(r#"{"limit": 1.5}"#).is_err());
        assert!(json(r#"{"limit": 1e300}"#).is_err());
        let query: Q = serde_urlencoded::from_str("limit=42").unwrap();
        assert_eq!(query.limit, Some(42));
        assert!(serde_urlencoded::from_str::<Q>("limit=x").is_err());

        #[derive(Deserialize, Debug)]
        struct Required {
            #[serde(deserialize_with = "i64")]
            count: i64,
        }
        let required = |s: &str| serde_json::from_str::<Required>(s);
        assert_eq!(required(r#"{"count": 24364.0}"#).unwrap().count, 24364);
        assert!(required(r#"{"count": null}"#).is_err());
        assert!(required("{}").is_err());
    }
}
