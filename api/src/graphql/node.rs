//! Relay global object identification: opaque IDs, the `Node` interface, `node` and `nodes`.

use async_graphql::{Context, ID, Interface, Object};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use sea_orm::EntityTrait as _;
use uuid::Uuid;

use super::{
    accounts::User,
    providers::{Provider, Submission},
};
use crate::{
    auth::{Role, Viewer},
    error::{ApiError, ApiResult},
    state::AppState,
};

/// Most IDs one `nodes` call may ask for.
const MAX_NODES: usize = 100;

/// A typed, opaque global ID: base64url of `Type:uuid`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GlobalId {
    pub type_name: &'static str,
    pub id: Uuid,
}

/// The object types that have global IDs.
const NODE_TYPES: &[&str] = &["User", "ApiToken", "Provider", "Submission"];

impl GlobalId {
    pub fn new(type_name: &'static str, id: Uuid) -> Self {
        Self { type_name, id }
    }

    pub fn encode(type_name: &'static str, id: Uuid) -> ID {
        ID(URL_SAFE_NO_PAD.encode(format!("{type_name}:{id}")))
    }

    /// Decodes any global ID; `None` for anything malformed.
    pub fn decode(id: &str) -> Option<Self> {
        let bytes = URL_SAFE_NO_PAD.decode(id.as_bytes()).ok()?;
        let text = std::str::from_utf8(&bytes).ok()?;
        let (type_name, uuid) = text.split_once(':')?;
        let type_name = NODE_TYPES.iter().find(|known| **known == type_name)?;
        Some(Self {
            type_name,
            id: Uuid::parse_str(uuid).ok()?,
        })
    }

    /// Decodes an ID that must name an object of `type_name`. A malformed ID or one of another
    /// type is reported like a missing object.
    pub fn expect(id: &ID, type_name: &str) -> ApiResult<Uuid> {
        Self::decode(id)
            .filter(|g| g.type_name == type_name)
            .map(|g| g.id)
            .ok_or(ApiError::NotFound)
    }
}

/// An object with a global ID.
#[derive(Interface)]
#[expect(
    clippy::large_enum_variant,
    reason = "a node lives for one resolver call; boxing would only add an allocation"
)]
#[graphql(field(name = "id", ty = "ID", desc = "The object's global ID."))]
pub enum Node {
    User(User),
    Provider(Provider),
    Submission(Submission),
}

#[derive(Default)]
pub struct NodeQuery;

#[Object]
impl NodeQuery {
    /// Fetches any object by its global ID; `null` when it does not exist or the viewer may not
    /// see it.
    async fn node(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Node>> {
        Ok(load_node(ctx, &id).await?)
    }

    /// Fetches up to 100 objects by global ID, in the order asked; `null` for each one that does
    /// not exist or is not visible.
    #[graphql(complexity = "ids.len().max(1) * child_complexity")]
    async fn nodes(
        &self,
        ctx: &Context<'_>,
        ids: Vec<ID>,
    ) -> async_graphql::Result<Vec<Option<Node>>> {
        if ids.len() > MAX_NODES {
            return Err(ApiError::BadUserInput(format!("ask for at most {MAX_NODES} ids")).into());
        }
        let mut nodes = Vec::with_capacity(ids.len());
        for id in &ids {
            nodes.push(load_node(ctx, id).await?);
        }
        Ok(nodes)
    }
}

async fn load_node(ctx: &Context<'_>, id: &ID) -> ApiResult<Option<Node>> {
    let Some(global) = GlobalId::decode(id) else {
        return Ok(None);
    };
    let viewer = Viewer::of(ctx).require(Role::Submitter)?;
    let state = ctx.data_unchecked::<AppState>();
    match global.type_name {
        "User" => {
            if viewer.user_id != global.id && viewer.role != Role::Admin {
                return Ok(None);
            }
            let found = entity::user::Entity::find_by_id(global.id)
                .one(state.db.conn())
                .await?;
            Ok(found.map(|u| Node::User(User(u))))
        }
        "Provider" => {
            match crate::registration::visible_provider(state.db.conn(), viewer, global.id).await {
                Ok(found) => Ok(Some(Node::Provider(Provider(found)))),
                Err(ApiError::NotFound) => Ok(None),
                Err(error) => Err(error),
            }
        }
        "Submission" => {
            match crate::registration::visible_submission(state.db.conn(), viewer, global.id).await
            {
                Ok((found, _)) => Ok(Some(Node::Submission(Submission(found)))),
                Err(ApiError::NotFound) => Ok(None),
                Err(error) => Err(error),
            }
        }
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn global_ids_round_trip_and_reject_forgeries() {
        let id = Uuid::new_v4();
        let encoded = GlobalId::encode("User", id);
        assert_eq!(GlobalId::decode(&encoded), Some(GlobalId::new("User", id)));
        assert_eq!(GlobalId::expect(&encoded, "User").ok(), Some(id));
        assert!(GlobalId::expect(&encoded, "ApiToken").is_err());
        let unknown_type = URL_SAFE_NO_PAD.encode(format!("Secret:{id}"));
        assert_eq!(GlobalId::decode(&unknown_type), None);
        assert_eq!(GlobalId::decode("not base64 !"), None);
        assert_eq!(GlobalId::decode(&URL_SAFE_NO_PAD.encode("User:nope")), None);
    }
}
