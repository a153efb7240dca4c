//! Credentials on provider API calls: LINE's Bearer channel access token and Twilio's HTTP Basic
//! `AccountSid:AuthToken`. A failure answers with the provider's own 401.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::signing::constant_time_eq;
use super::config::AccountStatus;
use super::errors::{LineError, TwilioError};
use super::state::App;

/// The LINE channel whose access token the request carries.
#[derive(Debug)]
pub struct LineChannelAuth {
    /// The channel ID.
    pub channel_id: String,
}

impl FromRequestParts<Arc<App>> for LineChannelAuth {
    type Rejection = LineError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Self::Rejection> {
        let header = parts.headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()).ok_or_else(LineError::unauthorized)?;
        let token = header
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .ok_or_else(LineError::unauthorized)?;
        app.config
            .line
            .iter()
            .find(|c| constant_time_eq(c.access_token.expose().as_bytes(), token.as_bytes()))
            .map(|c| Self { channel_id: c.channel_id.clone() })
            .ok_or_else(LineError::unauthorized)
    }
}

/// The Twilio account whose credentials the request carries.
#[derive(Debug)]
pub struct TwilioAccountAuth {
    /// The account SID.
    pub account_sid: String,
    /// Whether the account is active (the admin API can suspend or close it).
    pub active: bool,
}

impl TwilioAccountAuth {
    /// Checks that the path's account is the authenticated one and that it is active: only the
    /// account fetch answers for a suspended or closed account.
    pub fn require(&self, path_account_sid: &str) -> Result<(), TwilioError> {
        if path_account_sid != self.account_sid {
            return Err(TwilioError::unauthorized());
        }
        self.require_active()
    }

    /// Checks that the account is active.
    pub fn require_active(&self) -> Result<(), TwilioError> {
        if self.active {
            Ok(())
        } else {
            Err(TwilioError::new(StatusCode::UNAUTHORIZED, 20005, "Account is not active"))
        }
    }
}

impl FromRequestParts<Arc<App>> for TwilioAccountAuth {
    type Rejection = TwilioError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Self::Rejection> {
        let header = parts.headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()).ok_or_else(TwilioError::unauthorized)?;
        let encoded = header
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
            .map(|(_, value)| value.trim())
            .ok_or_else(TwilioError::unauthorized)?;
        let decoded = STANDARD.decode(encoded).ok().and_then(|b| String::from_utf8(b).ok()).ok_or_else(TwilioError::unauthorized)?;
        let (sid, token) = decoded.split_once(':').ok_or_else(TwilioError::unauthorized)?;
        let account = app
            .config
            .twilio
            .iter()
            .find(|a| a.account_sid == sid && constant_time_eq(a.auth_token.expose().as_bytes(), token.as_bytes()))
            .ok_or_else(TwilioError::unauthorized)?;
        let state = app.lock();
        let active = state.twilio.iter().find(|a| a.config.account_sid == sid).is_some_and(|a| a.status == AccountStatus::Active);
        Ok(Self { account_sid: account.account_sid.clone(), active })
    }
}
