//! Twilio's WhatsApp typing indicator (`POST /v2/Indicators/Typing.json` on the messaging host,
//! in public beta): it answers one of the customer's messages, which Twilio marks as read, and
//! WhatsApp shows it until the reply arrives, at most 25 seconds. Twilio's documents have no read
//! receipt on its own.

use futures::FutureExt;
use futures::future::{self, BoxFuture};

use crate::gateway::channels::indicators::{Chat, IndicatorError, Shown};
use crate::providers::TwilioClient;

/// A read receipt alone, which Twilio does not offer.
pub fn mark_read<'a>() -> BoxFuture<'a, Result<Shown, IndicatorError>> {
    future::ready(Err(IndicatorError::NotSupported(
        "Twilio documents no read receipt on its own for WhatsApp; the typing call marks the customer's messages as read",
    )))
    .boxed()
}

/// The typing indicator on the customer's latest message.
pub fn typing<'a>(client: &'a TwilioClient, chat: Chat<'a>) -> BoxFuture<'a, Result<Shown, IndicatorError>> {
    async move {
        let message = chat.last_inbound.ok_or(IndicatorError::NoInboundMessage)?;
        client.typing_indicator(&message.id).await?;
        Ok(Shown { typing_seconds: None, marked_read: true })
    }
    .boxed()
}
