//! What the gateway serves: its apps and their limits, and the gateway's
//! own settings. Every limit is a field with a documented default and the
//! abuse it stops; `main.rs` fills these from flags or a TOML file.

use std::time::Duration;

use serde::Deserialize;

use crate::webhook::WebhookConfig;

/// One Pusher app: its credentials and limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AppConfig {
    /// The app id, in the HTTP API's paths (`/apps/{id}/events`).
    pub id: String,
    /// The public key clients connect with (`/app/{key}`) and the HTTP API
    /// is signed with (`auth_key`).
    pub key: String,
    /// The secret that signs channel authorisations, user sign-ins, HTTP
    /// API requests and webhooks. Never sent anywhere.
    pub secret: String,
    /// Most connections open at once for this app, on this node (4004
    /// "Over connection quota" past it, which clients do not retry). 0:
    /// no limit beyond the server's own `max_connections`.
    #[serde(default)]
    pub max_connections: usize,
    /// Largest event `data`, in bytes, from the HTTP API (413) or a client
    /// event (a `pusher:error`). Default 10 KiB, Pusher's.
    #[serde(default = "defaults::max_event_bytes")]
    pub max_event_bytes: usize,
    /// Longest channel name (Pusher: 164 characters). Longer names are
    /// refused: they would be kept per subscriber and per channel.
    #[serde(default = "defaults::max_channel_name")]
    pub max_channel_name: usize,
    /// Longest event name (Pusher: 200).
    #[serde(default = "defaults::max_event_name")]
    pub max_event_name: usize,
    /// Clients may send `client-*` events on private and presence
    /// channels. Off by default, as on Pusher.
    #[serde(default)]
    pub client_events: bool,
    /// Client events one connection may send per second (Pusher: 10);
    /// past it each is refused with 4301.
    #[serde(default = "defaults::client_event_rate")]
    pub client_event_rate: u32,
    /// Most members of one presence channel (Pusher: 100); a subscription
    /// past it is refused.
    #[serde(default = "defaults::max_presence_members")]
    pub max_presence_members: usize,
    /// Largest presence `user_info`, in bytes (Pusher: 1 KB): it is sent
    /// to every member in every member list.
    #[serde(default = "defaults::max_presence_info")]
    pub max_presence_info: usize,
    /// Most channels one connection may be subscribed to at once; past it
    /// a subscription is refused with a `pusher:error`. Each subscription
    /// is kept per connection and per channel: without a bound, one client
    /// could make the server hold any number. Default 1,000.
    #[serde(default = "defaults::max_subscriptions")]
    pub max_subscriptions: usize,
    /// Where the app's webhooks go (`[[app.webhook]]` tables): each
    /// endpoint with the kinds of events it gets, batching, retries and its
    /// bounded queue ([`WebhookConfig`]).
    #[serde(default, rename = "webhook")]
    pub webhooks: Vec<WebhookConfig>,
}

impl AppConfig {
    /// An app with these credentials and the default limits.
    pub fn new(id: &str, key: &str, secret: &str) -> AppConfig {
        AppConfig {
            id: id.to_owned(),
            key: key.to_owned(),
            secret: secret.to_owned(),
            max_connections: 0,
            max_event_bytes: defaults::max_event_bytes(),
            max_channel_name: defaults::max_channel_name(),
            max_event_name: defaults::max_event_name(),
            client_events: false,
            client_event_rate: defaults::client_event_rate(),
            max_presence_members: defaults::max_presence_members(),
            max_presence_info: defaults::max_presence_info(),
            max_subscriptions: defaults::max_subscriptions(),
            webhooks: Vec::new(),
        }
    }

    /// The limits the protocol parser applies to this app's messages: a
    /// client message is its data plus the envelope (event and channel
    /// names, JSON punctuation).
    pub fn limits(&self) -> crate::protocol::Limits {
        crate::protocol::Limits {
            max_event_bytes: self.max_event_bytes
                + self.max_channel_name
                + self.max_event_name
                + 64,
            max_channel_len: self.max_channel_name,
            max_event_name_len: self.max_event_name,
        }
    }
}

/// The gateway's settings beside its apps.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// The apps served.
    pub apps: Vec<AppConfig>,
    /// Seconds of silence after which a client should ping, sent in
    /// `pusher:connection_established` (Pusher: 120). The server sends
    /// `pusher:ping` after as long a silence, and closes with 4201 when
    /// nothing comes back within as long again.
    pub activity_timeout: Duration,
    /// How far an HTTP API request's `auth_timestamp` may be from the
    /// server's clock, either way (Pusher: 600 s): a captured request
    /// cannot be replayed later than this.
    pub api_timestamp_window: Duration,
    /// Most channels one `POST /events` may name (Pusher: 100).
    pub max_event_channels: usize,
    /// Most events in one `POST /batch_events` (Pusher: 10).
    pub max_batch_events: usize,
    /// How long a cache channel keeps its last event (Pusher: 30 min).
    pub cache_ttl: Duration,
    /// Most cache channels with a kept event, per app: past it, new ones
    /// are not kept (and counted), so channel-name churn cannot grow memory
    /// without bound.
    pub max_cached_channels: usize,
    /// With several nodes (a broker): how often each node sends the others
    /// its channels' state. A node silent for three of these is taken for
    /// dead, and its presence members for gone.
    pub cluster_interval: Duration,
}

impl GatewayConfig {
    /// Serves `apps` with the default settings.
    pub fn new(apps: Vec<AppConfig>) -> GatewayConfig {
        GatewayConfig {
            apps,
            activity_timeout: Duration::from_secs(120),
            api_timestamp_window: Duration::from_secs(600),
            max_event_channels: 100,
            max_batch_events: 10,
            cache_ttl: Duration::from_secs(30 * 60),
            max_cached_channels: 10_000,
            cluster_interval: Duration::from_secs(5),
        }
    }

    /// Checks what a running gateway relies on: unique ids and keys,
    /// non-empty credentials, sane limits.
    pub fn validate(&self) -> Result<(), String> {
        if self.apps.is_empty() {
            return Err(
                "no app configured (--app-id/--app-key/--app-secret or [[app]] in --config)".into(),
            );
        }
        let mut ids = std::collections::HashSet::new();
        let mut keys = std::collections::HashSet::new();
        for a in &self.apps {
            if a.id.is_empty() || a.key.is_empty() || a.secret.is_empty() {
                return Err(format!(
                    "app {:?}: id, key and secret must all be set",
                    a.id
                ));
            }
            if !a
                .key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            {
                return Err(format!(
                    "app {:?}: the key may hold only letters, digits, '-', '_' and '.'",
                    a.id
                ));
            }
            if !a
                .id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            {
                return Err(format!(
                    "app {:?}: the id may hold only letters, digits, '-', '_' and '.'",
                    a.id
                ));
            }
            if !ids.insert(&a.id) {
                return Err(format!("app id {:?} twice", a.id));
            }
            if !keys.insert(&a.key) {
                return Err(format!("app key {:?} twice", a.key));
            }
            for w in &a.webhooks {
                w.validate()
                    .map_err(|e| format!("app {:?}: webhook {}: {e}", a.id, w.url))?;
            }
            if a.client_event_rate == 0 && a.client_events {
                return Err(format!(
                    "app {:?}: client_event_rate must be at least 1",
                    a.id
                ));
            }
        }
        if self.activity_timeout < Duration::from_secs(1) {
            return Err("activity timeout must be at least 1 s".into());
        }
        if self.max_event_channels == 0 || self.max_batch_events == 0 {
            return Err("max-event-channels and max-batch-events must be at least 1".into());
        }
        Ok(())
    }
}

mod defaults {
    pub(super) fn max_event_bytes() -> usize {
        10 * 1024
    }
    pub(super) fn max_channel_name() -> usize {
        164
    }
    pub(super) fn max_event_name() -> usize {
        200
    }
    pub(super) fn client_event_rate() -> u32 {
        10
    }
    pub(super) fn max_presence_members() -> usize {
        100
    }
    pub(super) fn max_subscriptions() -> usize {
        1000
    }
    pub(super) fn max_presence_info() -> usize {
        1024
    }
}
