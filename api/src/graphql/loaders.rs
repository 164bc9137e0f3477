//! Per-request DataLoaders, so nested fields of a list load in one statement per relation.

use std::{
    collections::HashMap,
    sync::{Arc, atomic::AtomicU64},
};

use async_graphql::dataloader::{DataLoader, Loader};
use entity::{provider, user};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use uuid::Uuid;

use crate::{
    db::{Db, counting_statements},
    error::ApiError,
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

/// The loaders of one request. Their batches run on spawned tasks, which carry the request's
/// statement counter along.
pub fn for_request(
    db: &Db,
    statements: Arc<AtomicU64>,
) -> (DataLoader<ProviderLoader>, DataLoader<UserLoader>) {
    let spawner = move |counter: Arc<AtomicU64>| {
        move |work| tokio::spawn(counting_statements(counter.clone(), work))
    };
    (
        DataLoader::new(ProviderLoader(db.clone()), spawner(statements.clone())),
        DataLoader::new(UserLoader(db.clone()), spawner(statements)),
    )
}
