//! The formats a source's items come in, how `split` finds each item's bytes, and how a batch's
//! bytes become items again. Splitting checks every item parses, so a malformed source fails at
//! `split` (naming the line or element) rather than halfway through the map.

use std::ops::Range;

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::{Map, Value};

use super::error::ItemsError;
use super::scan;
use super::source::Location;

/// How a source holds its items: the DSL's `items_from.format`.
pub use baton_core::model::ItemFormat as Format;

/// `given`, else the format `source`'s name implies; `collection` is true for an S3 prefix or
/// a local directory.
pub fn resolve(given: Option<Format>, source: &Location, collection: bool) -> Result<Format, ItemsError> {
    if let Some(f) = given {
        return Ok(f);
    }
    if collection {
        return Ok(Format::Objects);
    }
    let name = source.name().to_ascii_lowercase();
    if name.ends_with(".jsonl") || name.ends_with(".ndjson") {
        Ok(Format::Jsonl)
    } else if name.ends_with(".csv") {
        Ok(Format::Csv)
    } else if name.ends_with(".json") {
        Ok(Format::Json)
    } else {
        Err(ItemsError::NeedsFormat { uri: source.to_string() })
    }
}

/// Reads a call's `format` by name. The call is `op`-tagged, where serde's own message would
/// not name the field.
pub(crate) fn named<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Format>, D::Error> {
    let Some(name) = Option::<String>::deserialize(d)? else { return Ok(None) };
    [Format::Jsonl, Format::Csv, Format::Json, Format::Objects]
        .into_iter()
        .find(|f| f.as_str() == name)
        .map(Some)
        .ok_or_else(|| {
            serde::de::Error::custom(format!("`format` is one of jsonl, csv, json and objects, not `{name}`"))
        })
}

/// Where a source's items sit in its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Layout {
    /// Each item's byte range, in order.
    pub items: Vec<Range<usize>>,
    /// A CSV header's length, its line end included (every batch reads it again).
    pub header_bytes: Option<usize>,
}

/// The items of a `jsonl`, `csv` or `json` source in `data`; `uri` names it in errors.
pub fn layout(format: Format, data: &[u8], uri: &str) -> Result<Layout, ItemsError> {
    match format {
        Format::Jsonl => Ok(Layout { items: jsonl_lines(data, uri)?, header_bytes: None }),
        Format::Csv => csv_records(data, uri),
        Format::Json => Ok(Layout { items: json_elements(data, uri)?, header_bytes: None }),
        Format::Objects => Err(ItemsError::Malformed(format!("{uri}: `objects` lists a prefix or directory"))),
    }
}

fn jsonl_lines(data: &[u8], uri: &str) -> Result<Vec<Range<usize>>, ItemsError> {
    let mut items = Vec::new();
    let mut start = 0;
    for (n, line) in data.split(|&b| b == b'\n').enumerate() {
        let range = start..start + line.len();
        start = range.end + 1;
        if line.trim_ascii().is_empty() {
            continue;
        }
        serde_json::from_slice::<IgnoredAny>(line)
            .map_err(|e| ItemsError::Malformed(format!("line {} of {uri} is not JSON: {e}", n + 1)))?;
        items.push(range);
    }
    Ok(items)
}

fn csv_records(data: &[u8], uri: &str) -> Result<Layout, ItemsError> {
    let mut reader = csv::ReaderBuilder::new().has_headers(false).from_reader(data);
    let mut record = csv::StringRecord::new();
    let bad = |e: csv::Error| ItemsError::Malformed(format!("{uri} is not CSV: {e}"));
    if !reader.read_record(&mut record).map_err(bad)? {
        return Ok(Layout { items: Vec::new(), header_bytes: Some(0) });
    }
    let header_bytes = past_crlf(data, byte(reader.position()));
    let mut items = Vec::new();
    while reader.read_record(&mut record).map_err(bad)? {
        let start = past_crlf(data, record.position().map(byte).unwrap_or(header_bytes));
        items.push(start..past_crlf(data, byte(reader.position())));
    }
    Ok(Layout { items, header_bytes: Some(header_bytes) })
}

/// The csv reader stops a `\r\n` record between the two bytes; this moves such an offset past
/// the `\n`, so a record's range holds its whole line end and the next starts on its own bytes.
fn past_crlf(data: &[u8], at: usize) -> usize {
    if at > 0 && data.get(at - 1) == Some(&b'\r') && data.get(at) == Some(&b'\n') { at + 1 } else { at }
}

fn byte(p: &csv::Position) -> usize {
    usize::try_from(p.byte()).unwrap_or(usize::MAX)
}

fn json_elements(data: &[u8], uri: &str) -> Result<Vec<Range<usize>>, ItemsError> {
    let items =
        scan::array_elements(data).map_err(|why| ItemsError::Malformed(format!("{uri} is not a JSON array: {why}")))?;
    for (n, r) in items.iter().enumerate() {
        serde_json::from_slice::<IgnoredAny>(&data[r.clone()])
            .map_err(|e| ItemsError::Malformed(format!("element {n} of {uri} is not JSON: {e}")))?;
    }
    Ok(items)
}

/// The items in one batch's bytes: `data` is the batch's range, `header` the CSV header's
/// bytes; `first` (the batch's first item) and `uri` place errors.
pub fn read(format: Format, header: &[u8], data: &[u8], first: u64, uri: &str) -> Result<Vec<Value>, ItemsError> {
    match format {
        Format::Jsonl => data
            .split(|&b| b == b'\n')
            .filter(|line| !line.trim_ascii().is_empty())
            .enumerate()
            .map(|(n, line)| {
                serde_json::from_slice(line)
                    .map_err(|e| ItemsError::Malformed(format!("item {} of {uri} is not JSON: {e}", first + n as u64)))
            })
            .collect(),
        Format::Json => {
            // The range runs from the first element's start to the last's end; the brackets
            // make it an array again.
            let mut array = Vec::with_capacity(data.len() + 2);
            array.push(b'[');
            array.extend_from_slice(data);
            array.push(b']');
            serde_json::from_slice(&array).map_err(|e| {
                ItemsError::Malformed(format!("the batch at item {first} of {uri} is not a JSON array: {e}"))
            })
        }
        Format::Csv => read_csv(header, data, first, uri),
        Format::Objects => Err(ItemsError::Malformed(format!("{uri}: `objects` are listed, not read from bytes"))),
    }
}

fn read_csv(header: &[u8], data: &[u8], first: u64, uri: &str) -> Result<Vec<Value>, ItemsError> {
    let joined = [header, data].concat();
    let mut reader = csv::ReaderBuilder::new().has_headers(true).from_reader(joined.as_slice());
    let bad = |e: csv::Error| ItemsError::Malformed(format!("the batch at item {first} of {uri} is not CSV: {e}"));
    let names = reader.headers().map_err(bad)?.clone();
    let mut items = Vec::new();
    for record in reader.records() {
        let record = record.map_err(bad)?;
        let item: Map<String, Value> =
            names.iter().zip(record.iter()).map(|(k, v)| (k.to_owned(), Value::String(v.to_owned()))).collect();
        items.push(Value::Object(item));
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn items(format: Format, text: &str) -> Vec<Value> {
        let l = layout(format, text.as_bytes(), "t").unwrap();
        let header = &text.as_bytes()[..l.header_bytes.unwrap_or(0)];
        l.items.iter().flat_map(|r| read(format, header, &text.as_bytes()[r.clone()], 0, "t").unwrap()).collect()
    }

    #[test]
    fn jsonl_lines_are_items_and_blank_lines_are_not() {
        assert_eq!(
            items(Format::Jsonl, "{\"a\":1}\n\n  \n[2]\r\n\"x\""),
            vec![json!({"a": 1}), json!([2]), json!("x")]
        );
        let err = layout(Format::Jsonl, b"1\n\n{\"a\":\n", "s3://b/k.jsonl").unwrap_err().to_string();
        assert!(err.starts_with("line 3 of s3://b/k.jsonl is not JSON: "), "{err}");
    }

    #[test]
    fn csv_records_keep_quotes_and_line_breaks() {
        let text = "id,name\r\n1,\"a, \"\"b\"\"\"\r\n2,\"two\r\nlines\"\r\n3,c";
        let l = layout(Format::Csv, text.as_bytes(), "t").unwrap();
        assert_eq!((l.items.len(), l.header_bytes), (3, Some(9)));
        assert_eq!(&text[l.items[1].clone()], "2,\"two\r\nlines\"\r\n");
        assert_eq!(
            items(Format::Csv, text),
            vec![
                json!({"id": "1", "name": "a, \"b\""}),
                json!({"id": "2", "name": "two\r\nlines"}),
                json!({"id": "3", "name": "c"})
            ]
        );
        assert_eq!(layout(Format::Csv, b"", "t").unwrap().items.len(), 0);
        assert_eq!(layout(Format::Csv, b"a,b\n", "t").unwrap(), Layout { items: vec![], header_bytes: Some(4) });
        assert!(layout(Format::Csv, b"a,b\n1,2,3\n", "t").is_err());
    }

    #[test]
    fn formats_follow_names_unless_given() {
        let at = |u: &str| Location::parse(u, "source").unwrap();
        assert_eq!(resolve(None, &at("s3://b/k.NDJSON"), false).unwrap(), Format::Jsonl);
        assert_eq!(resolve(None, &at("x/y.csv"), false).unwrap(), Format::Csv);
        assert_eq!(resolve(None, &at("x/y.json"), false).unwrap(), Format::Json);
        assert_eq!(resolve(None, &at("s3://b/in/"), true).unwrap(), Format::Objects);
        assert_eq!(resolve(Some(Format::Jsonl), &at("x/y.txt"), false).unwrap(), Format::Jsonl);
        assert!(resolve(None, &at("x/y.txt"), false).unwrap_err().to_string().contains("set `format`"));
    }
}
