//! Reading the arguments clap leaves as text: execution ids, `--context`, signal names and `--payload`.

use sagaflow::ExecutionId;
use serde_json::{Map, Value};

use crate::CliError;

pub(super) fn parse_id(text: &str) -> Result<ExecutionId, CliError> {
    text.parse::<ExecutionId>().map_err(|e| CliError::Usage(e.to_string()))
}

pub(super) fn parse_context(text: Option<&str>) -> Result<Map<String, Value>, CliError> {
    let Some(text) = text else { return Ok(Map::new()) };
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(other) => Err(CliError::Usage(format!("`--context` must be a JSON object, got `{other}`"))),
        Err(e) => Err(CliError::Usage(format!("`--context` is not JSON: {e}"))),
    }
}

pub(super) fn signal_name(name: &str) -> Result<String, CliError> {
    if name.trim().is_empty() {
        return Err(CliError::Usage("a signal name cannot be empty".into()));
    }
    Ok(name.to_owned())
}

pub(super) fn parse_payload(text: Option<&str>) -> Result<Value, CliError> {
    let Some(text) = text else { return Ok(Value::Null) };
    serde_json::from_str(text).map_err(|e| CliError::Usage(format!("`--payload` is not JSON: {e}")))
}
