//! Just enough XML for AWS's query and REST-XML responses: elements and text into JSON
//! (an element with children becomes an object, one holding only text its string; a name that
//! repeats becomes a list). Attributes, namespaces and processing instructions are skipped.

use serde_json::{Map, Value};

/// The document's root element as `{name: value}`, or `None` when it is not well-formed.
pub fn to_json(text: &str) -> Option<Value> {
    let mut p = Parser { s: text, i: 0 };
    p.skip_prolog();
    let (name, value) = p.element()?;
    let mut m = Map::new();
    m.insert(name, value);
    Some(Value::Object(m))
}

struct Parser<'a> {
    s: &'a str,
    i: usize,
}

impl<'a> Parser<'a> {
    fn rest(&self) -> &'a str {
        &self.s[self.i..]
    }

    fn skip_prolog(&mut self) {
        loop {
            let t = self.rest().trim_start();
            self.i = self.s.len() - t.len();
            if t.starts_with("<?") || t.starts_with("<!") {
                match t.find('>') {
                    Some(end) => self.i += end + 1,
                    None => return,
                }
            } else {
                return;
            }
        }
    }

    /// `<name ...>children or text</name>` or `<name .../>`.
    fn element(&mut self) -> Option<(String, Value)> {
        let t = self.rest().trim_start();
        self.i = self.s.len() - t.len();
        if !t.starts_with('<') {
            return None;
        }
        let end = t.find('>')?;
        let tag = &t[1..end];
        let self_closing = tag.ends_with('/');
        let name = tag.trim_end_matches('/').split_whitespace().next()?.to_owned();
        self.i += end + 1;
        if self_closing {
            return Some((name, Value::String(String::new())));
        }
        let mut children: Map<String, Value> = Map::new();
        let mut text = String::new();
        loop {
            let t = self.rest();
            if t.starts_with("</") {
                let close = t.find('>')?;
                self.i += close + 1;
                break;
            }
            if t.starts_with("<!--") {
                self.i += t.find("-->")? + 3;
                continue;
            }
            if t.starts_with('<') {
                let (k, v) = self.element()?;
                match children.get_mut(&k) {
                    Some(Value::Array(list)) => list.push(v),
                    Some(existing) => {
                        let first = existing.take();
                        *existing = Value::Array(vec![first, v]);
                    }
                    None => {
                        children.insert(k, v);
                    }
                }
                continue;
            }
            let next = t.find('<')?;
            text.push_str(&t[..next]);
            self.i += next;
        }
        Some((name, if children.is_empty() { Value::String(unescape(&text)) } else { Value::Object(children) }))
    }
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&apos;", "'").replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn query_responses_become_json() {
        let x = r#"<?xml version="1.0"?><PublishResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/">
            <PublishResult><MessageId>m&amp;1</MessageId></PublishResult>
            <ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></PublishResponse>"#;
        assert_eq!(
            to_json(x).unwrap(),
            json!({"PublishResponse": {"PublishResult": {"MessageId": "m&1"}, "ResponseMetadata": {"RequestId": "r"}}})
        );
        let e = "<Error><Code>NoSuchKey</Code><Message>gone</Message><Key>a</Key><Key>b</Key><Empty/></Error>";
        assert_eq!(
            to_json(e).unwrap(),
            json!({"Error": {"Code": "NoSuchKey", "Message": "gone", "Key": ["a", "b"], "Empty": ""}})
        );
        assert!(to_json("not xml").is_none());
    }
}
