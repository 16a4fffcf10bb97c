//! States kept in `text` columns with a `CHECK (… IN (…))`, read and written as Rust enums:
//! the column's list and the enum are the one list of states, and a statement can only bind
//! one of them.

/// Declares an enum whose variants are stored as the given texts: `as_str`, `parse`, `ALL`,
/// `Display`, and `ToSql`/`FromSql` for `text` columns. A text the enum does not know (a
/// migration that added a state the code lacks, or a hand-edited row) is a read error,
/// never a guessed state.
///
/// ```
/// chukan_db::text_enum! {
///     /// Where a job is.
///     #[derive(Debug, Clone, Copy, PartialEq, Eq)]
///     pub enum JobState {
///         Queued = "queued",
///         Done = "done",
///     }
/// }
/// assert_eq!(JobState::parse("done"), Some(JobState::Done));
/// assert_eq!(JobState::Queued.to_string(), "queued");
/// ```
#[macro_export]
macro_rules! text_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        $vis enum $name {
            $( $(#[$vmeta])* $variant ),+
        }

        impl $name {
            /// Every state, in declaration order.
            pub const ALL: &'static [$name] = &[$( $name::$variant ),+];

            /// The text stored (and shown) for this state.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $text ),+
                }
            }

            /// The state stored as `text`, if there is one.
            pub fn parse(text: &str) -> Option<Self> {
                match text {
                    $( $text => Some($name::$variant), )+
                    _ => None,
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl $crate::__private::ToSql for $name {
            fn to_sql(
                &self,
                ty: &$crate::__private::Type,
                out: &mut $crate::__private::BytesMut,
            ) -> ::std::result::Result<
                $crate::__private::IsNull,
                ::std::boxed::Box<dyn ::std::error::Error + Sync + Send>,
            > {
                <&str as $crate::__private::ToSql>::to_sql(&self.as_str(), ty, out)
            }

            fn accepts(ty: &$crate::__private::Type) -> bool {
                <&str as $crate::__private::ToSql>::accepts(ty)
            }

            $crate::__private::to_sql_checked!();
        }

        impl<'a> $crate::__private::FromSql<'a> for $name {
            fn from_sql(
                ty: &$crate::__private::Type,
                raw: &'a [u8],
            ) -> ::std::result::Result<
                Self,
                ::std::boxed::Box<dyn ::std::error::Error + Sync + Send>,
            > {
                let text = <&str as $crate::__private::FromSql>::from_sql(ty, raw)?;
                $name::parse(text).ok_or_else(|| {
                    format!("{} has no state {text:?}", stringify!($name)).into()
                })
            }

            fn accepts(ty: &$crate::__private::Type) -> bool {
                <&str as $crate::__private::FromSql>::accepts(ty)
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use tokio_postgres::types::{FromSql as _, ToSql as _, Type};

    crate::text_enum! {
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        enum Light {
            Red = "red",
            Green = "green",
        }
    }

    #[test]
    fn a_state_round_trips_through_text_and_an_unknown_text_is_an_error() {
        let mut out = tokio_postgres::types::private::BytesMut::new();
        Light::Green.to_sql(&Type::TEXT, &mut out).unwrap();
        assert_eq!(&out[..], b"green");
        assert_eq!(Light::from_sql(&Type::TEXT, b"red").unwrap(), Light::Red);
        assert!(Light::from_sql(&Type::TEXT, b"amber").is_err());
        assert!(!<Light as tokio_postgres::types::ToSql>::accepts(
            &Type::INT4
        ));
        assert_eq!(Light::ALL, &[Light::Red, Light::Green]);
        assert_eq!(Light::parse("amber"), None);
    }
}
