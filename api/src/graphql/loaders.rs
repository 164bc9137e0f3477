//! Per-request DataLoaders, so nested fields of a list load in one statement per relation, and
//! the lookups of providers and users that go through them.

use std::{
    collections::HashMap,
    sync::{Arc, atomic::AtomicU64},
};

use async_graphql::{
    Context,
    dataloader::{DataLoader, HashMapCache, Loader},
};
use entity::{provider, user};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use uuid::Uuid;

use crate::{
    db::{Db, counting_statements},
    error::ApiError,
    state::AppState,
};

/// Providers by id.
pub struct ProviderLoader(pub Db);

impl Loader<Uuid> for ProviderLoader {
    type Value = provider::Model;
    type Error = ApiError;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, provider::Model>, ApiError> {
        let rows = provider::Entity::find()
            .filter(provider::Column::Id.is_in(keys.to_vec()))
            .all(self.0.conn())
            .await?;
        Ok(rows.into_iter().map(|row| (row.id, row)).collect())
    }
}

/// Users by id (actors, claim holders).
pub struct UserLoader(pub Db);

impl Loader<Uuid> for UserLoader {
    type Value = user::Model;
    type Error = ApiError;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, user::Model>, ApiError> {
        let rows = user::Entity::find()
            .filter(user::Column::Id.is_in(keys.to_vec()))
            .all(self.0.conn())
            .await?;
        Ok(rows.into_iter().map(|row| (row.id, row)).collect())
    }
}

/// The providers loader of a request or socket operation (schema data).
pub type Providers = DataLoader<ProviderLoader, HashMapCache>;
/// The users loader of a request or socket operation (schema data).
pub type Users = DataLoader<UserLoader, HashMapCache>;

/// The loaders of one HTTP request. Their batches run on spawned tasks, which carry the
/// request's statement counter along. A query's loaders keep what they load for the rest of the
/// request, so a list can hand them the rows it read in bulk ([`prefetch`]); a mutation's do
/// not, since a later root field of the same request may change what an earlier one read.
pub fn for_request(db: &Db, statements: Arc<AtomicU64>, cached: bool) -> (Providers, Users) {
    let spawner = move |counter: Arc<AtomicU64>| {
        move |work| tokio::spawn(counting_statements(counter.clone(), work))
    };
    let providers = DataLoader::with_cache(
        ProviderLoader(db.clone()),
        spawner(statements.clone()),
        HashMapCache::default(),
    );
    let users = DataLoader::with_cache(
        UserLoader(db.clone()),
        spawner(statements),
        HashMapCache::default(),
    );
    providers.enable_all_cache(cached);
    users.enable_all_cache(cached);
    (providers, users)
}

/// A provider by id through the request's loader; with none (a WebSocket operation, whose
/// payloads must read rows as they are at each event and whose idle memory is kept small),
/// straight from the database.
pub async fn provider(ctx: &Context<'_>, id: Uuid) -> Result<Option<provider::Model>, ApiError> {
    match ctx.data_opt::<Providers>() {
        Some(loader) => loader.load_one(id).await,
        None => {
            let db = &ctx.data_unchecked::<AppState>().db;
            Ok(provider::Entity::find_by_id(id).one(db.conn()).await?)
        }
    }
}

/// A user by id, as [`provider`] loads providers.
pub async fn user(ctx: &Context<'_>, id: Uuid) -> Result<Option<user::Model>, ApiError> {
    match ctx.data_opt::<Users>() {
        Some(loader) => loader.load_one(id).await,
        None => {
            let db = &ctx.data_unchecked::<AppState>().db;
            Ok(user::Entity::find_by_id(id).one(db.conn()).await?)
        }
    }
}

/// What a list of submissions is about to resolve beside each item.
#[derive(Clone, Copy, Debug, Default)]
pub struct Relations {
    pub providers: bool,
    pub claim_holders: bool,
}

/// Loads the providers and claim holders of a page of submissions at once, one statement each
/// and concurrently, and hands them to the request's loaders, so that the items' fields find
/// them without a batch of their own (a batch waits for its delay on a timer and runs on a
/// spawned task). Loaders with the cache off load again; that is correct, only slower.
pub async fn prefetch(
    ctx: &Context<'_>,
    rows: &[entity::submission::Model],
    wanted: Relations,
) -> Result<(), ApiError> {
    let (Some(providers), Some(users)) = (ctx.data_opt::<Providers>(), ctx.data_opt::<Users>())
    else {
        return Ok(());
    };
    let provider_ids: Vec<Uuid> = if wanted.providers {
        distinct(rows.iter().map(|row| row.provider_id))
    } else {
        Vec::new()
    };
    let holder_ids: Vec<Uuid> = if wanted.claim_holders {
        distinct(rows.iter().filter_map(|row| row.claimed_by))
    } else {
        Vec::new()
    };
    let (found_providers, found_users) = tokio::try_join!(
        load_unless_empty(providers.loader(), &provider_ids),
        load_unless_empty(users.loader(), &holder_ids),
    )?;
    providers.feed_many(found_providers).await;
    users.feed_many(found_users).await;
    Ok(())
}

async fn load_unless_empty<L>(
    loader: &L,
    keys: &[Uuid],
) -> Result<HashMap<Uuid, L::Value>, ApiError>
where
    L: Loader<Uuid, Error = ApiError>,
{
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    loader.load(keys).await
}

fn distinct(ids: impl Iterator<Item = Uuid>) -> Vec<Uuid> {
    let mut ids: Vec<Uuid> = ids.collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}
