//! The `simulate` subcommand's flags and its run loop.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::config::{ApprovalOutcome, LineChannelConfig, Secret, SimulatorConfig, TwilioAccountConfig};
use super::{SimulatorError, start};

/// Flags of `switchboard simulate`. Credentials can come from the environment so that they stay
/// out of process listings.
#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8089")]
    pub listen: SocketAddr,
    /// Allow an address beyond loopback (the admin API has no authentication).
    #[arg(long)]
    pub allow_non_loopback: bool,
    /// YAML or JSON configuration file; without it and without quick-start flags the demo
    /// accounts are used.
    #[arg(long, conflicts_with_all = ["line_channel_id", "twilio_account_sid"])]
    pub config: Option<PathBuf>,
    /// Quick start: a LINE channel ID.
    #[arg(long, requires_all = ["line_channel_secret", "line_access_token"])]
    pub line_channel_id: Option<String>,
    /// Quick start: the LINE channel secret.
    #[arg(long, env = "SIMULATOR_LINE_CHANNEL_SECRET", hide_env_values = true, value_parser = secret)]
    pub line_channel_secret: Option<Secret>,
    /// Quick start: the LINE channel access token.
    #[arg(long, env = "SIMULATOR_LINE_ACCESS_TOKEN", hide_env_values = true, value_parser = secret)]
    pub line_access_token: Option<Secret>,
    /// Quick start: a Twilio account SID.
    #[arg(long, requires = "twilio_auth_token")]
    pub twilio_account_sid: Option<String>,
    /// Quick start: the Twilio auth token.
    #[arg(long, env = "SIMULATOR_TWILIO_AUTH_TOKEN", hide_env_values = true, value_parser = secret)]
    pub twilio_auth_token: Option<Secret>,
    /// Quick start: a WhatsApp number (E.164) of the Twilio account; repeatable.
    #[arg(long = "twilio-number")]
    pub twilio_numbers: Vec<String>,
    /// Time a submitted template stays `received` (e.g. 2s).
    #[arg(long, value_parser = duration)]
    pub approval_received_for: Option<Duration>,
    /// Time a submitted template then stays `pending`.
    #[arg(long, value_parser = duration)]
    pub approval_pending_for: Option<Duration>,
    /// How scheduled approvals end: approved or rejected.
    #[arg(long, value_parser = outcome)]
    pub approval_outcome: Option<ApprovalOutcome>,
    /// The WhatsApp customer-service window (default 24h).
    #[arg(long, value_parser = duration)]
    pub whatsapp_window: Option<Duration>,
    /// The base URL others reach the simulator at (links and customer media URLs).
    #[arg(long)]
    pub public_url: Option<String>,
    /// Every Twilio account enforces HTTP Basic authentication on its media URLs.
    #[arg(long)]
    pub twilio_media_auth: bool,
}

fn secret(value: &str) -> Result<Secret, String> {
    if value.is_empty() { Err("must not be empty".to_owned()) } else { Ok(Secret::new(value)) }
}

fn duration(value: &str) -> Result<Duration, String> {
    crate::api::duration::parse(value).ok_or_else(|| format!("{value:?} is not a duration like 500ms, 2s, 5m or 24h"))
}

fn outcome(value: &str) -> Result<ApprovalOutcome, String> {
    match value {
        "approved" => Ok(ApprovalOutcome::Approved),
        "rejected" => Ok(ApprovalOutcome::Rejected),
        _ => Err("must be approved or rejected".to_owned()),
    }
}

impl SimulateArgs {
    /// The configuration the flags describe: the file, the quick-start accounts, or the demo
    /// set, with the schedule and window flags applied on top.
    pub fn to_config(&self) -> Result<SimulatorConfig, SimulatorError> {
        let mut config = match &self.config {
            Some(path) => SimulatorConfig::load(path)?,
            None if self.line_channel_id.is_some() || self.twilio_account_sid.is_some() => {
                let mut config = SimulatorConfig::default();
                if let (Some(id), Some(secret), Some(token)) = (&self.line_channel_id, &self.line_channel_secret, &self.line_access_token) {
                    config.line.push(LineChannelConfig::new(id.clone(), secret.clone(), token.clone()));
                }
                if let (Some(sid), Some(token)) = (&self.twilio_account_sid, &self.twilio_auth_token) {
                    let numbers: Vec<&str> = self.twilio_numbers.iter().map(String::as_str).collect();
                    config.twilio.push(TwilioAccountConfig::new(sid.clone(), token.clone(), &numbers));
                }
                config
            }
            None => SimulatorConfig::demo(),
        };
        if let Some(d) = self.approval_received_for {
            config.approvals.received_for = d;
        }
        if let Some(d) = self.approval_pending_for {
            config.approvals.pending_for = d;
        }
        if let Some(outcome) = self.approval_outcome {
            config.approvals.outcome = outcome;
        }
        if let Some(window) = self.whatsapp_window {
            config.whatsapp_window = window;
        }
        if let Some(url) = &self.public_url {
            config.public_url = Some(url.clone());
        }
        if self.twilio_media_auth {
            config.twilio.iter_mut().for_each(|account| account.media_auth = true);
        }
        config.validate()?;
        Ok(config)
    }
}

/// Runs the simulator in the foreground until Ctrl-C or SIGTERM.
pub fn run(args: SimulateArgs) -> Result<(), SimulatorError> {
    // Another subscriber may already be installed (tests); then that one is used.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .try_init();
    if !args.listen.ip().is_loopback() && !args.allow_non_loopback {
        return Err(SimulatorError::NotLoopback(args.listen));
    }
    let config = args.to_config()?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(SimulatorError::Runtime)?;
    runtime.block_on(async {
        let line: Vec<&str> = config.line.iter().map(|c| c.channel_id.as_str()).collect();
        let twilio: Vec<&str> = config.twilio.iter().map(|a| a.account_sid.as_str()).collect();
        tracing::info!(line_channels = ?line, twilio_accounts = ?twilio, "simulating");
        let simulator = start(config, args.listen).await?;
        crate::shutdown::signal().await;
        simulator.shutdown().await;
        Ok(())
    })
}

