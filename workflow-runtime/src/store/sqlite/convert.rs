//! Conversions between the store's values and what SQLite holds: JSON text,
//! execution ids, fixed-width timestamps, and SQLite's errors as [`StoreError`]s.

use chrono::{DateTime, Utc};
use rusqlite::ErrorCode;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::model::ExecutionId;
use crate::store::StoreError;

pub(super) fn sql_error(name: &str, e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            StoreError::Unavailable(format!("`{name}` is locked by another connection: {e}"))
        }
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => {
            StoreError::Corrupt(format!("`{name}` is damaged: {e}"))
        }
        // What the values written cause: retrying cannot help.
        Some(
            ErrorCode::ConstraintViolation
            | ErrorCode::TooBig
            | ErrorCode::TypeMismatch
            | ErrorCode::ParameterOutOfRange,
        ) => StoreError::Rejected(format!("`{name}`: {e}")),
        _ => StoreError::Unavailable(format!("`{name}`: {e}")),
    }
}

pub(super) fn to_json<T: Serialize + ?Sized>(value: &T, what: &str) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Other(format!("a {what} cannot be serialized: {e}")))
}

pub(super) fn from_json<T: DeserializeOwned>(text: &str, what: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("a stored {what} cannot be read: {e}")))
}

pub(super) fn id_from(bytes: &[u8]) -> Result<ExecutionId, StoreError> {
    uuid::Uuid::from_slice(bytes)
        .map(ExecutionId::from_uuid)
        .map_err(|e| StoreError::Corrupt(format!("a stored execution id is not a UUID: {e}")))
}

/// A UTC timestamp as fixed-width text, so that text order is time order.
pub(super) fn timestamp(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.9fZ").to_string()
}

pub(super) fn parse_timestamp(text: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Corrupt(format!("a stored time `{text}` cannot be read: {e}")))
}
