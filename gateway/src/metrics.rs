//! The gateway's `/metrics` families, beside ringws's own (connections,
//! messages, bytes, closes, the broker): per app, its connections,
//! channels, subscriptions, presence members, events in and out, and what
//! was refused; the HTTP API's answers by status. Read from counters and
//! the channel registry at scrape time.

use std::sync::atomic::{AtomicU64, Ordering};

use ringws::metrics::{Exposition, MetricType};

use crate::state::{AppState, Gateway, API_STATUSES};

/// Writes the gateway's families into `e`.
pub fn render(gw: &Gateway, e: &mut Exposition) {
    let apps: Vec<&AppState> = gw.apps().map(|a| &**a).collect();
    let gauge = |e: &mut Exposition, name: &str, help: &str, f: &dyn Fn(&AppState) -> u64| {
        e.family(name, help, MetricType::Gauge);
        for a in &apps {
            e.sample(name, &[("app", &a.cfg.id)], f(a));
        }
    };
    let totals: Vec<(usize, usize, usize)> = apps.iter().map(|a| a.channels().totals()).collect();
    let at = |a: &AppState| {
        apps.iter()
            .position(|b| std::ptr::eq(*b, a))
            .map_or((0, 0, 0), |i| totals[i])
    };
    gauge(
        e,
        "ringws_gateway_connections",
        "Open Pusher connections, by app.",
        &|a| a.connections() as u64,
    );
    gauge(
        e,
        "ringws_gateway_channels",
        "Occupied channels (at least one subscription on this node), by app.",
        &|a| at(a).0 as u64,
    );
    gauge(
        e,
        "ringws_gateway_subscriptions",
        "Channel subscriptions on this node, by app.",
        &|a| at(a).1 as u64,
    );
    gauge(e, "ringws_gateway_presence_members", "Presence channel members (users, not connections) on this node, summed over channels, by app.", &|a| at(a).2 as u64);
    let counter =
        |e: &mut Exposition, name: &str, help: &str, f: &dyn Fn(&AppState) -> &AtomicU64| {
            e.family(name, help, MetricType::Counter);
            for a in &apps {
                e.sample(name, &[("app", &a.cfg.id)], f(a).load(Ordering::Relaxed));
            }
        };
    counter(
        e,
        "ringws_gateway_subscribes_total",
        "Subscriptions made, by app.",
        &|a| &a.counts.subscriptions,
    );
    counter(
        e,
        "ringws_gateway_api_events_total",
        "Events published through the HTTP API (one per channel), by app.",
        &|a| &a.counts.api_events,
    );
    counter(
        e,
        "ringws_gateway_client_events_total",
        "Client events relayed, by app.",
        &|a| &a.counts.client_events,
    );
    counter(
        e,
        "ringws_gateway_client_events_limited_total",
        "Client events refused past the rate limit (4301), by app.",
        &|a| &a.counts.client_events_limited,
    );
    counter(e, "ringws_gateway_refused_messages_total", "Client messages refused with a pusher:error (bad JSON, unknown event, too large, client events where not allowed), by app.", &|a| &a.counts.refused_messages);
    counter(
        e,
        "ringws_gateway_refused_subscriptions_total",
        "Subscriptions refused (bad signature, presence channel full, bad channel data), by app.",
        &|a| &a.counts.refused_subscriptions,
    );
    counter(
        e,
        "ringws_gateway_over_quota_total",
        "Connections refused over the app's connection quota (4004), by app.",
        &|a| &a.counts.over_quota,
    );
    counter(
        e,
        "ringws_gateway_cache_refused_total",
        "Cache channel events not kept because max_cached_channels was reached, by app.",
        &|a| &a.cache_refused,
    );
    let c = &gw.counts;
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    by_label(
        e,
        "ringws_gateway_refused_connections_total",
        "Connections refused before any app, by reason.",
        "reason",
        &[
            ("unknown_app", load(&c.unknown_app)),
            ("protocol", load(&c.bad_protocol)),
        ],
    );
    let w = gw.webhooks.counts();
    by_label(
        e,
        "ringws_gateway_webhook_requests_total",
        "Webhook requests: answered 2xx (ok), failed attempts (each retry counts), batches given up after the retries.",
        "outcome",
        &[("ok", w.requests_ok), ("failed_attempt", w.attempts_failed), ("given_up", w.batches_failed)],
    );
    by_label(
        e,
        "ringws_gateway_webhook_events_total",
        "Webhook events: sent, failed (in batches given up), dropped (the endpoint's queue full), debounced (a removal and the return that cancelled it).",
        "outcome",
        &[
            ("sent", w.events_sent),
            ("failed", w.events_failed),
            ("dropped", w.events_dropped),
            ("debounced", w.events_debounced),
        ],
    );
    e.family(
        "ringws_gateway_webhook_queued",
        "Webhook events held now (queued, batched, debounced or being retried).",
        MetricType::Gauge,
    );
    e.sample("ringws_gateway_webhook_queued", &[], w.queued);
    let statuses: Vec<String> = (0..c.api.len())
        .map(|i| {
            API_STATUSES
                .get(i)
                .map_or_else(|| "other".to_owned(), |s| s.to_string())
        })
        .collect();
    let api: Vec<(&str, u64)> = statuses
        .iter()
        .map(String::as_str)
        .zip(c.api.iter().map(load))
        .collect();
    by_label(
        e,
        "ringws_gateway_api_requests_total",
        "HTTP API requests answered, by status.",
        "status",
        &api,
    );
}

/// A counter family with one sample per value of `label`.
fn by_label(e: &mut Exposition, name: &str, help: &str, label: &str, samples: &[(&str, u64)]) {
    e.family(name, help, MetricType::Counter);
    for &(value, n) in samples {
        e.sample(name, &[(label, value)], n);
    }
}
