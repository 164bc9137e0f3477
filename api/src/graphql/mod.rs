//! The GraphQL schema: per-domain query and mutation types merged into the roots, and the
//! subscriptions.

mod accounts;
pub mod budget;
pub mod known;
pub mod limits;
pub mod loaders;
mod node;
mod providers;
mod review;
mod sections;
mod subscriptions;

use std::sync::Arc;

use async_graphql::{
    MergedObject, Request, Response, Schema, SchemaBuilder, ValidationMode, Variables,
    futures_util::Stream, parser::types::ExecutableDocument,
};

pub use node::{GlobalId, Node};
pub use subscriptions::{EventProgress, SharedRows, SubscribedAt, SubscriptionRoot};

use crate::{
    error::{PayloadError, UserError},
    state::AppState,
};

/// Every query, by domain.
#[derive(MergedObject, Default)]
pub struct QueryRoot(
    accounts::AccountQuery,
    node::NodeQuery,
    providers::ProviderQuery,
    review::ReviewQuery,
);

/// Every mutation, by domain.
#[derive(MergedObject, Default)]
pub struct MutationRoot(
    accounts::AccountMutation,
    providers::ProviderMutation,
    review::ReviewMutation,
);

/// The schema type: the roots above.
pub type RootSchema = Schema<QueryRoot, MutationRoot, SubscriptionRoot>;

/// Deepest accepted selection nesting.
pub const MAX_DEPTH: usize = 15;
/// Highest accepted query complexity (each field costs 1 unless it says otherwise).
pub const MAX_COMPLEXITY: usize = 2_000;

fn builder() -> SchemaBuilder<QueryRoot, MutationRoot, SubscriptionRoot> {
    Schema::build(
        QueryRoot::default(),
        MutationRoot::default(),
        SubscriptionRoot,
    )
    .limit_depth(MAX_DEPTH)
    .limit_complexity(MAX_COMPLEXITY)
    .limit_recursive_depth(32)
    .limit_directives(10)
}

/// The schema a running service serves, as two instances of the same roots.
///
/// Every operation is first *priced*: the pricing instance validates it strictly and charges
/// its complexity to the caller's budget ([`budget::QueryCostLimit`]), and stops there. Only
/// then does the executing instance run it. The executing instance has no extension: with
/// one, async-graphql sends every resolved field through the extension chain (a registry
/// lookup and a boxed future per field), which cost about a tenth of the CPU of a queue page.
/// It validates in async-graphql's fast mode, which still applies the depth and complexity
/// limits; the strict rules already ran on the same document while pricing.
///
/// Documents and prices of operations seen before are kept ([`known`]), so a repeated
/// operation is parsed, checked against the limits and strictly validated only once.
#[derive(Clone)]
pub struct AppSchema {
    pricing: RootSchema,
    executing: RootSchema,
    known: Arc<known::KnownOperations>,
    state: AppState,
}

/// A query text that passed the document limits, and its document.
pub struct CheckedQuery {
    /// The parsed text; `None` when it does not parse (the schema reports the syntax error).
    pub document: Option<Arc<ExecutableDocument>>,
    /// Whether the document was found among the known ones rather than parsed now.
    known: bool,
}

impl CheckedQuery {
    /// Whether the document was found among the known ones rather than parsed now.
    pub fn was_known(&self) -> bool {
        self.known
    }
}

impl AppSchema {
    /// Every check on a document before it is priced ([`limits::check_query`]), skipped for a
    /// text whose document is known (see [`known`]). A new document is kept once an operation
    /// of it passes strict validation, in [`Self::price`].
    pub fn check_query(&self, query: &str) -> Result<CheckedQuery, limits::LimitExceeded> {
        if let Some(document) = self.known.document(query) {
            return Ok(CheckedQuery {
                document: Some(document),
                known: true,
            });
        }
        Ok(CheckedQuery {
            document: limits::check_query(query)?.map(Arc::new),
            known: false,
        })
    }

    /// How many documents are kept, and their estimated size in all (for tests and
    /// diagnostics).
    pub fn documents_kept(&self) -> (usize, u64) {
        self.known.documents_kept()
    }

    /// Validates the operation and charges its cost to `budget`, running no resolver. `Err`
    /// holds the answer to give instead of executing it: the parse or validation errors, or
    /// `RATE_LIMITED` when the budget is spent. `checked` is `query` as [`Self::check_query`]
    /// left it. An operation that passed strict validation before (same text, operation name
    /// and variables) is only charged. A new document of an operation that passes is kept.
    pub async fn price(
        &self,
        query: &str,
        checked: &CheckedQuery,
        operation_name: Option<&str>,
        variables: &Variables,
        budget: &budget::CostBudget,
    ) -> Result<(), Response> {
        let remember = || {
            if let (false, Some(document)) = (checked.known, &checked.document) {
                self.known.remember_document(query, document);
            }
        };
        let key = self.known.price_key(query, operation_name, variables);
        if let Some(cost) = key.as_deref().and_then(|key| self.known.price(key)) {
            remember();
            return budget::charge(&self.state, budget, cost)
                .await
                .map_err(|refusal| Response::from_errors(vec![refusal]));
        }
        let document = checked.document.as_deref();
        budget.forget_cost();
        let mut request = match document {
            // The text is only parsed when there is no document.
            Some(document) => {
                let mut request = Request::new(String::new());
                request.set_parsed_query(document.clone());
                request
            }
            None => Request::new(query),
        }
        .variables(variables.clone())
        .data(budget.clone());
        if let Some(name) = operation_name {
            request = request.operation_name(name);
        }
        let response = self.pricing.execute(request).await;
        // The cost is recorded once strict validation passed, whatever the charge decided.
        if let Some(cost) = budget.cost() {
            remember();
            if let Some(key) = key {
                self.known.remember_price(key, cost);
            }
        }
        if response.errors.is_empty() {
            Ok(())
        } else {
            Err(response)
        }
    }

    /// Executes a query or mutation that [`AppSchema::price`] accepted.
    pub async fn execute(&self, request: Request) -> Response {
        self.executing.execute(request).await
    }

    /// Executes a subscription that [`AppSchema::price`] accepted.
    pub fn execute_stream(
        &self,
        request: Request,
    ) -> impl Stream<Item = Response> + Send + Unpin + 'static {
        self.executing
            .execute_stream_with_session_data(request, std::sync::Arc::default())
    }
}

/// The schema of a running service, with its state attached.
pub fn build_schema(state: AppState) -> AppSchema {
    let configure = |mut builder: SchemaBuilder<QueryRoot, MutationRoot, SubscriptionRoot>| {
        if !state.settings.field_suggestions {
            builder = builder.disable_suggestions();
        }
        if !state.settings.introspection {
            builder = builder.disable_introspection();
        }
        builder
            .data(state.clone())
            .data(std::sync::Arc::new(SharedRows::default()))
            .finish()
    };
    AppSchema {
        pricing: configure(builder().extension(budget::QueryCostLimit)),
        executing: configure(builder().validation_mode(ValidationMode::Fast)),
        known: Arc::default(),
        state,
    }
}

/// The SDL committed as `schema.graphql`: fields, arguments and enum values sorted so that the
/// file changes only when the schema does.
pub fn sdl() -> String {
    let options = async_graphql::SDLExportOptions::new()
        .sorted_fields()
        .sorted_arguments()
        .sorted_enum_items();
    builder().finish().sdl_with_options(options)
}

/// Turns a service result into a mutation payload: user errors into `userErrors` (at most
/// [`crate::error::MAX_USER_ERRORS`], then one `TOO_MANY_ERRORS`), anything else into a
/// top-level error.
pub(crate) fn payload<T, P: Default>(
    result: Result<T, PayloadError>,
    build: impl FnOnce(T) -> P,
    set_errors: impl FnOnce(&mut P, Vec<UserError>),
) -> async_graphql::Result<P> {
    match result {
        Ok(value) => Ok(build(value)),
        Err(PayloadError::User(errors)) => {
            let mut empty = P::default();
            set_errors(&mut empty, crate::error::cap_user_errors(errors));
            Ok(empty)
        }
        Err(PayloadError::Api(error)) => Err(error.into()),
    }
}
