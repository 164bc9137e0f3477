//! The GraphQL schema: per-domain query and mutation types merged into the roots, and the
//! subscriptions.

mod accounts;
pub mod budget;
pub mod limits;
pub mod loaders;
mod node;
mod providers;
mod review;
mod sections;
mod subscriptions;

use async_graphql::{MergedObject, Schema, SchemaBuilder};

pub use node::{GlobalId, Node};
pub use subscriptions::{SharedRows, SubscribedAt, SubscriptionRoot};

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

pub type AppSchema = Schema<QueryRoot, MutationRoot, SubscriptionRoot>;

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

/// The schema a running service executes, with its state attached.
pub fn build_schema(state: AppState) -> AppSchema {
    let mut builder = builder().extension(budget::QueryCostLimit);
    if !state.settings.field_suggestions {
        builder = builder.disable_suggestions();
    }
    if !state.settings.introspection {
        builder = builder.disable_introspection();
    }
    builder
        .data(state)
        .data(std::sync::Arc::new(SharedRows::default()))
        .finish()
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
