//! The States Language's intrinsic functions (`States.Format('{} x', $.a)`, `States.Array(...)`,
//! ...) as jq. `States.UUID` and `States.MathRandom` without a seed are drawn from a hash of the
//! run id, the state, the field and the item or iteration, so a replay gives the same values.

use std::cell::Cell;

use super::paths::{Cx, json_str, path};

/// Where a call is written (`Parameters.Id.$`), and how many values it drew so far: what tells
/// two `States.UUID()` of one state apart.
struct Site<'a> {
    at: &'a str,
    drawn: Cell<u32>,
}

impl Site<'_> {
    /// jq giving a 64-hex-digit hash unique to this draw in this run, state, item and iteration.
    fn draw(&self, cx: &Cx<'_>) -> String {
        let k = self.drawn.get();
        self.drawn.set(k + 1);
        draw(cx.state, self.at, k)
    }
}

/// jq giving a 64-hex-digit hash unique to draw `k` of field `at` of `state`, in this run, item
/// and iteration (`States.UUID`, `States.MathRandom`, JSONata's `$uuid` and `$random`).
pub(crate) fn draw(state: &str, at: &str, k: u32) -> String {
    format!("([.run.id, {}, {}, {k}, .index, .iteration] | tojson | hash(\"SHA-256\"))", json_str(state), json_str(at))
}

/// jq reading the first 12 hex digits of the hash `h` as a number (48 bits: exact in a double).
pub(crate) fn hex_number(h: &str) -> String {
    format!("(reduce ({h}[0:12] | explode[]) as $c (0; . * 16 + (if $c < 58 then $c - 48 else $c - 87 end)))")
}

/// One argument of an intrinsic call.
#[derive(Debug, Clone, PartialEq)]
enum Arg {
    /// A quoted string, with `{}` placeholders kept apart from escaped braces.
    Str(Vec<Piece>),
    /// A number, as written.
    Num(String),
    /// `true`, `false` or `null`.
    Lit(String),
    /// A `$` or `$$` path.
    Path(String),
    /// A nested call.
    Call(String, Vec<Arg>),
}

/// Part of a string argument.
#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Text(String),
    Placeholder,
}

/// A whole intrinsic call (`States.X(...)`), written at field `at`, as jq reading paths from
/// `input`.
pub(crate) fn call(src: &str, input: &str, cx: &Cx<'_>, at: &str) -> Result<String, String> {
    let site = Site { at, drawn: Cell::new(0) };
    let mut p = Parser { s: src.as_bytes(), src, i: 0 };
    let arg = p.arg()?;
    p.ws();
    if p.i != p.s.len() {
        return Err(format!("`{src}`: unexpected text after the call at character {}", p.i + 1));
    }
    match arg {
        Arg::Call(..) => jq(&arg, input, cx, &site),
        _ => Err(format!("`{src}` is not an intrinsic function call")),
    }
}

fn jq(a: &Arg, input: &str, cx: &Cx<'_>, site: &Site<'_>) -> Result<String, String> {
    Ok(match a {
        Arg::Str(pieces) => json_str(&text_of(pieces)),
        Arg::Num(n) | Arg::Lit(n) => n.clone(),
        Arg::Path(p) => path(p, input, cx)?,
        Arg::Call(name, args) => function(name, args, input, cx, site)?,
    })
}

fn text_of(pieces: &[Piece]) -> String {
    pieces
        .iter()
        .map(|p| match p {
            Piece::Text(t) => t.as_str(),
            Piece::Placeholder => "{}",
        })
        .collect()
}

fn function(name: &str, args: &[Arg], input: &str, cx: &Cx<'_>, site: &Site<'_>) -> Result<String, String> {
    let a = |i: usize| -> Result<String, String> {
        args.get(i).map(|x| jq(x, input, cx, site)).unwrap_or_else(|| Err(format!("`{name}` needs argument {}", i + 1)))
    };
    let arity = |n: usize| -> Result<(), String> {
        if args.len() == n { Ok(()) } else { Err(format!("`{name}` takes {n} argument(s), got {}", args.len())) }
    };
    Ok(match name {
        "States.Format" => {
            let Some(Arg::Str(pieces)) = args.first() else {
                return Err("`States.Format` takes a quoted template string first".into());
            };
            let mut out = String::from("\"");
            let mut next = 1;
            for piece in pieces {
                match piece {
                    Piece::Text(t) => {
                        let quoted = json_str(t);
                        out.push_str(&quoted[1..quoted.len() - 1]);
                    }
                    Piece::Placeholder => {
                        out.push_str(&format!("\\({})", a(next)?));
                        next += 1;
                    }
                }
            }
            if next != args.len() {
                return Err(format!("`States.Format` has {} placeholders and {} values", next - 1, args.len() - 1));
            }
            out.push('"');
            out
        }
        "States.StringToJson" => {
            arity(1)?;
            format!("({} | fromjson)", a(0)?)
        }
        "States.JsonToString" => {
            arity(1)?;
            format!("({} | tojson)", a(0)?)
        }
        "States.Array" => {
            let parts: Result<Vec<String>, String> = (0..args.len()).map(a).collect();
            format!("[{}]", parts?.join(", "))
        }
        "States.ArrayPartition" => {
            arity(2)?;
            format!("(({}) as $a | ({}) as $n | [range(0; $a | length; $n) as $i | $a[$i:$i + $n]])", a(0)?, a(1)?)
        }
        "States.ArrayContains" => {
            arity(2)?;
            format!("(({}) as $a | ({}) as $v | any($a[]; . == $v))", a(0)?, a(1)?)
        }
        "States.ArrayRange" => {
            arity(3)?;
            format!("[range({}; ({}) + 1; {})]", a(0)?, a(1)?, a(2)?)
        }
        "States.ArrayGetItem" => {
            arity(2)?;
            format!("(({}) as $a | ({}) as $i | $a[$i])", a(0)?, a(1)?)
        }
        "States.ArrayLength" => {
            arity(1)?;
            format!("({} | length)", a(0)?)
        }
        "States.ArrayUnique" => {
            arity(1)?;
            format!("(reduce ({})[] as $x ([]; if any(.[]; . == $x) then . else . + [$x] end))", a(0)?)
        }
        "States.Base64Encode" => {
            arity(1)?;
            format!("({} | @base64)", a(0)?)
        }
        "States.Base64Decode" => {
            arity(1)?;
            format!("({} | @base64d)", a(0)?)
        }
        "States.JsonMerge" => {
            arity(3)?;
            if !matches!(args.get(2), Some(Arg::Lit(l)) if l == "false") {
                return Err("`States.JsonMerge` supports only a shallow merge (third argument `false`)".into());
            }
            format!("(({}) + ({}))", a(0)?, a(1)?)
        }
        "States.MathAdd" => {
            arity(2)?;
            format!("(({}) + ({}))", a(0)?, a(1)?)
        }
        "States.StringSplit" => {
            arity(2)?;
            // The States Language splits at every character of the delimiter string, and leaves
            // out empty parts.
            format!(
                "(({}) as $s | ({}) as $d | reduce ($d | split(\"\"))[] as $c ([$s]; map(split($c)) | add) | map(select(. != \"\")))",
                a(0)?,
                a(1)?
            )
        }
        "States.UUID" => {
            arity(0)?;
            format!("({} | uuid_of)", site.draw(cx))
        }
        "States.MathRandom" => {
            if !(2..=3).contains(&args.len()) {
                return Err(format!("`{name}` takes 2 or 3 arguments (start, end, seed), got {}", args.len()));
            }
            let hash = match args.len() {
                3 => format!("([{}] | tojson | hash(\"SHA-256\"))", a(2)?),
                _ => site.draw(cx),
            };
            format!("(({}) as $lo | ({}) as $hi | $lo + ({} % ($hi - $lo)))", a(0)?, a(1)?, hex_number(&hash))
        }
        "States.Hash" => {
            arity(2)?;
            // The algorithm is bound first: it may read the input (`.steps`) too.
            format!("(({}) as $asl_h | ({}) | hash($asl_h))", a(1)?, a(0)?)
        }
        other => return Err(format!("unknown intrinsic function `{other}`")),
    })
}

struct Parser<'a> {
    s: &'a [u8],
    src: &'a str,
    i: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn arg(&mut self) -> Result<Arg, String> {
        self.ws();
        let Some(&c) = self.s.get(self.i) else { return Err(format!("`{}`: an argument is missing", self.src)) };
        match c {
            b'\'' => self.string(),
            b'$' => {
                let start = self.i;
                let mut depth = 0;
                while let Some(&c) = self.s.get(self.i) {
                    match c {
                        b'[' => depth += 1,
                        b']' => depth -= 1,
                        b',' | b')' if depth == 0 => break,
                        _ => {}
                    }
                    self.i += 1;
                }
                Ok(Arg::Path(self.src[start..self.i].trim().to_owned()))
            }
            b'-' | b'0'..=b'9' => {
                let start = self.i;
                while self.s.get(self.i).is_some_and(|c| c.is_ascii_digit() || matches!(c, b'.' | b'-' | b'e' | b'E')) {
                    self.i += 1;
                }
                Ok(Arg::Num(self.src[start..self.i].to_owned()))
            }
            _ => {
                let start = self.i;
                while self.s.get(self.i).is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'.' || *c == b'_') {
                    self.i += 1;
                }
                let word = &self.src[start..self.i];
                if matches!(word, "true" | "false" | "null") {
                    return Ok(Arg::Lit(word.to_owned()));
                }
                if word.is_empty() {
                    return Err(format!("`{}`: unexpected `{}` at character {}", self.src, c as char, self.i + 1));
                }
                self.ws();
                if self.s.get(self.i) != Some(&b'(') {
                    return Err(format!("`{}`: `{word}` is not a value (quote strings with ')", self.src));
                }
                self.i += 1;
                let mut args = Vec::new();
                self.ws();
                if self.s.get(self.i) == Some(&b')') {
                    self.i += 1;
                    return Ok(Arg::Call(word.to_owned(), args));
                }
                loop {
                    args.push(self.arg()?);
                    self.ws();
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b')') => {
                            self.i += 1;
                            return Ok(Arg::Call(word.to_owned(), args));
                        }
                        _ => return Err(format!("`{}`: `{word}(` is not closed", self.src)),
                    }
                }
            }
        }
    }

    fn string(&mut self) -> Result<Arg, String> {
        self.i += 1;
        let mut pieces = Vec::new();
        let mut text = String::new();
        let rest = &self.src[self.i..];
        let mut chars = rest.char_indices();
        while let Some((k, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, e)) => text.push(e),
                    None => break,
                },
                '{' if rest[k..].starts_with("{}") => {
                    chars.next();
                    if !text.is_empty() {
                        pieces.push(Piece::Text(std::mem::take(&mut text)));
                    }
                    pieces.push(Piece::Placeholder);
                }
                '\'' => {
                    self.i += k + 1;
                    if !text.is_empty() {
                        pieces.push(Piece::Text(text));
                    }
                    return Ok(Arg::Str(pieces));
                }
                c => text.push(c),
            }
        }
        Err(format!("`{}`: a string is not closed with '", self.src))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(src: &str) -> Result<String, String> {
        call(src, "$in", &Cx { state: "S", token: None, map_item: false }, "Parameters.x.$")
    }

    #[test]
    fn intrinsics_become_jq() {
        let p = |k: &str| path(&format!("$.{k}"), "$in", &Cx { state: "S", token: None, map_item: false }).unwrap();
        assert_eq!(
            c("States.Format('Hello {}, {}!', $.a, $.b)").unwrap(),
            format!(r#""Hello \({}), \({})!""#, p("a"), p("b"))
        );
        assert_eq!(c(r"States.Format('a \{\} {}', 'x')").unwrap(), r#""a {} \("x")""#);
        assert_eq!(c("States.StringToJson($.s)").unwrap(), format!("({} | fromjson)", p("s")));
        assert_eq!(c("States.Array(1, 'a', $.x, null)").unwrap(), format!(r#"[1, "a", {}, null]"#, p("x")));
        assert_eq!(c("States.MathAdd($.n, -1)").unwrap(), format!("(({}) + (-1))", p("n")));
        assert_eq!(c("States.JsonToString(States.Array(1))").unwrap(), "([1] | tojson)");
        assert!(c("States.UUID()").unwrap().ends_with("| uuid_of)"));
        assert!(c("States.UUID(1)").is_err());
        assert!(c("States.MathRandom(1)").is_err());
        assert!(c("States.Nope(1)").unwrap_err().contains("unknown intrinsic"));
        assert!(c("States.Format('{}')").is_err());
        assert!(c("States.Array(1").is_err());
    }
}
