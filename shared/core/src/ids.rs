//! Typed ids: a run, its human tasks and event waits, and the nodes (step instances) inside it.
//! All are plain strings on the wire (`#[serde(transparent)]`), so JSON, keys and messages keep
//! their shape; the types only stop a task id from being passed where a run id is expected.

use std::borrow::Borrow;
use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Wraps an id as given (ids are opaque: any string a backend chose).
            pub fn new(id: impl Into<String>) -> Self {
                Self(id.into())
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The id's text, unwrapped.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<String> for $name {
            fn from(id: String) -> Self {
                Self(id)
            }
        }

        impl From<&str> for $name {
            fn from(id: &str) -> Self {
                Self(id.to_owned())
            }
        }

        impl From<&String> for $name {
            fn from(id: &String) -> Self {
                Self(id.clone())
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> Self {
                id.0
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        // Read-only access to the text (`ends_with`, `split_once`, …): a key is parsed, never
        // rebuilt from a bare `&str` without saying which id it is.
        impl std::ops::Deref for $name {
            type Target = str;

            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }

        impl PartialEq<$name> for str {
            fn eq(&self, other: &$name) -> bool {
                self == other.0
            }
        }

        impl PartialEq<$name> for &str {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }

        impl PartialEq<$name> for String {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }
    };
}

string_id!(
    /// A run's id: a UUID the starter chose, or one derived from the event or schedule that
    /// started it, so a redelivered start finds its run.
    RunId
);

string_id!(
    /// A human task's or event wait's id (`t-…`, `w-…`), derived from run, node and attempt.
    TaskId
);

string_id!(
    /// A node's key inside its run: `step`, `step#iteration` in loop bodies, `…[index]` for
    /// for_each items, `role_step~node` for fallback, compensation and agent nodes (see
    /// `engine::node_key`).
    NodeKey
);

impl NodeKey {
    /// The key of item `index` of this `for_each` node.
    pub fn item(&self, index: u32) -> NodeKey {
        NodeKey(format!("{}[{index}]", self.0))
    }

    /// The `for_each` node this item key belongs to (`None` for a key that names no item).
    pub fn item_parent(&self) -> Option<NodeKey> {
        self.0.rsplit_once('[').map(|(parent, _)| NodeKey::new(parent))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_plain_strings_in_json() {
        let run = RunId::from("r-1");
        assert_eq!(serde_json::to_string(&run).ok().as_deref(), Some("\"r-1\""));
        let back: Result<TaskId, _> = serde_json::from_str("\"t-abc\"");
        assert_eq!(back.ok(), Some(TaskId::new("t-abc")));
    }

    #[test]
    fn ids_compare_with_text_and_look_up_by_str() {
        let run = RunId::new("r-1");
        assert_eq!(run, "r-1");
        assert_eq!("r-1", run);
        assert_eq!(run.to_string(), "r-1");
        let map: std::collections::BTreeMap<TaskId, u8> = [(TaskId::from("t-1"), 1)].into();
        assert_eq!(map.get("t-1"), Some(&1));
    }
}
