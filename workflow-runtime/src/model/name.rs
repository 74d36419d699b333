//! [`StepName`]: a step's name as execution states carry it.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A step name shared with the definition: cloning it costs a reference count.
/// It reads like a `&str` (it derefs to one and compares with `str`, `&str` and
/// `String`).
///
/// ```
/// use sagaflow_runtime::StepName;
/// let name = StepName::from("charge_payment");
/// assert_eq!(name, "charge_payment");
/// assert!(name.starts_with("charge"));
/// assert_eq!(name.to_string(), "charge_payment");
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StepName(Arc<str>);

impl StepName {
    /// The name as a `&str`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<Arc<str>> for StepName {
    fn from(name: Arc<str>) -> Self {
        StepName(name)
    }
}

impl From<&str> for StepName {
    fn from(name: &str) -> Self {
        StepName(Arc::from(name))
    }
}

impl From<String> for StepName {
    fn from(name: String) -> Self {
        StepName(Arc::from(name))
    }
}

impl From<StepName> for String {
    fn from(name: StepName) -> Self {
        name.0.to_string()
    }
}

impl Deref for StepName {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for StepName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for StepName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for StepName {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for StepName {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

impl PartialEq<String> for StepName {
    fn eq(&self, other: &String) -> bool {
        *self.0 == **other
    }
}

impl PartialEq<StepName> for &str {
    fn eq(&self, other: &StepName) -> bool {
        **self == *other.0
    }
}

impl PartialEq<StepName> for String {
    fn eq(&self, other: &StepName) -> bool {
        **self == *other.0
    }
}

impl fmt::Display for StepName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for StepName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl Serialize for StepName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for StepName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(StepName::from)
    }
}
