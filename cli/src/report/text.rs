//! Text helpers every part of the page shares: HTML escaping and the way times, durations and
//! JSON values are written. A leaf module, so the SVG and HTML builders can all use it.

use serde_json::Value;

/// `s` made safe as HTML text and as a quoted attribute value: run data is user data (an email
/// body may hold `<script>`), so every string from the run goes through here.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// A JSON value pretty-printed and escaped, for a `<pre>`.
pub fn json_pre(v: &Value) -> String {
    esc(&serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string()))
}

/// A JSON value on one line, escaped; strings without their quotes.
pub fn json_inline(v: &Value) -> String {
    match v {
        Value::String(s) => esc(s),
        other => esc(&other.to_string()),
    }
}

/// At most `max` characters of `s`, with `…` when cut (labels inside fixed-width SVG boxes).
pub fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Milliseconds since the epoch as RFC 3339 UTC with milliseconds.
pub fn time(ms: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_millis(t).to_string()
}

/// A duration in the largest units that keep it readable: `850 ms`, `2.3 s`, `4 min 12 s`,
/// `3 h 5 min`, `2 d 4 h`.
pub fn duration(ms: u64) -> String {
    const S: u64 = 1_000;
    const MIN: u64 = 60 * S;
    const H: u64 = 60 * MIN;
    const D: u64 = 24 * H;
    match ms {
        0..S => format!("{ms} ms"),
        S..MIN => format!("{:.1} s", ms as f64 / S as f64),
        MIN..H => format!("{} min {} s", ms / MIN, (ms % MIN) / S),
        H..D => format!("{} h {} min", ms / H, (ms % H) / MIN),
        _ => format!("{} d {} h", ms / D, (ms % D) / H),
    }
}

/// A dollar amount with enough digits for model calls that cost fractions of a cent.
pub fn usd(v: f64) -> String {
    if v == 0.0 || v.abs() >= 0.01 { format!("${v:.2}") } else { format!("${v:.6}") }
}

/// The human words for a status.
pub fn status_label(status: &str) -> String {
    status.replace('_', " ")
}

/// A status as a coloured badge.
pub fn badge(status: &str) -> String {
    let s = esc(status);
    format!(r#"<span class="badge st-{s}">{}</span>"#, esc(&status_label(status)))
}

/// `+<offset from the run's start>` with the UTC time as a tooltip.
pub fn offset(at: u64, t0: u64) -> String {
    format!(r#"<time title="{}">+{}</time>"#, esc(&time(at)), esc(&duration(at.saturating_sub(t0))))
}

/// A value in a collapsed block.
pub fn details(summary: &str, v: &Value) -> String {
    format!("<details><summary>{}</summary><pre>{}</pre></details>", esc(summary), json_pre(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_leaves_no_markup_from_the_run() {
        let hostile = r#"<script>alert("x")</script> & <img src=x onerror='y'>"#;
        let out = esc(hostile);
        assert_eq!(
            out,
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &lt;img src=x onerror=&#39;y&#39;&gt;"
        );
        assert!(!out.contains('<') && !out.contains('>') && !out.contains('"') && !out.contains('\''));
    }

    #[test]
    fn json_is_escaped_after_it_is_printed() {
        let v = serde_json::json!({"body": "</pre><script>x</script>"});
        let out = json_pre(&v);
        assert!(out.contains("&lt;/pre&gt;&lt;script&gt;"), "{out}");
        assert!(!out.contains("</pre>"), "{out}");
    }

    #[test]
    fn durations_pick_readable_units() {
        assert_eq!(duration(850), "850 ms");
        assert_eq!(duration(2_340), "2.3 s");
        assert_eq!(duration(252_000), "4 min 12 s");
        assert_eq!(duration(3 * 3_600_000 + 5 * 60_000), "3 h 5 min");
        assert_eq!(duration(2 * 86_400_000 + 4 * 3_600_000), "2 d 4 h");
    }

    #[test]
    fn badges_escape_and_humanise_the_status() {
        assert_eq!(badge("fell_back"), r#"<span class="badge st-fell_back">fell back</span>"#);
        assert!(!badge("<x>").contains("<x>"));
    }

    #[test]
    fn clip_marks_what_it_cuts() {
        assert_eq!(clip("approve_refund", 20), "approve_refund");
        assert_eq!(clip("a_very_long_step_identifier", 10), "a_very_lo…");
    }
}
