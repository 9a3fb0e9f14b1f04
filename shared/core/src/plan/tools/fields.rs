//! A tool's argument names and `with` schema, read from its argument struct, so the struct is the
//! one place a tool's arguments are declared.

use std::fmt::Display;

use schemars::JsonSchema;
use serde::Deserialize;
use serde::de::{Deserializer, Visitor};
use serde_json::Value;

/// The field names of `T` as serde reads them (renames applied), in declaration order: the
/// order "this tool takes: ..." messages list them in.
pub(super) fn fields_of<T: for<'de> Deserialize<'de>>() -> &'static [&'static str] {
    let mut fields: &'static [&'static str] = &[];
    // Derived `Deserialize` of a struct hands its field list to `deserialize_struct` first;
    // the deserializer keeps it and stops there, so nothing is ever deserialized.
    let _ = T::deserialize(FieldNames(&mut fields));
    fields
}

/// The JSON Schema of `T`.
pub(super) fn schema_of<T: JsonSchema>() -> Value {
    serde_json::to_value(schemars::schema_for!(T)).unwrap_or(Value::Null)
}

/// Why [`FieldNames`] stopped: always, once it has the names (or found no struct).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Stop(String);

impl serde::de::Error for Stop {
    fn custom<T: Display>(msg: T) -> Self {
        Stop(msg.to_string())
    }
}

/// A deserializer that only records the field list it is asked to deserialize a struct with.
struct FieldNames<'f>(&'f mut &'static [&'static str]);

impl<'de> Deserializer<'de> for FieldNames<'_> {
    type Error = Stop;

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Stop> {
        Err(Stop("not a struct".into()))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Stop> {
        *self.0 = fields;
        Err(Stop("field names read".into()))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option
        unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct Sample {
        b: u32,
        #[serde(rename = "for")]
        for_: String,
        a: Option<Value>,
    }

    #[test]
    fn field_names_keep_declaration_order_and_renames() {
        assert_eq!(fields_of::<Sample>(), &["b", "for", "a"]);
    }
}
