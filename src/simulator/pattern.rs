//! Route patterns like `POST /v2/bot/message/push` or `GET /2010-04-01/Accounts/*`, which pick
//! the requests a fault or a request-log query applies to.

use std::fmt;

/// An HTTP method (or `*` for any) and a path glob: `*` matches within one path segment, `**`
/// matches across segments. The query string is never part of the match.
#[derive(Clone, PartialEq, Eq)]
pub struct RoutePattern {
    method: Option<String>,
    path: Vec<Token>,
    text: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Token {
    Byte(u8),
    /// Any run of bytes other than `/`.
    Star,
    /// Any run of bytes.
    DoubleStar,
}

impl RoutePattern {
    /// Parses `METHOD /path`. Errors name what is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (method, path) = text
            .trim()
            .split_once(' ')
            .ok_or_else(|| format!("route {text:?} must be a method and a path, like \"POST /v2/bot/message/push\""))?;
        let path = path.trim();
        if !path.starts_with('/') {
            return Err(format!("route {text:?}: the path must start with /"));
        }
        let method = match method {
            "*" => None,
            m if !m.is_empty() && m.bytes().all(|b| b.is_ascii_alphabetic()) => Some(m.to_ascii_uppercase()),
            m => return Err(format!("route {text:?}: {m:?} is not an HTTP method")),
        };
        let bytes = path.as_bytes();
        let mut tokens = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'*' {
                if bytes.get(i + 1) == Some(&b'*') {
                    tokens.push(Token::DoubleStar);
                    i += 2;
                } else {
                    tokens.push(Token::Star);
                    i += 1;
                }
            } else {
                tokens.push(Token::Byte(bytes[i]));
                i += 1;
            }
        }
        let text = format!("{} {path}", method.as_deref().unwrap_or("*"));
        Ok(Self { method, path: tokens, text })
    }

    /// Whether a request with this method and path matches.
    pub fn matches(&self, method: &str, path: &str) -> bool {
        if self.method.as_deref().is_some_and(|m| !m.eq_ignore_ascii_case(method)) {
            return false;
        }
        glob_match(&self.path, path.as_bytes())
    }

    /// The pattern as written (normalised).
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Debug for RoutePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Dynamic programming over (pattern prefix, path prefix): no exponential backtracking
/// whatever the pattern.
fn glob_match(pattern: &[Token], path: &[u8]) -> bool {
    // row[j]: whether the pattern so far matches path[..j].
    let mut row = vec![false; path.len() + 1];
    row[0] = true;
    for token in pattern {
        let mut next = vec![false; path.len() + 1];
        match token {
            Token::Byte(b) => {
                for j in 1..=path.len() {
                    next[j] = row[j - 1] && path[j - 1] == *b;
                }
            }
            Token::Star | Token::DoubleStar => {
                next[0] = row[0];
                for j in 1..=path.len() {
                    let extends = next[j - 1] && (*token == Token::DoubleStar || path[j - 1] != b'/');
                    next[j] = row[j] || extends;
                }
            }
        }
        row = next;
    }
    row[path.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, method: &str, path: &str) -> bool {
        RoutePattern::parse(pattern).expect("a pattern").matches(method, path)
    }

    #[test]
    fn matching() {
        assert!(m("POST /v2/bot/message/push", "POST", "/v2/bot/message/push"));
        assert!(!m("POST /v2/bot/message/push", "GET", "/v2/bot/message/push"));
        assert!(m("get /2010-04-01/Accounts/*", "GET", "/2010-04-01/Accounts/AC1.json"));
        assert!(!m("GET /2010-04-01/Accounts/*", "GET", "/2010-04-01/Accounts/AC1/Messages.json"));
        assert!(m("GET /2010-04-01/Accounts/**", "GET", "/2010-04-01/Accounts/AC1/Messages.json"));
        assert!(m("* /v1/Content/*/ApprovalRequests", "GET", "/v1/Content/HX1/ApprovalRequests"));
        assert!(m("POST /2010-04-01/Accounts/*/Messages.json", "POST", "/2010-04-01/Accounts/AC1/Messages.json"));
        assert!(!m("POST /v2/bot/message/push", "POST", "/v2/bot/message/pushy"));
        for bad in ["/path", "POST path", "P0ST /x", ""] {
            assert!(RoutePattern::parse(bad).is_err(), "{bad}");
        }
    }
}
