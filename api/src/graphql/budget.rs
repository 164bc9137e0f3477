//! The per-caller budget of query cost: every operation that passes validation is charged its
//! complexity before any resolver runs, so an exhausted budget costs no database work.
//!
//! The transport prices each operation with [`crate::graphql::AppSchema::price`] and a
//! [`CostBudget`]; the outcome it records becomes the `RateLimit-*` headers of the HTTP
//! response.

use std::sync::{Arc, Mutex};

use async_graphql::{
    ServerError, ValidationResult,
    extensions::{Extension, ExtensionContext, ExtensionFactory, NextValidation},
};

use crate::{
    rate_limit::{Bucket, Decision, Subject},
    state::AppState,
};

/// Who pays for a request, what its operation cost, and the last decision taken for it.
#[derive(Clone)]
pub struct CostBudget {
    subject: Subject,
    charged: Arc<Mutex<Charged>>,
}

#[derive(Clone, Copy, Default)]
struct Charged {
    cost: Option<u32>,
    decision: Option<Decision>,
}

impl CostBudget {
    pub fn new(subject: Subject) -> Self {
        Self {
            subject,
            charged: Arc::default(),
        }
    }

    /// The decision of the latest charge, if the budget is on and a charge happened.
    pub fn decision(&self) -> Option<Decision> {
        self.charged().decision
    }

    /// The complexity of the operation, once it passed strict validation.
    pub fn cost(&self) -> Option<u32> {
        self.charged().cost
    }

    /// Forgets the cost of an operation priced before with this budget, so that [`Self::cost`]
    /// tells about the next one only.
    pub fn forget_cost(&self) {
        self.update(|charged| charged.cost = None);
    }

    fn charged(&self) -> Charged {
        *self
            .charged
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn update(&self, change: impl FnOnce(&mut Charged)) {
        change(
            &mut self
                .charged
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
    }
}

/// Charges `cost` to `budget`: `Err` holds the `RATE_LIMITED` error when the budget cannot pay
/// it. With the budget off (no limit configured) every operation may go on.
pub async fn charge(state: &AppState, budget: &CostBudget, cost: u32) -> Result<(), ServerError> {
    budget.update(|charged| charged.cost = Some(cost));
    let Some(decision) = state
        .rate_limiter
        .charge(Bucket::QueryCost, &budget.subject, cost)
        .await
    else {
        return Ok(());
    };
    budget.update(|charged| charged.decision = Some(decision));
    if decision.allowed {
        return Ok(());
    }
    let retry = decision.retry_after_seconds();
    Err(rate_limited_error(
        &format!(
            "this operation costs {cost}, more than is left of your budget of {} per {} s; \
             retry in {retry} s",
            decision.limit,
            decision.window.as_secs()
        ),
        retry,
    ))
}

/// The error of an operation refused by a rate limit, as async-graphql reports request errors.
pub fn rate_limited_error(message: &str, retry_after_seconds: u64) -> ServerError {
    let mut error = ServerError::new(message, None);
    let mut extensions = async_graphql::ErrorExtensionValues::default();
    extensions.set("code", "RATE_LIMITED");
    extensions.set("retryAfterSeconds", retry_after_seconds);
    error.extensions = Some(extensions);
    error
}

/// The extension of the pricing schema: after validation it charges the operation's complexity
/// to the request's [`CostBudget`] and then always stops, so the pricing schema never executes
/// anything. An operation that may go on stops with no error at all; one over its budget stops
/// with `RATE_LIMITED`; one that fails validation keeps its validation errors.
pub struct QueryCostLimit;

impl ExtensionFactory for QueryCostLimit {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(QueryCostLimit)
    }
}

#[async_trait::async_trait]
impl Extension for QueryCostLimit {
    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        let validated = next.run(ctx).await?;
        let (Some(budget), Some(state)) =
            (ctx.data_opt::<CostBudget>(), ctx.data_opt::<AppState>())
        else {
            return Err(Vec::new());
        };
        let cost = u32::try_from(validated.complexity).unwrap_or(u32::MAX);
        match charge(state, budget, cost).await {
            Ok(()) => Err(Vec::new()),
            Err(refusal) => Err(vec![refusal]),
        }
    }
}
