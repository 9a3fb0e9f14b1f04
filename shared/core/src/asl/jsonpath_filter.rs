//! JSONPath filter expressions (`$.items[?(@.price < 10 && @.tags)]`) into a jq condition on
//! the element: `@` paths with field and index steps, literals (numbers, quoted strings,
//! `true`, `false`, `null`), `== != < <= > >=`, `&&`, `||`, `!` and parentheses. A bare `@`
//! path tests that the path exists. As in the JSONPath implementation Step Functions uses, an
//! ordering comparison holds only between two numbers or two strings, and a missing field
//! compares as nothing (it is neither equal nor unequal to a literal: the element is left out).

use super::paths::{Seg, json_str, segments, segs_array, segs_jq};

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    /// An `@` path: its steps after `@`.
    At(Vec<Seg>),
    /// A literal, as jq.
    Lit(String),
    Op(&'static str),
}

/// The filter `src` (what is inside `?(...)`) as a jq condition on the element.
pub(crate) fn filter(src: &str) -> Result<String, String> {
    let toks = lex(src)?;
    let mut p = Parser { toks, at: 0 };
    let out = p.or()?;
    if p.at != p.toks.len() {
        return Err(format!("unexpected `{}` in the filter", show(&p.toks[p.at])));
    }
    Ok(out)
}

fn show(t: &Tok) -> String {
    match t {
        Tok::At(_) => "@...".into(),
        Tok::Lit(l) => l.clone(),
        Tok::Op(o) => (*o).into(),
    }
}

const OPS: [&str; 11] = ["==", "!=", "<=", ">=", "&&", "||", "<", ">", "!", "(", ")"];

fn lex(src: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let s = src.trim();
    let mut i = 0;
    while i < s.len() {
        let rest = &s[i..];
        let c = rest.chars().next().unwrap_or(' ');
        if c.is_whitespace() {
            i += c.len_utf8();
            continue;
        }
        if let Some(op) = OPS.iter().find(|op| rest.starts_with(**op)) {
            out.push(Tok::Op(op));
            i += op.len();
            continue;
        }
        if c == '@' {
            // The path runs to the next space, operator or closing parenthesis outside brackets.
            let mut j = 1;
            let mut depth = 0;
            let bytes = rest.as_bytes();
            while j < bytes.len() {
                match bytes[j] {
                    b'[' => depth += 1,
                    b']' => depth -= 1,
                    b' ' | b'=' | b'!' | b'<' | b'>' | b'&' | b'|' | b')' if depth == 0 => break,
                    _ => {}
                }
                j += 1;
            }
            let segs = segments(&rest[1..j])?;
            if !super::paths::definite(&segs) {
                return Err("an `@` path in a filter has field names and indexes only".into());
            }
            out.push(Tok::At(segs));
            i += j;
            continue;
        }
        if c == '\'' || c == '"' {
            let end = rest[1..].find(c).ok_or("a string is not closed")? + 1;
            out.push(Tok::Lit(json_str(&rest[1..end])));
            i += end + 1;
            continue;
        }
        let end = rest.find(|ch: char| ch.is_whitespace() || "=!<>&|()".contains(ch)).unwrap_or(rest.len());
        let word = &rest[..end];
        if word.is_empty() {
            return Err(format!("`{rest}` cannot be read"));
        }
        match word {
            "true" | "false" | "null" => out.push(Tok::Lit(word.to_owned())),
            w if w.parse::<f64>().is_ok() => out.push(Tok::Lit(w.to_owned())),
            w => {
                return Err(format!(
                    "`{w}`: a filter compares `@` paths with numbers, quoted strings, true, false or null"
                ));
            }
        }
        i += end;
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    at: usize,
}

impl Parser {
    fn peek(&self, op: &str) -> bool {
        matches!(self.toks.get(self.at), Some(Tok::Op(o)) if *o == op)
    }

    fn or(&mut self) -> Result<String, String> {
        let mut l = self.and()?;
        while self.peek("||") {
            self.at += 1;
            l = format!("({l} or {})", self.and()?);
        }
        Ok(l)
    }

    fn and(&mut self) -> Result<String, String> {
        let mut l = self.not()?;
        while self.peek("&&") {
            self.at += 1;
            l = format!("({l} and {})", self.not()?);
        }
        Ok(l)
    }

    fn not(&mut self) -> Result<String, String> {
        if self.peek("!") {
            self.at += 1;
            return Ok(format!("({} | not)", self.not()?));
        }
        self.cmp()
    }

    fn cmp(&mut self) -> Result<String, String> {
        if self.peek("(") {
            self.at += 1;
            let inner = self.or()?;
            if !self.peek(")") {
                return Err("a `(` is not closed".into());
            }
            self.at += 1;
            return Ok(inner);
        }
        let left = self.operand()?;
        let op = match self.toks.get(self.at) {
            Some(Tok::Op(o)) if ["==", "!=", "<", "<=", ">", ">="].contains(o) => *o,
            // A bare `@` path: the element has it.
            _ => {
                return match left {
                    Operand::At(segs) => Ok(format!("has_path({})", segs_array(&segs))),
                    Operand::Lit(l) => Ok(format!("({l} | . != null and . != false)")),
                };
            }
        };
        self.at += 1;
        let right = self.operand()?;
        // A missing field holds for no comparison: it is guarded by `has_path`.
        let mut guards = Vec::new();
        let mut value = |o: &Operand| match o {
            Operand::At(segs) => {
                guards.push(format!("has_path({})", segs_array(segs)));
                format!("({})", segs_jq(segs))
            }
            Operand::Lit(l) => l.clone(),
        };
        let (a, b) = (value(&left), value(&right));
        let test = match op {
            "==" => format!("{a} == {b}"),
            "!=" => format!("{a} != {b}"),
            _ => format!(
                "(({a}) as $fa | ({b}) as $fb | (($fa | type) == ($fb | type)) and (($fa | type) == \"number\" or ($fa | type) == \"string\") and $fa {op} $fb)"
            ),
        };
        guards.push(format!("({test})"));
        Ok(format!("({})", guards.join(" and ")))
    }

    fn operand(&mut self) -> Result<Operand, String> {
        let t = self.toks.get(self.at).cloned().ok_or("the filter ends too soon")?;
        self.at += 1;
        match t {
            Tok::At(segs) => Ok(Operand::At(segs)),
            Tok::Lit(l) => Ok(Operand::Lit(l)),
            Tok::Op(o) => Err(format!("unexpected `{o}` in the filter")),
        }
    }
}

enum Operand {
    At(Vec<Seg>),
    Lit(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_become_conditions_on_the_element() {
        assert_eq!(
            filter("@.price < 10").unwrap(),
            r#"(has_path(["price"]) and ((((.price)) as $fa | (10) as $fb | (($fa | type) == ($fb | type)) and (($fa | type) == "number" or ($fa | type) == "string") and $fa < $fb)))"#
        );
        assert_eq!(filter("@.tags").unwrap(), r#"has_path(["tags"])"#);
        assert!(filter("@.a == 'x' && !(@.b)").unwrap().contains(" and "));
        assert!(filter("@.a =~ /x/").is_err());
        assert!(filter("@.a[*] == 1").is_err());
    }
}
