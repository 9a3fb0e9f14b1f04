//! The kinds a step or a run fails with. A kind is what `retry.on` matches, what the circuit
//! breaker counts and what journals, audit records and queue messages store, so it is written as
//! the same plain string everywhere (`http_5xx`, `timeout`, ...); this type gives the built-in
//! ones a name the compiler checks and keeps the facts about them (which are transient, which
//! HTTP status maps to which) in one place.

use std::convert::Infallible;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Declares the built-in kinds once: the variants, their names and the list of them come from
/// one table, so a kind cannot be added without a name or left out of [`ErrorKind::BUILT_IN`].
macro_rules! error_kinds {
    ($($(#[doc = $doc:literal])+ $variant:ident => $name:literal,)+) => {
        /// Why a step attempt or a run failed: a built-in kind, or a kind baton does not know.
        ///
        /// Equality and hashing go by the name, as serialisation does, so `Other("timeout")`
        /// (built by hand) equals [`ErrorKind::Timeout`].
        #[derive(Debug, Clone)]
        pub enum ErrorKind {
            $($(#[doc = $doc])+ $variant,)+
            /// A kind baton never produces itself, such as one a mocks file scripts
            /// (`- error: my_kind`); kept by name so it reads back as written.
            Other(String),
        }

        impl ErrorKind {
            /// Every built-in kind, in the order messages list them.
            pub const BUILT_IN: &'static [ErrorKind] = &[$(ErrorKind::$variant),+];

            /// The kind's name, as journals, audit records and `retry.on` spell it.
            pub fn as_str(&self) -> &str {
                match self {
                    $(Self::$variant => $name,)+
                    Self::Other(name) => name,
                }
            }

            /// The built-in kind of this name, if there is one.
            fn built_in(name: &str) -> Option<Self> {
                match name {
                    $($name => Some(Self::$variant),)+
                    _ => None,
                }
            }
        }
    };
}

error_kinds! {
    /// The server refused the request (a 4xx other than 429): the same request fails again.
    Http4xx => "http_4xx",
    /// The server asked the caller to slow down (HTTP 429, or a provider's throttling).
    Http429 => "http_429",
    /// The server failed (HTTP 5xx, or a provider's own server-side failure).
    Http5xx => "http_5xx",
    /// No answer in time: the call's own deadline or the provider's.
    Timeout => "timeout",
    /// The request could not reach the server (refused connection, DNS, TLS, credentials).
    Connect => "connect",
    /// A jq expression of the step could not be evaluated.
    Expression => "expression",
    /// A jq expression of the step went over its evaluation budget (steps, bytes of values
    /// built, or recursion depth) and was stopped.
    ExpressionLimit => "expression_limit",
    /// The call was wrong before anything was sent (bad arguments, a missing setting).
    Tool => "tool",
    /// The model gave no answer matching the output schema, repairs included.
    LlmInvalidOutput => "llm_invalid_output",
    /// The request did not fit the model's context window, even after one retry trimmed to fit
    /// (repair history dropped, the prompt shortened).
    LlmContextExceeded => "llm_context_exceeded",
    /// The network policy refused the address the call would have connected to.
    NetworkRefused => "network_refused",
    /// A child run the step started failed or was cancelled.
    ChildFailed => "child_failed",
    /// The attempt's message (its call to a worker, or its result) went to a dead-letter queue
    /// after its receives ran out: the workers or the coordinator could not handle it.
    DeadLettered => "dead_lettered",
    /// The response body was larger than the call's `max_response_bytes` (10 MiB unless set);
    /// the call stopped reading it there.
    ResponseTooLarge => "response_too_large",
    /// The connection's circuit breaker is open, so the call failed without being sent.
    CircuitOpen => "circuit_open",
    /// `fallback: cache` found no cached response for the step's arguments.
    CacheMiss => "cache_miss",
    /// A loop used its iterations without its `until` becoming true.
    LoopExhausted => "loop_exhausted",
    /// A reviewer rejected a loop that had reached its bound.
    Rejected => "rejected",
    /// An agent used its turns without answering.
    AgentMaxTurns => "agent_max_turns",
    /// An agent went over its `budget` (tokens, USD, tool calls or wall time).
    BudgetExceeded => "budget_exceeded",
    /// More items of a distributed map (`items_from`) failed than it tolerates.
    ToleranceExceeded => "tolerance_exceeded",
    /// The run was cancelled (a run's error, never a step's).
    Cancelled => "cancelled",
}

impl ErrorKind {
    /// True for failures that say the service is down or overloaded rather than the request
    /// wrong, so the same call may succeed later: a step retries them by default and they count
    /// against a connection's circuit breaker.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Http5xx | Self::Http429 | Self::Timeout | Self::Connect)
    }

    /// True for the kinds `retry.on` may name: how a tool attempt fails. The ends of a loop, an
    /// agent, a cache lookup or a run concern the step as a whole, which another attempt would
    /// not change, and a lower-case kind baton does not know is a typo a policy would never
    /// match. A workflow's own capitalised kinds ([`ErrorKind::is_named_error`]) are retryable.
    pub fn is_retryable(&self) -> bool {
        self.is_named_error()
            || matches!(
                self,
                Self::Http4xx
                    | Self::Http429
                    | Self::Http5xx
                    | Self::Timeout
                    | Self::Connect
                    | Self::ResponseTooLarge
                    | Self::Expression
                    | Self::ExpressionLimit
                    | Self::Tool
                    | Self::LlmInvalidOutput
                    | Self::LlmContextExceeded
                    | Self::NetworkRefused
                    | Self::ChildFailed
                    | Self::DeadLettered
                    | Self::CircuitOpen
            )
    }

    /// True for a kind a workflow names itself: a capitalised name of letters, digits, `_` and
    /// `.` (`OutOfStock`, `Payments.Declined`, AWS names). baton's own kinds are snake_case, so
    /// such a name never shadows one, and a lower-case typo of a built-in kind is still caught.
    pub fn is_named_error(&self) -> bool {
        let Self::Other(name) = self else { return false };
        name.len() <= 128
            && name.starts_with(|c: char| c.is_ascii_uppercase())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
            && !name.ends_with('.')
            && !name.contains("..")
    }

    /// The kind `fail(kind; message)` in an expression raises: a workflow's own capitalised name
    /// ([`ErrorKind::is_named_error`]) or a built-in kind a tool attempt fails with; the ends of
    /// a loop, an agent, a budget or a run are the engine's to decide, and an unknown lower-case
    /// name is most likely a typo.
    pub fn raisable(name: &str) -> Result<ErrorKind, String> {
        let kind = ErrorKind::from(name);
        if kind.is_retryable() && kind != ErrorKind::ExpressionLimit {
            Ok(kind)
        } else {
            Err(format!(
                "`{name}` is not a kind an expression may raise: name your own with a capital letter (`OutOfStock`, `Payments.Declined`) or use a kind a tool fails with (`tool`, `timeout`, `http_5xx`, ...)"
            ))
        }
    }

    /// True for a kind named the way AWS and the States Language name errors:
    /// `Service.ErrorName` (`DynamoDB.ConditionalCheckFailedException`,
    /// `Lambda.TooManyRequestsException`) or `States.<Name>`. The `aws` tool fails with such
    /// kinds and an imported Step Functions definition retries on them, so `retry.on` takes them.
    pub fn is_aws_name(&self) -> bool {
        let Self::Other(name) = self else { return false };
        let mut parts = name.split('.');
        let head = parts.next().unwrap_or_default();
        let rest: Vec<&str> = parts.collect();
        head.chars().next().is_some_and(|c| c.is_ascii_uppercase())
            && head.chars().all(|c| c.is_ascii_alphanumeric())
            && !rest.is_empty()
            && rest.iter().all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
    }

    /// Whether a step that failed with `kind` is covered by this entry of `retry.on`. Names
    /// match themselves; the States Language's wildcards are kept: `States.ALL` matches every
    /// kind, `States.TaskFailed` every kind but `timeout`, `States.Timeout` matches `timeout`.
    pub fn covers(&self, kind: &ErrorKind) -> bool {
        match self.as_str() {
            "States.ALL" => true,
            "States.TaskFailed" => *kind != Self::Timeout,
            "States.Timeout" => *kind == Self::Timeout || kind.as_str() == "States.Timeout",
            // baton fails a missed heartbeat with `timeout`, so this covers every timeout.
            "States.HeartbeatTimeout" => *kind == Self::Timeout || kind.as_str() == "States.HeartbeatTimeout",
            _ => self == kind,
        }
    }

    /// The transient kinds, which a step retries when its `retry.on` is not given.
    pub fn transient() -> impl Iterator<Item = ErrorKind> {
        Self::BUILT_IN.iter().filter(|k| k.is_transient()).cloned()
    }

    /// The names `retry.on` accepts, in the order messages list them.
    pub fn retryable_names() -> impl Iterator<Item = &'static str> {
        Self::BUILT_IN.iter().filter(|k| k.is_retryable()).map(ErrorKind::as_str)
    }

    /// The kind of a response with this HTTP status, or `None` for success (and the 1xx/3xx a
    /// client does not end on); every HTTP-speaking tool and provider maps statuses alike, so a
    /// step's `retry.on` means the same whichever one it calls.
    pub fn from_http_status(status: u16) -> Option<ErrorKind> {
        match status {
            429 => Some(Self::Http429),
            500..=599 => Some(Self::Http5xx),
            400..=499 => Some(Self::Http4xx),
            _ => None,
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&str> for ErrorKind {
    fn from(name: &str) -> Self {
        Self::built_in(name).unwrap_or_else(|| Self::Other(name.to_owned()))
    }
}

impl From<String> for ErrorKind {
    fn from(name: String) -> Self {
        Self::built_in(&name).unwrap_or(Self::Other(name))
    }
}

impl From<&String> for ErrorKind {
    fn from(name: &String) -> Self {
        Self::from(name.as_str())
    }
}

impl From<&ErrorKind> for ErrorKind {
    fn from(kind: &ErrorKind) -> Self {
        kind.clone()
    }
}

impl From<ErrorKind> for String {
    fn from(kind: ErrorKind) -> Self {
        match kind {
            ErrorKind::Other(name) => name,
            known => known.as_str().to_owned(),
        }
    }
}

impl FromStr for ErrorKind {
    // Any name is a kind: one baton does not know is a user's own.
    type Err = Infallible;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Ok(Self::from(name))
    }
}

impl AsRef<str> for ErrorKind {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for ErrorKind {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for ErrorKind {}

impl Hash for ErrorKind {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl PartialEq<str> for ErrorKind {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for ErrorKind {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for ErrorKind {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<ErrorKind> for str {
    fn eq(&self, other: &ErrorKind) -> bool {
        self == other.as_str()
    }
}

impl PartialEq<ErrorKind> for &str {
    fn eq(&self, other: &ErrorKind) -> bool {
        *self == other.as_str()
    }
}

impl PartialEq<ErrorKind> for String {
    fn eq(&self, other: &ErrorKind) -> bool {
        self == other.as_str()
    }
}

impl Serialize for ErrorKind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Name;

        impl Visitor<'_> for Name {
            type Value = ErrorKind;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an error kind name")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<ErrorKind, E> {
                Ok(ErrorKind::from(v))
            }

            fn visit_string<E: de::Error>(self, v: String) -> Result<ErrorKind, E> {
                Ok(ErrorKind::from(v))
            }
        }

        d.deserialize_str(Name)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    #[test]
    fn aws_names_are_retryable_and_the_states_wildcards_cover_kinds() {
        for name in ["DynamoDB.ConditionalCheckFailedException", "Lambda.TooManyRequestsException", "States.ALL"] {
            assert!(ErrorKind::from(name).is_retryable(), "{name}");
        }
        for name in ["timout", "dynamodb.x", "Lambda.", ".X", "A.B C"] {
            assert!(!ErrorKind::from(name).is_retryable(), "{name}");
        }
        let all = ErrorKind::from("States.ALL");
        let failed = ErrorKind::from("States.TaskFailed");
        let timeout = ErrorKind::from("States.Timeout");
        let aws = ErrorKind::from("S3.NoSuchKey");
        assert!(all.covers(&ErrorKind::Timeout) && all.covers(&aws) && all.covers(&ErrorKind::Http5xx));
        assert!(failed.covers(&aws) && failed.covers(&ErrorKind::Http4xx) && !failed.covers(&ErrorKind::Timeout));
        assert!(timeout.covers(&ErrorKind::Timeout) && !timeout.covers(&aws));
        assert!(aws.covers(&ErrorKind::from("S3.NoSuchKey")) && !aws.covers(&ErrorKind::from("S3.NoSuchBucket")));
    }

    use serde_json::{Value, json};

    use super::*;

    #[test]
    fn every_built_in_kind_serialises_as_its_name_and_reads_back_as_itself() {
        for kind in ErrorKind::BUILT_IN {
            let v = serde_json::to_value(kind).expect("serialises");
            assert_eq!(v, Value::String(kind.as_str().to_owned()));
            let back: ErrorKind = serde_json::from_value(v).expect("deserialises");
            assert!(!matches!(back, ErrorKind::Other(_)), "`{kind}` read back as Other");
            assert_eq!(&back, kind);
            assert_eq!(ErrorKind::from(kind.as_str()), *kind);
            assert_eq!(kind.as_str().parse::<ErrorKind>(), Ok(kind.clone()));
            assert_eq!(kind.to_string(), kind.as_str());
        }
    }

    #[test]
    fn the_names_are_the_ones_stored_journals_hold() {
        let names: Vec<&str> = ErrorKind::BUILT_IN.iter().map(ErrorKind::as_str).collect();
        assert_eq!(
            names,
            [
                "http_4xx",
                "http_429",
                "http_5xx",
                "timeout",
                "connect",
                "expression",
                "expression_limit",
                "tool",
                "llm_invalid_output",
                "llm_context_exceeded",
                "network_refused",
                "child_failed",
                "dead_lettered",
                "response_too_large",
                "circuit_open",
                "cache_miss",
                "loop_exhausted",
                "rejected",
                "agent_max_turns",
                "budget_exceeded",
                "tolerance_exceeded",
                "cancelled",
            ]
        );
        let unique: HashSet<&str> = names.iter().copied().collect();
        assert_eq!(unique.len(), names.len(), "two kinds share a name");
    }

    #[test]
    fn an_unknown_name_is_other_and_round_trips_as_written() {
        for name in ["my_kind", "Timeout", "http_5XX", "", "payment declined"] {
            let kind = ErrorKind::from(name);
            assert_eq!(kind, ErrorKind::Other(name.to_owned()));
            assert_eq!(ErrorKind::from(name.to_owned()), kind);
            let text = serde_json::to_string(&kind).expect("serialises");
            assert_eq!(text, serde_json::to_string(name).expect("a string serialises"));
            let back: ErrorKind = serde_json::from_str(&text).expect("deserialises");
            assert_eq!(back, ErrorKind::Other(name.to_owned()));
            assert_eq!(String::from(back), name);
        }
    }

    #[test]
    fn a_step_error_in_a_struct_is_byte_identical_to_a_plain_string() {
        #[derive(Serialize, Deserialize, Debug, PartialEq)]
        struct Typed {
            kind: ErrorKind,
        }
        #[derive(Serialize)]
        struct Plain<'a> {
            kind: &'a str,
        }
        for name in ["http_429", "cache_miss", "my_kind"] {
            let typed = serde_json::to_string(&Typed { kind: name.into() }).expect("serialises");
            assert_eq!(typed, serde_json::to_string(&Plain { kind: name }).expect("serialises"));
            let back: Typed = serde_json::from_value(json!({"kind": name})).expect("deserialises");
            assert_eq!(back.kind, name);
        }
    }

    #[test]
    fn stored_step_and_run_errors_read_back_and_write_out_byte_identical() {
        use crate::engine::{RunError, StepError};
        for text in [
            r#"{"kind":"http_429","message":"slow down","retry_after_ms":7000}"#,
            r#"{"kind":"circuit_open","message":"open"}"#,
            r#"{"kind":"my_kind","message":"mocked my_kind"}"#,
        ] {
            let e: StepError = serde_json::from_str(text).expect("a stored step error reads");
            assert_eq!(serde_json::to_string(&e).expect("serialises"), text);
        }
        for text in
            [r#"{"step":"fetch","kind":"http_5xx","message":"down"}"#, r#"{"kind":"cancelled","message":"by alice"}"#]
        {
            let e: RunError = serde_json::from_str(text).expect("a stored run error reads");
            assert_eq!(serde_json::to_string(&e).expect("serialises"), text);
        }
    }

    #[test]
    fn a_kind_that_is_not_a_string_is_refused() {
        assert!(serde_json::from_value::<ErrorKind>(json!(429)).is_err());
        assert!(serde_json::from_value::<ErrorKind>(Value::Null).is_err());
    }

    #[test]
    fn other_spelling_a_built_in_name_equals_the_built_in() {
        let by_hand = ErrorKind::Other("timeout".into());
        assert_eq!(by_hand, ErrorKind::Timeout);
        assert!(HashSet::from([ErrorKind::Timeout]).contains(&by_hand));
    }

    #[test]
    fn kinds_compare_with_strings_both_ways() {
        let kind = ErrorKind::Http5xx;
        assert_eq!(kind, "http_5xx");
        assert_eq!(kind, *"http_5xx");
        assert_eq!(kind, "http_5xx".to_owned());
        assert_eq!("http_5xx", kind);
        assert_eq!(*"http_5xx", kind);
        assert_eq!("http_5xx".to_owned(), kind);
        assert_ne!(kind, "http_4xx");
        assert_eq!(ErrorKind::Other("mine".into()), "mine");
    }

    #[test]
    fn exactly_the_four_transient_kinds_are_transient() {
        let transient: Vec<ErrorKind> = ErrorKind::transient().collect();
        assert_eq!(transient, ["http_429", "http_5xx", "timeout", "connect"]);
        for kind in ErrorKind::BUILT_IN {
            assert_eq!(kind.is_transient(), transient.contains(kind), "{kind}");
        }
        assert!(!ErrorKind::Other("overloaded".into()).is_transient());
    }

    #[test]
    fn transient_kinds_are_ones_retry_on_may_name() {
        assert!(ErrorKind::transient().all(|k| k.is_retryable()));
        assert!(!ErrorKind::Other("my_kind".into()).is_retryable());
        assert_eq!(
            ErrorKind::retryable_names().collect::<Vec<_>>().join(", "),
            "http_4xx, http_429, http_5xx, timeout, connect, expression, expression_limit, tool, llm_invalid_output, llm_context_exceeded, network_refused, child_failed, dead_lettered, response_too_large, circuit_open"
        );
    }

    #[test]
    fn http_statuses_map_to_their_kind() {
        for (status, kind) in [
            (100, None),
            (200, None),
            (204, None),
            (304, None),
            (399, None),
            (400, Some(ErrorKind::Http4xx)),
            (404, Some(ErrorKind::Http4xx)),
            (428, Some(ErrorKind::Http4xx)),
            (429, Some(ErrorKind::Http429)),
            (430, Some(ErrorKind::Http4xx)),
            (499, Some(ErrorKind::Http4xx)),
            (500, Some(ErrorKind::Http5xx)),
            (503, Some(ErrorKind::Http5xx)),
            (599, Some(ErrorKind::Http5xx)),
            (600, None),
            (0, None),
        ] {
            assert_eq!(ErrorKind::from_http_status(status), kind, "{status}");
        }
    }
}
