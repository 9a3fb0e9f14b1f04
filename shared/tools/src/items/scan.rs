//! Finds the top-level elements of a JSON array without building them, so `split` can hand out
//! byte ranges and a batch reader parses only its own slice. It tracks strings (with their
//! escapes) and nesting depth only; whether each element is valid JSON is checked separately.

use std::ops::Range;

/// The byte range of each top-level element of the array in `data` (surrounding whitespace
/// excluded), or where and why the text is not an array.
pub fn array_elements(data: &[u8]) -> Result<Vec<Range<usize>>, String> {
    let mut i = skip_whitespace(data, 0);
    if data.get(i) != Some(&b'[') {
        return Err(format!("it does not start with `[` (byte {i})"));
    }
    let mut elements = Vec::new();
    i = skip_whitespace(data, i + 1);
    if data.get(i) == Some(&b']') {
        return after_array(data, i + 1, elements);
    }
    loop {
        let start = i;
        let (close, end) = element_end(data, i)?;
        if end == start {
            return Err(format!("element {} is empty (byte {start})", elements.len()));
        }
        elements.push(start..end);
        if data[close] == b']' {
            return after_array(data, close + 1, elements);
        }
        i = skip_whitespace(data, close + 1);
    }
}

/// Scans one element from `start`: the index of the `,` or `]` that ends it and the index just
/// past its last non-whitespace byte.
fn element_end(data: &[u8], start: usize) -> Result<(usize, usize), String> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    let mut end = start;
    for (i, &b) in data.iter().enumerate().skip(start) {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            end = i + 1;
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => depth += 1,
            b',' | b']' if depth == 0 => return Ok((i, end)),
            b']' | b'}' => {
                depth = depth.checked_sub(1).ok_or_else(|| format!("unbalanced `{}` at byte {i}", b as char))?
            }
            _ => {}
        }
        if !b.is_ascii_whitespace() {
            end = i + 1;
        }
    }
    Err(if in_string { "it ends inside a string".into() } else { "it ends before the array closes".into() })
}

fn after_array(data: &[u8], i: usize, elements: Vec<Range<usize>>) -> Result<Vec<Range<usize>>, String> {
    let rest = skip_whitespace(data, i);
    if rest < data.len() {
        return Err(format!("text follows the array (byte {rest})"));
    }
    Ok(elements)
}

fn skip_whitespace(data: &[u8], mut i: usize) -> usize {
    while data.get(i).is_some_and(u8::is_ascii_whitespace) {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(s: &str) -> Vec<&str> {
        array_elements(s.as_bytes()).unwrap().into_iter().map(|r| &s[r]).collect()
    }

    #[test]
    fn elements_are_found_through_strings_and_nesting() {
        let doc = r#" [ 1, "a,]\"b\\", {"k": [1, {"x": "]"}], "q": "\"}"} ,[[]] ,null
            , {"s": "\\"}]  "#;
        assert_eq!(
            texts(doc),
            vec!["1", r#""a,]\"b\\""#, r#"{"k": [1, {"x": "]"}], "q": "\"}"}"#, "[[]]", "null", r#"{"s": "\\"}"#]
        );
        assert_eq!(texts("[]"), Vec::<&str>::new());
        assert_eq!(texts(" [ \n ] \n"), Vec::<&str>::new());
        assert_eq!(texts("[\"\u{e9}t\u{e9}\"]"), vec!["\"\u{e9}t\u{e9}\""]);
    }

    #[test]
    fn what_is_not_an_array_is_named() {
        for (doc, why) in [
            ("{\"a\": 1}", "does not start with `[`"),
            ("", "does not start with `[`"),
            ("[1, 2", "ends before the array closes"),
            ("[\"abc]", "ends inside a string"),
            ("[1,,2]", "element 1 is empty"),
            ("[1,]", "element 1 is empty"),
            ("[1] x", "text follows the array"),
            ("[1}]", "unbalanced `}`"),
        ] {
            let err = array_elements(doc.as_bytes()).unwrap_err();
            assert!(err.contains(why), "{doc}: {err}");
        }
    }
}
