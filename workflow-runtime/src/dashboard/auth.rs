//! The bearer-token layer: one check in front of every route (pages, JSON API,
//! event stream, actions), a login page for browsers, and the token's rules.
//!
//! A request is let through if it carries the token as `Authorization: Bearer
//! <token>` (API clients) or in the dashboard's cookie, which `POST login` sets
//! for a browser that gave the right token (`HttpOnly`, `SameSite=Strict`, for
//! the dashboard's path only). Anything else gets `401`: the login page for a
//! page, a JSON error for the API and the event stream.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::{JsonRejection, NestedPathRejection};
use axum::extract::{NestedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::page;

/// The cookie that carries the token for a browser.
pub(crate) const COOKIE: &str = "sagaflow_dashboard";

/// A dashboard that cannot be built as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DashboardError {
    /// `bearer_token("")`: an empty token would let in every request that sends
    /// `Authorization: Bearer ` with nothing after it.
    #[error("the dashboard's bearer token is empty: a token must be at least one visible character")]
    EmptyToken,
    /// A token that no HTTP header can carry as given.
    #[error("the dashboard's bearer token {reason}")]
    InvalidToken {
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// A token that passed the rules, and its cookie form.
#[derive(Debug)]
pub(crate) struct Token {
    token: String,
    /// The token hex-encoded: a cookie value of safe characters.
    cookie: String,
}

impl Token {
    pub(crate) fn new(token: String) -> Result<Token, DashboardError> {
        if token.trim().is_empty() {
            return Err(DashboardError::EmptyToken);
        }
        if token.trim() != token {
            return Err(DashboardError::InvalidToken {
                reason: "starts or ends with whitespace, which HTTP strips from header values",
            });
        }
        if token.chars().any(|c| c.is_control() || !c.is_ascii()) {
            return Err(DashboardError::InvalidToken {
                reason: "holds control or non-ASCII characters, which an `Authorization` header cannot carry",
            });
        }
        let cookie = token.bytes().map(|b| format!("{b:02x}")).collect();
        Ok(Token { token, cookie })
    }

    /// Whether the request carries the token, in its `Authorization` header or
    /// in the cookie.
    fn admits(&self, headers: &HeaderMap) -> bool {
        let bearer = headers
            .get_all(header::AUTHORIZATION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .any(|(_, given)| constant_time_eq(given.trim().as_bytes(), self.token.as_bytes()));
        bearer || cookies(headers).any(|(k, v)| k == COOKIE && constant_time_eq(v.as_bytes(), self.cookie.as_bytes()))
    }
}

/// The `name=value` pairs of the request's `Cookie` headers.
fn cookies(headers: &HeaderMap) -> impl Iterator<Item = (&str, &str)> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The guard in front of every route but `login` and `logout`.
pub(crate) async fn guard(
    State(token): State<Arc<Token>>,
    nested: Result<NestedPath, NestedPathRejection>,
    req: Request,
    next: Next,
) -> Response {
    if token.admits(req.headers()) {
        return next.run(req).await;
    }
    let path = req.uri().path();
    let api = path.starts_with("/api/") || path == "/events";
    if api {
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            Json(json!({ "error": "a valid bearer token is required" })),
        )
            .into_response()
    } else {
        let base = super::base(nested);
        (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Bearer")], Html(page::login(&base))).into_response()
    }
}

/// `POST login` with `{"token": "..."}`: sets the cookie if the token is right.
pub(crate) async fn login(
    State(token): State<Arc<Token>>,
    nested: Result<NestedPath, NestedPathRejection>,
    body: Result<Json<Map<String, Value>>, JsonRejection>,
) -> Response {
    let body = match body {
        Ok(Json(b)) => b,
        Err(e) => return super::ApiError::from(e).into_response(),
    };
    let given = body.get("token").and_then(Value::as_str).unwrap_or_default();
    if given.is_empty() || !constant_time_eq(given.as_bytes(), token.token.as_bytes()) {
        return (StatusCode::UNAUTHORIZED, Json(json!({ "error": "wrong token" }))).into_response();
    }
    let cookie = format!("{COOKIE}={}; {}", token.cookie, attributes(&super::base(nested)));
    cookie_response(cookie)
}

/// `POST logout`: forgets the cookie.
pub(crate) async fn logout(nested: Result<NestedPath, NestedPathRejection>) -> Response {
    cookie_response(format!("{COOKIE}=; Max-Age=0; {}", attributes(&super::base(nested))))
}

fn attributes(base: &str) -> String {
    let path = if base.is_empty() { "/" } else { base };
    format!("Path={path}; HttpOnly; SameSite=Strict")
}

fn cookie_response(cookie: String) -> Response {
    match HeaderValue::from_str(&cookie) {
        Ok(value) => (StatusCode::NO_CONTENT, [(header::SET_COOKIE, value)]).into_response(),
        Err(_) => {
            (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({ "error": "the cookie cannot be set" }))).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_follow_the_rules() {
        assert_eq!(Token::new(String::new()).unwrap_err(), DashboardError::EmptyToken);
        assert_eq!(Token::new("  ".into()).unwrap_err(), DashboardError::EmptyToken);
        assert!(matches!(Token::new(" t".into()), Err(DashboardError::InvalidToken { .. })));
        assert!(matches!(Token::new("t\n".into()), Err(DashboardError::InvalidToken { .. })));
        assert!(matches!(Token::new("tö".into()), Err(DashboardError::InvalidToken { .. })));
        let t = Token::new("s3cret".into()).unwrap();
        let with = |name: header::HeaderName, value: &str| {
            let mut h = HeaderMap::new();
            h.insert(name, HeaderValue::from_str(value).unwrap());
            h
        };
        assert!(t.admits(&with(header::AUTHORIZATION, "Bearer s3cret")));
        assert!(t.admits(&with(header::AUTHORIZATION, "bearer s3cret")), "the scheme is case-insensitive");
        assert!(!t.admits(&with(header::AUTHORIZATION, "Bearer ")));
        assert!(!t.admits(&with(header::AUTHORIZATION, "Bearer s3cre")));
        assert!(!t.admits(&with(header::AUTHORIZATION, "Basic s3cret")));
        assert!(t.admits(&with(header::COOKIE, &format!("a=b; {COOKIE}={}", t.cookie))));
        assert!(!t.admits(&with(header::COOKIE, &format!("{COOKIE}=s3cret"))), "the cookie holds the hex form");
        assert!(!t.admits(&HeaderMap::new()));
    }
}
