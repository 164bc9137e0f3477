//! Prometheus metrics: HTTP requests and latencies, GraphQL operations, mail deliveries, rate
//! limits.

use std::sync::Arc;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry, TextEncoder,
};

/// The service's metric families, registered in their own registry.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    graphql_operations: IntCounterVec,
    graphql_statements: HistogramVec,
    mail_deliveries: IntCounterVec,
    rate_limit_decisions: IntCounterVec,
    rate_limit_fallbacks: IntCounter,
}

impl Metrics {
    pub fn new() -> anyhow::Result<Self> {
        let registry = Registry::new_custom(Some("amdash".into()), None)?;
        let http_requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests by route, method and status",
            ),
            &["route", "method", "status"],
        )?;
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "HTTP request latency by route",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["route", "method"],
        )?;
        let graphql_operations = IntCounterVec::new(
            Opts::new(
                "graphql_operations_total",
                "GraphQL operations by type, first root field and outcome",
            ),
            &["operation_type", "root_field", "outcome"],
        )?;
        let graphql_statements = HistogramVec::new(
            HistogramOpts::new(
                "graphql_sql_statements",
                "SQL statements issued per GraphQL operation, by first root field",
            )
            .buckets(vec![
                0.0, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 32.0, 64.0,
            ]),
            &["root_field"],
        )?;
        registry.register(Box::new(graphql_statements.clone()))?;
        let mail_deliveries = IntCounterVec::new(
            Opts::new(
                "mail_deliveries_total",
                "Delivery attempts of outbox e-mails by outcome (sent, failed)",
            ),
            &["outcome"],
        )?;
        let rate_limit_decisions = IntCounterVec::new(
            Opts::new(
                "rate_limit_decisions_total",
                "Rate-limit charges by budget and outcome (allowed, limited)",
            ),
            &["bucket", "outcome"],
        )?;
        let rate_limit_fallbacks = IntCounter::new(
            "rate_limit_fallbacks_total",
            "Rate-limit decisions taken in memory because Redis failed or was paused",
        )?;
        registry.register(Box::new(rate_limit_decisions.clone()))?;
        registry.register(Box::new(rate_limit_fallbacks.clone()))?;
        registry.register(Box::new(http_requests.clone()))?;
        registry.register(Box::new(http_duration.clone()))?;
        registry.register(Box::new(graphql_operations.clone()))?;
        registry.register(Box::new(mail_deliveries.clone()))?;
        Ok(Self {
            inner: Arc::new(Inner {
                registry,
                http_requests,
                http_duration,
                graphql_operations,
                graphql_statements,
                mail_deliveries,
                rate_limit_decisions,
                rate_limit_fallbacks,
            }),
        })
    }

    /// Records one finished HTTP request. `route` is the matched pattern, never the raw path,
    /// so label values stay bounded.
    pub fn observe_http(&self, route: &str, method: &str, status: u16, seconds: f64) {
        self.inner
            .http_requests
            .with_label_values(&[route, method, &status.to_string()])
            .inc();
        self.inner
            .http_duration
            .with_label_values(&[route, method])
            .observe(seconds);
    }

    /// Records one executed GraphQL operation. `root_field` comes from the schema (validated
    /// documents only), so its values are bounded.
    pub fn observe_graphql(
        &self,
        operation_type: &str,
        root_field: &str,
        outcome: &str,
        statements: u64,
    ) {
        self.inner
            .graphql_operations
            .with_label_values(&[operation_type, root_field, outcome])
            .inc();
        #[expect(
            clippy::cast_precision_loss,
            reason = "statement counts are far below 2^52"
        )]
        self.inner
            .graphql_statements
            .with_label_values(&[root_field])
            .observe(statements as f64);
    }

    /// Records one delivery attempt of an outbox e-mail: `sent` or `failed`.
    pub fn observe_mail_delivery(&self, outcome: &str) {
        self.inner
            .mail_deliveries
            .with_label_values(&[outcome])
            .inc();
    }

    /// Records one rate-limit charge.
    pub fn observe_rate_limit(&self, bucket: &str, allowed: bool) {
        let outcome = if allowed { "allowed" } else { "limited" };
        self.inner
            .rate_limit_decisions
            .with_label_values(&[bucket, outcome])
            .inc();
    }

    /// Records one rate-limit decision taken in memory because Redis failed.
    pub fn observe_rate_limit_fallback(&self) {
        self.inner.rate_limit_fallbacks.inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        // Encoding into a Vec cannot fail for the text format.
        let _ = TextEncoder::new().encode(&self.inner.registry.gather(), &mut buffer);
        String::from_utf8(buffer).unwrap_or_default()
    }
}
