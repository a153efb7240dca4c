//! Provider base URLs, set once per process (flags or environment) and never by a resource, so a
//! resource cannot send an account's credentials to a host of its choosing.

use url::Url;

/// The real LINE Messaging API host.
pub const LINE_API: &str = "https://api.line.me";
/// The real LINE host for message content (binary data).
pub const LINE_DATA_API: &str = "https://api-data.line.me";
/// The real Twilio REST API (2010-04-01) host.
pub const TWILIO_API: &str = "https://api.twilio.com";
/// The real Twilio Content API host.
pub const TWILIO_CONTENT: &str = "https://content.twilio.com";
/// The real Twilio Messaging API host (Messaging Services, WhatsApp senders).
pub const TWILIO_MESSAGING: &str = "https://messaging.twilio.com";

/// Base URLs of every provider host the clients call. Defaults are the real hosts; tests and
/// local development point them at the simulator or a mock.
#[derive(Clone, Debug, PartialEq, Eq, clap::Args)]
pub struct ProviderEndpoints {
    /// Base URL of the LINE Messaging API.
    #[arg(long = "line-api-url", env = "SWITCHBOARD_LINE_API_URL", default_value = LINE_API)]
    pub line_api: Url,
    /// Base URL of the LINE content API (message content downloads).
    #[arg(long = "line-data-api-url", env = "SWITCHBOARD_LINE_DATA_API_URL", default_value = LINE_DATA_API)]
    pub line_data_api: Url,
    /// Base URL of the Twilio REST API (accounts, phone numbers, messages).
    #[arg(long = "twilio-api-url", env = "SWITCHBOARD_TWILIO_API_URL", default_value = TWILIO_API)]
    pub twilio_api: Url,
    /// Base URL of the Twilio Content API (templates and their approval).
    #[arg(long = "twilio-content-url", env = "SWITCHBOARD_TWILIO_CONTENT_URL", default_value = TWILIO_CONTENT)]
    pub twilio_content: Url,
    /// Base URL of the Twilio Messaging API (Messaging Services, WhatsApp senders).
    #[arg(long = "twilio-messaging-url", env = "SWITCHBOARD_TWILIO_MESSAGING_URL", default_value = TWILIO_MESSAGING)]
    pub twilio_messaging: Url,
}

impl ProviderEndpoints {
    /// The flags that give another process these endpoints, for those that are not the real
    /// hosts: the controller passes its own to the gateways it renders, so that a cluster set up
    /// against the simulator sends the gateways' calls there too.
    pub fn non_default_args(&self) -> Vec<String> {
        let real = Self::default();
        let flags = [
            ("--line-api-url", &self.line_api, &real.line_api),
            ("--line-data-api-url", &self.line_data_api, &real.line_data_api),
            ("--twilio-api-url", &self.twilio_api, &real.twilio_api),
            ("--twilio-content-url", &self.twilio_content, &real.twilio_content),
            ("--twilio-messaging-url", &self.twilio_messaging, &real.twilio_messaging),
        ];
        flags.into_iter().filter(|(_, url, real)| url != real).flat_map(|(flag, url, _)| [flag.to_owned(), url.to_string()]).collect()
    }

    /// Every provider host at one base URL, as the simulator serves them on one port.
    pub fn all_at(base: Url) -> Self {
        Self {
            line_api: base.clone(),
            line_data_api: base.clone(),
            twilio_api: base.clone(),
            twilio_content: base.clone(),
            twilio_messaging: base,
        }
    }
}

impl Default for ProviderEndpoints {
    fn default() -> Self {
        let parse = |url: &str| Url::parse(url).expect("the built-in provider URLs are valid");
        Self {
            line_api: parse(LINE_API),
            line_data_api: parse(LINE_DATA_API),
            twilio_api: parse(TWILIO_API),
            twilio_content: parse(TWILIO_CONTENT),
            twilio_messaging: parse(TWILIO_MESSAGING),
        }
    }
}

/// `base` with `segments` appended as path segments, each percent-encoded, keeping any path
/// prefix the base has (a proxy may serve a provider under a prefix).
pub(crate) fn join(base: &Url, segments: &[&str]) -> Url {
    let mut url = base.clone();
    url.set_query(None);
    url.set_fragment(None);
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().extend(segments);
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        endpoints: ProviderEndpoints,
    }

    #[test]
    fn defaults_are_the_real_hosts() {
        let cli = Cli::parse_from(["test"]);
        assert_eq!(cli.endpoints, ProviderEndpoints::default());
        assert_eq!(cli.endpoints.line_api.as_str(), "https://api.line.me/");
        assert_eq!(cli.endpoints.twilio_messaging.as_str(), "https://messaging.twilio.com/");
    }

    #[test]
    fn flags_override_one_host() {
        let cli = Cli::parse_from(["test", "--twilio-api-url", "http://127.0.0.1:4010"]);
        assert_eq!(cli.endpoints.twilio_api.as_str(), "http://127.0.0.1:4010/");
        assert_eq!(cli.endpoints.line_api.as_str(), "https://api.line.me/");
    }

    #[test]
    fn non_default_args_parse_back_into_the_same_endpoints() {
        assert!(ProviderEndpoints::default().non_default_args().is_empty());
        let mut endpoints = ProviderEndpoints::all_at(Url::parse("http://127.0.0.1:8089").unwrap());
        endpoints.line_data_api = Url::parse(LINE_DATA_API).unwrap();
        let args = endpoints.non_default_args();
        assert_eq!(args.len(), 8, "{args:?}");
        let cli = Cli::parse_from(std::iter::once("test".to_owned()).chain(args));
        assert_eq!(cli.endpoints, endpoints);
    }

    #[test]
    fn join_encodes_segments_and_keeps_a_prefix() {
        let base = Url::parse("http://127.0.0.1:9000/line").unwrap();
        let url = join(&base, &["v2", "bot", "profile", "U1/../x y"]);
        assert_eq!(url.as_str(), "http://127.0.0.1:9000/line/v2/bot/profile/U1%2F..%2Fx%20y");
        let root = Url::parse("https://api.line.me").unwrap();
        assert_eq!(join(&root, &["v2", "bot", "info"]).as_str(), "https://api.line.me/v2/bot/info");
    }
}
